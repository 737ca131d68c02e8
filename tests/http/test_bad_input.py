"""Bad input to the HTTP API of a real gafferd: each request gets the documented status and
error code (docs/http-api.md, CONTRACT.md) and changes nothing.

One gafferd (no keys) with three jobs serves the module, and one with ``require_key`` the
key tests. Every case snapshots the jobs (configs, targets, pids) before and after the
request and checks that gafferd logged no traceback for it.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import pytest

from gaffer.http.schema import JOB_CONFIG
from tests.gafferd.harness import Gafferd, UnixHTTPConnection
from tests.helpers import child_cmd, wait_until_sync

pytestmark = pytest.mark.timeout(120)

INI = """
    [job:sleeper]
    cmd = {child} sleep
    numprocesses = 2
    graceful_timeout = 2

    [job:echo]
    cmd = {child} echo
    redirect_input = true
    redirect_output = stdout
    graceful_timeout = 2

    [job:other.web]
    cmd = {child} sleep
    graceful_timeout = 2
"""
SLEEP = child_cmd("sleep")
UNKNOWN_PID = "999999"
MB = 1024 * 1024
BAD_CONFIG = ("bad_config", "bad_request")  # either code says "your config"

_STARTED: list[Gafferd] = []


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Gafferd]:
    gafferd = Gafferd(tmp_path_factory.mktemp("bad-input"), INI)
    _STARTED.append(gafferd)
    try:
        gafferd.start()
        wait_until_sync(lambda: len(pids_of(gafferd)) == 4, what="4 processes running")
        yield gafferd
        assert gafferd.stop() == 0  # and no child left
    finally:
        gafferd.kill()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory) -> Iterator[tuple[Gafferd, str]]:
    directory = tmp_path_factory.mktemp("bad-input-keyed")
    gafferd = Gafferd(
        directory,
        f"""
        [gaffer]
        bind = unix:{directory / "gafferd.sock"}
        require_key = true
        {INI}
        """,
    )
    _STARTED.append(gafferd)
    try:
        created = gafferd.run("--create-admin-user", "--username", "admin", "--password", "pw")
        assert created.returncode == 0, created.stderr
        key = created.stdout.split("keep it):", 1)[1].split()[0]
        assert key.startswith("gk_")
        gafferd.start()
        admin = {"X-Api-Key": key}
        wait_until_sync(lambda: len(pids_of(gafferd, admin)) == 4, what="4 processes running")
        yield gafferd, key
        assert gafferd.stop() == 0  # and no child left
    finally:
        gafferd.kill()


@pytest.fixture(autouse=True)
def no_leaked_children():
    """conftest's check, less the module's gafferds (they stop, and are checked, at the end
    of the module): the test runner has no other child."""
    yield
    mine = {gafferd.pid for gafferd in _STARTED if gafferd.proc is not None}
    deadline = time.monotonic() + 5
    others: list[psutil.Process] = []
    while time.monotonic() < deadline:
        others = [c for c in psutil.Process().children() if c.pid not in mine and _alive(c)]
        if not others:
            return
        time.sleep(0.02)
    for child in others:
        try:
            os.kill(child.pid, signal.SIGKILL)
        except OSError:
            pass
    pytest.fail(f"test left processes behind: {[child.pid for child in others]}")


def _alive(proc: psutil.Process) -> bool:
    try:
        proc.status()
    except psutil.NoSuchProcess:
        return False
    return True


@pytest.fixture
def pids(daemon) -> dict[str, str]:
    """Internal pids (as path text) of a process of each job."""
    found = {}
    for key, job in (("sleeper", "default/sleeper"), ("echo", "default/echo")):
        status, answer = daemon.request("GET", f"/jobs/{job}/pids")
        assert status == 200 and answer["pids"], answer
        found[key] = str(answer["pids"][0])
    return found


# -- helpers -------------------------------------------------------------------------------


def pids_of(gafferd: Gafferd, headers: dict[str, str] | None = None) -> list[int]:
    status, answer = gafferd.request("GET", "/pids", headers=headers)
    assert status == 200, answer
    return answer["pids"]


def snapshot(gafferd: Gafferd, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """What a request must not change: the jobs, each one's info (config, target, state,
    pids) and every running pid."""
    status, answer = gafferd.request("GET", "/jobs", headers=headers)
    assert status == 200, answer
    state: dict[str, Any] = {}

    def settled() -> bool:
        """Taken when no job is still starting (that changes on its own, start_secs later)."""
        state.clear()
        state["pids"] = sorted(pids_of(gafferd, headers))
        for job in sorted(answer["jobs"]):
            sid, name = (quote(part, safe="", errors="surrogatepass") for part in job.split(".", 1))
            state[job] = gafferd.request("GET", f"/jobs/{sid}/{name}", headers=headers)
        return not any(
            isinstance(info, dict) and info.get("state") == "starting"
            for _, info in (value for key, value in state.items() if key != "pids")
        )

    wait_until_sync(settled, timeout=10, what="no job starting")
    return state


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _read_from(path: Path, offset: int) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


def log_offsets(gafferd: Gafferd) -> tuple[int, int]:
    """Where gafferd's log and its stdout/stderr end now."""
    return _size(gafferd.log), _size(gafferd.dir / "gafferd.stdout")


