"""Fuzzing the HTTP API of a real gafferd with requests drawn from its own description.

``/openapi.json`` is fetched once; each example picks a (path template, method) pair from
it, fills the path parameters (live pids and job names, numbers, garbage text, very long
strings, unicode, ``..``, percent escapes, sent escaped or raw), maybe a query string, a
key (admin, limited, none, garbage) and a body: one built from the operation's schema (its
property names with values of the right type, or of any type), any JSON value, truncated
JSON, or raw bytes, sometimes sent chunked. Whatever comes back:

* never a 5xx, except the one documented 500: ``spawn_error`` from ``/commit`` of a
  program that cannot start (docs/http-api.md);
* every 4xx is JSON ``{"error": str, "reason": str}``;
* gafferd stays up and logs no traceback (nor a record it failed to write);
* a GET or HEAD changes no job.

Left out: the WebSocket routes (``/channel``, ``/{pid}/channel...``) and the feeds that
never end (``GET /watch...`` and ``GET /streams/{pid}/{label}``, and ``?feed=`` on
``/stats``): a request whose garbage path lands on one of them is not sent.

Random bodies may load, change and unload jobs. Every body is made harmless before it is
sent: a ``cmd`` always points under a directory that does not exist (nothing runs),
``shell`` and ``detach`` are off, log files stay in the test's directory, and scaling a job
of the ini file (whose program does run) adds at most 2 processes. The ini file's jobs are
put back between examples, so the fuzz keeps live pids and jobs to aim at; their output is
redirected, so that what a child writes (a Python traceback of its own after a signal) is
not taken for gafferd's. gafferd stops at the end with no child left.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import psutil
import pytest
from hypothesis import HealthCheck, event, given, note, settings, strategies as st

from gaffer.http.routes import api_routes
from tests.gafferd.harness import Gafferd, UnixHTTPConnection
from tests.helpers import child_cmd, wait_until_sync

pytestmark = pytest.mark.timeout(300)

EXAMPLES = 300
NOWHERE = "/nonexistent/gaffer-fuzz/"  # every fuzzed cmd lives here: nothing can run
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
FEEDS = {"/watch", "/watch/{a}", "/watch/{a}/{b}", "/watch/{a}/{b}/{c}", "/streams/{pid}/{label}"}
BASELINE = {
    "default.sleeper": {
        "name": "sleeper",
        "cmd": child_cmd("sleep"),
        "numprocesses": 2,
        "redirect_output": ["stdout", "stderr"],
        "graceful_timeout": 1,
    },
    "default.echo": {
        "name": "echo",
        "cmd": child_cmd("echo"),
        "redirect_input": True,
        "redirect_output": ["stdout", "stderr"],
        "graceful_timeout": 1,
    },
}
INI = """
    [job:sleeper]
    cmd = {child} sleep
    numprocesses = 2
    redirect_output = stdout, stderr
    graceful_timeout = 1

    [job:echo]
    cmd = {child} echo
    redirect_input = true
    redirect_output = stdout, stderr
    graceful_timeout = 1
