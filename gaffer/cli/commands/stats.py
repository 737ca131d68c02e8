"""stats and top: live CPU and memory."""

from __future__ import annotations

import asyncio
import shutil
import sys
from typing import Any

from gaffer.cli.commands import arg, command
from gaffer.cli.commands.ps import app_jobs
from gaffer.cli.context import Context
from gaffer.cli.render import duration, percent, size, uptime
from gaffer.errors import NotFound

CLEAR = "\x1b[H\x1b[2J"
REFRESH = (
    arg(
        "-i",
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between refreshes (default 1)",
    ),
    arg("--once", action="store_true", help="show once and exit"),
)


async def _snapshot(context: Context, jobs: list[str]) -> list[dict[str, Any]]:
    server = context.server()
    snapshot = []
    for job_id in jobs:
        try:
            stats = await server.job(job_id).stats()
        except NotFound:
            continue
        snapshot.append(stats)
    return snapshot


def _rows(snapshot: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    rows = []
    for job in snapshot:
        for stat in job["stats"]:
            rows.append(
                (
                    job["name"],
                    stat["pid"],
                    percent(stat["cpu"]),
                    percent(stat["mem"]),
                    size(stat["mem_info1"]),
                    size(stat["mem_info2"]),
                    duration(stat["ctime"]),
                    uptime(stat.get("create_time")),
                    len(stat.get("children") or []),
                )
            )
    return rows


HEADERS = ("JOB", "PID", "CPU", "MEM", "RSS", "VMS", "CPU TIME", "UPTIME", "CHILDREN")


async def _loop(context: Context, jobs_of: Any, order: Any = None, limit: bool = False) -> int:
    out = context.out
    live = sys.stdout.isatty() and not out.json and not context.args.once
    while True:
        snapshot = await _snapshot(context, await jobs_of())
        if out.json:
            out.data(snapshot)
        else:
            rows = _rows(snapshot)
            if order is not None:
                rows.sort(key=order, reverse=True)
            if limit:
                rows = rows[: max(shutil.get_terminal_size((100, 24)).lines - 4, 5)]
            if live:
                out.stream.write(CLEAR)
            totals = [
                f"{job['name']}: cpu {percent(job['cpu'])} mem {percent(job['mem'])}"
                for job in snapshot
            ]
            out.write("  ".join(totals) if totals else "no job")
            if rows:
                out.table(HEADERS, rows)
        if context.args.once:
            return 0
        await asyncio.sleep(context.args.interval)


@command("stats", arg("jobs", nargs="*", metavar="JOB"), *REFRESH)
async def stats(context: Context) -> int:
    """CPU and memory of the processes of jobs, refreshed until Ctrl-C.

    All jobs, those of --app, or those named."""

    async def jobs_of() -> list[str]:
        if context.args.jobs:
            return [context.job_id(name) for name in context.args.jobs]
        return await app_jobs(context, context.args.app)

    return await _loop(context, jobs_of)


@command("top", *REFRESH)
async def top(context: Context) -> int:
    """The processes using the most CPU, refreshed until Ctrl-C.

    The columns that do not fit the terminal are left out."""

    async def jobs_of() -> list[str]:
        return await app_jobs(context, context.args.app)

    def cpu(row: tuple[Any, ...]) -> float:
        return float(row[2].rstrip("%")) if row[2] != "-" else -1.0

    return await _loop(context, jobs_of, order=cpu, limit=True)
