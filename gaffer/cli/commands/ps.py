"""ps, ps:info, ps:scale, ps:start, ps:stop, ps:kill."""

from __future__ import annotations

import re
import signal
import time
from typing import Any

from gaffer.cli import cluster
from gaffer.cli.commands import YES, arg, command
from gaffer.cli.context import Context, UsageError
from gaffer.cli.render import duration, percent, size, uptime
from gaffer.errors import NotFound

HEADERS = (
    "JOB",
    "PID",
    "OS PID",
    "STATE",
    "UPTIME",
    "RESTARTS",
    "LAST EXIT",
    "CPU",
    "MEM",
    "RSS",
)


async def job_rows(context: Context, jobs: list[str], named: bool = False) -> list[dict[str, Any]]:
    """One row per process of ``jobs``, and one for the job itself when it runs fewer
    processes than its target (stopped, waiting, in backoff, fatal...). An unknown job is
    an error when ``named``; otherwise it was unloaded meanwhile and is skipped."""
    server = context.server()
    rows = []
    for job_id in jobs:
        job = server.job(job_id)
        try:
            info = await job.info()
            stats = await job.stats()
        except NotFound:
            if named:
                raise
            continue
        usage = {stat["pid"]: stat for stat in stats["stats"]}
        kept = 0
        for proc in info.get("process_info", []):
            stat = usage.get(proc["pid"], {})
            kept += not proc["once"]
            rows.append(
                {
                    "job": job_id,
                    "pid": proc["pid"],
                    "os_pid": proc["os_pid"],
                    "state": proc["state"],
                    "health": proc.get("health"),
                    "create_time": proc["create_time"],
                    "restarts": proc["restarts"],
                    "last_exit": proc["last_exit"],
                    "cpu": stat.get("cpu"),
                    "mem": stat.get("mem"),
                    "rss": stat.get("mem_info1"),
                }
            )
        if kept < info["numprocesses"] or not kept:
            rows.append(
                {
                    "job": job_id,
                    "pid": None,
                    "os_pid": None,
                    "state": info["state"],
                    "create_time": None,
                    "restarts": info["restarts"],
                    "last_exit": info["last_exit"],
                    "next_restart_at": info["next_restart_at"],
                    "waiting_for": info.get("waiting_for") or [],
                    "error": info["error"],
                    "cpu": None,
                    "mem": None,
                    "rss": None,
                }
            )
    return rows


async def app_jobs(context: Context, app: str | None) -> list[str]:
    server = context.server()
    if app is None:
        return await server.jobs()
    try:
        return await server.jobs(app)
    except NotFound:
        return []


def show_rows(context: Context, rows: list[dict[str, Any]]) -> None:
    out = context.out
    if out.json:
        out.data(rows)
        return
    table = [
        (
            out.color(row["job"]),
            row["pid"] or "-",
            row["os_pid"] or "-",
            state_text(row),
            uptime(row["create_time"]) if row["pid"] else "-",
            row["restarts"],
            exit_text(row["last_exit"]),
            percent(row["cpu"]),
            percent(row["mem"]),
            size(row["rss"]),
        )
        for row in rows
    ]
    if not table:
        out.write("no job")
        return
    out.table(HEADERS, table)
    for row in rows:
        if row.get("error"):
            out.write(f"{row['job']}: {row['error']}")


def state_text(row: dict[str, Any]) -> str:
    """The state word; for a job waiting to restart, when; for a job waiting for others,
    which; for a process failing its health checks, how many times."""
    when, waiting, health = row.get("next_restart_at"), row.get("waiting_for"), row.get("health")
    if when is not None:
        return f"{row['state']} (retry in {duration(when - time.time())})"
    if waiting:
        return f"{row['state']} for {', '.join(waiting)}"
    if health and not health["ok"]:
        return f"{row['state']}, unhealthy x{health['failures']}"
    return row["state"]


