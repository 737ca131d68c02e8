"""Engine benchmarks: spawn time, respawn rate and restart latency of the Manager.

* spawn: time from ``load()`` of a job of N ``sleep`` processes until all N run, checked
  in /proc (state not zombie, program ``sleep``), next to a bare loop of
  ``os.posix_spawn`` + ``pidfd_open`` of the same N processes (what a C program gets);
* respawn rate: exits per second of a job whose process exits at once (the restart
  policy off: no crash-loop pause, no backoff, never fatal: ``UNCONTAINED``);
* restart latency: SIGKILL one of 5 processes, time until its replacement has been
  spawned (p50, p99 over 200 kills); ``start_secs = 0`` (each kill is of a started
  process, replaced at once) and no crash-loop pause (200 kills in a few seconds would be
  one).
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import statistics
import time

from bench.machine import table
from gaffer import Manager, ProcessConfig

SLEEP = shutil.which("sleep") or "/bin/sleep"
TRUE = shutil.which("true") or "/bin/true"
UNCONTAINED = {"flapping": None, "backoff": None, "start_retries": 10**9}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def running_in_proc(os_pids: list[int], program: str) -> bool:
    for pid in os_pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                data = handle.read()
        except OSError:
            return False
        name = data[data.index("(") + 1 : data.rindex(")")]
        state = data[data.rindex(")") + 2]
        if name != program or state == "Z":
            return False
    return True


async def spawn_time(count: int) -> float:
    async with Manager() as manager:
        started = time.perf_counter()
        manager.load(ProcessConfig("sleepers", f"{SLEEP} 100000", numprocesses=count))
        while True:
            pids = manager.pids("sleepers")
            if len(pids) == count:
                os_pids = [manager.running[pid].os_pid for pid in pids]
                if running_in_proc(os_pids, "sleep"):
                    break
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - started
        manager.stop_job("sleepers")
        await _drain(manager)
    return elapsed


async def _drain(manager: Manager) -> None:
    while manager._table.stopping:
        await asyncio.sleep(0.01)


def posix_spawn_baseline(count: int) -> float:
    """A bare loop of os.posix_spawn (vfork inside glibc) + pidfd_open: the C-level cost."""
    started = time.perf_counter()
    pids, fds = [], []
    for _ in range(count):
        pid = os.posix_spawn(SLEEP, ["sleep", "100000"], {}, setsid=True)
        pids.append(pid)
        fds.append(os.pidfd_open(pid))
    while not running_in_proc(pids, "sleep"):
        time.sleep(0.001)
    elapsed = time.perf_counter() - started
    for pid, fd in zip(pids, fds, strict=True):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    return elapsed


async def respawn_rate(seconds: float) -> float:
    async with Manager() as manager:
        exits = 0

        def count(evtype: str, msg: dict) -> None:
            nonlocal exits
            exits += 1

        manager.events.subscribe("exit", count)
        manager.load(ProcessConfig("crasher", TRUE, **UNCONTAINED))
        await asyncio.sleep(seconds)
        rate = exits / seconds
        manager.stop_job("crasher")
        await _drain(manager)
    return rate


async def restart_latency(kills: int) -> tuple[float, float]:
    async with Manager() as manager:
        loop = asyncio.get_running_loop()
        manager.load(
            ProcessConfig("victims", f"{SLEEP} 100000", numprocesses=5, start_secs=0, flapping=None)
        )
        latencies = []
        for _ in range(kills):
            victim = manager.running[manager.pids("victims")[0]]
            respawned = loop.create_future()

            def on_spawn(evtype: str, msg: dict, future=respawned) -> None:
                if not future.done():
                    future.set_result(time.perf_counter())

            manager.events.subscribe_once("job.default.victims.spawn", on_spawn)
            killed = time.perf_counter()
            os.kill(victim.os_pid, signal.SIGKILL)
            latencies.append(await asyncio.wait_for(respawned, 5) - killed)
            await asyncio.sleep(0.005)
        manager.stop_job("victims")
        await _drain(manager)
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


def main() -> None:
    import uvloop

    raise_fd_limit()
    rows = []
    for count in (500, 1000):
        baseline = posix_spawn_baseline(count)
        gaffer = uvloop.run(spawn_time(count))
        rows.append(
            (
                f"spawn {count} sleep (s)",
                f"{gaffer:.3f}",
                f"{baseline:.3f}",
                f"{count / gaffer:.0f}/s vs {count / baseline:.0f}/s "
                f"({baseline / gaffer:.0%} of posix_spawn)",
            )
        )
    rate = uvloop.run(respawn_rate(5.0))
    rows.append(("respawn rate, exit at once (/s)", f"{rate:.0f}", "", "restart policy off"))
    p50, p99 = uvloop.run(restart_latency(200))
    rows.append(
        (
            "restart after SIGKILL (ms)",
            f"p50 {p50 * 1000:.2f}",
            "",
            f"p99 {p99 * 1000:.2f}, 200 kills",
        )
    )
    print(table("Engine", ("workload", "gaffer", "posix_spawn loop", "notes"), rows))
