"""``gaffer daemon:restart`` and ``gaffer daemon:state`` against a real gafferd requiring
keys: an admin key restarts gafferd in place (its processes kept) and reads its state; a
key that manages everything but is no admin key is refused, by REST, by the /channel
WebSocket and by the command line alike (the one command table)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tornado.websocket

from tests.cli.cli_helpers import Cli, child_job, start_daemon
from tests.helpers import wait_until_sync

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def keyed(tmp_path: Path):
    (tmp_path / "d").mkdir()
    daemon = start_daemon(tmp_path / "d", require_key=True, tcp=True)
    try:
        yield daemon
    finally:
        daemon.gafferd.stop()


def _request(daemon, method: str, path: str, key: str, body=None):
    return daemon.gafferd.request(method, path, body, headers={"X-Api-Key": key})


def _os_pids(daemon, key: str) -> dict[int, int]:
    pids = _request(daemon, "GET", "/pids", key)[1]["pids"]
    return {pid: _request(daemon, "GET", f"/{pid}", key)[1]["os_pid"] for pid in pids}


async def _channel(port: int, key: str, name: str) -> dict:
    conn = await tornado.websocket.websocket_connect(
        tornado.httpclient.HTTPRequest(f"ws://127.0.0.1:{port}/channel", headers={"X-Api-Key": key})
    )
    try:
        await conn.write_message(
            json.dumps({"event": "CMD", "data": {"identity": 1, "name": name}})
        )
        while True:
            answer = json.loads(await conn.read_message())
            if answer["event"].startswith("gaffer:command"):
                return answer["data"]
    finally:
        conn.close()


def test_daemon_commands_for_admins_only(keyed, tmp_path: Path):
    import asyncio

    admin_key = keyed.admin_key
    status, body = _request(keyed, "POST", "/keys", admin_key, {"permissions": {"manage": ["*"]}})
    assert status == 201, body
    manager_key = body["api_key"]
    status, _ = _request(
        keyed, "POST", "/jobs/default", admin_key, child_job("web", "sleep", numprocesses=2)
    )
    assert status in (200, 201)
    wait_until_sync(lambda: len(_os_pids(keyed, admin_key)) == 2, what="web x2")
    work = tmp_path / "work"
    work.mkdir()
    admin = Cli(keyed.unix_url, tmp_path / "admin.ini", work, key=admin_key)
    manager = admin.with_(key=manager_key)
    # a key managing every job is no admin key: refused everywhere
    for args in (("daemon:restart",), ("daemon:state",)):
        refused = manager(*args)
        assert refused.returncode == 1 and "forbidden" in refused.stderr, refused
    assert _request(keyed, "POST", "/daemon/restart", manager_key)[0] == 403
    assert _request(keyed, "GET", "/daemon/state", manager_key)[0] == 403
    for name in ("daemon_restart", "daemon_state"):
        error = asyncio.run(_channel(keyed.port, manager_key, name))["error"]
        assert (error["errno"], error["reason"]) == (403, "forbidden"), name
    # the admin key: the state, what the operator asked, then a restart in place
    assert manager.ok("ps:stop", "web")
    wait_until_sync(lambda: not _os_pids(keyed, admin_key), what="web stopped")
    state = json.loads(admin.ok("daemon:state", "--json").stdout)
    assert state["state"]["jobs"]["default.web"]["started"] is False
    assert "default.web" in admin.ok("daemon:state").stdout
    assert manager.ok("ps:start", "web")
    wait_until_sync(lambda: len(_os_pids(keyed, admin_key)) == 2, what="web again")
    before = _os_pids(keyed, admin_key)
    restarted = admin.ok("daemon:restart", timeout=90)
    assert "gafferd restarted in place" in restarted.stdout
    assert "2 process(es) of 1 job(s) kept" in restarted.stdout
    assert _os_pids(keyed, admin_key) == before
    assert asyncio.run(_channel(keyed.port, admin_key, "daemon_state"))["result"]["handovers"] == 1
