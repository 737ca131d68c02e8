"""API keys over HTTP, through a real gafferd with ``require_key = true``: 401 and 403,
the permission matrix of reference scenario 25 on real routes (a refused request changes
nothing), filtered lists, keys and sub-keys, users and logins (scenario 26), admin-only
job settings and the redaction of secrets.

One gafferd serves the whole module (sessions ``test`` and ``test1`` hold the jobs the
matrix is checked on); each test makes the keys and users it needs.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.gafferd.harness import Gafferd
from tests.helpers import child_argv
from tests.http.rest_helpers import (
    LONG_LIVED,
    Api,
    Response,
    admin_key_of,
    basic,
    check_no_leftovers,
    start_gafferd,
)

pytestmark = pytest.mark.timeout(60)

ADMIN_NAME, ADMIN_PASSWORD = "admin", "pw"


@dataclass
class Site:
    daemon: Gafferd
    api: Api  # no key
    admin: Api
    admin_key_id: str
    pids: dict[str, int]
    keys: dict[str, Api] = field(default_factory=dict)

    def key(self, permissions: dict[str, Any]) -> Api:
        """A client with a key of these permissions (one key per permissions)."""
        name = json.dumps(permissions, sort_keys=True)
        if name not in self.keys:
            self.keys[name] = new_key(self.admin, permissions)[0]
        return self.keys[name]

    def job_state(self, job: str) -> tuple[int, list[int], list[int]]:
        """(numprocesses, kept-alive pids, OS pids) of a job, as the admin sees it."""
        info = self.admin.get(f"/jobs/{job.replace('.', '/')}")
        assert info.status == 200, info
        pids = info.json["processes"]
        os_pids = [self.admin.get(f"/{pid}").json["os_pid"] for pid in pids]
        return info.json["numprocesses"], pids, os_pids


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    """tests/conftest.py's check, but the module's gafferd (and its jobs) live on."""
    yield
    check_no_leftovers(LONG_LIVED)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    daemon, api = start_gafferd(tmp_path_factory.mktemp("keys"), "require_key = true\n", tcp=True)
    created = daemon.run(
        "--create-admin-user", "--username", ADMIN_NAME, "--password", ADMIN_PASSWORD
    )
    assert created.returncode == 0, created.stderr
    admin = api.with_key(admin_key_of(created.stdout))
    daemon.start()
    LONG_LIVED.add(daemon.pid)
    try:
        admin_key_id = admin.get("/users/admin").json["key_id"]
        for sid, name in (("test", "test"), ("test", "other"), ("test1", "test")):
            admin.load(name, "sleep", sid=sid, redirect_input=True)
        pids = {
            job: admin.wait_pids(job, 1)[0] for job in ("test.test", "test.other", "test1.test")
        }
        yield Site(daemon, api, admin, admin_key_id, pids)
        assert daemon.stop() == 0
    finally:
        daemon.kill()
        LONG_LIVED.discard(daemon.pid)


def new_key(creator: Api, permissions: dict[str, Any], **extra: Any) -> tuple[Api, dict]:
    """A key made by ``creator``: (a client using it, its record)."""
    response = creator.post("/keys", {"permissions": permissions, **extra})
    assert response.status == 201, response
    body = response.json
    assert response.headers["X-Api-Key"] == body["api_key"]
    assert response.headers["Location"] == f"/keys/{body['key']['key_id']}"
    return creator.with_key(body["api_key"]), body["key"]


def forbidden(response: Response) -> None:
    assert response.status == 403, response
    assert response.json["error"] == "forbidden", response


def no_secret_in(response: Response, *secrets: str) -> None:
    raw = response.raw.decode()
    assert "password" not in raw and "scrypt" not in raw, raw
    for secret in secrets:
        assert secret not in raw, raw


def make_user(site: Site, username: str, password: str, key_id: str | None = None) -> None:
    body: dict[str, Any] = {"username": username, "password": password}
    if key_id is not None:
        body["key"] = key_id
    created = site.admin.post("/users", body)
    assert created.status == 201, created


# -- who is asking ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs"),
        ("GET", "/sessions"),
        ("GET", "/pids"),
        ("GET", "/jobs/test/test"),
        ("POST", "/jobs/test/test/numprocesses"),
        ("DELETE", "/jobs/test/test"),
        ("GET", "/keys"),
        ("GET", "/users"),
        ("GET", "/watch?feed=longpoll"),
        ("GET", "/stats/test/test"),
    ],
)
def test_no_key_is_401_and_an_unknown_key_403(
    site: Site, transport: str, method: str, path: str
) -> None:
    api = site.api.over(transport)
    missing = api.request(method, path, {"scale": 1} if method == "POST" else None)
    assert missing.status == 401, missing
    assert missing.json["error"] == "unauthorized"
    admin_key = site.admin.key
    assert admin_key is not None
    altered = admin_key[:-1] + ("A" if admin_key[-1] != "A" else "B")
    for key in ("gk_" + "A" * 43, "not-a-key", altered):
        forbidden(api.request(method, path, key=key))
    assert site.job_state("test.test")[0] == 1


def test_a_client_that_sends_its_whole_body_first_gets_the_401(site: Site) -> None:
    """Most clients (http.client, urllib, requests) send the whole body before they read
    the answer. gafferd refuses a request without a key from prepare(), before reading its
    body, and closes the connection at once: once the body is bigger than the socket
    buffers (500 kB here, well under the 1 MiB limit), such a client gets EPIPE instead of
    the 401."""
    config = {"name": "big", "cmd": SLEEP[0], "env": {"X": "a" * 500_000}}
    conn = site.api.connection()
    try:
        conn.request(
            "POST",
            "/jobs/test",
            body=json.dumps(config).encode(),
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        answer: Any = (response.status, json.loads(response.read())["error"])
    except OSError as exc:
        answer = repr(exc)
    finally:
        conn.close()
    assert answer == (401, "unauthorized")
    assert "test.big" not in site.admin.get("/jobs").json["jobs"]


def test_ping_and_openapi_need_no_key(site: Site) -> None:
    assert site.api.get("/ping").raw == b"OK"
    assert site.api.get("/openapi.json").status == 200


def test_welcome_and_version_need_no_key(site: Site) -> None:
    """/ and /version are public, like /ping: the reference gives them no permission, and
    /openapi.json says "Permission: none." for both."""
    spec = site.api.get("/openapi.json").json["paths"]
    assert spec["/version"]["get"]["description"] == "Permission: none."
    answers = {path: site.api.get(path).status for path in ("/", "/version")}
    assert answers == {"/": 200, "/version": 200}


# -- the permission matrix (scenario 25) ------------------------------------------------------

KEYS = {
    "read test": {"read": ["test"]},
    "write test.test+test1": {"write": ["test.test", "test1"]},
    "manage test.test": {"manage": ["test.test"]},
    "manage *": {"manage": ["*"]},
    "admin": {"admin": True},
    "nothing": {},
}
SLEEP = child_argv("sleep")
REQUESTS: dict[str, tuple[str, str, Any]] = {
    "read test.test": ("GET", "/jobs/test/test", None),
    "read test.other": ("GET", "/jobs/test/other", None),
    "read test1.test": ("GET", "/jobs/test1/test", None),
    "read session test": ("GET", "/jobs/test", None),
    "read pid of test.test": ("GET", "/{test.test}", None),
    "read pids of test1.test": ("GET", "/jobs/test1/test/pids", None),
    "stats of test1.test": ("GET", "/jobs/test1/test/stats", None),
    "stats of pid of test.other": ("GET", "/{test.other}/stats", None),
    "write stdin of test.test": ("POST", "/streams/{test.test}/stdin", "x\n"),
    "write stdin of test1.test": ("POST", "/streams/{test1.test}/stdin", "x\n"),
    "manage test.test (start)": ("POST", "/jobs/test/test/state", "1"),
    "manage test1.test (start)": ("POST", "/jobs/test1/test/state", "1"),
    "manage test.test (scale =1)": ("POST", "/jobs/test/test/numprocesses", {"scale": "=1"}),
    "manage session test (load)": (
        "POST",
        "/jobs/test",
        {"name": "test", "cmd": SLEEP[0], "args": SLEEP[1:]},
    ),
    "manage test.nope (unload)": ("DELETE", "/jobs/test/nope", None),
    "list jobs": ("GET", "/jobs", None),
    "create a key": ("POST", "/keys", {"permissions": {}}),
    "list users": ("GET", "/users", None),
    "own keys": ("GET", "/keys", None),
}
# expected status per key, in the order of KEYS
MATRIX = {
    "read test.test": (200, 200, 200, 200, 200, 403),
    "read test.other": (200, 403, 403, 200, 200, 403),
    "read test1.test": (403, 200, 403, 200, 200, 403),
    "read session test": (200, 200, 200, 200, 200, 403),
    "read pid of test.test": (200, 200, 200, 200, 200, 403),
    "read pids of test1.test": (403, 200, 403, 200, 200, 403),
    "stats of test1.test": (403, 200, 403, 200, 200, 403),
    "stats of pid of test.other": (200, 403, 403, 200, 200, 403),
    "write stdin of test.test": (403, 200, 200, 200, 200, 403),
    "write stdin of test1.test": (403, 200, 403, 200, 200, 403),
    "manage test.test (start)": (403, 403, 202, 202, 202, 403),
    "manage test1.test (start)": (403, 403, 403, 202, 202, 403),
    "manage test.test (scale =1)": (403, 403, 200, 200, 200, 403),
    # allowed: the permission passes, then the job exists already
    "manage session test (load)": (403, 403, 403, 409, 409, 403),
    # allowed: the permission passes, then there is no such job
    "manage test.nope (unload)": (403, 403, 403, 404, 404, 403),
    "list jobs": (200, 200, 200, 200, 200, 200),
    "create a key": (403, 403, 403, 403, 201, 403),
    "list users": (403, 403, 403, 403, 200, 403),
    "own keys": (200, 200, 200, 200, 200, 200),
}
CASES = [
    pytest.param(key, request, MATRIX[request][index], id=f"{key}|{request}")
    for request in REQUESTS
    for index, key in enumerate(KEYS)
]


@pytest.mark.parametrize(("key", "request_name", "expected"), CASES)
def test_permission_matrix(site: Site, key: str, request_name: str, expected: int) -> None:
    method, path, body = REQUESTS[request_name]
    for job, pid in site.pids.items():
        path = path.replace("{" + job + "}", str(pid))
    before = site.job_state("test.test")
    response = site.key(KEYS[key]).request(method, path, body)
    assert response.status == expected, response
    if expected == 403:
        forbidden(response)
    assert site.job_state("test.test") == before  # allowed or not, nothing was changed


def test_the_matrix_covers_each_right_of_scenario_25(site: Site) -> None:
    """{"read": ["test"]} reads test and test.*, nothing else; {"write": ["test.test",
    "test1"]} writes test.test and test1.*, not test; manage * is no admin."""
    reader = site.key(KEYS["read test"])
    assert reader.get("/jobs/test").json == {
        "sessionid": "test",
        "jobs": ["test.test", "test.other"],
    }
    forbidden(reader.get("/jobs/test1"))
    writer = site.key(KEYS["write test.test+test1"])
    assert writer.get("/jobs/test").json == {"sessionid": "test", "jobs": ["test.test"]}
    assert writer.get("/jobs/test1").json == {"sessionid": "test1", "jobs": ["test1.test"]}
    forbidden(writer.post(f"/streams/{site.pids['test.other']}/stdin", "x"))
    manager = site.key(KEYS["manage *"])
    forbidden(manager.post("/users", {"username": "nope", "password": "x"}))
    forbidden(manager.post("/keys", {"permissions": {"read": ["test"]}}))


# -- a refused request changes nothing --------------------------------------------------------


def test_refused_requests_change_nothing(site: Site) -> None:
    reader = site.key(KEYS["read test"])
    writer = site.key(KEYS["write test.test+test1"])
    one_job = site.key(KEYS["manage test.test"])
    before = {job: site.job_state(job) for job in site.pids}
    pid = site.pids["test.test"]

    refused = [
        reader.post("/jobs/test/test/numprocesses", {"scale": 2}),
        reader.post("/jobs/test/test/state", "0"),
        reader.post("/jobs/test/test/state", "2"),
        reader.post("/jobs/test/test/commit", {}),
        reader.delete(f"/{pid}"),
        reader.post(f"/{pid}/signal", {"signal": "TERM"}),
        writer.delete("/jobs/test/test"),
        writer.delete(f"/{site.pids['test1.test']}"),
        writer.post("/jobs/test1/test/signal", {"signal": "TERM"}),
        writer.put("/jobs/test/test", {"cmd": SLEEP[0], "args": [*SLEEP[1:], "1"]}),
        one_job.post("/jobs/test", {"name": "new", "cmd": SLEEP[0], "args": SLEEP[1:]}),
        one_job.delete("/jobs/test/other"),
        one_job.post("/jobs/test1/test/numprocesses", {"scale": 1}),
    ]
    for response in refused:
        forbidden(response)
    assert {job: site.job_state(job) for job in site.pids} == before
    assert site.admin.get("/jobs/test").json["jobs"] == ["test.test", "test.other"]
    assert site.admin.get("/jobs/test/test").json["config"]["args"] == SLEEP[1:]


# -- lists show what the key may read ---------------------------------------------------------


def test_lists_are_filtered_by_the_key(site: Site) -> None:
    reader = site.key(KEYS["read test"])
    assert reader.get("/jobs").json == {"jobs": ["test.test", "test.other"]}
    assert reader.get("/sessions").json == {"sessions": ["test"]}
    assert sorted(reader.get("/pids").json["pids"]) == sorted(
        [site.pids["test.test"], site.pids["test.other"]]
    )
    one_job = site.key({"read": ["test1.test"]})
    assert one_job.get("/jobs").json == {"jobs": ["test1.test"]}
    assert one_job.get("/sessions").json == {"sessions": ["test1"]}
    assert one_job.get("/pids").json == {"pids": [site.pids["test1.test"]]}
    nothing = site.key(KEYS["nothing"])
    assert nothing.get("/jobs").json == {"jobs": []}
    assert nothing.get("/sessions").json == {"sessions": []}
    assert nothing.get("/pids").json == {"pids": []}
    everything = site.admin.get("/jobs").json["jobs"]
    assert {"test.test", "test.other", "test1.test"} <= set(everything)


def test_watch_shows_only_the_events_of_readable_jobs(site: Site) -> None:
    reader = site.key(KEYS["read test"])
    with reader.open_stream("/watch?feed=longpoll&heartbeat=0.05") as conn:
        feed = conn.getresponse()
        assert feed.status == 200
        assert feed.readline() == b"\n"  # a heartbeat: subscribed
        for job in ("test1/test", "test/test"):
            sent = site.admin.post(f"/jobs/{job}/signal", {"signal": "CONT"})
            assert sent.status == 202, sent
        event = json.loads(feed.read())
    assert event["event"] == "job.test.test.kill" and event["name"] == "test.test"


# -- keys -------------------------------------------------------------------------------------


def test_creating_keys_needs_create_key_and_never_escalates(site: Site) -> None:
    forbidden(site.key(KEYS["read test"]).post("/keys", {"permissions": {"read": ["test"]}}))
    creator, record = new_key(site.admin, {"create_key": True, "read": ["test"]}, label="ck")
    assert record["label"] == "ck" and record["parent"] is None
    for more in (
        {"read": ["*"]},
        {"read": ["test1"]},
        {"read": ["test", "test1.test"]},
        {"write": ["test.test"]},
        {"manage": ["test"]},
        {"admin": True},
        {"create_user": True},
    ):
        forbidden(creator.post("/keys", {"permissions": more}))
    # a key makes sub-keys of itself only
    other = new_key(site.admin, {"read": ["test"]})[1]
    forbidden(creator.post("/keys", {"permissions": {}, "parent": other["key_id"]}))
    keys_before = {k["key_id"] for k in site.admin.get("/keys").json["keys"]}

    same, same_record = new_key(creator, {"create_key": True, "read": ["test"]})
    assert same_record["parent"] == record["key_id"]
    narrower, narrower_record = new_key(creator, {"read": ["test.test"]})
    assert narrower_record["permissions"]["read"] == ["test.test"]
    # a new key works at once, with its rights and no more
    assert narrower.get("/jobs/test/test").status == 200
    forbidden(narrower.get("/jobs/test/other"))
    forbidden(narrower.get("/jobs/test1/test"))
    assert same.get("/jobs/test/other").status == 200
    keys_after = {k["key_id"] for k in site.admin.get("/keys").json["keys"]}
    assert keys_after - keys_before == {same_record["key_id"], narrower_record["key_id"]}


def test_bad_key_bodies_are_400(site: Site) -> None:
    for body, code in (
        ({"permissions": {"read": ["a.*"]}}, "bad_permissions"),
        ({"permissions": {"bogus": True}}, "bad_request"),
        ({"permissions": {"read": "test"}}, "bad_request"),
        ({"permissions": {"admin": "yes"}}, "bad_request"),
        ({}, "bad_request"),
        ({"permissions": {}, "ttl": 0}, "bad_request"),
    ):
        response = site.admin.post("/keys", body)
        assert (response.status, response.json["error"]) == (400, code), (body, response)


def test_who_sees_which_keys(site: Site) -> None:
    parent, parent_record = new_key(site.admin, {"create_key": True, "read": ["test"]})
    child, child_record = new_key(parent, {"read": ["test.test"]})
    stranger, stranger_record = new_key(site.admin, {"read": ["test"]})
    ids = {name: r["key_id"] for name, r in (("p", parent_record), ("c", child_record))}

    everyone = site.admin.get("/keys")
    assert everyone.status == 200
    listed = {key["key_id"] for key in everyone.json["keys"]}
    assert {site.admin_key_id, ids["p"], ids["c"], stranger_record["key_id"]} <= listed
    mine = parent.get("/keys").json["keys"]
    assert [key["key_id"] for key in mine] == [ids["p"], ids["c"]]  # itself and sub-keys
    assert [key["key_id"] for key in child.get("/keys").json["keys"]] == [ids["c"]]
    assert [k["key_id"] for k in stranger.get("/keys").json["keys"]] == [stranger_record["key_id"]]
    for response in (everyone, parent.get("/keys"), parent.get(f"/keys/{ids['c']}")):
        assert "gk_" not in response.raw.decode()  # keys are never shown again

    one = parent.get(f"/keys/{ids['p']}")
    assert one.status == 200
    assert one.json["permissions"] == parent_record["permissions"]
    assert [key["key_id"] for key in one.json["keys"]] == [ids["c"]]
    assert parent.get(f"/keys/{ids['c']}").json["parent"] == ids["p"]
    assert parent.head(f"/keys/{ids['c']}").status == 200
    forbidden(stranger.get(f"/keys/{ids['p']}"))
    forbidden(parent.get(f"/keys/{site.admin_key_id}"))
    assert site.admin.get("/keys/0000000000000000").status == 404


def test_a_sub_key_has_no_power_over_its_parent(site: Site) -> None:
    """A sub-key holds at most its parent's rights, and no more than its own: it may not
    mint keys in its parent's name (with the parent's rights), nor delete its parent (and
    with it every sibling)."""
    parent, parent_record = new_key(site.admin, {"create_key": True, "read": ["test"]})
    child, _ = new_key(parent, {"create_key": True, "read": ["test.test"]})
    sibling, _ = new_key(parent, {"read": ["test"]})
    forbidden(child.post("/keys", {"permissions": {"read": ["test"]}}))
    refused = {
        "create a key in the parent's name": child.post(
            "/keys", {"permissions": {"read": ["test"]}, "parent": parent_record["key_id"]}
        ).status,
        "delete the parent": child.delete(f"/keys/{parent_record['key_id']}").status,
    }
    assert refused == dict.fromkeys(refused, 403)
    assert parent.get("/jobs/test/other").status == 200
    assert sibling.get("/jobs/test/other").status == 200


def test_deleting_a_key_deletes_its_sub_keys(site: Site) -> None:
    parent, parent_record = new_key(site.admin, {"create_key": True, "read": ["test"]})
    child, child_record = new_key(parent, {"create_key": True, "read": ["test.test"]})
    grandchild, grandchild_record = new_key(child, {"read": ["test.test"]})
    for key in (parent, child, grandchild):
        assert key.get("/jobs/test/test").status == 200

    # a key may delete its own sub-keys
    spare, spare_record = new_key(parent, {"read": ["test"]})
    forbidden(child.delete(f"/keys/{spare_record['key_id']}"))
    assert parent.delete(f"/keys/{spare_record['key_id']}").status == 200
    forbidden(spare.get("/jobs/test/test"))
    assert parent.get("/jobs/test/test").status == 200

    deleted = site.admin.delete(f"/keys/{parent_record['key_id']}")
    assert deleted.status == 200
    assert deleted.json["ok"] is True
    ids = [parent_record["key_id"], child_record["key_id"], grandchild_record["key_id"]]
    assert sorted(deleted.json["deleted"]) == sorted(ids)
    for key in (parent, child, grandchild):
        forbidden(key.get("/jobs/test/test"))
    for key_id in ids:
        assert site.admin.get(f"/keys/{key_id}").status == 404
    listed = {key["key_id"] for key in site.admin.get("/keys").json["keys"]}
    assert not listed & set(ids)


# -- users (scenario 26) ----------------------------------------------------------------------


def test_creating_users_needs_create_user(site: Site) -> None:
    body = {"username": "u-app", "password": "secret"}
    forbidden(site.key(KEYS["manage *"]).post("/users", body))
    creator = site.key({"create_user": True})
    created = creator.post("/users", body)
    assert created.status == 201, created
    assert created.json["user"]["user_type"] == 1
    no_secret_in(created, "secret")
    forbidden(creator.post("/users", {"username": "u-admin", "password": "x", "user_type": 0}))
    assert site.admin.get("/users/u-admin").status == 404

    duplicate = creator.post("/users", {"username": "u-app", "password": "other"})
    assert (duplicate.status, duplicate.json["error"]) == (409, "conflict")
    admin_user = site.admin.post("/users", {"username": "u-admin", "password": "x", "user_type": 0})
    assert admin_user.status == 201 and admin_user.json["user"]["user_type"] == 0
    for bad in (
        {"username": "bad name!", "password": "x"},
        {"username": "u-x", "password": ""},
        {"username": "u-x"},
        {"username": "u-x", "password": "x", "user_type": 2},
    ):
        assert site.admin.post("/users", bad).status == 400, bad


def test_users_never_show_a_password_or_its_hash(site: Site) -> None:
    make_user(site, "u-hidden", "hunter22")
    for response in (
        site.admin.get("/users/u-hidden"),
        site.admin.get("/users"),
        site.admin.put("/users/u-hidden", {"password": "hunter23", "extra": {"team": "ops"}}),
        site.admin.get("/users/u-hidden"),
    ):
        assert response.status == 200, response
        no_secret_in(response, "hunter22", "hunter23")
    user = site.admin.get("/users/u-hidden").json
    assert user["username"] == "u-hidden" and user["extra"] == {"team": "ops"}
    assert site.admin.head("/users/u-hidden").status == 200


def test_set_password_then_log_in_with_the_new_one(site: Site) -> None:
    _, record = new_key(site.admin, {"read": ["test"]})
    make_user(site, "u-pw", "old-pw", record["key_id"])
    assert site.api.get("/auth", headers=basic("u-pw", "old-pw")).status == 200
    changed = site.admin.put("/users/u-pw/password", {"password": "new-pw"})
    assert (changed.status, changed.json) == (200, {"ok": True})
    assert site.api.get("/auth", headers=basic("u-pw", "old-pw")).status == 401
    assert site.api.get("/auth", headers=basic("u-pw", "new-pw")).status == 200
    assert site.admin.put("/users/u-pw/password", {}).status == 400
    assert site.admin.put("/users/nobody/password", {"password": "x"}).status == 404


def test_auth_trades_a_password_for_a_login_key(site: Site) -> None:
    _, record = new_key(site.admin, {"read": ["test"], "write": ["test.test"]})
    make_user(site, "u-login", "secret")
    bound = site.admin.put("/users/u-login/key", {"key": record["key_id"]})
    assert (bound.status, bound.json) == (200, {"ok": True})
    assert site.admin.get("/users/u-login").json["key_id"] == record["key_id"]

    login = site.api.get("/auth", headers=basic("u-login", "secret"))
    assert login.status == 200, login
    api_key = login.json["api_key"]
    assert login.headers["X-Api-Key"] == api_key
    assert login.json["key"]["permissions"] == record["permissions"]
    assert login.json["key"]["parent"] == record["key_id"]
    assert login.json["key"]["expires"] is not None

    user = site.api.with_key(api_key)
    assert user.get("/jobs/test/other").status == 200
    assert user.post(f"/streams/{site.pids['test.test']}/stdin", "x").status == 200
    forbidden(user.get("/jobs/test1/test"))
    forbidden(user.post("/jobs/test/test/state", "0"))
    forbidden(user.post("/keys", {"permissions": {}}))
    # every login mints a new key; HEAD checks the password the same way
    again = site.api.head("/auth", headers=basic("u-login", "secret"))
    assert again.status == 200 and again.headers["X-Api-Key"] not in (None, api_key)
    # a login key is a sub-key of the user's key: deleting that key logs the user out
    assert site.admin.delete(f"/keys/{record['key_id']}").status == 200
    forbidden(user.get("/jobs/test/other"))


def test_a_user_may_change_its_own_password_only(site: Site) -> None:
    _, record = new_key(site.admin, {"read": ["test"]})
    make_user(site, "u-self", "pw1", record["key_id"])
    make_user(site, "u-neighbour", "pw1")
    me = site.api.with_key(site.api.get("/auth", headers=basic("u-self", "pw1")).json["api_key"])
    assert me.get("/users/u-self").status == 200
    assert me.put("/users/u-self/password", {"password": "pw2"}).status == 200
    assert site.api.get("/auth", headers=basic("u-self", "pw2")).status == 200
    forbidden(me.get("/users/u-neighbour"))
    forbidden(me.put("/users/u-neighbour/password", {"password": "mine"}))
    forbidden(me.delete("/users/u-neighbour"))
    forbidden(me.get("/users"))
    forbidden(me.put("/users/u-self", {"user_type": 0}))
    assert site.admin.get("/users/u-self").json["user_type"] == 1


@pytest.mark.parametrize(
    "headers",
    [
        basic("u-wrong", "wrong"),  # wrong password
        basic("u-unknown-user", "secret"),
        {},  # no credentials
        {"Authorization": "Bearer abc"},
    ],
    ids=["wrong password", "unknown user", "no credentials", "not basic"],
)
def test_auth_refusals_are_401(site: Site, headers: dict[str, str]) -> None:
    if site.admin.get("/users/u-wrong").status == 404:
        make_user(site, "u-wrong", "secret", site.admin_key_id)
    refused = site.api.get("/auth", headers=headers)
    assert (refused.status, refused.json["error"]) == (401, "unauthorized"), refused
    assert "X-Api-Key" not in refused.headers


def test_auth_refusals_say_how_to_authenticate(site: Site) -> None:
    """A 401 carries WWW-Authenticate (RFC 9110 11.6.1); /auth sets it, then loses it."""
    make_user(site, "u-realm", "secret", site.admin_key_id)
    missing = {}
    for name, headers in (("wrong password", basic("u-realm", "nope")), ("none", {})):
        refused = site.api.get("/auth", headers=headers)
        assert refused.status == 401, refused
        missing[name] = refused.headers.get("WWW-Authenticate")
    assert missing == {"wrong password": 'Basic realm="gaffer"', "none": 'Basic realm="gaffer"'}


def test_auth_of_a_user_without_a_key_is_403(site: Site) -> None:
    make_user(site, "u-keyless", "secret")
    forbidden(site.api.get("/auth", headers=basic("u-keyless", "secret")))
    token = base64.b64encode(b"\xff\xfe:secret").decode()  # not UTF-8
    malformed = site.api.get("/auth", headers={"Authorization": f"Basic {token}"})
    assert (malformed.status, malformed.json["error"]) == (400, "bad_request")


def test_deleting_a_user(site: Site) -> None:
    make_user(site, "u-gone", "secret", site.admin_key_id)
    forbidden(site.key({"read": ["*"]}).delete("/users/u-gone"))
    assert site.admin.delete("/users/u-gone").json == {"ok": True}
    assert site.admin.get("/users/u-gone").status == 404
    assert site.api.get("/auth", headers=basic("u-gone", "secret")).status == 401
    assert site.admin.get(f"/keys/{site.admin_key_id}").status == 200  # its key stays


def test_user_sub_routes_only_take_put(site: Site) -> None:
    """/users/<name>/password and /users/<name>/key are PUT only (reference 5.2, and
    /openapi.json): DELETE /users/<name>/password must not delete the user."""
    answers, survivors = {}, {}
    for route in ("password", "key"):
        for method in ("GET", "HEAD", "DELETE"):
            username = f"u-sub-{route}-{method.lower()}"
            make_user(site, username, "secret")
            answers[f"{method} /users/<name>/{route}"] = site.admin.request(
                method, f"/users/{username}/{route}"
            ).status
            survivors[username] = site.admin.get(f"/users/{username}").status
    assert answers == dict.fromkeys(answers, 405)
    assert survivors == dict.fromkeys(survivors, 200)


def test_a_create_user_key_cannot_take_over_a_user_of_a_stronger_key(site: Site) -> None:
    """A key with create_user only may not reset the password of a user bound to an admin
    key: the next /auth would give it an admin key."""
    _, strong = new_key(site.admin, {"admin": True}, label="ci")
    make_user(site, "u-ci", "ci-secret", strong["key_id"])
    creator = site.key({"create_user": True})
    taken = creator.put("/users/u-ci/password", {"password": "mine"})
    forbidden(taken)
    assert site.api.get("/auth", headers=basic("u-ci", "mine")).status == 401
    assert site.api.get("/auth", headers=basic("u-ci", "ci-secret")).status == 200


def test_admin_users_are_for_admin_keys_only(site: Site) -> None:
    creator = site.key({"create_user": True})
    forbidden(creator.get(f"/users/{ADMIN_NAME}"))
    forbidden(creator.put(f"/users/{ADMIN_NAME}/password", {"password": "x"}))
    forbidden(creator.delete(f"/users/{ADMIN_NAME}"))
    assert site.api.get("/auth", headers=basic(ADMIN_NAME, ADMIN_PASSWORD)).status == 200


def test_list_admins(site: Site) -> None:
    listed = site.daemon.run("--list-admins")
    assert listed.returncode == 0, listed.stderr
    assert f"{ADMIN_NAME} - {site.admin_key_id}" in listed.stdout.splitlines()
    made = site.admin.post("/users", {"username": "u-admin2", "password": "x", "user_type": 0})
    assert made.status == 201
    lines = site.daemon.run("--list-admins").stdout.splitlines()
    assert "u-admin2 - (no key)" in lines
    assert not [line for line in lines if line.startswith("u-app ")]


# -- admin-only settings, redaction -----------------------------------------------------------


def test_uid_and_gid_need_an_admin_key(site: Site) -> None:
    manager = site.key(KEYS["manage *"])
    for setting in ({"uid": os.getuid()}, {"gid": os.getgid()}, {"uid": "root"}):
        body = {"name": "asuser", "cmd": SLEEP[0], "args": SLEEP[1:], **setting}
        forbidden(manager.post("/jobs/ids", body))
    assert manager.get("/jobs/ids").status == 404  # nothing was loaded
    manager.load("asuser", "sleep", sid="ids")
    forbidden(manager.put("/jobs/ids/asuser", {"cmd": SLEEP[0], "uid": os.getuid()}))
    assert manager.get("/jobs/ids/asuser").json["config"]["uid"] is None

    as_me = {"cmd": SLEEP[0], "args": SLEEP[1:], "uid": os.getuid(), "gid": os.getgid()}
    assert site.admin.put("/jobs/ids/asuser", as_me).status == 201
    [pid] = site.admin.wait_pids("ids.asuser", 1)
    process = site.admin.get(f"/{pid}").json
    assert (process["uid"], process["gid"]) == (os.getuid(), os.getgid())
    assert site.admin.delete("/jobs/ids/asuser").status == 200


def test_secrets_are_shown_to_admin_keys_only(site: Site) -> None:
    site.admin.load("redact", "sleep", sid="secrets", env={"API_TOKEN": "x", "PLAIN": "y"})
    [pid] = site.admin.wait_pids("secrets.redact", 1)
    real = {"API_TOKEN": "x", "PLAIN": "y"}
    hidden = {"API_TOKEN": "<redacted>", "PLAIN": "y"}
    assert site.admin.get("/jobs/secrets/redact").json["config"]["env"] == real
    mark = {"GAFFER_JOB": "secrets.redact"}  # every process has it
    assert site.admin.get(f"/{pid}").json["env"] == {**real, **mark}
    for permissions in ({"manage": ["*"]}, {"read": ["secrets"]}):
        key = site.key(permissions)
        assert key.get("/jobs/secrets/redact").json["config"]["env"] == hidden
        assert key.get(f"/{pid}").json["env"] == {**hidden, **mark}
    assert site.admin.delete("/jobs/secrets/redact").status == 200


def test_the_admin_key_may_do_everything(site: Site) -> None:
    """The key of gafferd --create-admin-user: jobs of every session, keys, users."""
    admin = site.admin
    admin.load("everything", "sleep", sid="adm")
    [pid] = admin.wait_pids("adm.everything", 1)
    assert admin.post("/jobs/adm/everything/numprocesses", {"scale": 1}).status == 200
    admin.wait_pids("adm.everything", 2)
    assert admin.post(f"/{pid}/signal", {"signal": "CONT"}).status == 202
    assert admin.delete(f"/{pid}").status == 202
    assert admin.delete("/jobs/adm/everything").status == 200
    assert "adm.everything" not in admin.get("/jobs").json["jobs"]
    assert admin.get("/users").status == 200
    assert admin.get("/keys").status == 200
