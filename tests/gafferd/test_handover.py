"""gafferd restarting in place (SIGUSR2, POST /daemon/restart): every process kept.

Real gafferd processes and real children: after the hand-over the same processes run
(same OS pids, same internal pids), the output of a child printing a counter every
millisecond has no gap and no duplicate in its log file, a client polling /ping every
5 ms on new connections saw no failure, and the jobs' counters and states are those from
before.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from tests.gafferd.harness import Gafferd, UnixHTTPConnection
from tests.helpers import pid_exists, wait_until_sync

pytestmark = pytest.mark.timeout(120)

JOBS = """
    [job:counter]
    cmd = {child} count 1
    stdout_logfile = {dir}/counter.log

    [job:sleepers]
    cmd = {child} sleep
    numprocesses = 15

    [job:talkers]
    cmd = {child} chatty 20
    numprocesses = 4
    redirect_output = stdout, stderr
"""


class Pinger(threading.Thread):
    """GET /ping every 5 ms, each on a new connection; failures are kept."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop_event = threading.Event()
        self.failures: list[str] = []
        self.answered = 0
        self.slowest = 0.0

    def run(self) -> None:
        while not self.stop_event.is_set():
            began = time.monotonic()
            conn = UnixHTTPConnection(self.path, timeout=20)
            try:
                conn.request("GET", "/ping")
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or body != b"OK":
                    self.failures.append(f"{response.status} {body[:80]!r}")
                else:
                    self.answered += 1
            except OSError as exc:
                self.failures.append(repr(exc))
            finally:
                conn.close()
            self.slowest = max(self.slowest, time.monotonic() - began)
            time.sleep(0.005)


def _processes(daemon: Gafferd) -> dict[int, int]:
    """internal pid -> OS pid of every process."""
    status, body = daemon.request("GET", "/pids")
    assert status == 200
    table = {}
    for pid in body["pids"]:
        status, info = daemon.request("GET", f"/{pid}")
        assert status == 200
        table[pid] = info["os_pid"]
    return table


def _jobs(daemon: Gafferd) -> dict[str, dict]:
    _, body = daemon.request("GET", "/jobs")
    out = {}
    for job in body["jobs"]:
        session, name = job.split(".", 1)
        _, info = daemon.request("GET", f"/jobs/{session}/{name}")
        out[job] = info
    return out


def _counts(path: Path) -> list[int]:
    """The counter's lines; gafferd's own markers (`... [gaffer] counter.1: spawned`) aside."""
    return [int(line) for line in path.read_text().splitlines() if line.isdigit()]


def _restarted(daemon: Gafferd, count: int) -> None:
    wait_until_sync(
        lambda: daemon.log_text().count("restarted in place") >= count,
        timeout=30,
        what=f"hand-over {count} in gafferd's log:\n{daemon.log_text()}",
    )


@pytest.fixture
def gafferd(tmp_path):
    daemon = Gafferd(tmp_path, JOBS.replace("{dir}", str(tmp_path)))
    yield daemon
    daemon.kill()


def test_sigusr2_keeps_every_process_and_loses_no_line(gafferd, tmp_path):
    daemon = gafferd.start()
    wait_until_sync(lambda: len(daemon.request("GET", "/pids")[1]["pids"]) == 20, what="20 up")
    log = tmp_path / "counter.log"
    wait_until_sync(lambda: log.exists() and len(_counts(log)) > 200, what="counting")
    wait_until_sync(
        lambda: all(info["state"] == "running" for info in _jobs(daemon).values()),
        what="every job running",
    )
    before = _processes(daemon)
    os_pids = set(before.values())
    jobs_before = _jobs(daemon)
    pinger = Pinger(daemon.socket)
    pinger.start()
    try:
        wait_until_sync(lambda: pinger.answered > 20, what="pings answered")
        daemon.signal(signal.SIGUSR2)
        _restarted(daemon, 1)
        lines_at_restart = len(_counts(log))
        wait_until_sync(lambda: pinger.answered > 100, what="more pings")
    finally:
        pinger.stop_event.set()
        pinger.join(30)
    assert pinger.failures == [], pinger.failures
    # some request waited in the backlog across the exec, and was answered
    assert pinger.slowest > 0.1, pinger.slowest
    assert daemon.proc.poll() is None  # the same gafferd process, exec'd
    after = _processes(daemon)
    assert after == before  # same internal pids, same OS pids
    assert {child.pid for child in daemon.children()} >= os_pids
    # the counter goes on, and its log has every number once, in order
    wait_until_sync(lambda: len(_counts(log)) > lines_at_restart + 300, what="counting on")
    numbers = _counts(log)
    assert numbers == list(range(len(numbers)))
    # the jobs come back as they were: states, counters, processes
    jobs_after = _jobs(daemon)
    for name, info in jobs_before.items():
        again = jobs_after[name]
        for key in ("state", "restarts", "numprocesses", "processes", "config"):
            assert again[key] == info[key], (name, key)
    assert daemon.stop() == 0
    assert "handing over to a new gafferd: 3 job(s), 20 process(es)" in daemon.log_text()