def assert_no_traceback(gafferd: Gafferd, offsets: tuple[int, int], what: str) -> None:
    """Nothing since ``offsets``: no traceback in the log, none on stderr (where logging
    reports the records it failed to write)."""
    for path, offset in zip((gafferd.log, gafferd.dir / "gafferd.stdout"), offsets, strict=True):
        text = _read_from(path, offset)
        if "Traceback" in text:
            start = text.rfind("\n", 0, max(text.index("Traceback") - 1, 0)) + 1
            pytest.fail(f"{what}; gafferd wrote to {path.name}:\n{text[start:][:4000]}", False)


def assert_error(
    status: int,
    answer: Any,
    expected: int,
    code: str | tuple[str, ...] | None,
    what: str,
    nonempty_reason: bool = True,
) -> None:
    """``answer`` is the JSON error body ``{"error": code, "reason": text}`` (``code``: the
    code, or the codes a fix may choose; None for HEAD, which has no body)."""
    assert status == expected, f"{what}: expected {expected} {code}, got {status} {answer!r:.500}"
    if code is None:
        return
    codes = (code,) if isinstance(code, str) else code
    assert isinstance(answer, dict), f"{what}: the error is not a JSON object: {answer!r:.500}"
    assert answer.get("error") in codes, f"{what}: expected error {code!r}, got {answer!r:.500}"
    assert isinstance(answer.get("reason"), str), f"{what}: no reason: {answer!r:.500}"
    if nonempty_reason:
        assert answer["reason"].strip(), f"{what}: an empty reason: {answer!r:.500}"


def check(
    gafferd: Gafferd,
    method: str,
    path: str,
    body: Any = None,
    status: int = 400,
    code: str | tuple[str, ...] | None = "bad_request",
    headers: dict[str, str] | None = None,
    snapshot_headers: dict[str, str] | None = None,
    nonempty_reason: bool = True,
) -> Any:
    """Send one bad request: the documented status and code, no change, no traceback."""
    before = snapshot(gafferd, snapshot_headers)
    offsets = log_offsets(gafferd)
    got, answer = gafferd.request(method, path, body, headers)
    what = f"{method} {path[:100]} {body!r:.200}"
    assert_no_traceback(gafferd, offsets, f"{what}: {got} {answer!r:.300}")
    assert_error(got, answer, status, code, what, nonempty_reason)
    assert snapshot(gafferd, snapshot_headers) == before, f"{what} changed the state"
    return answer


# -- bodies: not JSON, not an object ---------------------------------------------------------

JSON_ROUTES = [
    ("POST", "/jobs/default"),
    ("PUT", "/jobs/default/sleeper"),
    ("POST", "/jobs/default/sleeper/numprocesses"),
    ("POST", "/jobs/default/sleeper/signal"),
    ("POST", "/jobs/default/sleeper/commit"),
    ("POST", "/{sleeper}/signal"),
]
MALFORMED = ["{bad", '{"cmd": ', "{'cmd': 'x'}", '{"a": 1}}', "nul\x00l", b"\xff\xfe{}"]
NOT_AN_OBJECT = ["[]", '["cmd", "x"]', '"a string"', "null", "3", "-2.5", "true"]


@pytest.mark.parametrize("body", MALFORMED, ids=repr)
@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_malformed_json_is_a_400_invalid_json(daemon, pids, method, path, body):
    check(daemon, method, path.format(**pids), body, 400, "invalid_json")


@pytest.mark.parametrize("body", NOT_AN_OBJECT)
@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_json_that_is_not_an_object_is_a_400(daemon, pids, method, path, body):
    answer = check(daemon, method, path.format(**pids), body, 400, "bad_request")
    assert "expected an object" in answer["reason"]


# -- job configs ---------------------------------------------------------------------------

_SAMPLES: dict[str, Any] = {
    "boolean": True,
    "string": "text",
    "integer": 7,
    "number": 2.5,
    "array": ["x"],
    "object": {"x": "y"},
    "null": None,
}


def _kinds(schema: dict[str, Any]) -> set[str]:
    """The JSON kinds a property schema names (its ``type``, or its options')."""
    if "oneOf" in schema:
        return set().union(*(_kinds(option) for option in schema["oneOf"]))
    kinds = schema.get("type", [])
    return {kinds} if isinstance(kinds, str) else set(kinds)


def _wrong_kinds(schema: dict[str, Any]) -> list[str]:
    """Kinds of value the property refuses: an integer is a number; 2.5 is no integer."""
    kinds = _kinds(schema)
    if "number" in kinds:
        kinds.add("integer")
    return [kind for kind in _SAMPLES if kind not in kinds]


