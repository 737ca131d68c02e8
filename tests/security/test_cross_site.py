"""Issue 11.1: a web page the operator visits cannot drive gafferd. Bodies are JSON only
(415), the Host must name the server (421: no DNS rebinding), a foreign Origin is refused
(403) unless listed in cors_origins, on HTTP and on WebSocket handshakes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import child_cmd
from tests.security.site import handshake, start, tcp

EVIL = "http://evil.example"


@pytest.fixture
def site(tmp_path: Path):
    daemon, port = start(
        tmp_path,
        jobs="""
            [job:web]
            cmd = {child} sleep
            redirect_output = out
            redirect_input = true
        """,
    )
    try:
        yield daemon, port
    finally:
        daemon.stop()


def _attack(marker: Path) -> str:
    return json.dumps(
        {"name": "x", "cmd": f"{sys.executable} -c \"open('{marker}', 'w').close()\""}
    )


def test_the_attack_of_the_issue_runs_nothing(site, tmp_path: Path):
    daemon, port = site
    marker = tmp_path / "pwned"
    # what a page's fetch() sends without a pre-flight: text/plain, its own Origin
    answer = tcp(
        port,
        "POST",
        "/jobs/default",
        _attack(marker),
        {"Origin": EVIL, "Content-Type": "text/plain"},
    )
    assert answer.status == 403 and answer.json["error"] == "cross_origin", answer
    # a form post (no Origin from old browsers, or a privacy extension): not JSON
    answer = tcp(
        port,
        "POST",
        "/jobs/default",
        _attack(marker),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status == 415 and answer.json["error"] == "unsupported_media_type", answer
    assert daemon.request("GET", "/jobs")[1] == {"jobs": ["default.web"]}
    assert not marker.exists()


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "text/plain; charset=utf-8", "multipart/form-data; boundary=x", "*/*"],
)
def test_a_body_that_is_not_json_is_a_415(site, content_type):
    daemon, port = site
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = json.dumps({"scale": "=3"})
    answer = tcp(port, "POST", "/jobs/default/web/numprocesses", body, headers)
    assert answer.status == 415, answer
    assert answer.json["error"] == "unsupported_media_type"
    assert answer.headers["Content-Type"] == "application/json"
    assert daemon.request("GET", "/jobs/default/web/numprocesses")[1] == {"numprocesses": 1}
    answer = tcp(
        port,
        "POST",
        "/jobs/default/web/numprocesses",
        body,
        {"Content-Type": "application/json; charset=utf-8"},
    )
    assert answer.status == 200 and answer.json == {"numprocesses": 3}


def test_raw_routes_take_octet_streams_never_text(site):
    daemon, port = site
    [pid] = daemon.request("GET", "/jobs/default/web/pids")[1]["pids"]
    plain = tcp(port, "POST", f"/streams/{pid}/stdin", b"hi\n", {"Content-Type": "text/plain"})
    assert plain.status == 415, plain
    raw = {"Content-Type": "application/octet-stream"}
    assert tcp(port, "POST", f"/streams/{pid}/stdin", b"hi\n", raw).status == 200
    state = tcp(port, "POST", "/jobs/default/web/state", b"0", {"Content-Type": "text/plain"})
    assert state.status == 415
    assert daemon.request("GET", "/jobs/default/web/state")[1] == 1  # still running


@pytest.mark.parametrize(
    "path", ["/ping", "/jobs", "/jobs/default/web", "/nosuch", "/openapi.json"]
)
def test_a_host_that_does_not_name_the_server_is_a_421(site, path):
    _, port = site
    answer = tcp(port, "GET", path, headers={"Host": f"attacker.example:{port}"})
    assert answer.status == 421, answer
    assert answer.json["error"] == "misdirected"
    assert "allowed_hosts" in answer.json["reason"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", "LOCALHOST."):
        assert tcp(port, "GET", "/ping", headers={"Host": host}).status == 200, host


def test_a_rebound_name_cannot_load_a_job(site, tmp_path: Path):
    daemon, port = site
    marker = tmp_path / "pwned"
    answer = tcp(
        port,
        "POST",
        "/jobs/default",
        _attack(marker),
        {"Host": f"rebind.attacker.example:{port}", "Content-Type": "application/json"},
    )
    assert answer.status == 421
    assert not marker.exists()
    assert daemon.request("GET", "/jobs")[1] == {"jobs": ["default.web"]}


def test_allowed_hosts_names_more_hosts(tmp_path: Path):
    daemon, port = start(tmp_path, gaffer="allowed_hosts = gaffer.internal ops.example")
    try:
        assert tcp(port, "GET", "/ping", headers={"Host": "gaffer.internal:80"}).status == 200
        assert tcp(port, "GET", "/ping", headers={"Host": "ops.example"}).status == 200
        assert tcp(port, "GET", "/ping", headers={"Host": "other.example"}).status == 421
        # the unix socket: no browser reaches it, any Host goes
        assert daemon.request("GET", "/ping", headers={"Host": "whatever"})[0] == 200
    finally:
        daemon.stop()


def test_websocket_handshakes_check_host_and_origin(site):
    daemon, port = site
    [pid] = daemon.request("GET", "/jobs/default/web/pids")[1]["pids"]
    for path in ("/channel", f"/{pid}/channel"):
        assert handshake(port, path, {}) == 101, path
        assert handshake(port, path, {"Origin": f"http://127.0.0.1:{port}"}) == 101
        assert handshake(port, path, {"Origin": EVIL}) == 403, path
        assert handshake(port, path, {"Origin": "null"}) == 403, path
        assert handshake(port, path, {"Host": f"attacker.example:{port}"}) == 421, path


def test_cors_origins_open_the_api_to_a_listed_site(tmp_path: Path):
    ui = "https://ui.example"
    daemon, port = start(tmp_path, gaffer=f"cors_origins = {ui}")
    try:
        preflight = tcp(port, "OPTIONS", "/jobs/default", headers={"Origin": ui})
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == ui
        body = {"name": "fromui", "cmd": child_cmd("sleep")}
        answer = tcp(
            port,
            "POST",
            "/jobs/default",
            body,
            {"Origin": ui, "Content-Type": "application/json"},
        )
        assert answer.status == 200 and answer.headers["Access-Control-Allow-Origin"] == ui
        assert handshake(port, "/channel", {"Origin": ui}) == 101
        # another site is still refused, pre-flight included
        assert tcp(port, "OPTIONS", "/jobs", headers={"Origin": EVIL}).status == 403
        assert handshake(port, "/channel", {"Origin": EVIL}) == 403
    finally:
        daemon.stop()


def test_gets_never_change_state(site):
    daemon, port = site
    before = daemon.request("GET", "/jobs/default/web")[1]
    for path in ("signal", "commit", "numprocesses", "state", "pids", "stats"):
        answer = tcp(port, "GET", f"/jobs/default/web/{path}")
        assert answer.status in (200, 405), (path, answer)
        if answer.status == 405:
            assert "GET" not in answer.headers["Allow"] and "POST" in answer.headers["Allow"]
    after = daemon.request("GET", "/jobs/default/web")[1]
    assert (after["processes"], after["numprocesses"]) == (
        before["processes"],
        before["numprocesses"],
    )
