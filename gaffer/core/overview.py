"""Every job at one moment: its state and what its processes use.

Two readings, for two kinds of reader:

* ``read_usage``: what /metrics exports, CPU seconds, RSS, open descriptors and uptime of
  each process, with the least /proc work there is (``Sampler.usage``): Prometheus scrapes
  on its own schedule, and at 1,000 processes every read counts;
* ``read_overview``: what ``gaffer top`` and the dashboard show (``GET /overview``), the
  stats of stats.py (CPU percent, memory, the descendants when asked) plus descriptors,
  uptime and each process's state, so both show the same numbers.

Both take what the jobs are on the loop (their runners' attributes: no /proc, no config
serialised), then read /proc in a worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gaffer.core.stats import (
    MAX_AGE,
    STAT_KEYS,
    descendants,
    descendants_map,
    summarize,
)

if TYPE_CHECKING:
    from gaffer.core.runner import JobRunner
    from gaffer.core.stats import Sampler
    from gaffer.core.usage import Usage


def job_fields(runner: JobRunner) -> dict[str, Any]:
    """A job's state as the overview and /metrics show it (``info()`` without the
    config, which is the expensive part of it)."""
    return {
        "name": runner.name,
        "session": runner.job.session,
        "job": runner.job.bare_name,
        "state": str(runner.state),
        "numprocesses": runner.numprocesses,
        # what should run now: nothing while stopped or given up
        "wanted": 0 if runner.stopped else runner.target,
        "running": len(runner.processes),
        "running_out": len(runner.running_out),
        "kept_alive": len(runner.running),
        "restarts": runner.restarts,
        "last_exit": runner.last_exit,
        "next_restart_at": runner.next_restart_at,
        "error": runner.error,
    }


async def read_usage(
    loop: asyncio.AbstractEventLoop, sampler: Sampler, runners: Iterable[JobRunner]
) -> dict[str, Any]:
    """``{"time", "self": Usage | None, "jobs": [job_fields + "processes": [(pid,
    create_time, Usage | None)]]}``."""
    jobs = []
    os_pids = [os.getpid()]
    for runner in runners:
        processes = [(proc.pid, proc.os_pid, proc.create_time) for proc in runner.processes]
        os_pids.extend(os_pid for _, os_pid, _ in processes if os_pid is not None)
        jobs.append((job_fields(runner), processes))
    usage: dict[int, Usage] = await loop.run_in_executor(None, sampler.usage, os_pids)
    found = usage.get
    out = [
        {
            **fields,
            "processes": [
                (pid, created, found(os_pid) if os_pid is not None else None)
                for pid, os_pid, created in processes
            ],
        }
        for fields, processes in jobs
    ]
    return {"time": time.time(), "self": usage.get(os_pids[0]), "jobs": out}


async def read_overview(
    loop: asyncio.AbstractEventLoop,
    sampler: Sampler,
    runners: Iterable[JobRunner],
    children: bool = False,
) -> dict[str, Any]:
    """``{"time", "self", "jobs": [...]}``: each job is its ``job_fields``, the totals of
    ``summarize`` (``cpu``, ``mem``, ``min_cpu``...) plus ``rss``, and ``stats``: per
    process the stat dict of stats.py plus ``state``, ``restarts``, ``once``,
    ``last_exit``, ``fds`` and ``uptime`` (seconds since gaffer spawned it). ``children``
    (the descendants' stat dicts) needs a scan of /proc: read only when asked, else None.
    """
    jobs = []
    targets: list[int] = []
    for runner in runners:
        processes = [proc.summary() for proc in runner.processes]
        targets.extend(p["os_pid"] for p in processes if p["os_pid"] is not None)
        jobs.append((job_fields(runner), processes))
    stats, own = await loop.run_in_executor(None, _read_stats, sampler, targets, children)
    now = time.time()
    out = []
    for fields, processes in jobs:
        rows = []
        for proc in processes:
            os_pid = proc["os_pid"]
            stat = stats.get(os_pid) if os_pid is not None else None
            if stat is None:  # not spawned yet, or gone meanwhile
                stat = {
                    **dict.fromkeys(STAT_KEYS),
                    "os_pid": os_pid,
                    "children": None,
                    "fds": None,
                }
            created = proc["create_time"]
            rows.append(
                {
                    "pid": proc["pid"],
                    "name": fields["name"],
                    **stat,
                    "state": proc["state"],
                    "restarts": proc["restarts"],
                    "once": proc["once"],
                    "last_exit": proc["last_exit"],
                    "uptime": round(now - created, 2) if created is not None else None,
                }
            )
        totals = summarize(fields["name"], rows)
        readable = [row["mem_info1"] for row in rows if row.get("mem_info1") is not None]
        totals["rss"] = sum(readable) if readable or not rows else None
        out.append({**fields, **totals})
    return {"time": now, "self": own, "jobs": out}


def _read_stats(
    sampler: Sampler, os_pids: list[int], children: bool
) -> tuple[dict[int, dict[str, Any]], dict[str, Any] | None]:
    """Runs in a worker thread: the stat dict of each pid, and gafferd's own usage."""
    tree = descendants_map() if children else None
    out: dict[int, dict[str, Any]] = {}
    for os_pid in os_pids:
        stat = sampler.sample(os_pid, descendants(os_pid, tree) if tree is not None else ())
        if stat["ctime"] is None:  # gone
            continue
        if tree is None:
            stat["children"] = None
        stat["fds"] = sampler.open_fds(os_pid)
        out[os_pid] = stat
    sampler.prune(MAX_AGE)
    return out, own_usage(sampler)


def own_usage(sampler: Sampler) -> dict[str, Any] | None:
    """The usage of this process (gafferd, or the program embedding the manager)."""
    pid = os.getpid()
    usage = sampler.usage([pid]).get(pid)
    if usage is None:
        return None
    return {
        "pid": pid,
        "cpu_seconds": round(usage.cpu_seconds, 2),
        "rss": usage.rss,
        "fds": usage.fds,
        "start_time": round(usage.start_time, 2),
        "uptime": round(time.time() - usage.start_time, 2),
    }