"""

# /openapi.json as gafferd serves it: fetched by the fixture, read by the strategies
SPEC: dict[str, Any] = {}

# tornado's own matching: each route's pattern, anchored, against the raw path
_ROUTES = [(re.compile(route.pattern + "$"), route.template) for route in api_routes()]


def routed_to(path: str) -> tuple[str | None, str | None]:
    """The route template ``path`` reaches, and the job it names (``sid.name``), if any."""
    for pattern, template in _ROUTES:
        match = pattern.match(path)
        if match:
            sid, name = match.groupdict().get("sid"), match.groupdict().get("name")
            if sid is None or name is None:
                return template, None
            return template, f"{unquote(sid, errors='replace')}.{unquote(name, errors='replace')}"
    return None, None


def excluded(template: str | None, method: str) -> bool:
    """WebSocket routes, and the feeds a GET would keep open."""
    if template is None:
        return False
    if "channel" in template.split("/"):
        return True
    return template in FEEDS and method == "GET"


# -- the gafferd under fuzz --------------------------------------------------------------------


@dataclass
class Fuzzed:
    gafferd: Gafferd
    admin: str
    limited: str
    limited_id: str
    logs: Path
    baseline: dict[str, Any] = field(default_factory=dict)
    offsets: tuple[int, int] = (0, 0)
    sync: int = 0

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self.gafferd.request(method, path, body, headers={"X-Api-Key": self.admin})


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory) -> Iterator[Fuzzed]:
    assert not os.path.exists(NOWHERE), f"the fuzz needs {NOWHERE} not to exist"
    directory = tmp_path_factory.mktemp("fuzz")
    gafferd = Gafferd(
        directory,
        f"""
        [gaffer]
        bind = unix:{directory / "gafferd.sock"}
        require_key = true
        {INI}
        """,
    )
    try:
        created = gafferd.run("--create-admin-user", "--username", "admin", "--password", "pw")
        assert created.returncode == 0, created.stderr
        admin = created.stdout.split("keep it):", 1)[1].split()[0]
        gafferd.start()
        headers = {"X-Api-Key": admin}
        wait_until_sync(
            lambda: len(gafferd.request("GET", "/pids", headers=headers)[1]["pids"]) == 3,
            what="the 3 processes of the ini file",
        )
        permissions = {"read": ["*"], "write": ["default"], "manage": ["fuzz"]}
        status, answer = gafferd.request(
            "POST", "/keys", {"permissions": permissions, "label": "limited"}, headers
        )
        assert status == 201, answer
        fuzzed = Fuzzed(
            gafferd, admin, answer["api_key"], answer["key"]["key_id"], directory / "logs"
        )
        fuzzed.logs.mkdir()
        status, spec = gafferd.request("GET", "/openapi.json")
        assert status == 200 and spec["paths"], spec
        SPEC.clear()
        SPEC.update(spec)
        for job in BASELINE:
            status, info = fuzzed.request("GET", "/jobs/" + job.replace(".", "/"))
            assert status == 200, info
            fuzzed.baseline[job] = info["config"]
        yield fuzzed
        _resume_children(gafferd)
        assert gafferd.stop() == 0  # and no child left
    finally:
        gafferd.kill()


@pytest.fixture(autouse=True)
def no_leaked_children(request):
    """conftest's check, less the module's gafferd (stopped, and checked, at the end of the
    module): the test runner has no other child."""
    yield
    mine = set()
    if "fuzzed" in request.fixturenames:
        mine.add(request.getfixturevalue("fuzzed").gafferd.pid)
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


def _resume_children(gafferd: Gafferd) -> None:
    """The fuzz may have sent SIGSTOP: a stopped child would wait out its stop timeout."""
    for child in gafferd.children():
        try:
            child.send_signal(signal.SIGCONT)
        except psutil.NoSuchProcess:
            pass


# -- strategies: pure, so that hypothesis can replay and shrink -------------------------------

# fmt: off
ODD = [
    "", ".", "..", "%", "%zz", "%00", "%2F", "%2e%2e", "%ff%fe", "%ED%A0%80", "a/b", "//",
    "~", "*", ";", "'", '"', "\\", "<script>", "-1", "+1", "1e3", "0x10", "NaN", "null", "٣",
    "²", "\u202e", "\U0001f600", "\x00", " ", "\n", "default.sleeper", "9" * 5000,
]
SPECIAL_STRINGS = [
    "", " ", "\x00", "\ud800", "\udfff", "0", "1", "2", "+1", "-1", "=0", "=1", "+", "=",
    "HUP", "SIGHUP", "kill", "STOP", "CONT", "9", "9" * 5000, "=" + "9" * 5000, "..", "/",
    "%s", "{}", "$HOME", "${NOPE}", "'", '"', "\\", "a" * 5000, "٣", "nan", "inf", "a b",
    "stdout", "stderr", ".", "default", "sleeper", "admin",
]
# fmt: on
GARBAGE = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(codec="ascii"), max_size=30),
    st.sampled_from(ODD),
    st.lists(st.sampled_from(ODD[:-1]), min_size=2, max_size=5).map("".join),
    st.text(st.characters(codec="utf-8"), min_size=200, max_size=2000),
)
WORD = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
RAW_SAFE = "/%.~*;,'\"<>\\!$&()+=:@[]{}|^`"  # sent as they are; the rest percent-escaped
ESCAPED, RAW = "escaped", "raw"


@dataclass(frozen=True)
class Live:
    """A live value (a pid, a session, a job name...), picked when the request is sent, as
    they change: the index, modulo how many there are then. ``of="job"``: the session or
    the name of one loaded job, the same for both parameters."""

    index: int
    of: str = ""


@dataclass
class Plan:
    template: str
    method: str
    params: list[tuple[str, Live | str, str]]  # (name, value, ESCAPED or RAW)
    query: dict[str, str] | None
    key: str  # "admin", "limited", "none" or "garbage:<the key sent>"
    authorization: str | None
    body: bytes | None
    body_kind: str
    chunked: bool


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for template, item in spec["paths"].items():
        for method, operation in item.items():
            if "WebSocket" in operation.get("description", ""):
                continue
            if excluded(template, method.upper()):
                continue
            # the operations that read a body get more of the examples
            weight = 3 if "requestBody" in operation else 1
            found += [(template, method.upper(), operation)] * weight
    return found


def _property_names(spec: dict[str, Any]) -> list[str]:
    names = set()
    for schema in spec["components"]["schemas"].values():
        names.update(schema.get("properties", {}))
    return sorted(names)


def json_values(keys: list[str]) -> st.SearchStrategy[Any]:
    """Any JSON value (NaN and infinities too: Python's json reads them), its objects'
    keys now and then the property names of the schemas."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=30)
        | st.sampled_from(SPECIAL_STRINGS)
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8) | st.sampled_from(keys), children, max_size=5)
        ),
        max_leaves=12,
    )