WRONG_TYPES = [
    pytest.param(prop, kind, _SAMPLES[kind], id=f"{prop}-{kind}")
    for prop, schema in JOB_CONFIG["properties"].items()
    for kind in _wrong_kinds(schema)
]
WRONG_ITEMS = [
    ("args", ["ok", 3]),
    ("env", {"GOOD": "x", "BAD": 1}),
    ("env", {"BAD": None}),
    ("redirect_output", ["stdout", 1]),
    ("custom_streams", [None]),
    ("flapping", ["a", "b"]),
    ("flapping", {"attempts": "two"}),
    ("flapping", {"attempts": 2, "bogus": 1}),
    ("numprocesses", -1),
    ("graceful_timeout", -0.5),
    ("name", ""),
    ("cmd", ""),
    ("stdout_logfile", ""),
    ("logfile_buffer_bytes", 0),
]
BAD_VALUES = [  # the right types, values a job cannot have
    ("name", "a/b"),
    ("name", "has space"),
    ("name", ".hidden"),
    ("args", "'unterminated"),
    ("env", {"A=B": "x"}),
    ("env", {"": "x"}),
    ("flapping", "a b c"),
    ("flapping", [1, 2]),
    ("redirect_output", [""]),
    ("custom_streams", ["a/b"]),
]


def test_every_job_config_property_gets_a_wrong_type_case():
    covered = {param.values[0] for param in WRONG_TYPES}
    assert covered == set(JOB_CONFIG["properties"]), set(JOB_CONFIG["properties"]) - covered


def _load_body(**fields: Any) -> dict[str, Any]:
    return {"name": "intruder", "cmd": SLEEP, "numprocesses": 1, **fields}


def _unload_intruder(daemon: Gafferd) -> None:
    """A failed case may have loaded the job: unload it, so it cannot disturb later cases."""
    if daemon.request("HEAD", "/jobs/default/intruder")[0] == 200:
        daemon.request("DELETE", "/jobs/default/intruder")


@pytest.fixture
def intruder_unloaded(daemon) -> Iterator[None]:
    yield
    _unload_intruder(daemon)


@pytest.mark.parametrize(("prop", "kind", "value"), WRONG_TYPES)
def test_a_wrong_type_in_a_new_job_is_a_400_naming_the_field(
    daemon, intruder_unloaded, prop, kind, value
):
    answer = check(daemon, "POST", "/jobs/default", _load_body(**{prop: value}))
    assert f"body.{prop}" in answer["reason"]


@pytest.mark.parametrize(("prop", "kind", "value"), WRONG_TYPES)
def test_a_wrong_type_in_a_new_config_is_a_400_naming_the_field(daemon, prop, kind, value):
    body = {"cmd": SLEEP, prop: value}
    answer = check(daemon, "PUT", "/jobs/default/sleeper", body)
    assert f"body.{prop}" in answer["reason"]


@pytest.mark.parametrize(("prop", "value"), WRONG_ITEMS, ids=repr)
def test_a_wrong_item_or_a_value_under_the_minimum_is_a_400(daemon, intruder_unloaded, prop, value):
    answer = check(daemon, "POST", "/jobs/default", _load_body(**{prop: value}))
    assert f"body.{prop}" in answer["reason"]


@pytest.mark.parametrize(("prop", "value"), BAD_VALUES, ids=repr)
def test_a_value_no_job_can_have_is_a_400_bad_config_on_load(
    daemon, intruder_unloaded, prop, value
):
    answer = check(daemon, "POST", "/jobs/default", _load_body(**{prop: value}), 400, "bad_config")
    assert repr(prop) in answer["reason"]


@pytest.mark.parametrize(
    ("prop", "value"), [case for case in BAD_VALUES if case[0] != "name"], ids=repr
)
def test_a_value_no_job_can_have_is_a_400_bad_config_on_update(daemon, prop, value):
    body = {"cmd": SLEEP, prop: value}
    answer = check(daemon, "PUT", "/jobs/default/sleeper", body, 400, "bad_config")
    assert repr(prop) in answer["reason"]


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("env", {"NUL": "a\x00b"}),
        ("env", {"A\x00B": "x"}),
        ("args", ["a\x00b"]),
        ("cwd", "/tmp\x00"),
        ("env", {"LONE": "\ud800"}),
        ("args", ["\udc80"]),
    ],
    ids=repr,
)
def test_a_config_the_os_cannot_take_is_a_400_bad_config(daemon, intruder_unloaded, prop, value):
    """NUL bytes and lone surrogates (JSON "\\ud800") cannot reach execve: refused at
    load, like a NUL in stdout_logfile (400 bad_logfile), not accepted to fail with a
    traceback at every spawn."""
    check(daemon, "POST", "/jobs/default", _load_body(**{prop: value}), 400, BAD_CONFIG)


@pytest.fixture
def fresh(tmp_path) -> Iterator[Gafferd]:
    """A gafferd of its own, for a case whose failure would leave a job no URL can name."""
    gafferd = Gafferd(tmp_path, "")
    try:
        yield gafferd.start()
        assert gafferd.stop() == 0
    finally:
        gafferd.kill()


