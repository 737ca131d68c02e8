"""Issue 11.2: a key never escalates. A sub-key narrower than its user's key never acts on
that user (its password, its key, its details); only a key holding every right of the
user's key is the user's own. Every route family asks the one command table
(gaffer/http/commands.py), REST and the /channel WebSocket alike."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.websocket

from tests.security.site import basic, keyed, tcp

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def site(tmp_path: Path):
    daemon, port, admin = keyed(
        tmp_path,
        jobs="""
            [job:web]
            cmd = {child} sleep
        """,
    )
    try:
        yield daemon, port, admin
    finally:
        daemon.stop()


def _key(port: int, creator: str, permissions: dict, parent: str | None = None) -> tuple:
    body = {"permissions": permissions, **({"parent": parent} if parent else {})}
    answer = tcp(port, "POST", "/keys", body, key=creator)
    assert answer.status == 201, answer
    return answer.json["api_key"], answer.json["key"]["key_id"]


def _user(port: int, admin: str) -> tuple[str, str]:
    """User alice, bound to a key that manages everything and may make keys; her login."""
    user_key, user_key_id = _key(port, admin, {"manage": ["*"], "create_key": True})
    body = {"username": "alice", "password": "old", "key": user_key_id}
    assert tcp(port, "POST", "/users", body, key=admin).status == 201
    login = tcp(port, "GET", "/auth", headers=basic("alice", "old"))
    assert login.status == 200, login
    return user_key, login.json["api_key"]


def _key_id(port: int, admin: str) -> str:
    return tcp(port, "GET", "/users/alice", key=admin).json["key_id"]


def test_a_narrower_sub_key_cannot_act_on_its_parents_user(site):
    _, port, admin = site
    _, login = _user(port, admin)
    reader, _ = _key(port, login, {"read": ["*"]})  # handed to a dashboard, say
    # the escalation of the issue: set alice's password, log in with alice's full rights
    answer = tcp(port, "PUT", "/users/alice/password", {"password": "mine"}, key=reader)
    assert answer.status == 403, answer
    assert tcp(port, "PUT", "/users/alice", {"password": "mine"}, key=reader).status == 403
    assert tcp(port, "PUT", "/users/alice/key", {"key": None}, key=reader).status == 403
    assert tcp(port, "GET", "/users/alice", key=reader).status == 403
    assert tcp(port, "GET", "/auth", headers=basic("alice", "mine")).status == 401
    assert tcp(port, "GET", "/auth", headers=basic("alice", "old")).status == 200
    # a login key without create_key cannot make sub-keys; the admin makes one for alice's
    # key that is narrower still: it is no more alice than the reader
    deeper, _ = _key(port, admin, {"read": ["default"]}, parent=_key_id(port, admin))
    assert tcp(port, "PUT", "/users/alice/password", {"password": "x"}, key=deeper).status == 403


def test_only_a_key_with_the_users_full_rights_is_the_users_own(site):
    _, port, admin = site
    user_key, login = _user(port, admin)
    # the user's key and its login key (a sub-key with the same rights) are alice
    assert tcp(port, "GET", "/users/alice", key=user_key).status == 200
    answer = tcp(port, "PUT", "/users/alice/password", {"password": "new"}, key=login)
    assert answer.status == 200, answer
    assert tcp(port, "GET", "/auth", headers=basic("alice", "new")).status == 200
    # a sub-key of the login key with every right of it still is; one with less is not
    full, _ = _key(port, login, {"manage": ["*"], "create_key": True})
    narrower, _ = _key(port, login, {"manage": ["default"], "create_key": True})
    assert tcp(port, "GET", "/users/alice", key=full).status == 200
    assert tcp(port, "GET", "/users/alice", key=narrower).status == 403
    # a narrower key does not see the key it comes from, nor delete it
    user_key_id = tcp(port, "GET", "/users/alice", key=admin).json["key_id"]
    assert tcp(port, "GET", f"/keys/{user_key_id}", key=narrower).status == 403
    assert tcp(port, "DELETE", f"/keys/{user_key_id}", key=narrower).status == 403


async def _channel_call(port: int, key: str, name: str, args: list) -> dict:
    request = tornado.httpclient.HTTPRequest(
        f"ws://127.0.0.1:{port}/channel", headers={"X-Api-Key": key}
    )
    conn = await tornado.websocket.websocket_connect(request)
    try:
        message = {"event": "CMD", "data": {"identity": 1, "name": name, "args": args}}
        await conn.write_message(json.dumps(message))
        while True:
            answer = json.loads(await conn.read_message())
            if answer["event"].startswith("gaffer:command"):
                return answer["data"]
    finally:
        conn.close()


async def test_rest_and_the_channel_refuse_the_same_commands(site):
    _, port, admin = site
    reader, _ = _key(port, admin, {"read": ["default"]})
    job_key, _ = _key(port, admin, {"manage": ["default.web"]})
    [pid] = tcp(port, "GET", "/jobs/default/web/pids", key=admin).json["pids"]
    job = {"name": "x", "cmd": "true"}
    cases = [  # (REST request, channel command): both 403 for the reader
        (("POST", "/jobs/default/web/numprocesses", {"scale": 2}), ("scale", ["web", 2])),
        (("DELETE", "/jobs/default/web", None), ("unload", ["web"])),
        (("POST", f"/{pid}/signal", {"signal": "HUP"}), ("kill", [pid, "HUP"])),
        (("DELETE", f"/{pid}", None), ("stop_process", [pid])),
        (("POST", "/jobs/default", job), ("load", [job])),
    ]
    for (method, path, body), (command, args) in cases:
        assert tcp(port, method, path, body, key=reader).status == 403, (method, path)
        error = (await _channel_call(port, reader, command, args))["error"]
        assert (error["errno"], error["reason"]) == (403, "forbidden"), command
    # a key managing one job: load is refused (manage on the session), scale allowed
    load = tcp(port, "POST", "/jobs/default", {"name": "y", "cmd": "true"}, key=job_key)
    assert load.status == 403
    assert (await _channel_call(port, job_key, "scale", ["web", 1]))["result"]
    assert tcp(port, "GET", "/jobs", key=admin).json["jobs"] == ["default.web"]


def test_no_permission_is_checked_outside_the_one_table():
    """Handlers and topics ask gaffer/http/commands.py; none decides on rights itself."""
    allowed = {"auth.py", "commands.py", "keystore.py"}
    offenders = []
    for path in sorted((ROOT / "gaffer" / "http").rglob("*.py")):
        if path.name in allowed or (path.parent.name, path.name) == ("handlers", "accounts.py"):
            continue  # accounts: keys and users, not commands
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.(can_read|can_write|can_manage|can|require)\(", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