def from_schema(
    schema: dict[str, Any],
    components: dict[str, Any],
    anything: st.SearchStrategy[Any],
    wild: bool,
) -> st.SearchStrategy[Any]:
    """Values shaped by ``schema``: its property names with values of the right type;
    ``wild``: now and then a value of any type, or an unknown property."""

    def shaped(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
        return from_schema(schema, components, anything, wild)

    if "$ref" in schema:
        return shaped(components[schema["$ref"].rsplit("/", 1)[1]])
    if "oneOf" in schema:
        return st.one_of([shaped(option) for option in schema["oneOf"]])
    kinds = schema.get("type")
    if kinds is None:
        return anything
    kinds = [kinds] if isinstance(kinds, str) else kinds
    low = schema.get("minLength", 0) if "string" in kinds else schema.get("minimum", -3)
    options = []
    for kind in kinds:
        if "enum" in schema:
            options.append(st.sampled_from(schema["enum"]))
        elif kind == "object" and "properties" in schema:
            properties = {}
            for name, prop in schema["properties"].items():
                value = shaped(prop)
                if name in ("name", "username", "password", "label"):
                    value = WORD | value
                properties[name] = st.one_of(*[value] * 3, anything) if wild else value
            needed = [*schema.get("required", ()), *([] if wild else ["name", "username"])]
            required = {name: properties[name] for name in needed if name in properties}
            optional = {k: v for k, v in properties.items() if k not in required}
            options.append(st.fixed_dictionaries(required, optional=optional))
            if wild:
                options.append(st.fixed_dictionaries({}, optional=properties))
                options.append(
                    st.fixed_dictionaries({**required, "unknown": anything}, optional=optional)
                )
        elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
            item = shaped(schema["additionalProperties"])
            names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True) | st.text(max_size=8)
            options.append(st.dictionaries(names, item, max_size=4))
        elif kind == "object":
            options.append(st.dictionaries(st.text(max_size=8), anything, max_size=4))
        elif kind == "array":
            item = shaped(schema.get("items", {}))
            options.append(st.lists(item, max_size=5))
        elif kind == "string":
            text = st.one_of(st.text(max_size=20), *[st.sampled_from(SPECIAL_STRINGS)] * 2)
            options.append(text if wild else text.filter(lambda t: len(t) >= low))
        elif kind in ("integer", "number"):
            floor = {} if wild else {"min_value": low}
            number = st.integers(**floor) if kind == "integer" else st.floats(**floor)
            options.append(st.integers(low, low + 5) | number)
        elif kind == "boolean":
            options.append(st.booleans())
        elif kind == "null":
            options.append(st.none())
    return st.one_of(options) if options else anything


@st.composite
def path_value(draw: st.DrawFn, fixed: list[str], numbers: bool) -> tuple[Live | str, str]:
    """A path parameter: a live value, a fixed one, a number, or garbage; sent
    percent-escaped, or raw (so '/', '%' and '..' reach the router as they are)."""
    pool: list[st.SearchStrategy[Live | str]] = [st.builds(Live, st.integers(0, 999))] * 3
    if fixed:
        pool.append(st.sampled_from(fixed))
    if numbers:
        pool += [st.integers(0, 40).map(str), st.integers(10**9, 10**40).map(str)]
    return draw(st.one_of(*pool, GARBAGE)), draw(st.sampled_from([ESCAPED, RAW]))


