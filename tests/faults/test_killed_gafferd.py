"""gafferd killed with SIGKILL, or stopped with hard-to-stop children: nothing is left.

Real gafferd processes; the children are the fixture program in its forking modes. The
pids to watch are read from files the children write, since orphans are no longer
descendants of the test runner (the kernel hands them to init or to a subreaper).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.gafferd.harness import Gafferd, wait_gone
from tests.helpers import pid_exists, wait_until_sync

pytestmark = pytest.mark.timeout(90)

# every kind of child that is hard to stop, each in its own job
HARD_JOBS = """
    [job:plain]
    cmd = {child} sleep 1001
    numprocesses = 3
    graceful_timeout = 0.5

    [job:stubborn]
    cmd = {child} ignore-term {dir}/stubborn.ready
    graceful_timeout = 0.5

    [job:family]
    cmd = {child} fork-many 100 {dir}/family.pids ignore
    graceful_timeout = 0.5

    [job:escaper]
    cmd = {child} setsid-grandchild {dir}/escaper.pid ignore
    graceful_timeout = 0.5

    [job:daemon]
    cmd = {child} daemonize {dir}/daemon.pid ignore
    graceful_timeout = 0.5
"""

DETACHED_JOB = """
    [job:kept]
    cmd = {child} sleep 1009
    detach = true
"""


@pytest.fixture
def gafferd(tmp_path):
    started: list[Gafferd] = []

    def make(ini: str) -> Gafferd:
        daemon = Gafferd(tmp_path, ini.replace("{dir}", str(tmp_path)))
        started.append(daemon)
        return daemon.start()

    yield make
    for daemon in started:
        daemon.kill()
    # after a failure, orphans of this test may run on (out of the runner's tree): their
    # command lines name the test's directory
    for proc in psutil.process_iter(["cmdline"]):
        if str(tmp_path) in " ".join(proc.info["cmdline"] or ()):
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass


def _read_pids(path: Path) -> set[int]:
    wait_until_sync(lambda: path.exists() and path.read_text().strip(), what=f"{path.name}")
    return {int(pid) for pid in path.read_text().split()}


def _hard_pids(daemon: Gafferd, tmp_path: Path) -> dict[str, set[int]]:
    """Every process the hard jobs started, once all of them run, by kind."""
    wait_until_sync(lambda: len(daemon.job_pids("sleep 1001")) == 3, what="plain x3")
    wait_until_sync(lambda: (tmp_path / "stubborn.ready").exists(), what="stubborn ready")
    pids = {
        "plain": daemon.job_pids("sleep 1001"),
        "leaders": daemon.job_pids("ignore-term")
        | daemon.job_pids("fork-many")
        | daemon.job_pids("setsid-grandchild")
        | daemon.job_pids("daemonize"),
        "family": _read_pids(tmp_path / "family.pids"),
        "escaper": _read_pids(tmp_path / "escaper.pid"),
        "daemon": _read_pids(tmp_path / "daemon.pid"),
    }
    pids["leaders"] -= pids["daemon"]  # the orphan, a child of gafferd by now, is no leader
    assert len(pids["leaders"]) == 4 and len(pids["family"]) == 100
    # the daemon's middle process exited at once: gafferd, the subreaper, adopts the orphan
    daemon.wait_log(f"adopted orphan pid {next(iter(pids['daemon']))}")
    return pids


def _all(pids: dict[str, set[int]]) -> set[int]:
    return set().union(*pids.values())


def _living(pids: set[int]) -> set[int]:
    return {pid for pid in pids if pid_exists(pid)}


def test_sigkill_leaves_nothing_but_detached_jobs(gafferd, tmp_path):
    daemon = gafferd(HARD_JOBS + DETACHED_JOB)
    pids = _hard_pids(daemon, tmp_path)
    wait_until_sync(lambda: daemon.job_pids("sleep 1009"), what="the detached job")
    (kept,) = daemon.job_pids("sleep 1009")
    try:
        daemon.proc.kill()
        killed_at = time.monotonic()
        daemon.proc.wait(10)
        doomed = _all(pids)
        while _living(doomed) and time.monotonic() - killed_at < 5:
            time.sleep(0.01)
        outlived = time.monotonic() - killed_at
        assert not _living(doomed), f"still running 5 s after gafferd died: {_living(doomed)}"
        # the bound: no managed process outlives gafferd by more than a second
        assert outlived < 1.0, f"the last child outlived gafferd by {outlived:.2f}s"
        assert pid_exists(kept), "the detached job must outlive gafferd"
    finally:
        try:
            os.kill(kept, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert "the manager died" in daemon.output()


def test_term_stops_every_kind_of_child(gafferd, tmp_path):
    daemon = gafferd(HARD_JOBS)
    pids = _hard_pids(daemon, tmp_path)
    assert daemon.stop() == 0
    # stop() returns once gafferd exited: everything must already be gone
    assert not _living(_all(pids)), f"left running: {_living(_all(pids))}"
    assert "the manager died" not in daemon.output()


def test_stopping_a_job_stops_what_escaped_its_group(gafferd, tmp_path):
    daemon = gafferd(HARD_JOBS)
    pids = _hard_pids(daemon, tmp_path)
    for job in ("stubborn", "family", "escaper"):
        status, _ = daemon.request("POST", f"/jobs/default/{job}/state", "0")
        assert status == 202
    stopped = pids["family"] | pids["escaper"]
    wait_gone(stopped, timeout=5)
    # the other jobs run on
    assert _living(pids["plain"] | pids["daemon"]) == pids["plain"] | pids["daemon"]
    assert daemon.stop() == 0


def test_the_guard_exits_with_gafferd_and_leaves_no_zombie(gafferd, tmp_path):
    daemon = gafferd("""
        [job:plain]
        cmd = {child} sleep 1001
    """)
    wait_until_sync(lambda: daemon.job_pids("sleep 1001"), what="the job")
    guards = [psutil.Process(pid) for pid in daemon.job_pids("guard_main")]
    assert len(guards) == 1
    assert guards[0].status() != psutil.STATUS_ZOMBIE
    assert daemon.stop() == 0
    wait_gone({guards[0].pid}, timeout=5)
