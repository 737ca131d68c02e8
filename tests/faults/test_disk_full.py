"""A log disk that fills up: gafferd and its children keep running.

gafferd runs under a file size limit (RLIMIT_FSIZE, what a full disk looks like to a
writer, without needing a filesystem of its own): the job's log file, gafferd's own log
and its stdout all hit it. Output then has nowhere to go; it must be dropped (and the drop
reported), never block the child, and nothing may crash.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.gafferd.harness import Gafferd
from tests.helpers import pid_exists, wait_until_sync

pytestmark = pytest.mark.timeout(90)

LIMIT = 256 * 1024
# sets the limit, then becomes gafferd (its argv follows)
WITH_FILE_LIMIT = (
    sys.executable,
    "-c",
    "import os, resource, sys\n"
    f"resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, {LIMIT}))\n"
    "os.execv(sys.argv[1], sys.argv[1:])",
)


def test_a_full_log_disk_stops_neither_gafferd_nor_its_children(tmp_path):
    log = tmp_path / "chatty.log"
    (tmp_path / "gafferd.log").write_bytes(b"." * (LIMIT - 10) + b"\n")  # full already
    daemon = Gafferd(
        tmp_path,
        f"""
        [job:chatty]
        cmd = {{child}} chatty 4000
        stdout_logfile = {log}
        """,
        prefix=WITH_FILE_LIMIT,
    ).start()
    try:
        status, body = daemon.request("GET", "/jobs/default/chatty/pids")
        (pid,) = body["pids"]
        os_pid = daemon.request("GET", f"/{pid}")[1]["os_pid"]
        wait_until_sync(lambda: _size(log) >= LIMIT, timeout=30, what="the log file full")
        assert _size(log) == LIMIT

        # the drop is reported as an event (gafferd's own log is as full as the disk)
        status, event = daemon.request("GET", "/watch/log_dropped")
        assert status == 200, event
        assert event["name"] == "default.chatty" and event["dropped_bytes"] > 0

        # the child is not blocked on a full pipe: its output still flows to listeners
        status, chunk = daemon.request("GET", f"/streams/{pid}/stdout")
        assert status == 200 and "xxxx" in json.dumps(chunk)
        assert pid_exists(os_pid) and daemon.request("GET", "/jobs/default/chatty/pids")[1] == {
            "pids": [pid]
        }

        # gafferd still does what it is asked
        status, body = daemon.request("POST", "/jobs/default/chatty/numprocesses", {"scale": "+1"})
        assert status == 200 and body == {"numprocesses": 2}
        wait_until_sync(
            lambda: len(daemon.request("GET", "/jobs/default/chatty/pids")[1]["pids"]) == 2,
            what="a second process",
        )
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0
    # gafferd's own log was full from the start: one notice, not a traceback per line
    output = daemon.output()
    assert output.count("gafferd: cannot write its log ([Errno 27] File too large)") == 1
    assert "Logging error" not in output


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0