@st.composite
def bodies(draw: st.DrawFn, operation: dict[str, Any]) -> tuple[bytes | None, str]:
    """(raw body, what kind of body)."""
    components = SPEC["components"]["schemas"]
    anything = json_values(_property_names(SPEC))
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        choices = ["schema"] * 3 + ["wild"] * 3 + ["json"] * 2 + ["bytes", "truncated", "none"]
    elif "text/plain" in content:
        choices = ["text"] * 4 + ["json", "bytes", "none"]
    else:
        choices = ["none"] * 8 + ["json", "bytes"]
    kind = draw(st.sampled_from(choices))
    if kind == "none":
        return None, kind
    if kind == "bytes":
        return draw(st.binary(max_size=300)), kind
    if kind == "text":
        text = draw(
            st.sampled_from(["0", "1", "2", " 1\n", '"2"', "3", "-1"])
            | st.text(max_size=50)
            | st.sampled_from(SPECIAL_STRINGS)
        )
        return text.encode(errors="surrogatepass"), kind
    if kind == "json":
        value = draw(anything)
    else:
        schema = content["application/json"]["schema"]
        value = draw(from_schema(schema, components, anything, wild=kind != "schema"))
    raw = json.dumps(value).encode()
    if kind == "truncated" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    return raw, kind


@st.composite
def _plans(draw: st.DrawFn) -> Plan:
    template, method, operation = draw(st.sampled_from(operations(SPEC)))
    if draw(st.integers(0, 3)) == 0:  # any method: a 405, a CORS pre-flight (OPTIONS)...
        method = draw(st.sampled_from(METHODS))
    fixed = {
        "sid": ["default", "fuzz", "other"],
        "name": ["sleeper", "echo", "nope"],
        "key": ["nope"],
        "username": ["admin", "fuzzer"],
    }
    params = []
    names = re.findall(r"\{(\w+)\}", template)
    job = None
    if "sid" in names and "name" in names and draw(st.booleans()):
        job = Live(draw(st.integers(0, 999)), of="job")  # a job that exists, mostly
    for name in names:
        if job is not None and name in ("sid", "name"):
            params.append((name, job, ESCAPED))
            continue
        value, mode = draw(path_value(fixed.get(name, []), numbers=name == "pid"))
        params.append((name, value, mode))
    query = None
    if draw(st.integers(0, 6)) == 0:
        keys = st.text(max_size=10).filter(lambda key: key not in ("feed", "follow"))
        query = draw(st.dictionaries(keys, st.text(max_size=20), max_size=4))
    key = draw(st.sampled_from(["admin"] * 15 + ["limited"] * 2 + ["none", "garbage"]))
    if key == "garbage":  # visible ASCII: anything else is a malformed HTTP message
        key += ":" + draw(st.text(st.characters(min_codepoint=33, max_codepoint=126)))
    authorization = None
    if template == "/auth" and draw(st.booleans()):
        user = draw(st.sampled_from(["admin:pw", "admin:nope", "nobody:x", ":"]) | st.text())
        token = base64.b64encode(user.encode(errors="surrogatepass")).decode()
        authorization = draw(
            st.sampled_from([f"Basic {token}", "Basic", "Basic !!", f"Bearer {token}"])
        )
    body, body_kind = draw(bodies(operation))
    chunked = draw(st.integers(0, 9)) == 0 and body is not None
    return Plan(template, method, params, query, key, authorization, body, body_kind, chunked)


def plans() -> st.SearchStrategy[Plan]:
    return st.deferred(_plans)  # once the fixture has fetched SPEC


# -- making a plan a request ----------------------------------------------------------------


def make_harmless(body: bytes | None, logs: Path, runs: bool) -> bytes | None:
    """What a body may not do, whatever the route: run anything, outlive gafferd, write
    outside the test's directory, or fork without bound (``runs``: the target is a job of
    the ini file, whose program does run; fuzzed jobs run nothing, they may scale freely)."""
    if body is None:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return body  # not JSON: no route will read it as a job or a scale
    if not isinstance(data, dict):
        return body
    if isinstance(data.get("cmd"), str):
        data["cmd"] = NOWHERE + data["cmd"]
    for flag in ("shell", "detach"):
        if data.get(flag) is True:
            data[flag] = False
    for name in ("stdout_logfile", "stderr_logfile"):
        if isinstance(data.get(name), str) and data[name]:
            data[name] = str(logs / data[name].replace("/", "_"))
    if "scale" in data and runs:
        data["scale"] = _small_scale(data["scale"])
    timeout = data.get("graceful_timeout")
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 2:
        data["graceful_timeout"] = 2
    return json.dumps(data).encode()


