"""Output capture and stats monitoring benchmarks.

* stdout capture: one process (``cat`` of a file of N bytes) writing as fast as it can, its
  output captured by gaffer into a log file; compared in the same run with the same writer
  piped into ``cat > file``. Files live in /dev/shm when it exists, so the disk is not
  what is measured. Time: from the spawn until the log holds every byte.
* monitoring: 1,000 ``sleep`` processes monitored every 0.1 s for 5 s; the loop's lag is
  measured by a 10 ms timer (how late it fires), and the daemon's CPU use over the run.
* chatty children: 200 processes each printing a 100-byte line every 0.1 s (2,000 lines a
  second in all), captured into a log file; gaffer's own CPU over 10 s after a warm-up.
* the same children with no log file: inherited (the manager's stdout, gaffer reads
  nothing) against gafferd's default (captured, kept in the history, written to the
  console prefixed with the process), stdout being /dev/null.
* the history's cost: the capture measured with ``log_history = 0`` in the same run.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench.engine import SLEEP, raise_fd_limit
from bench.machine import table
from gaffer import Manager, ProcessConfig

CAT = shutil.which("cat") or "/bin/cat"
MiB = 1024 * 1024
RUNS = 5


def scratch_dir() -> str:
    return tempfile.mkdtemp(
        prefix="gaffer-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )


def make_data(directory: str, size: int) -> str:
    path = os.path.join(directory, "data")
    block = os.urandom(MiB)
    with open(path, "wb") as handle:
        for _ in range(size // MiB):
            handle.write(block)
    return path


async def gaffer_capture(data: str, log: str, size: int, history: int = 1000) -> float:
    async with Manager() as manager:
        done = asyncio.get_running_loop().create_future()
        manager.events.subscribe("exit", lambda evtype, msg: done.done() or done.set_result(1))
        manager.load(
            ProcessConfig(
                "writer",
                CAT,
                args=[data],
                stdout_logfile=log,
                logfile_max_bytes=0,
                numprocesses=0,
                log_markers=False,  # the log is compared with the data byte for byte
                log_history=history,
            )
        )
        started = time.perf_counter()
        manager.commit("writer")
        await done
        await manager.flush_logs(60)
        elapsed = time.perf_counter() - started
    if os.path.getsize(log) != size:
        raise RuntimeError(f"log holds {os.path.getsize(log)} bytes, expected {size}")
    return elapsed


def cat_capture(data: str, out: str) -> float:
    started = time.perf_counter()
    subprocess.run(f"{CAT} {data} | {CAT} > {out}", shell=True, check=True)
    return time.perf_counter() - started


async def monitor_lag(count: int, seconds: float) -> dict[str, float]:
    async with Manager() as manager:
        loop = asyncio.get_running_loop()
        manager.load(ProcessConfig("sleepers", f"{SLEEP} 100000", numprocesses=count))
        while len(manager.pids("sleepers")) < count:
            await asyncio.sleep(0.01)
        stats = 0

        def on_stat(evtype: str, msg: dict) -> None:
            nonlocal stats
            stats += 1

        manager.monitor(on_stat, "sleepers")
        await asyncio.sleep(0.5)  # let the first sampling pass prime psutil's handles
        lags: list[float] = []
        stats = 0
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        expected = loop.time() + 0.01
        while time.perf_counter() - started < seconds:
            await asyncio.sleep(0.01)
            now = loop.time()
            lags.append(max(0.0, now - expected))
            expected = now + 0.01
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        elapsed = time.perf_counter() - started
        manager.unmonitor(on_stat, "sleepers")
        manager.stop_job("sleepers")
    lags.sort()
    cpu = cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    return {
        "p50": lags[len(lags) // 2] * 1000,
        "p99": lags[int(len(lags) * 0.99)] * 1000,
        "max": lags[-1] * 1000,
        "stats_per_s": stats / elapsed,
        "cpu": 100 * cpu / elapsed,
    }


CHATTY = (
    "import sys, time\n"
    "line = 'x' * 99 + '\\n'\n"
    "while True:\n"
    "    sys.stdout.write(line)\n"
    "    sys.stdout.flush()\n"
    "    time.sleep(0.1)\n"
)


async def chatty_cpu(count: int, seconds: float, log: str) -> dict[str, float]:
    """gaffer's CPU share while ``count`` children print 10 lines a second each."""
    async with Manager() as manager:
        manager.load(
            ProcessConfig(
                "chatty",
                sys.executable,
                args=["-S", "-c", CHATTY],
                numprocesses=count,
                stdout_logfile=log,
                logfile_max_bytes=0,
                log_markers=False,  # lines are counted from the file's size
            )
        )
        while len(manager.pids("chatty")) < count:
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)  # the children's start-up output, the allocator settling
        size_before = os.path.getsize(log)
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        elapsed = time.perf_counter() - started
        await manager.flush_logs(10)
        lines = (os.path.getsize(log) - size_before) / 100
        manager.stop_job("chatty")
    cpu = cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    return {"cpu": 100 * cpu / elapsed, "lines_per_s": lines / elapsed}


