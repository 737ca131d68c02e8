"""load, unload, reload, apps, run."""

from __future__ import annotations

import json
import sys
from typing import Any

from gaffer.cli import cluster
from gaffer.cli.commands import YES, arg, command
from gaffer.cli.context import Context, UsageError
from gaffer.errors import Conflict, NotFound

CONCURRENCY = arg(
    "-c",
    "--concurrency",
    action="append",
    default=[],
    metavar="JOB=N",
    help="processes per job: -c web=2 -c worker=3 (or web=2,worker=3)",
)
FLAPPING = arg(
    "--flapping",
    metavar="SPEC",
    help="crash-loop protection of the Procfile's jobs: 'ATTEMPTS WINDOW RETRY_IN "
    "MAX_RETRY' or 'off' (default '2 1 7 5': 2 exits within 1 s stop the job, retried "
    "7 s later, 5 times)",
)


def read_json_jobs(path: str) -> tuple[str | None, list[dict[str, Any]]]:
    """Jobs of a JSON file ('-' for stdin): one job object, a list, or {"jobs": [...]}
    (with ``"name"``, the app they belong to, as ``gaffer export --format json`` writes
    it). Returns (that app or None, the jobs)."""
    try:
        text = sys.stdin.read() if path == "-" else open(path).read()  # noqa: SIM115
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    session = None
    if isinstance(data, dict) and "jobs" in data:
        session = data.get("name")
        if session is not None and (not isinstance(session, str) or not session.strip()):
            raise ValueError(f"{path}: the app's name must be a non-empty string")
    jobs = data.get("jobs", data) if isinstance(data, dict) else data
    if isinstance(jobs, dict):
        jobs = [jobs]
    if not isinstance(jobs, list) or not all(isinstance(job, dict) for job in jobs):
        raise ValueError(f'{path}: expected a job object, a list of them, or {{"jobs": [...]}}')
    for index, job in enumerate(jobs):
        if "name" not in job or "cmd" not in job:
            raise ValueError(f"{path}: job {index} needs a name and a cmd")
    return session, jobs


@command(
    "load",
    arg("file", nargs="?", help="a JSON file of jobs ('-' for stdin); default: the Procfile"),
    CONCURRENCY,
    FLAPPING,
    arg("--nostart", action="store_true", help="load without starting"),
    cluster.NODE,
)
async def load(context: Context) -> int:
    """Load jobs into gafferd, from a JSON file or from the Procfile.

    From the Procfile: every entry, in the session of the app, one port per instance,
    output captured. With --cluster: on the nodes named with --node."""
    if cluster.wanted(context):
        cluster.require_nodes(context, "load")
    if context.args.file:
        file_session, file_jobs = read_json_jobs(context.args.file)
        default_session = context.args.app or file_session or "default"
        jobs = [
            (
                job.get("session") or default_session,
                {k: v for k, v in job.items() if k != "session"},
            )
            for job in file_jobs
        ]
    else:
        app = context.app()
        jobs = [
            (app.name, job) for job in app.jobs(context.concurrency(), flapping=context.flapping())
        ]
    if cluster.wanted(context):
        return await cluster.load(
            context, lambda server, node: _load_into(context, server, jobs, f"{node}: ")
        )
    loaded, failed = await _load_into(context, context.server(), jobs)
    if context.out.json:
        context.out.data({"loaded": loaded, "failed": failed})
    return 1 if failed else 0