def test_post_daemon_restart_and_what_gafferd_then_shows(tmp_path):
    daemon = Gafferd(
        tmp_path,
        """
        [job:web]
        cmd = {child} sleep
        numprocesses = 2
        """,
    ).start()
    try:
        wait_until_sync(lambda: len(daemon.request("GET", "/pids")[1]["pids"]) == 2, what="up")
        before = _processes(daemon)
        status, body = daemon.request("GET", "/daemon/state")
        assert status == 200 and body["handovers"] == 0 and body["pid"] == daemon.pid
        status, body = daemon.request("POST", "/daemon/restart")
        assert status == 202, body
        assert body["ok"] is True and body["pid"] == daemon.pid and body["processes"] == 2
        _restarted(daemon, 1)
        wait_until_sync(
            lambda: daemon.request("GET", "/daemon/state")[1]["handovers"] == 1,
            what="the hand-over counted",
        )
        state = daemon.request("GET", "/daemon/state")[1]
        assert state["last_handover"]["processes"] == 2
        assert state["last_handover"]["duration_ms"] > 0
        assert _processes(daemon) == before
        # a SIGHUP after it still applies the file's difference (the file's jobs were handed)
        daemon.write(
            """
            [job:web]
            cmd = {child} sleep
            numprocesses = 3
            """
        )
        daemon.signal(signal.SIGHUP)
        wait_until_sync(lambda: len(daemon.request("GET", "/pids")[1]["pids"]) == 3, what="x3")
        assert set(before) <= set(_processes(daemon))  # scaled: the two kept
    finally:
        assert daemon.stop() == 0


def test_a_new_gafferd_that_would_not_start_is_not_handed_anything(tmp_path):
    daemon = Gafferd(
        tmp_path,
        """
        [job:web]
        cmd = {child} sleep
        """,
    ).start()
    try:
        wait_until_sync(lambda: daemon.request("GET", "/pids")[1]["pids"], what="up")
        before = _processes(daemon)
        daemon.ini.write_text(daemon.ini.read_text() + "\n[job:broken]\nnumprocesses = many\n")
        status, body = daemon.request("POST", "/daemon/restart")
        assert status == 409, body
        assert body["error"] == "handover_failed"
        assert "numprocesses" in body["reason"]
        daemon.signal(signal.SIGUSR2)
        daemon.wait_log("SIGUSR2: not restarted")
        assert _processes(daemon) == before
        assert daemon.request("GET", "/daemon/state")[1]["handovers"] == 0
    finally:
        assert daemon.stop() == 0


def test_processes_stopping_at_the_hand_over_are_stopped_by_the_next_gafferd(tmp_path):
    daemon = Gafferd(
        tmp_path,
        f"""
        [job:stubborn]
        cmd = {{child}} ignore-term {tmp_path}/ready
        graceful_timeout = 6

        [job:web]
        cmd = {{child}} sleep
        """,
    ).start()
    try:
        wait_until_sync(lambda: (tmp_path / "ready").exists(), what="stubborn ready")
        (pid,) = daemon.request("GET", "/jobs/default/stubborn/pids")[1]["pids"]
        stubborn = _processes(daemon)[pid]
        assert daemon.request("POST", "/jobs/default/stubborn/state", "0")[0] == 202
        daemon.signal(signal.SIGUSR2)  # while it ignores its SIGTERM
        _restarted(daemon, 1)
        assert pid_exists(stubborn)
        # the next gafferd sends the SIGKILL at the deadline the first one set
        wait_until_sync(lambda: not pid_exists(stubborn), timeout=15, what="stubborn killed")
        wait_until_sync(
            lambda: daemon.request("GET", "/jobs/default/stubborn")[1]["state"] == "stopped",
            what="stopped",
        )
    finally:
        assert daemon.stop() == 0


def test_the_guard_guards_across_the_hand_over(tmp_path):
    daemon = Gafferd(
        tmp_path,
        """
        [job:web]
        cmd = {child} sleep
        numprocesses = 3
        """,
    ).start()
    wait_until_sync(lambda: len(daemon.request("GET", "/pids")[1]["pids"]) == 3, what="up")
    os_pids = set(_processes(daemon).values())
    daemon.signal(signal.SIGUSR2)
    _restarted(daemon, 1)
    daemon.proc.kill()  # after the hand-over: the same guard stops them all
    daemon.proc.wait(10)
    wait_until_sync(lambda: not any(pid_exists(pid) for pid in os_pids), what="all stopped")


def test_the_binds_follow_the_file_across_a_hand_over(tmp_path):
    first, second = tmp_path / "a.sock", tmp_path / "b.sock"
    jobs = "[job:web]\ncmd = {child} sleep\n"
    daemon = Gafferd(tmp_path, f"[gaffer]\nbind = unix:{first}\n{jobs}")
    daemon.socket = str(first)
    daemon.start()
    try:
        wait_until_sync(lambda: daemon.request("GET", "/pids")[1]["pids"], what="up")
        before = _processes(daemon)
        daemon.write(f"[gaffer]\nbind = unix:{first} unix:{second}\n{jobs}")
        daemon.signal(signal.SIGUSR2)
        _restarted(daemon, 1)
        daemon.socket = str(second)  # the address the file added answers
        assert _processes(daemon) == before
        daemon.write(f"[gaffer]\nbind = unix:{second}\n{jobs}")
        daemon.signal(signal.SIGUSR2)
        _restarted(daemon, 2)
        assert not first.exists()  # the address the file dropped is closed, its file gone
        assert _processes(daemon) == before
    finally:
        assert daemon.stop() == 0