@pytest.mark.parametrize("name", ["a\ud800", "\udfff"], ids=repr)
def test_a_job_name_that_is_not_unicode_is_a_400(fresh, name):
    """A lone surrogate (valid JSON: "\\ud800") cannot be in a URL or in the log: a job of
    that name could never be addressed, and every log line about it is lost."""
    body = {"name": name, "cmd": "/nonexistent/gaffer-test", "numprocesses": 1}
    check(fresh, "POST", "/jobs/default", body, 400, BAD_CONFIG)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/jobs/default", _load_body(bogus=1)),
        ("POST", "/jobs/default", _load_body(Cmd="x")),
        ("PUT", "/jobs/default/sleeper", {"cmd": SLEEP, "numprocess": 3}),
        ("POST", "/jobs/default/sleeper/numprocesses", {"scale": 1, "by": 2}),
        ("POST", "/jobs/default/sleeper/signal", {"signal": "HUP", "pid": 1}),
        ("POST", "/jobs/default/sleeper/commit", {"graceful_timeout": 1, "cmd": "x"}),
        ("POST", "/{sleeper}/signal", {"signal": "HUP", "all": True}),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_unknown_fields_are_a_400_naming_the_field(
    daemon, pids, intruder_unloaded, method, path, body
):
    answer = check(daemon, method, path.format(**pids), body)
    assert "unknown field" in answer["reason"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/jobs/default", {"name": "intruder"}),
        ("POST", "/jobs/default", {"name": "intruder", "cmd": None}),
        ("POST", "/jobs/default", ""),
        ("PUT", "/jobs/default/sleeper", {"name": "sleeper", "numprocesses": 3}),
        ("PUT", "/jobs/default/sleeper", ""),
        ("POST", "/jobs/default/sleeper/numprocesses", {}),
        ("POST", "/jobs/default/sleeper/signal", {}),
        ("POST", "/{sleeper}/signal", ""),
    ],
)
def test_a_missing_required_field_is_a_400(daemon, pids, intruder_unloaded, method, path, body):
    check(daemon, method, path.format(**pids), body)


def test_a_new_job_without_a_name_is_a_400(daemon):
    answer = check(daemon, "POST", "/jobs/default", {"cmd": SLEEP})
    assert "name" in answer["reason"]


def test_a_name_that_is_not_the_path_s_is_a_400_on_put(daemon):
    answer = check(daemon, "PUT", "/jobs/default/sleeper", {"name": "echo", "cmd": SLEEP})
    assert "echo" in answer["reason"]


def test_loading_a_job_that_exists_is_a_409(daemon):
    body = {"name": "sleeper", "cmd": SLEEP}
    check(daemon, "POST", "/jobs/default", body, 409, "process_conflict")


# -- unknown jobs, sessions and pids ---------------------------------------------------------

JOB_ROUTES = [
    ("HEAD", "", None),
    ("GET", "", None),
    ("PUT", "", {"cmd": SLEEP}),
    ("DELETE", "", None),
    ("GET", "/stats", None),
    ("GET", "/pids", None),
    ("GET", "/state", None),
    ("POST", "/state", "1"),
    ("GET", "/numprocesses", None),
    ("POST", "/numprocesses", {"scale": 1}),
    ("POST", "/signal", {"signal": "HUP"}),
    ("POST", "/commit", {}),
]


@pytest.mark.parametrize("job", ["default/nope", "nosuch/sleeper", "other/sleeper"])
@pytest.mark.parametrize(("method", "suffix", "body"), JOB_ROUTES)
def test_an_unknown_job_is_a_404_on_every_job_route(daemon, method, suffix, body, job):
    code = None if method == "HEAD" else "not_found"
    check(daemon, method, f"/jobs/{job}{suffix}", body, 404, code)


@pytest.mark.parametrize("path", ["/stats/default/nope", "/jobs/nosuch", "/jobs/nosuch/nope"])
def test_an_unknown_session_or_job_is_a_404_elsewhere(daemon, path):
    check(daemon, "GET", path, status=404, code="not_found")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("HEAD", "/{pid}", None),
        ("GET", "/{pid}", None),
        ("DELETE", "/{pid}", None),
        ("POST", "/{pid}/signal", {"signal": "HUP"}),
        ("GET", "/{pid}/stats", None),
        ("POST", "/streams/{pid}/stdin", "hello\n"),
        ("GET", "/streams/{pid}/stdout", None),
        ("GET", "/streams/{pid}/.", None),
    ],
)
@pytest.mark.parametrize("pid", [UNKNOWN_PID, "0", "00", str(10**30)])
def test_an_unknown_pid_is_a_404_on_every_pid_route(daemon, method, path, body, pid):
    code = None if method == "HEAD" else "not_found"
    check(daemon, method, path.format(pid=pid), body, 404, code)


