"""stats and top: live CPU and memory, from ``GET /overview`` (the dashboard's data, so
both show the same numbers)."""

from __future__ import annotations

import asyncio
import shutil
import sys
from typing import Any

from gaffer.cli.commands import arg, command
from gaffer.cli.commands.ps import app_jobs
from gaffer.cli.context import Context
from gaffer.cli.render import duration, percent, size, uptime

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


async def _snapshot(context: Context, jobs: list[str] | None) -> list[dict[str, Any]]:
    """The jobs of the overview (every job when ``jobs`` is None), with descendants."""
    if jobs is not None and not jobs:
        return []
    overview = await context.server().overview(jobs, children=True)
    return overview["jobs"]


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
                    len(stat.get("children") or ()),
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

    async def jobs_of() -> list[str] | None:
        if context.args.jobs:
            return [context.job_id(name) for name in context.args.jobs]
        if context.args.app is None:
            return None
        return await app_jobs(context, context.args.app)

    return await _loop(context, jobs_of)


@command("top", *REFRESH)
async def top(context: Context) -> int:
    """The processes using the most CPU, refreshed until Ctrl-C.

    The columns that do not fit the terminal are left out."""

    async def jobs_of() -> list[str] | None:
        if context.args.app is None:
            return None  # every job, in one request
        return await app_jobs(context, context.args.app)

    def cpu(row: tuple[Any, ...]) -> float:
        return float(row[2].rstrip("%")) if row[2] != "-" else -1.0

    return await _loop(context, jobs_of, order=cpu, limit=True)