async def unlogged_cpu(count: int, seconds: float, output: str) -> float:
    """gaffer's CPU share while ``count`` children with no log file print 10 lines a
    second each, their output ``inherit``ed or on the ``console``."""
    async with Manager(output=output) as manager:
        manager.load(
            ProcessConfig("chatty", sys.executable, args=["-S", "-c", CHATTY], numprocesses=count)
        )
        while len(manager.pids("chatty")) < count:
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        elapsed = time.perf_counter() - started
        manager.stop_job("chatty")
    cpu = cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    return 100 * cpu / elapsed


def unlogged_rows(count: int = 200, seconds: float = 10.0) -> list[tuple[str, ...]]:
    """The console against inherited output, stdout (so the children's and the
    console's) sent to /dev/null meanwhile."""
    import uvloop

    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        inherited = uvloop.run(unlogged_cpu(count, seconds, "inherit"))
        console = uvloop.run(unlogged_cpu(count, seconds, "console"))
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    return [
        (
            f"{count} chatty children, no log file: gaffer CPU (%)",
            f"{console:.1f}",
            "",
            f"gafferd's console (captured, kept, prefixed); inherited: {inherited:.1f}",
        )
    ]


def main() -> None:
    import uvloop

    raise_fd_limit()
    size = 512 * MiB
    directory = scratch_dir()
    rows = []
    try:
        data = make_data(directory, size)
        results: dict[str, list[float]] = {"gaffer": [], "cat": [], "no history": []}
        warm_up = os.path.join(directory, "warm-up.log")  # threads, page cache, allocator
        uvloop.run(gaffer_capture(data, warm_up, size))
        os.unlink(warm_up)
        for attempt in range(RUNS):
            log = os.path.join(directory, f"gaffer-{attempt}.log")
            results["gaffer"].append(uvloop.run(gaffer_capture(data, log, size)))
            os.unlink(log)
            results["no history"].append(uvloop.run(gaffer_capture(data, log, size, 0)))
            os.unlink(log)
            out = os.path.join(directory, f"cat-{attempt}.out")
            results["cat"].append(cat_capture(data, out))
            os.unlink(out)
        gaffer_rate = size / MiB / statistics.median(results["gaffer"])
        cat_rate = size / MiB / statistics.median(results["cat"])
        rows.append(
            (
                "stdout capture to a log file (MiB/s)",
                f"{gaffer_rate:.0f}",
                f"{cat_rate:.0f}",
                f"512 MiB, median of {RUNS} (best: gaffer "
                f"{size / MiB / min(results['gaffer']):.0f}, cat "
                f"{size / MiB / min(results['cat']):.0f}); without the history "
                f"(log_history = 0): {size / MiB / statistics.median(results['no history']):.0f}",
            )
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    directory = scratch_dir()
    try:
        chatty = uvloop.run(chatty_cpu(200, 10.0, os.path.join(directory, "chatty.log")))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    rows.append(
        (
            "200 chatty children: gaffer CPU (%)",
            f"{chatty['cpu']:.1f}",
            "",
            f"10 lines of 100 bytes a second each: {chatty['lines_per_s']:.0f} lines/s "
            "logged; % of one core, over 10 s",
        )
    )
    rows.extend(unlogged_rows())
    lag = uvloop.run(monitor_lag(1000, 5.0))
    rows.append(
        (
            "loop lag, 1,000 monitored processes (ms)",
            f"p99 {lag['p99']:.1f}",
            "",
            f"p50 {lag['p50']:.1f}, max {lag['max']:.1f}; "
            f"{lag['stats_per_s']:.0f} stat messages/s; gaffer CPU {lag['cpu']:.0f}%",
        )
    )
    print(table("Output and stats", ("workload", "gaffer", "cat > file", "notes"), rows))