async def _load_into(
    context: Context, server: Any, jobs: list[tuple[str, dict[str, Any]]], label: str = ""
) -> tuple[list[str], int]:
    """Load ``jobs`` into ``server``; returns the jobs loaded, and how many failed: were
    already loaded there, or cannot start (their first spawn failed)."""
    failed = 0
    loaded = []
    for session, original in jobs:
        job = dict(original)
        start = job.pop("start", not context.args.nostart)
        try:
            handle = await server.load(
                job, sessionid=None if "." in job["name"] else session, start=start
            )
        except Conflict:
            failed += 1
            name = job["name"] if "." in job["name"] else f"{session}.{job['name']}"
            print(f"gaffer: {label}{name} is already loaded", file=sys.stderr)
            continue
        loaded.append(handle.id)
        if not context.out.json:
            context.out.write(f"{label}{handle.id} loaded{'' if start else ' (not started)'}")
        error = (await handle.info()).get("error") if start else None
        if error:  # its first spawn failed: the program is missing, cwd is wrong...
            failed += 1
            print(
                f"gaffer: {label}{handle.id} cannot start: {error} (it stays loaded, "
                "retried with a growing delay: fix it, then `gaffer unload` and load it again)",
                file=sys.stderr,
            )
    return loaded, failed


async def _jobs_of(context: Context, what: str) -> list[str]:
    server = context.server()
    if context.args.from_file:
        file_session, file_jobs = read_json_jobs(context.args.from_file)
        session = context.args.app or file_session
        ids = []
        for job in file_jobs:
            name, job_session = job["name"], job.get("session") or session
            ids.append(f"{job_session}.{name}" if job_session and "." not in name else name)
        return [name if "." in name else context.job_id(name) for name in ids]
    if context.args.jobs:
        return [context.job_id(name) for name in context.args.jobs]
    app = context.app_name()
    try:
        jobs = await server.jobs(app)
    except NotFound:
        raise UsageError(f"no job in {app!r}") from None
    if not context.confirm(f"{what.capitalize()} every job of {app} ({len(jobs)})?"):
        return []
    return jobs


TARGETS = (
    arg("jobs", nargs="*", metavar="JOB"),
    arg("--from-file", metavar="FILE", help="the jobs named in a JSON file"),
    YES,
)


@command("unload", *TARGETS)
async def unload(context: Context) -> int:
    """Unload jobs, stopping their processes.

    Those named, those of a JSON file, or every job of the app."""
    for job_id in await _jobs_of(context, "unload"):
        await context.server().job(job_id).unload()
        context.out.write(f"{job_id} unloaded")
    return 0


@command("reload", *TARGETS)
async def reload(context: Context) -> int:
    """Reload jobs: new processes for all of them (new pids)."""
    for job_id in await _jobs_of(context, "reload"):
        await context.server().job(job_id).reload()
        context.out.write(f"{job_id} reloaded")
    return 0


@command("apps")
async def apps(context: Context) -> int:
    """List the apps (sessions) and their jobs."""
    server = context.server()
    sessions = {sid: await server.jobs(sid) for sid in await server.sessions()}
    if context.out.json:
        context.out.data(sessions)
    elif not sessions:
        context.out.write("no app")
    else:
        for sid, jobs in sessions.items():
            context.out.write(
                f"{context.out.color(sid)}: {', '.join(j.split('.', 1)[1] for j in jobs)}"
            )
    return 0


@command(
    "run",
    arg("job", help="a loaded job"),
    arg(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for this run (repeatable)",
    ),
    arg("--graceful-timeout", type=float, metavar="SECONDS"),
)
async def run(context: Context) -> int:
    """Run one more process of a loaded job, once (never restarted); print its pid.

    Its environment: the job's, then .env and -e files, then the -p values."""
    env: dict[str, str] = {}
    if context.procfile_path(required=False) is not None:
        env.update(context.app().env)
    for param in context.args.param:
        name, sep, value = param.partition("=")
        if not sep or not name:
            raise UsageError(f"bad parameter {param!r}: expected NAME=VALUE")
        env[name] = value
    job_id = context.job_id(context.args.job)
    pid = await context.server().job(job_id).commit(context.args.graceful_timeout, env)
    if context.out.json:
        context.out.data({"job": job_id, "pid": pid})
    else:
        context.out.write(f"{job_id}: process {pid} started")
    return 0