@pytest.mark.parametrize("path", ["/{pid}", "/{pid}/stats", "/streams/{pid}/stdout"])
def test_a_pid_too_long_for_an_int_is_still_an_unknown_pid(daemon, path):
    """The routes take any run of digits as a pid: 5000 of them name no process (404),
    they are not "not a number" (400)."""
    check(daemon, "GET", path.format(pid="9" * 5000), status=404, code="not_found")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/streams/abc/stdin", "x"),
        ("GET", "/streams/abc/stdout", None),
        ("POST", "/streams/-1/stdin", "x"),
        ("POST", "/streams/1.0/stdin", "x"),
        ("POST", "/streams/%31/stdin", "x"),
        ("GET", "/abc", None),
        ("DELETE", "/-1", None),
        ("POST", "/1e3/signal", {"signal": "HUP"}),
        ("GET", "/0x1/stats", None),
        ("GET", "/%C2%B2", None),  # "²" is a digit to str.isdigit, not to the routes
    ],
)
def test_a_pid_that_is_not_a_number_is_a_404(daemon, method, path, body):
    check(daemon, method, path, body, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/jobs/a.b", None),
        ("POST", "/jobs/a.b", {"name": "intruder", "cmd": SLEEP}),
        ("POST", "/jobs/a%2Eb", {"name": "intruder", "cmd": SLEEP}),
        ("POST", "/jobs/%2E", {"name": "intruder", "cmd": SLEEP}),
        ("GET", "/jobs/default.x/sleeper", None),
        ("DELETE", "/jobs/default.sleeper", None),
        ("DELETE", "/jobs/a%2Eb/sleeper", None),
        ("POST", "/jobs/default%2E/sleeper/state", "0"),
        ("GET", "/stats/a.b/sleeper", None),
    ],
)
def test_a_session_id_with_a_dot_is_a_404(daemon, intruder_unloaded, method, path, body):
    check(daemon, method, path, body, 404, "not_found")


# -- bodies too large --------------------------------------------------------------------------


def _send(
    gafferd: Gafferd, method: str, path: str, body: Any, chunked: bool = False
) -> tuple[int, Any]:
    """Send a body gafferd may refuse before reading it all: read its answer anyway."""
    conn = UnixHTTPConnection(gafferd.socket, timeout=30)
    try:
        try:
            headers = {"Content-Type": "application/json"}
            conn.request(method, path, body=body, headers=headers, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered (and closed) early: the answer is there to read
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode(errors="replace")


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    piece = b'{"name": "big", "cmd": "' + b"x" * size
    sent = 0
    while sent < total:
        yield piece[: min(size, total - sent)]
        sent += size


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/jobs/default"),
        ("PUT", "/jobs/default/sleeper"),
        ("POST", "/jobs/default/sleeper/state"),
        ("POST", "/streams/{echo}/stdin"),
        ("GET", "/jobs"),
    ],
)
def test_a_2mb_body_is_a_413(daemon, pids, method, path):
    before = snapshot(daemon)
    offsets = log_offsets(daemon)
    status, answer = _send(daemon, method, path.format(**pids), b"1" * (2 * MB))
    assert_error(status, answer, 413, "too_large", f"{method} {path} 2 MB")
    assert snapshot(daemon) == before
    assert_no_traceback(daemon, offsets, f"{method} {path} 2 MB")
    assert daemon.request("GET", "/ping") == (200, "OK")


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/jobs/default"), ("POST", "/streams/{echo}/stdin")]
)
def test_a_chunked_body_over_the_limit_is_a_413(daemon, pids, method, path):
    """No Content-Length: gafferd counts the chunks as they come."""
    before = snapshot(daemon)
    offsets = log_offsets(daemon)
    status, answer = _send(daemon, method, path.format(**pids), _chunks(2 * MB), chunked=True)
    assert_error(status, answer, 413, "too_large", f"{method} {path} chunked 2 MB")
    assert snapshot(daemon) == before
    assert_no_traceback(daemon, offsets, f"{method} {path} chunked 2 MB")


def test_a_chunked_body_over_the_hard_limit_is_refused_without_harm(daemon):
    """Beyond the hard cap (16 MiB) gafferd may close the connection instead of answering."""
    before = snapshot(daemon)
    offsets = log_offsets(daemon)
    try:
        status, answer = _send(daemon, "POST", "/jobs/default", _chunks(24 * MB), chunked=True)
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
        pass
    else:
        assert_error(status, answer, 413, "too_large", "chunked 24 MB")
    assert daemon.request("GET", "/ping") == (200, "OK")
    assert snapshot(daemon) == before
    assert_no_traceback(daemon, offsets, "chunked 24 MB")


# -- signals, scale, state, feeds ------------------------------------------------------------

BAD_SIGNAL_NAMES = ["FOO", "SIGFOO", "", "  ", "SIG", "HUP2", "٣", "\x00", "-1", "99999"]
BAD_SIGNAL_NUMBERS = [0, -1, 999, 65, 2**31, 10**30]
SIGNAL_ROUTES = ["/jobs/default/sleeper/signal", "/{sleeper}/signal"]