def _small_scale(scale: Any) -> Any:
    """A scale that adds at most 2 processes (removing and setting to 0 stay as drawn)."""
    if isinstance(scale, bool):
        return scale
    if isinstance(scale, int):
        return min(scale, 2)
    if isinstance(scale, str):
        text = scale.strip()
        op, digits = (text[0], text[1:]) if text and text[0] in "+-=" else ("+", text)
        digits = digits.strip()
        many = digits.isascii() and digits.isdigit() and (len(digits) > 3 or int(digits) > 2)
        if op != "-" and many:
            return (op if text[:1] in ("+", "=") else "") + "2"
    return scale


def build(plan: Plan, fuzzed: Fuzzed, live: dict[str, list[str]]) -> tuple[str, dict]:
    path = plan.template
    for name, value, mode in plan.params:
        if isinstance(value, Live) and value.of == "job":
            jobs = live["job"] or ["default.nope"]
            value = jobs[value.index % len(jobs)].split(".", 1)[0 if name == "sid" else 1]
        elif isinstance(value, Live):
            values = live.get(name) or ["1"]
            value = values[value.index % len(values)]
        safe = "" if mode == ESCAPED else RAW_SAFE
        path = path.replace("{" + name + "}", quote(value, safe=safe, errors="surrogatepass"), 1)
    if plan.query is not None:
        path += "?" + urlencode(plan.query, errors="surrogatepass")
    keys = {"admin": fuzzed.admin, "limited": fuzzed.limited, "none": None}
    key = keys[plan.key] if plan.key in keys else plan.key.split(":", 1)[1]
    headers = {} if key is None else {"X-Api-Key": key}
    if plan.authorization is not None:
        headers["Authorization"] = plan.authorization
    return path, headers