def exit_text(last_exit: dict[str, Any] | None) -> str:
    """``exit 3, 5s ago`` or ``SIGKILL, 2m01s ago``."""
    if not last_exit:
        return "-"
    signum = last_exit.get("term_signal")
    how = signal_name(signum) if signum else f"exit {last_exit.get('exit_status')}"
    when = last_exit.get("time")
    return how if when is None else f"{how}, {duration(time.time() - when)} ago"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@command(
    "ps",
    arg("jobs", nargs="*", metavar="JOB", help="jobs to show (default: all, or those of --app)"),
    cluster.NODE,
)
async def ps(context: Context) -> int:
    """List the processes: job, pid, OS pid, state, uptime, restarts, last exit, CPU, memory.

    Every job of gafferd, those of --app, or the jobs named. A job that runs fewer
    processes than its target also gets a row of its own: its state (with when it retries,
    in backoff), its restarts, its last exit, and below the table why it cannot spawn.
    With --cluster: every job of every node (node, job, state, processes, target)."""
    if cluster.wanted(context):
        return await cluster.ps(context)
    if context.args.jobs:
        jobs = [context.job_id(name) for name in context.args.jobs]
        rows = await job_rows(context, jobs, named=True)
    else:
        rows = await job_rows(context, await app_jobs(context, context.args.app))
    show_rows(context, rows)
    return 0


@command("ps:info", arg("target", help="a pid, or a job"))
async def ps_info(context: Context) -> int:
    """Everything about a process (a pid) or a job."""
    server = context.server()
    target = context.args.target
    if target.isdigit():
        info = await server.process(int(target)).info()
    else:
        info = await server.job(context.job_id(target)).info()
    if context.out.json:
        context.out.data(info)
    else:
        context.out.pairs(info)
    return 0


SCALE = re.compile(r"^(?P<job>[^=+\-]+)(?P<op>[=+\-])(?P<n>\d+)$")


@command(
    "ps:scale",
    arg(
        "specs",
        nargs="+",
        metavar="JOB=N|JOB+N|JOB-N",
        help="web=3 sets, worker+2 adds, api-1 removes",
    ),
    cluster.NODE,
)
async def ps_scale(context: Context) -> int:
    """Change how many processes jobs run: web=3 worker+2 api-1."""
    server = context.server()
    plan = []
    for spec in context.args.specs:
        match = SCALE.match(spec)
        if not match:
            raise UsageError(f"bad scale {spec!r}: expected JOB=N, JOB+N or JOB-N")
        plan.append((context.job_id(match["job"]), match["op"] + match["n"]))
    if cluster.wanted(context):
        return await cluster.scale(context, plan)
    results = {}
    for job_id, operation in plan:
        results[job_id] = await server.job(job_id).scale(operation)
        if not context.out.json:
            context.out.write(f"Scaling {job_id} processes... done, now running {results[job_id]}")
    if context.out.json:
        context.out.data(results)
    return 0


async def _targets(context: Context, what: str) -> list[str]:
    names = context.args.targets
    if names:
        return names
    app = context.app_name()
    jobs = await app_jobs(context, app)
    if not jobs:
        raise UsageError(f"no job in {app!r} to {what}")
    if not context.confirm(f"{what.capitalize()} every job of {app} ({len(jobs)})?"):
        return []
    return jobs


@command("ps:start", arg("targets", nargs="*", metavar="JOB"), YES, cluster.NODE)
async def ps_start(context: Context) -> int:
    """Start jobs (all the jobs of the app when none is named)."""
    if cluster.wanted(context):
        return await cluster.start_stop(context, "start")
    server = context.server()
    for name in await _targets(context, "start"):
        await server.job(context.job_id(name)).start()
        context.out.write(f"{context.job_id(name)} started")
    return 0


@command("ps:stop", arg("targets", nargs="*", metavar="JOB|PID"), YES, cluster.NODE)
async def ps_stop(context: Context) -> int:
    """Stop jobs, or single processes by pid (all the app's jobs when none is named).

    A stopped process of a running job is replaced."""
    if cluster.wanted(context):
        return await cluster.start_stop(context, "stop")
    server = context.server()
    for name in await _targets(context, "stop"):
        if name.isdigit():
            await server.process(int(name)).stop()
            context.out.write(f"process {name} stopped")
        else:
            await server.job(context.job_id(name)).stop()
            context.out.write(f"{context.job_id(name)} stopped")
    return 0


@command("ps:kill", arg("target", metavar="JOB|PID"), arg("signal", help="HUP, 9, SIGTERM..."))
async def ps_kill(context: Context) -> int:
    """Send a signal to a process (a pid) or to every process of a job."""
    server = context.server()
    target, sig = context.args.target, context.args.signal
    signal_value: int | str = int(sig) if sig.isdigit() else sig
    if target.isdigit():
        await server.process(int(target)).kill(signal_value)
    else:
        await server.job(context.job_id(target)).kill(signal_value)
    context.out.write(f"signal {sig} sent to {target}")
    return 0
