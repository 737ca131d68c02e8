"""gafferd killed with ``on_daemon_crash = keep`` (issue 17.2): the keeper, gafferd's
parent, holds the processes' pipes, starts gafferd again, and the new gafferd adopts
every process, its output and its exit statuses. Real gafferd, real SIGKILLs."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from tests.gafferd.harness import Gafferd
from tests.helpers import pid_exists, wait_until_sync

pytestmark = pytest.mark.timeout(120)

JOBS = """
    [gaffer]
    bind = unix:{sock}
    on_daemon_crash = keep

    [job:counter]
    cmd = {child} count 1
    stdout_logfile = {dir}/counter.log

    [job:sleepers]
    cmd = {child} sleep
    numprocesses = 3

    [job:talkers]
    cmd = {child} chatty 20
    numprocesses = 2
    redirect_output = stdout, stderr
"""


@pytest.fixture
def kept(tmp_path):
    ini = JOBS.replace("{dir}", str(tmp_path)).replace("{sock}", str(tmp_path / "gafferd.sock"))
    daemon = Gafferd(tmp_path, ini)
    seen: set[int] = set()
    yield daemon, seen
    if daemon.proc is not None and daemon.proc.poll() is None:
        daemon.proc.send_signal(signal.SIGTERM)
        try:
            daemon.proc.wait(20)
        except Exception:
            daemon.proc.kill()
    for pid in seen:  # after a failure: nothing of this test runs on
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _table(daemon: Gafferd) -> dict[int, int]:
    status, body = daemon.request("GET", "/pids")
    assert status == 200
    out = {}
    for pid in body["pids"]:
        status, info = daemon.request("GET", f"/{pid}")
        if status == 200:
            out[pid] = info["os_pid"]
    return out


def _gafferd_pid(daemon: Gafferd) -> int | None:
    try:
        status, body = daemon.request("GET", "/daemon/state")
    except OSError:
        return None
    return body["pid"] if status == 200 else None


def _running(daemon: Gafferd) -> bool:
    _, body = daemon.request("GET", "/jobs")
    return all(
        daemon.request("GET", f"/jobs/{job.replace('.', '/', 1)}")[1]["state"] == "running"
        for job in body["jobs"]
    )


def test_sigkill_with_keep_keeps_every_process_and_adopts_them(kept, tmp_path):
    daemon, seen = kept
    daemon.start()
    wait_until_sync(lambda: len(_table(daemon)) == 6 and _running(daemon), what="all running")
    before = _table(daemon)
    seen.update(before.values())
    first = _gafferd_pid(daemon)
    keeper = daemon.pid  # the command started is the keeper now; gafferd is its child
    assert first != keeper and psutil.Process(first).ppid() == keeper
    log = tmp_path / "counter.log"
    os.kill(first, signal.SIGKILL)
    killed = time.monotonic()

    def adopted() -> bool:
        pid = _gafferd_pid(daemon)
        return pid is not None and pid != first and _table(daemon) == before

    wait_until_sync(adopted, timeout=10, what="a new gafferd with every process")
    took = time.monotonic() - killed
    assert took < 2.0, f"adopted {took:.2f} s after the SIGKILL"
    assert all(pid_exists(pid) for pid in before.values())
    assert f"gafferd (pid {first}) died (signal 9): starting it again" in daemon.output()
    # the output goes on through the pipes the keeper held
    lines = len(log.read_text().splitlines())
    wait_until_sync(lambda: len(log.read_text().splitlines()) > lines + 200, what="counting")
    # an adopted process is the keeper's child now: its exit status comes from the keeper
    victim = min(daemon.request("GET", "/jobs/default/sleepers/pids")[1]["pids"])
    os.kill(before[victim], signal.SIGTERM)
    wait_until_sync(
        lambda: (
            (daemon.request("GET", "/jobs/default/sleepers")[1]["last_exit"] or {}).get("pid")
            == victim
        ),
        what="the exit reported",
    )
    info = daemon.request("GET", "/jobs/default/sleepers")[1]
    assert info["last_exit"]["term_signal"] == signal.SIGTERM
    wait_until_sync(
        lambda: len(daemon.request("GET", "/jobs/default/sleepers/pids")[1]["pids"]) == 3,
        what="replaced",
    )
    after = _table(daemon)
    seen.update(after.values())
    assert max(after) > max(before)  # internal pids go on: never reused
    # a clean stop through the keeper stops everything, the keeper exits with gafferd
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(20) == 0
    assert not [pid for pid in seen if pid_exists(pid)]
    assert "stopping" not in daemon.output().split("starting it again")[-1]


def test_the_keeper_gives_up_on_a_gafferd_that_keeps_dying(kept):
    daemon, seen = kept
    daemon.start()
    wait_until_sync(lambda: len(_table(daemon)) == 6, what="all spawned")
    seen.update(_table(daemon).values())
    for _ in range(3):  # three deaths in a row, each young: the keeper stops everything
        pid = _gafferd_pid(daemon)
        os.kill(pid, signal.SIGKILL)
        wait_until_sync(
            lambda pid=pid: (
                daemon.proc.poll() is not None or _gafferd_pid(daemon) not in (None, pid)
            ),
            timeout=20,
            what="gafferd again, or the keeper gone",
        )
        if daemon.proc.poll() is None:
            seen.update(p.pid for p in psutil.Process(daemon.pid).children(recursive=True))
    assert daemon.proc.wait(20) != 0
    assert "times in a row" in daemon.output()
    wait_until_sync(lambda: not [pid for pid in seen if pid_exists(pid)], what="all stopped")


def test_a_restart_in_place_under_the_keeper_keeps_it_holding(kept):
    daemon, seen = kept
    daemon.start()
    wait_until_sync(lambda: len(_table(daemon)) == 6 and _running(daemon), what="all running")
    before = _table(daemon)
    seen.update(before.values())
    gafferd = _gafferd_pid(daemon)
    daemon.proc.send_signal(signal.SIGUSR2)  # to the keeper, which passes it on
    wait_until_sync(
        lambda: (daemon.request("GET", "/daemon/state")[1] or {}).get("handovers") == 1,
        timeout=30,
        what="the hand-over",
    )
    assert _gafferd_pid(daemon) == gafferd and _table(daemon) == before
    # the exec'd gafferd goes on sending to the same keeper: a crash now loses nothing
    os.kill(gafferd, signal.SIGKILL)
    wait_until_sync(
        lambda: _gafferd_pid(daemon) not in (None, gafferd) and _table(daemon) == before,
        timeout=10,
        what="adopted after the crash",
    )
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(20) == 0
    assert not [pid for pid in seen if pid_exists(pid)]


def test_gafferd_outlives_its_keeper_under_a_guard(kept):
    daemon, seen = kept
    daemon.start()
    wait_until_sync(lambda: len(_table(daemon)) == 6, what="all spawned")
    seen.update(_table(daemon).values())
    gafferd = _gafferd_pid(daemon)
    seen.add(gafferd)
    daemon.proc.kill()  # the keeper, by an operator
    daemon.proc.wait(10)
    daemon.wait_log("the keeper")
    assert "a guard takes over" in daemon.log_text()
    assert _table(daemon).keys() and pid_exists(gafferd)
    # now a crash of gafferd stops the processes, as with on_daemon_crash = stop
    os.kill(gafferd, signal.SIGKILL)
    wait_until_sync(lambda: not [pid for pid in seen if pid_exists(pid)], what="all stopped")