@pytest.mark.parametrize("sig", BAD_SIGNAL_NAMES + BAD_SIGNAL_NUMBERS, ids=repr)
@pytest.mark.parametrize("path", SIGNAL_ROUTES)
def test_an_invalid_signal_is_a_400_bad_signal(daemon, pids, path, sig):
    check(daemon, "POST", path.format(**pids), {"signal": sig}, 400, "bad_signal")


@pytest.mark.parametrize("path", SIGNAL_ROUTES)
def test_a_signal_number_too_long_for_an_int_is_a_400_bad_signal(daemon, pids, path):
    check(daemon, "POST", path.format(**pids), {"signal": "9" * 5000}, 400, "bad_signal")


@pytest.mark.parametrize("sig", [1.5, True, None, ["HUP"], {"name": "HUP"}], ids=repr)
@pytest.mark.parametrize("path", SIGNAL_ROUTES)
def test_a_signal_of_the_wrong_type_is_a_400(daemon, pids, path, sig):
    answer = check(daemon, "POST", path.format(**pids), {"signal": sig}, 400, "bad_request")
    assert "body.signal" in answer["reason"]


@pytest.mark.parametrize(
    "scale", ["*3", "", "abc", "+", "-", "=", "+-1", "3.5", "1e3", "٣", "=٣", "0x3"], ids=repr
)
def test_a_bad_scale_string_is_a_400_bad_operation(daemon, scale):
    path = "/jobs/default/sleeper/numprocesses"
    check(daemon, "POST", path, {"scale": scale}, 400, "bad_operation")


def test_a_scale_too_long_for_an_int_is_a_400_bad_operation(daemon):
    path = "/jobs/default/sleeper/numprocesses"
    check(daemon, "POST", path, {"scale": "=" + "9" * 5000}, 400, ("bad_operation", "bad_request"))


@pytest.mark.parametrize("scale", [1.5, True, False, None, [1], {"n": 1}], ids=repr)
def test_a_scale_of_the_wrong_type_is_a_400(daemon, scale):
    path = "/jobs/default/sleeper/numprocesses"
    answer = check(daemon, "POST", path, {"scale": scale}, 400, "bad_request")
    assert "body.scale" in answer["reason"]


@pytest.mark.parametrize(
    "body", ["3", "", "begin", "-1", "01", "1 1", "true", '{"state": 1}', b"\xff\xfe"], ids=repr
)
def test_a_bad_state_is_a_400(daemon, body):
    check(daemon, "POST", "/jobs/default/sleeper/state", body, 400, "bad_request")


@pytest.mark.parametrize("graceful_timeout", [-1, "10", True, [1]], ids=repr)
def test_a_bad_commit_body_is_a_400(daemon, graceful_timeout):
    body = {"graceful_timeout": graceful_timeout}
    check(daemon, "POST", "/jobs/default/sleeper/commit", body, 400, "bad_request")


@pytest.mark.parametrize("env", [{"NUL": "a\x00b"}, {"A\x00B": "x"}, {"LONE": "\ud800"}], ids=repr)
def test_a_commit_env_the_os_cannot_take_is_a_400(daemon, env):
    """The one-off process cannot be spawned with a NUL or a lone surrogate in its
    environment: bad input (400), not an internal error."""
    check(daemon, "POST", "/jobs/default/sleeper/commit", {"env": env}, 400, BAD_CONFIG)


FEED_ROUTES = ["/watch", "/watch/job", "/watch/job/default/sleeper", "/stats/default/sleeper"]
BAD_FEEDS = ["feed=", "feed=poll", "feed=LONGPOLL", "feed=longpoll&heartbeat=abc"]
BAD_HEARTBEATS = [f"heartbeat={value}" for value in ("-1", "nan", "inf", "3601", "1s")]


@pytest.mark.parametrize("query", BAD_FEEDS + BAD_HEARTBEATS)
@pytest.mark.parametrize("path", [*FEED_ROUTES, "/streams/{echo}/stdout"])
def test_a_bad_feed_or_heartbeat_is_a_400(daemon, pids, path, query):
    if path.startswith("/stats/") and not query.startswith("feed="):
        query = "feed=continuous&" + query  # without a feed, /stats ignores heartbeat
    check(daemon, "GET", f"{path.format(**pids)}?{query}", status=400, code="bad_request")


# -- streams ---------------------------------------------------------------------------------


def test_stdin_of_a_job_without_redirect_input_is_a_409(daemon, pids):
    path = f"/streams/{pids['sleeper']}/stdin"
    check(daemon, "POST", path, "hello\n", 409, "not_redirected")


# gafferd captures what a job neither redirects nor logs as "stdout" and "stderr"
# (docs/output.md): those labels exist on every process of gafferd
@pytest.mark.parametrize(
    ("pid", "label"),
    [("echo", "err"), ("echo", "nolabel"), ("echo", "out"), ("sleeper", "output")],
)
def test_an_unknown_output_label_is_a_404_stream_not_found(daemon, pids, pid, label):
    check(daemon, "GET", f"/streams/{pids[pid]}/{label}", status=404, code="stream_not_found")


# -- methods -----------------------------------------------------------------------------------

