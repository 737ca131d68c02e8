"""The REST routes of the HTTP API, through a real gafferd on its unix socket and on a
loopback TCP port: reference scenarios 15 to 21 over HTTP, every route of
gaffer/http/routes.py (but the WebSockets), feeds, errors, limits and redaction.

Most tests share one gafferd (module scope), each with its own job names; the tests that
need a clean daemon (pid 1, empty lists) start their own.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import tornado.web

import gaffer
from gaffer.http.routes import api_routes
from tests.gafferd.harness import Gafferd, wait_gone
from tests.helpers import child_argv, wait_until_sync
from tests.http.rest_helpers import (
    LONG_LIVED,
    Api,
    basic,
    check_no_leftovers,
    parse_raw,
    raw_exchange,
    read_file_text,
    start_gafferd,
)

pytestmark = pytest.mark.timeout(60)

TRANSPORTS = ["unix", "tcp"]
LIMIT = 1024 * 1024  # gaffer.http.app.MAX_BODY_BYTES
NUMBER_FIELDS = ("cpu", "mem", "mem_info1", "mem_info2", "ctime", "nice")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    """tests/conftest.py's check, but the module's gafferd (and its jobs) live on."""
    yield
    check_no_leftovers(LONG_LIVED)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gafferd, Api]]:
    daemon, api = start_gafferd(tmp_path_factory.mktemp("rest"), tcp=True)
    daemon.start()
    LONG_LIVED.add(daemon.pid)
    try:
        yield daemon, api
        assert daemon.stop() == 0
    finally:
        daemon.kill()
        LONG_LIVED.discard(daemon.pid)


@pytest.fixture
def api(shared: tuple[Gafferd, Api]) -> Api:
    """The shared gafferd, over its unix socket."""
    return shared[1]


@pytest.fixture(params=TRANSPORTS)
def any_api(request: pytest.FixtureRequest, api: Api) -> Api:
    """The shared gafferd, over its unix socket and over TCP."""
    return api.over(request.param)


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Callable[..., tuple[Gafferd, Api]]]:
    """Start a gafferd of its own (pids from 1, no job): ``fresh(tcp=False)``."""
    started: list[Gafferd] = []

    def make(tcp: bool = False) -> tuple[Gafferd, Api]:
        directory = tmp_path / f"d{len(started)}"
        directory.mkdir()
        daemon, client = start_gafferd(directory, tcp=tcp)
        started.append(daemon)
        daemon.start()
        return daemon, client

    yield make
    for daemon in started:
        try:
            assert daemon.stop() == 0
        finally:
            daemon.kill()


def error_of(response: Any, status: int, code: str) -> str:
    """Assert a JSON error ``{"error": code, "reason": text}``; return the reason."""
    assert response.status == status, response
    assert response.headers["Content-Type"] == "application/json", response.headers
    body = response.json
    assert set(body) == {"error", "reason"}, body
    assert body["error"] == code, body
    assert isinstance(body["reason"], str)
    return body["reason"]


def without_config(info: dict[str, Any]) -> dict[str, Any]:
    return {key: info[key] for key in ("active", "numprocesses", "running", "running_out")}


def assert_stat(stat: dict[str, Any], name: str) -> None:
    """A stat dict of a live process: numbers are numbers, never strings."""
    assert stat["name"] == name
    assert isinstance(stat["pid"], int)
    assert isinstance(stat["os_pid"], int)
    for field in NUMBER_FIELDS:
        value = stat[field]
        assert isinstance(value, int | float) and not isinstance(value, bool), (field, value)
    assert stat["mem_info1"] > 0 and stat["mem_info2"] >= stat["mem_info1"]
    assert 0 <= stat["mem"] <= 100 and stat["cpu"] >= 0 and stat["ctime"] >= 0
    assert isinstance(stat["username"], str) and isinstance(stat["cmdline"], str)
    assert isinstance(stat["children"], list)


# -- /, /ping, /version, errors ---------------------------------------------------------------


def test_welcome_version_and_ping(any_api: Api) -> None:
    welcome = any_api.get("/")
    assert welcome.status == 200 and welcome.json == {
        "welcome": "gaffer",
        "version": gaffer.__version__,
    }
    assert welcome.headers["Content-Type"] == "application/json"
    version = any_api.get("/version")
    assert version.status == 200
    assert version.json == {"name": "gaffer", "version": gaffer.__version__}
    ping = any_api.get("/ping")
    assert (ping.status, ping.raw) == (200, b"OK")
    assert ping.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope/x/y/z"),
        ("GET", "/abc"),
        ("POST", "/jobs/default/x/nope"),
        ("GET", "/jobs/bad.session"),
        ("DELETE", "/streams/1"),
    ],
)
def test_an_unknown_route_is_a_json_404(any_api: Api, method: str, path: str) -> None:
    reason = error_of(any_api.request(method, path), 404, "not_found")
    assert reason


def test_a_method_a_route_does_not_have_is_a_json_405(any_api: Api) -> None:
    error_of(any_api.delete("/version"), 405, "method_not_allowed")
    error_of(any_api.post("/jobs"), 405, "method_not_allowed")
    error_of(any_api.put("/1"), 405, "method_not_allowed")


def test_cors_is_off_by_default(api: Api) -> None:
    origin = {"Origin": "http://ui.example"}
    preflight = api.request("OPTIONS", "/jobs", headers=origin)
    assert preflight.status == 403  # a page of another site is refused (docs/security.md)
    assert "Access-Control-Allow-Origin" not in preflight.headers
    answer = api.get("/jobs", headers=origin)
    assert (answer.status, answer.json["error"]) == (403, "cross_origin")
    assert "Access-Control-Allow-Origin" not in answer.headers


# -- bodies over 1 MB -------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_body_over_1_mb_is_413_too_large(api: Api, transport: str) -> None:
    client = api.over(transport)
    size = LIMIT + 1
    # announced with Content-Length: refused before it is read
    head = (
        f"POST /jobs/default HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    status, headers, body = parse_raw(raw_exchange(client, head, [b" " * size]))
    assert (status, headers["content-type"]) == (413, "application/json")
    assert json.loads(body)["error"] == "too_large"
    # chunked: refused once the count goes over
    head = (
        b"POST /jobs/default HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\n"
    )
    chunk = b" " * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 17 + [b"0\r\n\r\n"]
    status, _, body = parse_raw(raw_exchange(client, head, chunks))
    assert status == 413 and json.loads(body)["error"] == "too_large"


def test_a_body_of_exactly_1_mb_is_read(api: Api) -> None:
    config: dict[str, Any] = {"name": "big1mb", "cmd": "true", "start": False, "env": {"X": ""}}
    config["env"]["X"] = "a" * (LIMIT - len(json.dumps(config)))
    body = json.dumps(config).encode()
    assert len(body) == LIMIT
    response = api.post("/jobs/default", body)
    assert (response.status, response.json) == (200, {"ok": True})
    assert api.info("default.big1mb")["config"]["env"]["X"] == config["env"]["X"]
    assert api.delete("/jobs/default/big1mb").status == 200


# -- scenario 17: basics ----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_scenario_17_http_basics(fresh: Callable[..., tuple[Gafferd, Api]], transport) -> None:
    daemon, api = fresh(tcp=True)
    api = api.over(transport)
    assert api.get("/version").json["version"] == gaffer.__version__
    assert api.get("/jobs").json == {"jobs": []}
    assert api.get("/sessions").json == {"sessions": []}
    assert api.get("/pids").json == {"pids": []}

    loaded = api.load("dummy", "sleep", "1017")
    assert loaded.json == {"ok": True}
    assert api.get("/jobs").json == {"jobs": ["default.dummy"]}
    assert api.get("/sessions").json == {"sessions": ["default"]}
    assert api.get("/jobs/default").json == {"sessionid": "default", "jobs": ["default.dummy"]}

    again = api.load("dummy", "sleep", "1017", expect=409)
    assert "default.dummy" in error_of(again, 409, "process_conflict")

    error_of(api.get("/jobs/default/unknown"), 404, "not_found")
    api.wait_pids("default.dummy", 1)
    [os_pid] = daemon.job_pids("sleep 1017")

    deleted = api.delete("/jobs/default/dummy")
    assert (deleted.status, deleted.json) == (200, {"ok": True})
    assert api.get("/jobs").json == {"jobs": []}
    assert api.get("/sessions").json == {"sessions": []}
    error_of(api.get("/jobs/unknown_session"), 404, "not_found")
    error_of(api.get("/jobs/default"), 404, "not_found")
    error_of(api.get("/jobs/default/dummy"), 404, "not_found")
    error_of(api.delete("/jobs/default/dummy"), 404, "not_found")
    wait_gone({os_pid})


# -- scenario 15: sessions, and their events on /watch ---------------------------------------


def test_scenario_15_sessions_over_http(fresh: Callable[..., tuple[Gafferd, Api]]) -> None:
    _, api = fresh()
    with api.open_stream("/watch?feed=continuous&heartbeat=0.05", timeout=10) as conn:
        feed = conn.getresponse()
        assert feed.status == 200
        assert feed.headers["Content-Type"] == "application/x-ndjson"
        assert feed.readline() == b"\n"  # a heartbeat: the feed is subscribed

        for sid, name in (("ga", "a"), ("ga", "b"), ("gb", "a")):
            api.load(name, "sleep", sid=sid, start=False)
        assert api.get("/sessions").json == {"sessions": ["ga", "gb"]}
        assert api.get("/jobs/ga").json == {"sessionid": "ga", "jobs": ["ga.a", "ga.b"]}
        assert api.get("/jobs/gb").json == {"sessionid": "gb", "jobs": ["gb.a"]}
        assert api.get("/pids").json == {"pids": []}

        for job in ("ga/a", "ga/b", "gb/a"):
            assert api.post(f"/jobs/{job}/state", "1").status == 202
        assert api.post("/jobs/gb/a/state", "0").status == 202
        api.wait_pids("ga.a", 1)
        assert api.delete("/jobs/ga/a").json == {"ok": True}
        assert api.get("/jobs/ga").json == {"sessionid": "ga", "jobs": ["ga.b"]}

        events: list[dict[str, Any]] = []
        while ("stop", "ga.a") not in [(e["event"], e["name"]) for e in events]:
            line = feed.readline()
            assert line, f"the feed ended; events: {events}"
            if line.strip():
                events.append(json.loads(line))
    starts = [e["name"] for e in events if e["event"] == "start"]
    stops = [e["name"] for e in events if e["event"] == "stop"]
    assert starts == ["ga.a", "ga.b", "gb.a"]
    assert stops == ["gb.a", "ga.a"]
    assert [e["name"] for e in events if e["event"] == "load"] == ["ga.a", "ga.b", "gb.a"]
    assert [e["name"] for e in events if e["event"] == "unload"] == ["ga.a"]


# -- scenario 18: start, stop, reload through state -------------------------------------------


def test_scenario_18_start_stop_and_reload_through_state(any_api: Api) -> None:
    api, job = any_api, f"s18{any_api.transport}"
    path = f"/jobs/default/{job}"
    api.load(job, "sleep", start=False)
    state = api.get(f"{path}/state")
    assert (state.status, state.raw) == (200, b"0")
    assert state.headers["Content-Type"].startswith("text/plain")
    assert without_config(api.info(f"default.{job}")) == {
        "active": False,
        "numprocesses": 1,
        "running": 0,
        "running_out": 0,
    }

    started = api.post(f"{path}/state", "1")
    assert (started.status, started.json) == (202, {"ok": True})
    [first] = api.wait_pids(f"default.{job}", 1)
    assert api.get(f"{path}/state").raw == b"1"
    info = api.info(f"default.{job}")
    assert (info["running"], info["active"], info["max_processes"]) == (1, True, 1)

    stopped = api.post(f"{path}/state", "0")
    assert (stopped.status, stopped.json) == (202, {"ok": True})
    info = api.info(f"default.{job}")  # synchronously: no process left
    assert (info["running"], info["active"], info["stopped"]) == (0, False, True)
    assert api.get(f"{path}/state").raw == b"0"
    assert api.get(f"{path}/state").raw == b"0"  # a GET changes nothing
    assert api.info(f"default.{job}")["running"] == 0
    error_of(api.get(f"/{first}"), 404, "not_found")

    assert api.delete(path).status == 200
    api.load(job, "sleep")
    [before] = api.wait_pids(f"default.{job}", 1)
    os_before = api.get(f"/{before}").json["os_pid"]
    reloaded = api.post(f"{path}/state", "2")
    assert (reloaded.status, reloaded.json) == (202, {"ok": True})
    [after] = api.wait_pids(f"default.{job}", 1)
    assert after > before
    assert api.get(f"/{after}").json["os_pid"] != os_before
    info = api.info(f"default.{job}")
    assert (info["running"], info["active"]) == (1, True)

    for bad in ("5", "begin", ""):
        error_of(api.post(f"{path}/state", bad), 400, "bad_request")
    assert api.pids(f"default.{job}") == [after]  # a bad state changed nothing
    error_of(api.post("/jobs/default/nope/state", "1"), 404, "not_found")
    error_of(api.get("/jobs/default/nope/state"), 404, "not_found")
    assert api.delete(path).status == 200


def test_a_fatal_job_is_visible_and_start_resets_it(api: Api) -> None:
    api.load(
        "doomed",
        "fail-loud",
        0,
        3,
        "no database",
        redirect_output=["out", "err"],
        flapping=None,
        backoff="0.01 1 0.01",
        start_retries=1,
    )
    info: dict = {}

    def fatal() -> bool:
        nonlocal info
        info = api.info("default.doomed")
        return info["state"] == "fatal"

    wait_until_sync(fatal, what="the job fatal")
    assert info["stopped"] is True and info["processes"] == []
    assert (info["last_exit"]["exit_status"], info["restarts"]) == (3, 1)
    assert api.post("/jobs/default/doomed/state", "start").status == 202
    assert api.info("default.doomed")["state"] in ("starting", "backoff", "fatal")
    wait_until_sync(
        lambda: api.info("default.doomed")["restarts"] >= 2, what="started again, restarted"
    )
    assert api.delete("/jobs/default/doomed").status == 200


# -- scenario 19: scale -----------------------------------------------------------------------


def test_scenario_19_scale_through_numprocesses(any_api: Api) -> None:
    api, job = any_api, f"s19{any_api.transport}"
    path = f"/jobs/default/{job}/numprocesses"
    api.load(job, "sleep")
    api.wait_pids(f"default.{job}", 1)

    scaled = api.post(path, {"scale": 3})
    assert (scaled.status, scaled.json) == (200, {"numprocesses": 4})
    api.wait_pids(f"default.{job}", 4)
    assert api.info(f"default.{job}")["running"] == 4
    assert api.get(path).json == {"numprocesses": 4}

    assert api.post(path, {"scale": -3}).json == {"numprocesses": 1}
    api.wait_pids(f"default.{job}", 1)
    assert api.info(f"default.{job}")["running"] == 1

    for scale, expected in (("+2", 3), ("-1", 2), ("=1", 1)):
        assert api.post(path, {"scale": scale}).json == {"numprocesses": expected}, scale
    assert api.get(path).json == {"numprocesses": 1}
    api.wait_pids(f"default.{job}", 1)

    error_of(api.post(path, {"scale": "x"}), 400, "bad_operation")
    assert "scale" in error_of(api.post(path, {}), 400, "bad_request")
    error_of(api.post(path, {"scale": [1]}), 400, "bad_request")
    error_of(api.post(path, "not json"), 400, "invalid_json")
    assert api.get(path).json == {"numprocesses": 1}
    error_of(api.post("/jobs/default/nope/numprocesses", {"scale": 1}), 404, "not_found")
    error_of(api.get("/jobs/default/nope/numprocesses"), 404, "not_found")
    assert api.delete(f"/jobs/default/{job}").status == 200


# -- scenario 20: pids ------------------------------------------------------------------------


def test_scenario_20_pids_over_http(fresh: Callable[..., tuple[Gafferd, Api]]) -> None:
    daemon, api = fresh()
    api.load("dummy", "sleep", "1020")
    assert api.wait_pids("default.dummy", 1) == [1]
    process = api.get("/1")
    assert process.status == 200
    info = process.json
    assert (info["pid"], info["name"]) == (1, "default.dummy")
    # the pid is known at once; its command line once the child has exec'd
    wait_until_sync(lambda: {info["os_pid"]} == daemon.job_pids("sleep 1020"), what="exec")
    assert info["once"] is False and info["active"] is True
    assert api.get("/jobs/default/dummy/pids").json == {"pids": [1]}
    assert api.get("/pids").json == {"pids": [1]}

    stopped = api.delete("/1")
    assert (stopped.status, stopped.json) == (202, {"ok": True})
    error_of(api.get("/1"), 404, "not_found")  # gone at once
    assert api.head("/1").status == 404
    assert 1 not in api.get("/jobs/default/dummy/pids").json["pids"]
    assert api.wait_pids("default.dummy", 1) == [2]
    assert api.get("/2").json["os_pid"] != info["os_pid"]
    wait_gone({info["os_pid"]})
    error_of(api.delete("/1"), 404, "not_found")
    error_of(api.delete("/99"), 404, "not_found")


# -- scenario 16: commit ----------------------------------------------------------------------


def test_scenario_16_commit_over_http(fresh: Callable[..., tuple[Gafferd, Api]]) -> None:
    _, api = fresh()
    api.load("dummy", "sleep", numprocesses=0)
    assert without_config(api.info("default.dummy")) == {
        "active": False,
        "numprocesses": 0,
        "running": 0,
        "running_out": 0,
    }

    committed = api.post("/jobs/default/dummy/commit", {"env": {"BLAH": "test"}})
    assert (committed.status, committed.json) == (200, {"pid": 1})
    assert api.get("/pids").json == {"pids": [1]}
    assert api.get("/jobs/default/dummy/pids").json == {"pids": []}  # kept-alive ones only
    assert without_config(api.info("default.dummy")) == {
        "active": True,
        "numprocesses": 0,
        "running": 1,
        "running_out": 1,
    }
    one_off = api.get("/1").json
    assert one_off["name"] == "default.dummy"
    assert one_off["once"] is True and one_off["env"]["BLAH"] == "test"

    assert api.post("/jobs/default/dummy/numprocesses", {"scale": 1}).json == {"numprocesses": 1}
    wait_until_sync(lambda: api.get("/pids").json["pids"] == [1, 2], what="pids [1, 2]")
    assert without_config(api.info("default.dummy")) == {
        "active": True,
        "numprocesses": 1,
        "running": 2,
        "running_out": 1,
    }
    assert api.get("/jobs/default/dummy/pids").json == {"pids": [2]}

    error_of(api.post("/jobs/default/nope/commit", {}), 404, "not_found")
    error_of(api.post("/jobs/default/dummy/commit", {"graceful_timeout": -1}), 400, "bad_request")
    error_of(api.post("/jobs/default/dummy/commit", {"env": {"A": 1}}), 400, "bad_request")
    error_of(api.post("/jobs/default/dummy/commit", {"nope": 1}), 400, "bad_request")
    assert api.get("/pids").json == {"pids": [1, 2]}  # the refused commits ran nothing


# -- scenario 21: stdin and output ------------------------------------------------------------


def test_scenario_21_stdin_then_longpoll_output(api: Api) -> None:
    api.load("echo21", "echo", redirect_output=["stdout"], redirect_input=True)
    [pid] = api.wait_pids("default.echo21", 1)
    feed = api.in_background(f"/streams/{pid}/stdout?feed=longpoll")
    feed.sent.wait(5)
    sent: list[str] = []

    def echoed() -> bool:
        # gafferd's subscription cannot be seen from here: a line written before it is not
        # in the feed, so write lines until the feed answers
        if not feed.done:
            line = f"ECHO {len(sent)}\n"
            written = api.post(f"/streams/{pid}/stdin", line)
            assert written.status == 200, written
            assert written.json == {"ok": True, "pid": pid, "bytes": len(line)}
            sent.append(line)
        return feed.done

    wait_until_sync(echoed, interval=0.05, what="the longpoll answer")
    response = feed.result()
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    lines = response.raw.decode().splitlines(keepends=True)
    assert lines, response
    start = sent.index(lines[0])
    assert sent[start : start + len(lines)] == lines  # whole lines, as written
    assert api.delete("/jobs/default/echo21").status == 200


def test_output_as_server_sent_events(api: Api) -> None:
    api.load("echosse", "echo", redirect_output=["stdout"], redirect_input=True)
    [pid] = api.wait_pids("default.echosse", 1)
    with api.open_stream(f"/streams/{pid}/stdout?feed=eventsource&heartbeat=0.05") as conn:
        feed = conn.getresponse()
        assert feed.headers["Content-Type"] == "text/event-stream"
        assert feed.readline() == b": heartbeat\n"  # subscribed
        assert api.post(f"/streams/{pid}/stdin", "ECHO\n").status == 200
        frame = []
        while frame[-2:] != [b"data: ECHO\n", b"\n"]:
            line = feed.readline()
            assert line, frame
            if not frame and line in (b": heartbeat\n", b"\n"):
                continue
            frame.append(line)
    assert frame == [b"event: stdout\n", b"data: ECHO\n", b"\n"]
    assert api.delete("/jobs/default/echosse").status == 200


def test_continuous_output_of_a_process_that_exits_is_exactly_what_it_printed(
    api: Api,
) -> None:
    printed = b"first line\nsecond line\n"
    config = {
        "name": "printer",
        "cmd": "read go; printf 'first line\\nsecond line\\n'",
        "shell": True,
        "numprocesses": 0,
        "redirect_output": ["stdout"],
        "redirect_input": True,
    }
    assert api.post("/jobs/default", config).status == 200
    bodies: list[bytes] = []

    def attempt() -> bool:
        pid = api.post("/jobs/default/printer/commit").json["pid"]
        feed = api.in_background(f"/streams/{pid}/stdout?feed=continuous")
        feed.sent.wait(5)
        assert api.post(f"/streams/{pid}/stdin", "go\n").status == 200
        response = feed.result()
        if response.status == 404:  # it was gone before the feed started: again
            return False
        assert response.status == 200, response
        assert response.headers["Content-Type"] == "application/octet-stream"
        bodies.append(response.raw)
        # printed before the feed subscribed: nothing (again); else exactly the bytes
        return response.raw != b""

    wait_until_sync(attempt, interval=0, what="a feed that saw the output")
    assert bodies[-1] == printed
    assert all(body in (b"", printed) for body in bodies), bodies
    assert api.delete("/jobs/default/printer").status == 200


def test_stream_errors(api: Api) -> None:
    api.load("quiet", "sleep")
    [pid] = api.wait_pids("default.quiet", 1)
    error_of(api.post("/streams/999999/stdin", "x"), 404, "not_found")
    error_of(api.get("/streams/999999/stdout"), 404, "not_found")
    error_of(api.post(f"/streams/{pid}/stdin", "x"), 409, "not_redirected")
    # gafferd captures every job's stdout and stderr (docs/output.md): another label is unknown
    error_of(api.get(f"/streams/{pid}/nolabel"), 404, "stream_not_found")
    error_of(api.get(f"/streams/{pid}/stdout?feed=nope"), 400, "bad_request")
    error_of(api.get(f"/streams/{pid}/stdout?heartbeat=abc"), 400, "bad_request")
    assert api.delete("/jobs/default/quiet").status == 200


# -- signals ----------------------------------------------------------------------------------


def test_job_signal_reaches_every_process(api: Api, tmp_path: Path) -> None:
    trace = tmp_path / "dummy.txt"
    api.load("hup", "dummy", str(trace))
    wait_until_sync(lambda: "START" in read_file_text(trace), what="START")
    sent = api.post("/jobs/default/hup/signal", {"signal": "HUP"})
    assert (sent.status, sent.json) == (202, {"ok": True})
    wait_until_sync(lambda: "HUP" in read_file_text(trace), what="HUP")
    assert api.post("/jobs/default/hup/state", "0").status == 202
    wait_until_sync(lambda: read_file_text(trace).endswith("STOP"), what="STOP")
    assert read_file_text(trace) == "STARTHUPQUITSTOP"  # reference scenario 9

    error_of(api.post("/jobs/default/nope/signal", {"signal": "HUP"}), 404, "not_found")
    error_of(api.post("/jobs/default/hup/signal", {"signal": "NOPE"}), 400, "bad_signal")
    error_of(api.post("/jobs/default/hup/signal", {}), 400, "bad_request")
    assert api.delete("/jobs/default/hup").status == 200


def test_process_signal_by_name_and_by_number(api: Api, tmp_path: Path) -> None:
    trace = tmp_path / "dummy.txt"
    api.load("sigpid", "dummy", str(trace))
    [pid] = api.wait_pids("default.sigpid", 1)
    wait_until_sync(lambda: "START" in read_file_text(trace), what="START")
    for count, sig in enumerate(("HUP", int(signal.SIGHUP), "sighup", str(int(signal.SIGHUP))), 1):
        sent = api.post(f"/{pid}/signal", {"signal": sig})
        assert (sent.status, sent.json) == (202, {"ok": True}), sig
        wait_until_sync(lambda n=count: read_file_text(trace).count("HUP") == n, what=f"{sig}")

    error_of(api.post(f"/{pid}/signal", {"signal": "NOPE"}), 400, "bad_signal")
    error_of(api.post(f"/{pid}/signal", {"signal": 999}), 400, "bad_signal")
    error_of(api.post(f"/{pid}/signal", {}), 400, "bad_request")
    error_of(api.post("/999999/signal", {"signal": "HUP"}), 404, "not_found")
    assert api.post(f"/{pid}/signal", {"signal": "TERM"}).status == 202
    wait_until_sync(lambda: read_file_text(trace).endswith("QUITSTOP"), what="QUIT")
    assert read_file_text(trace) == "START" + "HUP" * 4 + "QUITSTOP"
    assert api.delete("/jobs/default/sigpid").status == 200


# -- stats ------------------------------------------------------------------------------------


def test_job_and_process_stats_are_numbers(api: Api) -> None:
    api.load("stats", "sleep", numprocesses=2)
    pids = api.wait_pids("default.stats", 2)
    stats = api.get("/jobs/default/stats/stats")
    assert stats.status == 200
    job = stats.json
    assert job["name"] == "default.stats"
    assert sorted(stat["pid"] for stat in job["stats"]) == sorted(pids)
    for stat in job["stats"]:
        assert_stat(stat, "default.stats")
        assert stat["os_pid"] == api.get(f"/{stat['pid']}").json["os_pid"]
    for key in ("cpu", "mem", "min_cpu", "max_cpu", "min_mem", "max_mem"):
        assert isinstance(job[key], int | float), key
    assert job["min_mem"] <= job["max_mem"] <= job["mem"]

    one = api.get(f"/{pids[0]}/stats")
    assert one.status == 200 and set(one.json) == {"stats"}
    assert_stat(one.json["stats"], "default.stats")
    assert one.json["stats"]["pid"] == pids[0]

    error_of(api.get("/jobs/default/nope/stats"), 404, "not_found")
    error_of(api.get("/999999/stats"), 404, "not_found")
    assert api.delete("/jobs/default/stats").status == 200


def test_stats_route_without_feed_and_as_a_longpoll(api: Api) -> None:
    api.load("statfeed", "sleep")
    [pid] = api.wait_pids("default.statfeed", 1)
    now = api.get("/stats/default/statfeed")
    assert now.status == 200
    assert now.json["name"] == "default.statfeed"
    [stat] = now.json["stats"]
    assert_stat(stat, "default.statfeed")

    with api.open_stream("/stats/default/statfeed?feed=longpoll") as conn:
        feed = conn.getresponse()
        assert feed.status == 200 and feed.headers["Content-Type"] == "application/json"
        body = feed.read()
    event = json.loads(body)
    assert event["event"] == "stat" and event["pid"] == pid
    assert_stat(event, "default.statfeed")

    error_of(api.get("/stats/default/nope"), 404, "not_found")
    error_of(api.get("/stats/default/nope?feed=longpoll"), 404, "not_found")
    error_of(api.get("/stats/default/statfeed?feed=bad"), 400, "bad_request")
    assert api.delete("/jobs/default/statfeed").status == 200


# -- /watch -----------------------------------------------------------------------------------


def test_watch_longpoll_gets_the_load_event(fresh: Callable[..., tuple[Gafferd, Api]]) -> None:
    _, api = fresh(tcp=True)
    for client in (api, api.over("tcp")):
        name = f"watched{client.transport}"
        with client.open_stream("/watch?feed=longpoll&heartbeat=0.05") as conn:
            feed = conn.getresponse()
            assert feed.status == 200
            assert feed.headers["Content-Type"] == "application/json"
            assert feed.readline() == b"\n"  # a heartbeat: the feed is subscribed
            client.load(name, "sleep")
            event = json.loads(feed.read())  # the response ends after one event
        assert event == {"event": "load", "name": f"default.{name}"}


def test_watch_a_pattern_as_a_plain_longpoll(api: Api) -> None:
    feed = api.in_background("/watch/load?feed=longpoll")
    feed.sent.wait(5)
    loaded: list[str] = []

    def answered() -> bool:
        # no heartbeat here: load jobs until the feed, once subscribed, sees one
        if not feed.done:
            loaded.append(f"watchload{len(loaded)}")
            api.load(loaded[-1], "sleep", start=False)
        return feed.done

    wait_until_sync(answered, interval=0.05, what="the load event")
    response = feed.result()
    assert response.status == 200
    event = response.json
    assert event["event"] == "load" and event["name"] in [f"default.{n}" for n in loaded]
    for name in loaded:
        assert api.delete(f"/jobs/default/{name}").status == 200
    error_of(api.get("/watch?feed=nope"), 400, "bad_request")
    error_of(api.get("/watch/load?heartbeat=-1"), 400, "bad_request")


def test_watch_a_job_as_server_sent_events(api: Api) -> None:
    api.load("ssejob", "sleep")
    api.wait_pids("default.ssejob", 1)
    with api.open_stream("/watch/job/default/ssejob?feed=eventsource&heartbeat=0.05") as conn:
        feed = conn.getresponse()
        assert feed.headers["Content-Type"] == "text/event-stream"
        assert feed.readline() == b": heartbeat\n"
        assert api.post("/jobs/default/ssejob/numprocesses", {"scale": 1}).status == 200
        lines: list[bytes] = []
        while not any(line.startswith(b"event: job.default.ssejob.spawn") for line in lines):
            line = feed.readline()
            assert line, lines
            if line.strip() and not line.startswith(b":"):
                lines.append(line)
    assert lines[0] == b"event: job.default.ssejob.update\n"
    update = json.loads(lines[1].removeprefix(b"data: "))
    assert update == {
        "event": "job.default.ssejob.update",
        "name": "default.ssejob",
        "numprocesses": 2,
    }
    assert api.delete("/jobs/default/ssejob").status == 200


def test_watch_a_process_with_a_two_part_pattern(api: Api) -> None:
    api.load("procwatch", "sleep")
    [pid] = api.wait_pids("default.procwatch", 1)
    with api.open_stream(f"/watch/proc/{pid}?feed=continuous&heartbeat=0.05") as conn:
        feed = conn.getresponse()
        assert feed.headers["Content-Type"] == "application/x-ndjson"
        assert feed.readline() == b"\n"  # subscribed
        assert api.post(f"/{pid}/signal", {"signal": "CONT"}).status == 202
        line = b"\n"
        while line == b"\n":
            line = feed.readline()
    assert json.loads(line) == {
        "event": f"proc.{pid}.kill",
        "name": "default.procwatch",
        "pid": pid,
        "signum": int(signal.SIGCONT),
    }
    assert api.delete("/jobs/default/procwatch").status == 200


# -- PUT, HEAD, DELETE of jobs ----------------------------------------------------------------


def test_put_updates_the_job_with_new_processes(api: Api) -> None:
    api.load("upd", "sleep", "1030", numprocesses=2)
    before = api.wait_pids("default.upd", 2)
    argv = child_argv("sleep", "1031")
    updated = api.put("/jobs/default/upd", {"cmd": argv[0], "args": argv[1:]})
    assert (updated.status, updated.json) == (201, {"ok": True})
    after = api.wait_pids("default.upd", 2)
    assert not set(after) & set(before)
    assert api.info("default.upd")["config"]["args"][-1] == "1031"
    for pid in after:
        assert api.get(f"/{pid}").json["args"][-1] == "1031"

    same_name = api.put("/jobs/default/upd", {"name": "upd", "cmd": argv[0], "args": argv[1:]})
    assert same_name.status == 201
    mismatch = api.put("/jobs/default/upd", {"name": "other", "cmd": argv[0]})
    assert "other" in error_of(mismatch, 400, "bad_request")
    error_of(api.put("/jobs/default/upd", {"args": ["x"]}), 400, "bad_request")  # no cmd
    error_of(api.put("/jobs/default/upd", {"cmd": argv[0], "bogus": 1}), 400, "bad_request")
    error_of(api.put("/jobs/default/nope", {"cmd": argv[0]}), 404, "not_found")
    assert "nope" not in " ".join(api.get("/jobs").json["jobs"])
    assert api.info("default.upd")["config"]["args"][-1] == "1031"  # refused: unchanged
    assert api.delete("/jobs/default/upd").status == 200


def test_head_routes(any_api: Api) -> None:
    api, job = any_api, f"head{any_api.transport}"
    api.load(job, "sleep")
    [pid] = api.wait_pids(f"default.{job}", 1)
    for path, status in (
        (f"/jobs/default/{job}", 200),
        ("/jobs/default/nope", 404),
        (f"/{pid}", 200),
        ("/999999", 404),
    ):
        response = api.head(path)
        assert (response.status, response.raw) == (status, b""), path
    assert api.delete(f"/jobs/default/{job}").status == 200
    assert api.head(f"/jobs/default/{job}").status == 404


def test_load_refuses_bad_configs(api: Api) -> None:
    argv = child_argv("sleep")
    cases = [
        ({"cmd": argv[0]}, "bad_request"),  # no name
        ({"name": "bad"}, "bad_request"),  # no cmd
        ({"name": "bad", "cmd": argv[0], "numprocesses": "two"}, "bad_request"),
        ({"name": "bad", "cmd": argv[0], "bogus": 1}, "bad_request"),
        ({"name": "bad", "cmd": argv[0], "env": {"A": 1}}, "bad_request"),
        ({"name": "bad", "cmd": argv[0], "numprocesses": -1}, "bad_request"),
        ([1, 2], "bad_request"),
    ]
    for body, code in cases:
        reason = error_of(api.post("/jobs/default", body), 400, code)
        assert reason, body
    error_of(api.post("/jobs/default", "{not json"), 400, "invalid_json")
    assert "default.bad" not in api.get("/jobs").json["jobs"]


def test_lists_show_the_jobs_and_pids(api: Api) -> None:
    api.load("lista", "sleep", sid="lists")
    api.load("listb", "sleep", sid="lists", numprocesses=2)
    pids = api.wait_pids("lists.lista", 1) + api.wait_pids("lists.listb", 2)
    assert {"lists.lista", "lists.listb"} <= set(api.get("/jobs").json["jobs"])
    assert "lists" in api.get("/sessions").json["sessions"]
    assert set(pids) <= set(api.get("/pids").json["pids"])
    assert api.get("/jobs/lists").json == {
        "sessionid": "lists",
        "jobs": ["lists.lista", "lists.listb"],
    }
    for name in ("lista", "listb"):
        assert api.delete(f"/jobs/lists/{name}").status == 200
    assert "lists" not in api.get("/sessions").json["sessions"]
    assert not set(pids) & set(api.get("/pids").json["pids"])


# -- redaction, and accounts without a key store ----------------------------------------------


def test_secrets_in_env_are_redacted_without_an_admin_key(api: Api) -> None:
    api.load("redact", "sleep", env={"API_TOKEN": "x", "PLAIN": "y"})
    [pid] = api.wait_pids("default.redact", 1)
    shown = {"API_TOKEN": "<redacted>", "PLAIN": "y"}
    assert api.info("default.redact")["config"]["env"] == shown
    process = api.get(f"/{pid}").json
    assert process["env"] == {**shown, "GAFFER_JOB": "default.redact"}  # what it really has
    assert b'"x"' not in api.get("/jobs/default/redact").raw
    # only shown so: the process has the real value
    child = psutil.Process(process["os_pid"])
    wait_until_sync(lambda: "PLAIN" in child.environ(), what="the child's exec")
    environ = child.environ()
    assert (environ["API_TOKEN"], environ["PLAIN"]) == ("x", "y")
    assert api.delete("/jobs/default/redact").status == 200


def test_without_a_key_store_there_are_no_keys_nor_users(api: Api) -> None:
    error_of(api.get("/keys"), 404, "not_found")
    error_of(api.get("/auth", headers=basic("admin", "pw")), 404, "not_found")
    # without require_key a request acts as LOCAL: it runs jobs, but is no admin
    error_of(api.post("/keys", {"permissions": {}}), 403, "forbidden")
    error_of(api.get("/users"), 403, "forbidden")
    argv = child_argv("sleep")
    uid = {"name": "asroot", "cmd": argv[0], "uid": os.getuid(), "start": False}
    error_of(api.post("/jobs/default", uid), 403, "forbidden")
    assert "default.asroot" not in api.get("/jobs").json["jobs"]


# -- /openapi.json ----------------------------------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _implemented(handler: type[tornado.web.RequestHandler]) -> set[str]:
    methods = {"get", "post", "put", "delete", "head", "patch"}
    return {m for m in methods if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)}


def test_openapi_describes_every_route(any_api: Api) -> None:
    response = any_api.get("/openapi.json")
    assert response.status == 200
    spec = response.json
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["version"] == gaffer.__version__
    paths, schemas = spec["paths"], spec["components"]["schemas"]
    for route in api_routes():
        assert route.template in paths, route.template
        assert set(route.handler.ops) <= set(paths[route.template]), route.template
        for method, operation in paths[route.template].items():
            assert operation["responses"], (route.template, method)
            for name in [p["name"] for p in operation["parameters"] if p["in"] == "path"]:
                assert "{" + name + "}" in route.template
            body = operation.get("requestBody")
            if body is not None and "application/json" in body["content"]:
                ref = body["content"]["application/json"]["schema"]["$ref"]
                assert ref.startswith("#/components/schemas/")
                assert ref.removeprefix("#/components/schemas/") in schemas, ref
    for ref in _refs(spec):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    # the documented bodies are the ones the routes read
    assert paths["/jobs/{sid}"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobConfig"
    }
    assert "cmd" in schemas["JobConfig"]["required"]


def test_openapi_shows_every_method_a_route_answers(api: Api) -> None:
    """A route answers exactly the methods /openapi.json gives it; one more is a method
    nobody meant to serve (and nobody checks the permissions of)."""
    paths = api.get("/openapi.json").json["paths"]
    undocumented = {
        route.template: sorted(_implemented(route.handler) - set(paths[route.template]))
        for route in api_routes()
        if _implemented(route.handler) - set(paths[route.template])
    }
    assert undocumented == {}
