"""Issue 11.5: the guard comes back. Its process killed, gafferd starts a new one at once,
tells it every live group and publishes ``guard_restarted``; a SIGKILL of gafferd later
still leaves no child behind."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest
import tornado.websocket

from tests.gafferd.harness import wait_gone
from tests.helpers import children_of, cmdline_of, wait_until_sync
from tests.security.site import start

pytestmark = pytest.mark.timeout(60)


def _guard_of(pid: int) -> int:
    found = [child for child in children_of(pid) if "guard_main" in cmdline_of(child)]
    assert len(found) == 1, found
    return found[0]


async def _next_event(conn: tornado.websocket.WebSocketClientConnection, name: str) -> dict:
    while True:
        message = json.loads(await conn.read_message())
        if message["event"] == "gaffer:event" and message["data"]["event"] == name:
            return message["data"]


async def test_a_killed_guard_is_replaced_and_still_stops_everything(tmp_path: Path):
    daemon, port = start(
        tmp_path,
        jobs="""
            [job:sleepers]
            cmd = {child} sleep 1013
            numprocesses = 3
        """,
    )
    try:
        wait_until_sync(lambda: len(daemon.job_pids("sleep 1013")) == 3, what="3 sleepers")
        conn = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{port}/channel")
        await conn.write_message(
            json.dumps({"event": "SUB", "data": {"topic": "EVENTS:guard_restarted"}})
        )
        assert json.loads(await conn.read_message())["event"] == "gaffer:subscription_success"
        old = _guard_of(daemon.pid)
        os.kill(old, signal.SIGKILL)
        event = await _next_event(conn, "guard_restarted")
        conn.close()
        new = _guard_of(daemon.pid)
        assert (event["old_pid"], event["pid"]) == (old, new) and new != old
        assert event["groups"] == 3
        assert "starting a new one" in daemon.log_text()
        # processes started after the restart are registered with the new guard too
        daemon.request("POST", "/jobs/default/sleepers/numprocesses", {"scale": "=5"})
        wait_until_sync(lambda: len(daemon.job_pids("sleep 1013")) == 5, what="5 sleepers")
        pids = daemon.job_pids("sleep 1013")
        # a request answered: the loop iteration that spawned them, and told the guard, ended
        assert daemon.request("GET", "/ping")[0] == 200
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.proc.wait(10)
        wait_gone(pids | {new}, timeout=10)
    finally:
        daemon.kill()


async def test_a_guard_that_keeps_dying_young_is_restarted_later_not_in_a_loop():
    from gaffer import Manager
    from tests.helpers import EventRecorder, wait_until

    async with Manager(guard=True) as manager:
        events = EventRecorder(manager, "guard_restarted")
        guard = manager._table.guard
        first = guard.pid
        os.kill(first, signal.SIGKILL)
        await events.wait("guard_restarted", old_pid=first)
        second = guard.pid
        os.kill(second, signal.SIGKILL)  # dead within a second of its start
        await wait_until(lambda: guard._restart_handle is not None, what="a delayed restart")
        assert guard._restart_delay == 1.0
        assert events.count("guard_restarted") == 1
        await events.wait("guard_restarted", old_pid=second, timeout=5)
        assert guard.pid not in (first, second) and psutil.pid_exists(guard.pid)