def send(
    fuzzed: Fuzzed, method: str, path: str, body: bytes | None, headers: dict, chunked: bool
) -> tuple[int, dict[str, str], bytes]:
    conn = UnixHTTPConnection(fuzzed.gafferd.socket, timeout=15)
    try:
        payload: Any = body
        if chunked and body is not None:
            payload = iter([body[: len(body) // 2], body[len(body) // 2 :]])
        try:
            conn.request(method, path, body=payload, headers=headers, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered before the whole body was read: the answer is there
        response = conn.getresponse()
        raw = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, raw
    finally:
        conn.close()


def restore(fuzzed: Fuzzed) -> dict[str, list[str]]:
    """Put the ini file's jobs back as they were (config, target, started, no one-off
    process), unload the fuzz's jobs once there are many; the live values of the path
    parameters: pids, sessions, job names, a key id, a user name."""
    for job, config in BASELINE.items():
        sid, name = job.split(".")
        status, info = fuzzed.request("GET", f"/jobs/{sid}/{name}")
        pristine = (
            status == 200
            and info["config"] == fuzzed.baseline[job]
            and not info["stopped"]
            and info["numprocesses"] == fuzzed.baseline[job]["numprocesses"]
            and info["running_out"] == 0
        )
        if pristine:
            continue
        if status == 200:
            assert fuzzed.request("DELETE", f"/jobs/{sid}/{name}")[0] == 200
        status, answer = fuzzed.request("POST", f"/jobs/{sid}", config)
        assert status == 200, (job, status, answer)
    status, answer = fuzzed.request("GET", "/jobs")
    assert status == 200, answer
    others = [job for job in answer["jobs"] if job not in BASELINE]
    if len(others) > 8:
        for job in others:
            sid, name = (quote(part, safe="", errors="surrogatepass") for part in job.split(".", 1))
            fuzzed.request("DELETE", f"/jobs/{sid}/{name}")  # some names no URL can reach
        status, answer = fuzzed.request("GET", "/jobs")
        assert status == 200, answer
    answer_jobs = sorted(answer["jobs"])
    sessions = sorted({job.split(".", 1)[0] for job in answer["jobs"]})
    names = sorted({job.split(".", 1)[1] for job in answer["jobs"]})
    status, answer = fuzzed.request("GET", "/pids")
    assert status == 200, answer
    pids = [str(pid) for pid in answer["pids"]]
    return {
        "job": [job for job in answer_jobs if job in BASELINE] * 3 + answer_jobs,
        "pid": pids,
        "sid": sessions,
        "name": names,
        "key": [fuzzed.limited_id],
        "username": ["admin"],
    }


def jobs_state(fuzzed: Fuzzed) -> Any:
    """What a GET may not change: the jobs, and the config, target and state of the ini's."""
    state = [fuzzed.request("GET", "/jobs")]
    for job in BASELINE:
        status, info = fuzzed.request("GET", "/jobs/" + job.replace(".", "/"))
        if status == 200:
            info = (info["config"], info["numprocesses"], info["stopped"])
        state.append((status, info))
    return state


def _read(path: Path, offset: int) -> bytes:
    if not path.exists():
        return b""
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read()


def new_output(fuzzed: Fuzzed) -> str:
    """What gafferd logged (or wrote to stderr) since the last call, once it has logged all
    it had to: a request to a marker path is logged after everything before it (a POST:
    reads are logged at DEBUG only)."""
    fuzzed.sync += 1
    marker = f"/fuzz-sync-{fuzzed.sync}"
    assert fuzzed.request("POST", marker)[0] == 404
    gafferd = fuzzed.gafferd
    line = f"POST {marker} 404".encode()
    wait_until_sync(lambda: line in _read(gafferd.log, fuzzed.offsets[0]), what=f"{marker}")
    log = _read(gafferd.log, fuzzed.offsets[0])
    output = _read(gafferd.dir / "gafferd.stdout", fuzzed.offsets[1])
    fuzzed.offsets = (fuzzed.offsets[0] + len(log), fuzzed.offsets[1] + len(output))
    return (log + output).decode(errors="replace")


def _excerpt(text: str, needle: str) -> str:
    start = text.rfind("\n", 0, max(text.index(needle) - 1, 0)) + 1
    return text[start:][:4000]


# -- the property ------------------------------------------------------------------------------


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
@given(plan=plans())
def test_no_request_drawn_from_the_api_description_breaks_gafferd(fuzzed, plan):
    live = restore(fuzzed)
    new_output(fuzzed)  # from here on
    method = plan.method
    path, headers = build(plan, fuzzed, live)
    target, job = routed_to(path.split("?", 1)[0])
    if excluded(target, method):
        event("not sent: a feed or a WebSocket route")
        return  # garbage made the path a feed or a WebSocket route: not fuzzed here
    body = make_harmless(plan.body, fuzzed.logs, runs=job in BASELINE)
    what = f"{method} {path[:300]} ({target or 'no route'}), {plan.body_kind} body {body!r:.300}"
    note(what)

    before = jobs_state(fuzzed) if method in ("GET", "HEAD") else None
    try:
        status, response_headers, raw = send(fuzzed, method, path, body, headers, plan.chunked)
    except (OSError, http.client.HTTPException) as exc:
        raise AssertionError(f"{what}: no answer: {exc!r}\n{new_output(fuzzed)[-3000:]}") from None
    answer = raw.decode(errors="replace")
    note(f"-> {status} {answer[:300]}")
    event(f"{status} {method} {target}")  # see them with --hypothesis-show-statistics

    output = new_output(fuzzed)
    assert fuzzed.gafferd.proc.poll() is None, f"{what}: gafferd died\n{output[-3000:]}"
    documented_500 = status == 500 and target is not None and target.endswith("/commit")
    documented_500 = documented_500 and '"spawn_error"' in answer
    assert status < 500 or documented_500, f"{what} -> {status} {answer[:300]}\n{output[-3000:]}"
    if status >= 400 and method != "HEAD":
        content_type = response_headers.get("content-type", "")
        assert content_type.startswith("application/json"), f"{what} -> {status} {answer[:300]}"
        error = json.loads(raw)
        assert isinstance(error, dict), f"{what} -> {status} {answer[:300]}"
        assert isinstance(error.get("error"), str), f"{what} -> {status} {answer[:300]}"
        assert isinstance(error.get("reason"), str), f"{what} -> {status} {answer[:300]}"
    for bad in ("Traceback", "Logging error"):
        if bad in output:
            raise AssertionError(f"{what} -> {status}; gafferd wrote:\n{_excerpt(output, bad)}")
    if before is not None:
        assert jobs_state(fuzzed) == before, f"{what}: a {method} changed the jobs"


def test_after_the_fuzz_gafferd_is_healthy(fuzzed):
    restore(fuzzed)
    assert fuzzed.gafferd.request("GET", "/ping") == (200, "OK")
    status, answer = fuzzed.request("GET", "/jobs/default/sleeper/pids")
    assert status == 200 and len(answer["pids"]) == 2, answer
    output = fuzzed.gafferd.log_text() + fuzzed.gafferd.output()
    for bad in ("Traceback", "Logging error"):
        assert bad not in output, _excerpt(output, bad)
