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
from tests.helpers import wait_until_sync

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
    return [int(line) for line in path.read_text().splitlines() if line]


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