NOT_ALLOWED = [
    ("DELETE", "/jobs"),
    ("PUT", "/pids"),
    ("POST", "/ping"),
    ("DELETE", "/sessions"),
    ("PUT", "/jobs/default"),
    ("POST", "/jobs/default/sleeper"),
    ("PATCH", "/jobs/default/sleeper"),
    ("DELETE", "/jobs/default/sleeper/numprocesses"),
    ("GET", "/jobs/default/sleeper/signal"),
    ("GET", "/jobs/default/sleeper/commit"),
    ("PUT", "/{sleeper}"),
    ("GET", "/{sleeper}/signal"),
    ("GET", "/streams/{echo}/stdin"),
    ("POST", "/streams/{echo}/stdout"),
    ("DELETE", "/openapi.json"),
]


@pytest.mark.parametrize(("method", "path"), NOT_ALLOWED)
def test_a_method_the_route_does_not_have_is_a_405(daemon, pids, method, path):
    body = {"cmd": SLEEP} if method in ("POST", "PUT", "PATCH") else None
    check(
        daemon,
        method,
        path.format(**pids),
        body,
        405,
        "method_not_allowed",
        nonempty_reason=False,
    )


@pytest.mark.parametrize(
    "path", ["/channel", "/{sleeper}/channel", "/{echo}/channel/stdout", "/channel?x=1"]
)
def test_a_websocket_route_without_an_upgrade_is_a_json_error(daemon, pids, path):
    """A plain GET on a WebSocket route is bad input: a 4xx, and JSON like every error."""
    before = snapshot(daemon)
    status, answer = daemon.request("GET", path.format(**pids))
    assert 400 <= status < 500, (status, answer)
    assert isinstance(answer, dict), f"GET {path}: {status} {answer!r}: not JSON"
    assert isinstance(answer.get("error"), str), answer
    assert isinstance(answer.get("reason"), str) and answer["reason"], answer
    assert snapshot(daemon) == before


@pytest.mark.parametrize(
    "path",
    [
        "/jobs",
        "/jobs/default",
        "/jobs/default/sleeper",
        "/jobs/default/sleeper/signal",
        "/{sleeper}",
        "/{sleeper}/stats",
        "/streams/{echo}/stdin",
        "/users/admin",
    ],
)
def test_a_cors_pre_flight_is_a_204_on_every_route(daemon, pids, path):
    """OPTIONS (base.py: "CORS pre-flight: 204") on a route with path parameters too."""
    before = snapshot(daemon)
    offsets = log_offsets(daemon)
    status, answer = daemon.request("OPTIONS", path.format(**pids))
    assert_no_traceback(daemon, offsets, f"OPTIONS {path}: {status} {answer!r}")
    assert status == 204, (status, answer)
    assert snapshot(daemon) == before


def test_a_405_says_why_in_its_reason(daemon):
    """Every error has a reason for a person; the 405 of a route says so too."""
    check(daemon, "DELETE", "/jobs", status=405, code="method_not_allowed")


# -- keys --------------------------------------------------------------------------------------

KEYED_ROUTES = [
    ("GET", "/jobs", None),
    ("GET", "/jobs/default/sleeper", None),
    ("DELETE", "/jobs/default/sleeper", None),
    ("POST", "/jobs/default", {"name": "intruder", "cmd": SLEEP}),
    ("PUT", "/jobs/default/sleeper", {"cmd": SLEEP, "numprocesses": 5}),
    ("POST", "/jobs/default/sleeper/numprocesses", {"scale": 3}),
    ("POST", "/jobs/default/sleeper/state", "0"),
    ("POST", "/jobs/default/sleeper/signal", {"signal": "KILL"}),
    ("POST", "/jobs/default/sleeper/commit", {}),
    ("DELETE", "/{sleeper}", None),
    ("POST", "/{sleeper}/signal", {"signal": "KILL"}),
    ("POST", "/streams/{echo}/stdin", "hello\n"),
    ("GET", "/keys", None),
    ("POST", "/users", {"username": "eve", "password": "pw"}),
]


@pytest.fixture(scope="module")
def keyed_pids(keyed) -> dict[str, str]:
    gafferd, key = keyed
    found = {}
    for name, job in (("sleeper", "default/sleeper"), ("echo", "default/echo")):
        status, answer = gafferd.request("GET", f"/jobs/{job}/pids", headers={"X-Api-Key": key})
        assert status == 200 and answer["pids"], answer
        found[name] = str(answer["pids"][0])
    return found


@pytest.fixture(scope="module")
def read_only_key(keyed) -> str:
    gafferd, key = keyed
    body = {"permissions": {"read": ["default"]}, "label": "read only"}
    status, answer = gafferd.request("POST", "/keys", body, headers={"X-Api-Key": key})
    assert status == 201, answer
    return answer["api_key"]


@pytest.mark.parametrize(("method", "path", "body"), KEYED_ROUTES)
def test_no_key_is_a_401_and_changes_nothing(keyed, keyed_pids, method, path, body):
    gafferd, key = keyed
    admin = {"X-Api-Key": key}
    check(gafferd, method, path.format(**keyed_pids), body, 401, "unauthorized", {}, admin)


