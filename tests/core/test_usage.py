"""``UsageReader`` (core/usage.py) on real processes: what it reads, the descriptors it
keeps and gives back, and the manager's readings that use it (``ausage``, ``aoverview``)."""

from __future__ import annotations

import shutil
import subprocess

import psutil
import pytest

from gaffer import Manager, ProcessConfig
from gaffer.core.stats import Sampler
from tests.helpers import (
    child_argv,
    child_cmd,
    exec_done,
    open_fds,
    run_script,
    wait_until,
    wait_until_sync,
)

SLEEP = shutil.which("sleep") or "/bin/sleep"


@pytest.fixture
def sleepers():
    """Three ``sleep`` processes asleep: exec done and loaded (their figures no longer
    move; right after the exec, before its first page faults, a process has no RSS)."""
    procs = [subprocess.Popen([SLEEP, "1000"]) for _ in range(3)]
    try:
        wait_until_sync(
            lambda: all(
                exec_done(proc.pid) and psutil.Process(proc.pid).status() == "sleeping"
                for proc in procs
            ),
            what="the sleep programs asleep",
        )
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_usage_matches_proc_and_keeps_two_descriptors_a_process(sleepers) -> None:
    sampler = Sampler()
    baseline = open_fds()
    try:
        pids = [proc.pid for proc in sleepers]
        first = sampler.usage(pids)
        assert sorted(first) == sorted(pids)
        assert open_fds() == baseline + 2 * len(pids)
        again = sampler.usage(pids)  # through the kept descriptors
        for pid in pids:
            real = psutil.Process(pid)
            usage = again[pid]
            assert 0.8 * real.memory_info().rss <= usage.rss <= 1.25 * real.memory_info().rss
            assert usage.fds == real.num_fds()
            times = real.cpu_times()
            assert usage.cpu_seconds <= times.user + times.system + 0.02
            assert usage.start_time == pytest.approx(real.create_time(), abs=0.05)
        assert open_fds() == baseline + 2 * len(pids)
    finally:
        sampler.close()
    assert open_fds() == baseline


def test_an_exited_process_is_left_out_and_its_descriptors_closed(sleepers) -> None:
    sampler = Sampler()
    baseline = open_fds()
    pids = [proc.pid for proc in sleepers]
    sampler.usage(pids)
    gone = sleepers[0]
    gone.kill()
    gone.wait()  # reaped: its kept descriptors now read ESRCH
    assert sorted(sampler.usage(pids)) == sorted(pids[1:])
    assert open_fds() == baseline + 2 * 2
    # an exit handed in by the process table closes them at once
    sampler.discard(pids[1])
    assert open_fds() == baseline + 2
    sampler.close()
    assert open_fds() == baseline


def test_the_stats_sampler_reads_through_the_kept_descriptors(sleepers) -> None:
    sampler = Sampler()
    baseline = open_fds()
    pid = sleepers[0].pid
    stat = sampler.sample(pid)
    assert stat["mem_info1"] > 0 and stat["cmdline"] == "sleep"
    assert open_fds() == baseline + 2
    assert sampler.open_fds(pid) == psutil.Process(pid).num_fds()
    assert open_fds() == baseline + 2
    sampler.close()
    assert open_fds() == baseline


def test_at_most_a_quarter_of_the_descriptor_limit_is_kept() -> None:
    result = run_script(f"""
        import resource, subprocess
        from gaffer.core.stats import Sampler
        procs = [subprocess.Popen({child_argv("sleep")!r}) for _ in range(12)]
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (40, hard))
            sampler = Sampler()
            read = sampler.usage([proc.pid for proc in procs])
            print(json.dumps({{"read": len(read), "held": sampler._usage.held}}))
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    """)
    # 40 descriptors: 10 for kept ones, two a process; the others are read by path
    assert result == {"read": 12, "held": 5}


async def test_the_manager_reads_usage_and_closes_what_it_kept_when_it_stops() -> None:
    baseline = open_fds()
    async with Manager() as manager:
        manager.load(ProcessConfig("web", child_cmd("sleep"), numprocesses=3))
        await wait_until(lambda: len(manager.pids("web")) == 3, what="3 processes")
        usage = await manager.ausage()
        [job] = usage["jobs"]
        assert job["name"] == "default.web" and job["wanted"] == 3
        assert len(job["processes"]) == 3
        assert all(found is not None and found.rss > 0 for _, _, found in job["processes"])
        assert usage["self"].rss > 0 and usage["self"].fds > 0
        overview = await manager.aoverview(["web"])
        [entry] = overview["jobs"]
        assert [row["pid"] for row in entry["stats"]] == manager.pids("web")
        assert all(row["fds"] >= 3 and row["children"] is None for row in entry["stats"])
        assert entry["rss"] == sum(row["mem_info1"] for row in entry["stats"])
        with_children = await manager.aoverview(["web"], children=True)
        assert all(row["children"] == [] for row in with_children["jobs"][0]["stats"])
    assert open_fds() == baseline