@pytest.mark.parametrize("bad_key", ["gk_wrong", "x", "gk_" + "A" * 43, " "], ids=repr)
@pytest.mark.parametrize(("method", "path", "body"), KEYED_ROUTES)
def test_a_bad_key_is_a_403_and_changes_nothing(keyed, keyed_pids, method, path, body, bad_key):
    gafferd, key = keyed
    headers = {"X-Api-Key": bad_key}
    admin = {"X-Api-Key": key}
    expected = (401, "unauthorized") if not bad_key.strip() else (403, "forbidden")
    check(gafferd, method, path.format(**keyed_pids), body, *expected, headers, admin)


@pytest.mark.parametrize(
    ("method", "path", "body"), [route for route in KEYED_ROUTES if route[0] != "GET"]
)
def test_a_read_only_key_may_not_change_anything(
    keyed, keyed_pids, read_only_key, method, path, body
):
    gafferd, key = keyed
    headers = {"X-Api-Key": read_only_key}
    admin = {"X-Api-Key": key}
    check(gafferd, method, path.format(**keyed_pids), body, 403, "forbidden", headers, admin)


def _accounts(gafferd: Gafferd, key: str) -> tuple[Any, Any]:
    admin = {"X-Api-Key": key}
    return gafferd.request("GET", "/keys", headers=admin), gafferd.request(
        "GET", "/users", headers=admin
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/keys", "{bad", 400, "invalid_json"),
        ("POST", "/keys", "[]", 400, "bad_request"),
        ("POST", "/keys", {}, 400, "bad_request"),
        ("POST", "/keys", {"permissions": {"read": "default"}}, 400, "bad_request"),
        ("POST", "/keys", {"permissions": {"root": True}}, 400, "bad_request"),
        ("POST", "/keys", {"permissions": {}, "ttl": 0}, 400, "bad_request"),
        ("POST", "/keys", {"permissions": {}, "key": "mine"}, 400, "bad_request"),
        ("POST", "/users", {"username": "eve"}, 400, "bad_request"),
        ("POST", "/users", {"username": "", "password": "pw"}, 400, "bad_request"),
        ("POST", "/users", {"username": "e", "password": "p", "user_type": 2}, 400, "bad_request"),
        ("POST", "/users", {"username": "admin", "password": "pw"}, 409, "conflict"),
        ("PUT", "/users/admin", {"password": ""}, 400, "bad_request"),
        ("PUT", "/users/admin/password", {}, 400, "bad_request"),
        ("PUT", "/users/admin/key", {"key": 3}, 400, "bad_request"),
        ("PUT", "/users/nobody/password", {"password": "pw"}, 404, "not_found"),
        ("GET", "/users/nobody", None, 404, "not_found"),
        ("DELETE", "/users/nobody", None, 404, "not_found"),
        ("GET", "/keys/nope", None, 404, "not_found"),
        ("DELETE", "/keys/nope", None, 404, "not_found"),
    ],
)
def test_bad_account_requests(keyed, method, path, body, status, code):
    gafferd, key = keyed
    before = _accounts(gafferd, key)
    check(gafferd, method, path, body, status, code, {"X-Api-Key": key}, {"X-Api-Key": key})
    assert _accounts(gafferd, key) == before


@pytest.mark.parametrize(
    ("authorization", "status", "code"),
    [
        (None, 401, "unauthorized"),
        ("Bearer x", 401, "unauthorized"),
        ("Basic", 401, "unauthorized"),
        ("Basic !!!notbase64", 400, "bad_request"),
        ("Basic " + base64.b64encode(b"\xff\xfe:pw").decode(), 400, "bad_request"),
        ("Basic " + base64.b64encode(b"admin:wrong").decode(), 401, "unauthorized"),
        ("Basic " + base64.b64encode(b"nobody:pw").decode(), 401, "unauthorized"),
    ],
)
def test_bad_credentials_on_auth(keyed, authorization, status, code):
    gafferd, key = keyed
    headers = {} if authorization is None else {"Authorization": authorization}
    before = _accounts(gafferd, key)
    check(gafferd, "GET", "/auth", None, status, code, headers, {"X-Api-Key": key})
    assert _accounts(gafferd, key) == before


# -- at the end --------------------------------------------------------------------------------


def test_after_all_of_that_gafferd_is_healthy_and_logged_no_traceback(daemon, keyed):
    for gafferd, headers in ((daemon, {}), (keyed[0], {"X-Api-Key": keyed[1]})):
        assert gafferd.proc.poll() is None
        assert gafferd.request("GET", "/ping") == (200, "OK")
        assert gafferd.request("GET", "/jobs", headers=headers)[0] == 200
        assert_no_traceback(gafferd, (0, 0), "over the whole module")
        log = gafferd.log_text()
        assert not re.search(r"gaffer\.http\.access: \S+ \S+ 5\d\d ", log)
