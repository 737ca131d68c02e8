"""The auth core: the permission model (scenario 25) and the key/user store (scenario 26)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from gaffer.errors import (
    InvalidArgument,
    PermissionDenied,
    ProcessConflict,
    ProcessError,
    ProcessNotFound,
)
from gaffer.http import keystore as keystore_module
from gaffer.http.auth import (
    ADMIN,
    LOCAL,
    REDACTED,
    Permissions,
    grants_within,
    redact_env,
)
from gaffer.http.handlers.base import error_status
from gaffer.http.keystore import (
    KeyRecord,
    KeyStore,
    KeyStoreError,
    UserRecord,
    hash_password,
    key_digest,
    verify_password,
)

# -- the permission matrix (scenario 25) -----------------------------------------------------

READ_TEST = {"read": ["test"]}
WRITE_JOB_AND_SESSION = {"write": ["test.test", "test1"]}
MANAGE_ALL = {"manage": ["*"]}
ADMIN_DICT = {"admin": True}
MANAGE_TEST = {"manage": ["test"]}
NOTHING: dict = {}

TARGETS = ["test", "test.test", "test.other", "test1", "test1.test", "test2", "tes", "*"]

# For each permission set: target -> rights held, "r" read, "w" write, "m" manage.
MATRIX = {
    "read_test": (
        READ_TEST,
        {"test": "r", "test.test": "r", "test.other": "r"},
    ),
    "write_job_and_session": (
        WRITE_JOB_AND_SESSION,
        {"test.test": "rw", "test1": "rw", "test1.test": "rw"},
    ),
    "manage_all": (MANAGE_ALL, dict.fromkeys(TARGETS, "rwm")),
    "admin": (ADMIN_DICT, dict.fromkeys(TARGETS, "rwm")),
    "manage_test": (
        MANAGE_TEST,
        {"test": "rwm", "test.test": "rwm", "test.other": "rwm"},
    ),
    "nothing": (NOTHING, {}),
}


def _matrix_cases():
    for label, (perms, held) in MATRIX.items():
        for target in TARGETS:
            rights = held.get(target, "")
            for right in ("read", "write", "manage"):
                yield pytest.param(
                    perms, target, right, right[0] in rights, id=f"{label}-{target}-{right}"
                )


@pytest.mark.parametrize(("perms", "target", "right", "expected"), list(_matrix_cases()))
def test_permission_matrix(perms, target, right, expected):
    p = Permissions.from_dict(perms)
    assert getattr(p, f"can_{right}")(target) is expected
    assert p.can(right, target) is expected


@pytest.mark.parametrize(
    ("perms", "admin", "create_key", "create_user"),
    [
        (READ_TEST, False, False, False),
        (WRITE_JOB_AND_SESSION, False, False, False),
        (MANAGE_ALL, False, False, False),
        (ADMIN_DICT, True, True, True),
        ({"create_key": True}, False, True, False),
        ({"create_user": True}, False, False, True),
    ],
)
def test_flags(perms, admin, create_key, create_user):
    p = Permissions.from_dict(perms)
    assert (p.is_admin, p.can_create_key, p.can_create_user) == (admin, create_key, create_user)


def test_job_entry_covers_only_that_job():
    p = Permissions(manage=frozenset({"web.api"}))
    assert p.can_manage("web.api")
    assert not p.can_read("web")  # not the session
    assert not p.can_read("web.worker")  # not a sibling
    assert not p.can_read("web.api2")  # not a prefix
    assert not p.can_read("*")


def test_session_entry_is_not_a_prefix_match():
    p = Permissions(read=frozenset({"web"}))
    assert p.can_read("web.anything.with.dots")
    assert not p.can_read("web2")
    assert not p.can_read("we")
    assert not p.can_read("we.b")


def test_star_target_needs_a_star_entry():
    # manage on every session known today is still not "everything"
    assert not Permissions(manage=frozenset({"a", "b"})).can_manage("*")
    assert Permissions(read=frozenset({"*"})).can_read("*")
    assert not Permissions(read=frozenset({"*"})).can_write("*")
    assert Permissions(write=frozenset({"*"})).can_read("anything.at.all")


def test_slash_job_ids_are_normalized():
    p = Permissions.from_dict({"write": ["s/j"]})
    assert p.write == frozenset({"s.j"})
    assert p.can_write("s.j") and p.can_write("s/j")
    assert not p.can_write("s")


@pytest.mark.parametrize("target", ["", ".j", "s.", None, 3])
def test_bad_target_is_invalid_argument(target):
    for perms in (Permissions(read=frozenset({"*"})), ADMIN, Permissions()):
        with pytest.raises(InvalidArgument) as info:
            perms.can_read(target)
        assert info.value.reason == "bad_name"


def test_require_raises_forbidden():
    p = Permissions.from_dict(READ_TEST)
    p.require("read", "test.x")
    with pytest.raises(PermissionDenied) as info:
        p.require("write", "test.x")
    assert error_status(info.value)[:2] == (403, "forbidden")
    assert isinstance(info.value, ProcessError)
    with pytest.raises(ValueError, match="unknown right"):
        p.can("delete", "test")


def test_local_permissions_run_everything_but_administer_nothing():
    assert LOCAL.can_manage("*") and LOCAL.can_write("a.b") and LOCAL.can_read("a")
    assert not LOCAL.is_admin
    assert not LOCAL.can_create_key
    assert not LOCAL.can_create_user
    assert ADMIN.is_admin and ADMIN.can_create_key and ADMIN.can_create_user


def test_from_dict_round_trip_and_defaults():
    full = {
        "admin": False,
        "create_key": True,
        "create_user": False,
        "manage": ["b", "a.x"],
        "write": ["*"],
        "read": [],
    }
    p = Permissions.from_dict(full)
    assert p.to_dict() == {**full, "manage": ["a.x", "b"]}
    assert Permissions.from_dict(p.to_dict()) == p
    assert Permissions.from_dict({}) == Permissions()
    assert Permissions().to_dict() == {
        "admin": False,
        "create_key": False,
        "create_user": False,
        "manage": [],
        "write": [],
        "read": [],
    }


def test_permissions_are_frozen_and_hashable():
    p = Permissions(read=["a", "a", "b"])  # any iterable is accepted and frozen
    assert p.read == frozenset({"a", "b"})
    assert hash(p) == hash(Permissions(read=frozenset({"b", "a"})))
    with pytest.raises(AttributeError):
        p.admin = True


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"sudo": True}, "sudo"),
        ({"admin": "yes"}, "admin"),
        ({"admin": 1}, "admin"),
        ({"create_key": None}, "create_key"),
        ({"read": "test"}, "read"),
        ({"write": {"a": 1}}, "write"),
        ({"manage": [1]}, "manage"),
        ({"read": [""]}, "read"),
        ({"read": ["web*"]}, "read"),
        ({"write": [".job"]}, "write"),
        ({"manage": ["session."]}, "manage"),
        (["read"], "permissions"),
        (None, "permissions"),
    ],
)
def test_from_dict_rejects_bad_input(data, named):
    with pytest.raises(InvalidArgument) as info:
        Permissions.from_dict(data)
    assert info.value.reason == "bad_permissions"
    assert error_status(info.value)[0] == 400
    assert named in str(info.value)


def test_constructor_validates_too():
    with pytest.raises(InvalidArgument, match="'read'"):
        Permissions(read="test")
    with pytest.raises(InvalidArgument, match="'admin'"):
        Permissions(admin="true")


# -- no escalation through sub-keys -----------------------------------------------------------


@pytest.mark.parametrize(
    ("child", "parent", "expected"),
    [
        pytest.param(ADMIN_DICT, ADMIN_DICT, True, id="admin-grants-admin"),
        pytest.param({"create_key": True, "manage": ["*"]}, ADMIN_DICT, True, id="admin-any"),
        pytest.param(ADMIN_DICT, MANAGE_ALL, False, id="admin-needs-admin"),
        pytest.param({"create_key": True}, MANAGE_ALL, False, id="create_key-needs-it"),
        pytest.param({"create_user": True}, MANAGE_ALL, False, id="create_user-needs-it"),
        pytest.param({"create_key": True}, {"create_key": True}, True, id="create_key-held"),
        pytest.param({"create_user": True}, {"create_user": True}, True, id="create_user-held"),
        pytest.param({"read": ["test.test"]}, READ_TEST, True, id="job-within-session"),
        pytest.param({"read": ["test"]}, {"read": ["test.test"]}, False, id="session-over-job"),
        pytest.param({"write": ["test"]}, READ_TEST, False, id="write-over-read"),
        pytest.param({"read": ["test"]}, MANAGE_TEST, True, id="read-within-manage"),
        pytest.param({"write": ["test.x"]}, MANAGE_TEST, True, id="write-job-within-manage"),
        pytest.param({"manage": ["test"]}, {"write": ["test"]}, False, id="manage-over-write"),
        pytest.param(MANAGE_ALL, MANAGE_TEST, False, id="star-over-session"),
        pytest.param({"read": ["*"]}, MANAGE_ALL, True, id="star-within-star"),
        pytest.param({"read": ["*"]}, {"read": ["a", "b"]}, False, id="star-needs-star"),
        pytest.param({"read": ["other"]}, READ_TEST, False, id="other-session"),
        pytest.param(NOTHING, NOTHING, True, id="nothing-within-nothing"),
        pytest.param(WRITE_JOB_AND_SESSION, WRITE_JOB_AND_SESSION, True, id="same-within-same"),
    ],
)
def test_grants_within(child, parent, expected):
    assert grants_within(Permissions.from_dict(child), Permissions.from_dict(parent)) is expected


def test_grants_within_local():
    assert grants_within(LOCAL, LOCAL)
    assert not grants_within(ADMIN, LOCAL)
    assert not grants_within(Permissions(create_key=True), LOCAL)


# -- env redaction ----------------------------------------------------------------------------


def test_redact_env():
    env = {
        "PATH": "/bin",
        "API_KEY": "k",
        "aws_secret_access_key": "s",
        "GITHUB_TOKEN": "t",
        "DB_Password": "p",
        "HOME": "/root",
        "KEYRING": "x",
    }
    redacted = redact_env(env)
    assert redacted == {
        "PATH": "/bin",
        "API_KEY": REDACTED,
        "aws_secret_access_key": REDACTED,
        "GITHUB_TOKEN": REDACTED,
        "DB_Password": REDACTED,
        "HOME": "/root",
        "KEYRING": REDACTED,
    }
    assert env["API_KEY"] == "k"  # a copy: the original is untouched
    assert redact_env(None) == {}
    assert REDACTED == "<redacted>"


# -- the key store ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "auth" / "keys.db")


@pytest.fixture
def store(db_path, clock):
    ks = KeyStore(db_path, clock=clock)
    yield ks
    ks.close()


def _raw_rows(path, sql, params=()):
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def test_file_and_directory_are_private(db_path, store):
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(db_path)).st_mode) == 0o700
    assert store.schema_version == 1


def test_an_existing_file_is_tightened(tmp_path):
    path = tmp_path / "keys.db"
    path.touch()
    os.chmod(path, 0o644)
    with KeyStore(str(path)):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_key_format_and_storage(db_path, store):
    key, record = store.create_key(Permissions.from_dict(READ_TEST), label="ci")
    assert key.startswith("gk_") and len(key) == 46
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert record.key_id == digest[:16] == key_digest(key)[0]
    assert record.label == "ci" and record.parent is None and record.expires is None
    assert record.created == 1_000_000.0
    rows = _raw_rows(db_path, "SELECT key_id, digest FROM keys")
    assert rows == [(digest[:16], digest)]
    raw = Path(db_path).read_bytes()
    assert key.encode() not in raw
    assert key[3:].encode() not in raw  # not even the secret part without the prefix
    assert digest[:16].encode() in raw  # sanity: we are reading the right file


def test_authenticate_key(db_path, store):
    key, record = store.create_key(Permissions.from_dict(WRITE_JOB_AND_SESSION), label="w")
    found = store.authenticate_key(key)
    assert found == record
    assert found.permissions.can_write("test1.test")
    assert not found.permissions.can_read("test")
    other, _ = store.create_key(Permissions())
    assert store.authenticate_key(other).key_id != record.key_id


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "gk_",
        "gk_short",
        "x" * 46,
        "gk_" + "A" * 42,
        "gk_" + "A" * 44,
        "gk_" + "A" * 42 + "!",
        "GK_" + "A" * 43,
        None,
        b"gk_" + b"A" * 43,
        42,
    ],
)
def test_malformed_keys_do_not_authenticate(store, bad):
    store.create_key(ADMIN)
    assert store.authenticate_key(bad) is None


def test_wrong_key_does_not_authenticate(store):
    key, _ = store.create_key(ADMIN)
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert store.authenticate_key(wrong) is None
    assert store.authenticate_key("gk_" + "A" * 43) is None


def test_digest_is_checked_not_only_the_key_id(db_path, store):
    key, record = store.create_key(ADMIN)
    db = sqlite3.connect(db_path)
    with db:
        db.execute("UPDATE keys SET digest = ? WHERE key_id = ?", ("0" * 64, record.key_id))
    db.close()
    assert store.authenticate_key(key) is None


def test_expired_key_is_refused_and_deleted(store, clock):
    key, record = store.create_key(Permissions.from_dict(READ_TEST), ttl=10)
    assert record.expires == clock.now + 10
    clock.now += 9.5
    assert store.authenticate_key(key) == record
    clock.now += 0.5
    assert store.authenticate_key(key) is None
    with pytest.raises(ProcessNotFound):
        store.get_key(record.key_id)
    assert store.list_keys() == []


def test_expired_keys_are_hidden_everywhere(store, clock):
    _, short = store.create_key(ADMIN, ttl=5)
    _, long = store.create_key(ADMIN, ttl=50)
    clock.now += 10
    assert [k.key_id for k in store.list_keys()] == [long.key_id]
    with pytest.raises(ProcessNotFound):
        store.get_key(short.key_id)
    with pytest.raises(ProcessNotFound):
        store.delete_key(short.key_id)
    clock.now += 100
    assert store.purge_expired() == [long.key_id]


def test_sub_key_never_outlives_its_parent(store, clock):
    parent_key, parent = store.create_key(ADMIN, ttl=100)
    sub_key, sub = store.create_key(Permissions.from_dict(READ_TEST), parent=parent.key_id)
    assert sub.expires == parent.expires
    _, shorter = store.create_key(Permissions(), parent=parent.key_id, ttl=10)
    assert shorter.expires == clock.now + 10
    clock.now += 100
    assert store.authenticate_key(sub_key) is None
    assert store.authenticate_key(parent_key) is None
    assert store.list_keys() == []


@pytest.mark.parametrize("ttl", [0, -1, "10", True, float("nan"), float("inf")])
def test_bad_ttl(store, ttl):
    with pytest.raises(InvalidArgument) as info:
        store.create_key(ADMIN, ttl=ttl)
    assert info.value.reason == "bad_ttl"
    assert store.list_keys() == []


def test_bad_label(store):
    with pytest.raises(InvalidArgument) as info:
        store.create_key(ADMIN, label="x" * 1000)
    assert info.value.reason == "bad_label"


def test_create_key_accepts_a_permissions_dict(store):
    _, record = store.create_key({"read": ["a"]})
    assert record.permissions == Permissions(read=frozenset({"a"}))
    with pytest.raises(InvalidArgument) as info:
        store.create_key({"read": "a"})
    assert info.value.reason == "bad_permissions"


def test_get_key_and_unknown_key(store):
    _, record = store.create_key(Permissions.from_dict(MANAGE_ALL))
    assert store.get_key(record.key_id) == record
    with pytest.raises(ProcessNotFound) as info:
        store.get_key("0123456789abcdef")
    assert error_status(info.value)[:2] == (404, "not_found")


def test_unknown_parent_is_not_found(store):
    with pytest.raises(ProcessNotFound):
        store.create_key(Permissions(), parent="0123456789abcdef")
    assert store.list_keys() == []


def test_sub_key_cannot_escalate(store, clock):
    _, parent = store.create_key(Permissions.from_dict({"create_key": True, "write": ["test"]}))
    with pytest.raises(PermissionDenied):
        store.create_key(Permissions.from_dict({"manage": ["test"]}), parent=parent.key_id)
    with pytest.raises(PermissionDenied):
        store.create_key(ADMIN, parent=parent.key_id)
    with pytest.raises(PermissionDenied):
        store.create_key(Permissions.from_dict({"create_user": True}), parent=parent.key_id)
    clock.now += 1
    _, sub = store.create_key(
        Permissions.from_dict({"create_key": True, "read": ["test.web"]}), parent=parent.key_id
    )
    assert sub.parent == parent.key_id
    assert [k.key_id for k in store.list_keys()] == [parent.key_id, sub.key_id]


def test_sub_keys_and_recursive_delete(store, clock):
    def make(parent=None):
        clock.now += 1  # distinct creation times: a stable order
        key, record = store.create_key(ADMIN, parent=parent)
        return key, record.key_id

    root_key, root = make()
    a_key, a = make(root)
    a1_key, a1 = make(a)
    a11_key, a11 = make(a1)
    b_key, b = make(root)
    other_key, other = make()
    assert [k.key_id for k in store.sub_keys(root)] == [a, a1, a11, b]
    assert [k.key_id for k in store.sub_keys(a)] == [a1, a11]
    assert store.sub_keys(a11) == []
    with pytest.raises(ProcessNotFound):
        store.sub_keys("0123456789abcdef")

    deleted = store.delete_key(a)
    assert deleted[0] == a and sorted(deleted) == sorted([a, a1, a11])
    for key in (a_key, a1_key, a11_key):
        assert store.authenticate_key(key) is None
    assert [k.key_id for k in store.sub_keys(root)] == [b]
    assert store.authenticate_key(b_key).key_id == b

    assert sorted(store.delete_key(root)) == sorted([root, b])
    assert store.authenticate_key(root_key) is None
    assert store.authenticate_key(b_key) is None
    assert [k.key_id for k in store.list_keys()] == [other]
    assert store.authenticate_key(other_key).key_id == other
    with pytest.raises(ProcessNotFound):
        store.delete_key(root)


def test_key_record_to_dict_has_no_secret(store):
    key, record = store.create_key(Permissions.from_dict(READ_TEST), label="l", ttl=60)
    data = record.to_dict()
    assert set(data) == {"key_id", "label", "permissions", "parent", "created", "expires"}
    assert data["permissions"] == Permissions.from_dict(READ_TEST).to_dict()
    text = json.dumps(data)
    assert key not in text and key_digest(key)[1] not in text


def test_everything_persists_across_reopen(db_path, clock):
    with KeyStore(db_path, clock=clock) as ks:
        key, record = ks.create_key(Permissions.from_dict(WRITE_JOB_AND_SESSION), label="p")
        sub_key, sub = ks.create_key(
            Permissions.from_dict({"read": ["test1"]}), parent=record.key_id
        )
        ks.create_user("alice", "s3cret", user_type=0, key_id=record.key_id, extra={"a": 1})
    with KeyStore(db_path, clock=clock) as ks:
        assert ks.authenticate_key(key) == record
        assert ks.authenticate_key(sub_key) == sub
        user = ks.authenticate_user("alice", "s3cret")
        assert user is not None and user.key_id == record.key_id and user.extra == {"a": 1}
        assert ks.schema_version == 1


def test_memory_store(clock):
    with KeyStore(":memory:", clock=clock) as ks:
        key, record = ks.create_key(ADMIN)
        assert ks.authenticate_key(key) == record


def test_a_newer_schema_is_refused(db_path):
    KeyStore(db_path).close()
    db = sqlite3.connect(db_path)
    with db:
        db.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    db.close()
    with pytest.raises(KeyStoreError, match="schema version 99"):
        KeyStore(db_path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database, not at all" * 100)
    with pytest.raises(KeyStoreError):
        KeyStore(str(path))


def test_a_closed_store_refuses_work(db_path):
    ks = KeyStore(db_path)
    ks.close()
    ks.close()  # idempotent
    with pytest.raises(KeyStoreError, match="closed"):
        ks.list_keys()


# -- users (scenario 26) ----------------------------------------------------------------------


def _stored_hash(path, username):
    return _raw_rows(path, "SELECT password FROM users WHERE username = ?", (username,))[0][0]


def test_duplicate_user_is_a_conflict(store):
    user = store.create_user("test", "test")
    assert isinstance(user, UserRecord) and user.user_type == 1 and user.key_id is None
    with pytest.raises(ProcessConflict) as info:
        store.create_user("test", "other")
    assert error_status(info.value)[:2] == (409, "conflict")
    assert store.authenticate_user("test", "test") is not None  # the first one is untouched


def test_password_is_hashed_and_rehashed_on_set_password(db_path, store):
    store.create_user("test", "test")
    first = _stored_hash(db_path, "test")
    assert first != "test"
    scheme, n, r, p, salt, digest = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32

    store.set_password("test", "new-password")
    second = _stored_hash(db_path, "test")
    assert second != first and second != "new-password"
    assert store.authenticate_user("test", "test") is None
    assert store.authenticate_user("test", "new-password").username == "test"
    with pytest.raises(ProcessNotFound):
        store.set_password("nobody", "x")
    with pytest.raises(InvalidArgument):
        store.set_password("test", "")


def test_authenticate_user(store):
    _, key = store.create_key(Permissions.from_dict(READ_TEST))
    store.create_user("test", "test", key_id=key.key_id)
    user = store.authenticate_user("test", "test")
    assert user == store.get_user("test")
    assert user.key_id == key.key_id
    assert store.authenticate_user("test", "wrong") is None
    assert store.authenticate_user("test", "") is None
    assert store.authenticate_user("nobody", "test") is None
    assert store.authenticate_user("bad name!", "test") is None
    assert store.authenticate_user("test", None) is None


def test_an_unknown_user_costs_a_full_password_check(store, monkeypatch):
    store.create_user("test", "test")
    calls = []

    def spy(password, stored):
        calls.append(stored)
        return verify_password(password, stored)

    monkeypatch.setattr(keystore_module, "verify_password", spy)
    assert store.authenticate_user("nobody", "test") is None
    assert store.authenticate_user("in valid", "test") is None
    assert store.authenticate_user("test", "wrong") is None
    assert len(calls) == 3
    assert all(stored.startswith("scrypt$16384$8$1$") for stored in calls)


@pytest.mark.parametrize("username", ["", "x" * 65, "with space", "a/b", "é", "a:b", None, 7])
def test_bad_usernames(store, username):
    with pytest.raises(InvalidArgument) as info:
        store.create_user(username, "pw")
    assert info.value.reason == "bad_username"
    assert store.list_users() == []


def test_good_usernames(store):
    for name in ("a", "x" * 64, "first.last", "me@example.com", "a_b-c"):
        assert store.create_user(name, "pw").username == name
    assert len(store.list_users()) == 5


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"password": ""}, "bad_password"),
        ({"password": None}, "bad_password"),
        ({"password": "x" * 5000}, "bad_password"),
        ({"user_type": 2}, "bad_user_type"),
        ({"user_type": True}, "bad_user_type"),
        ({"user_type": "0"}, "bad_user_type"),
        ({"extra": ["a"]}, "bad_extra"),
        ({"extra": {"a": object()}}, "bad_extra"),
    ],
)
def test_bad_user_fields(store, kwargs, reason):
    args = {"password": "pw", **kwargs}
    with pytest.raises(InvalidArgument) as info:
        store.create_user("bob", **args)
    assert info.value.reason == reason
    assert store.list_users() == []


def test_user_key_must_exist(store):
    with pytest.raises(ProcessNotFound):
        store.create_user("bob", "pw", key_id="0123456789abcdef")
    assert store.list_users() == []


def test_admins_and_list_users(store):
    store.create_user("zed", "pw", user_type=0)
    store.create_user("app", "pw")
    store.create_user("amy", "pw", user_type=0)
    assert [u.username for u in store.admins()] == ["amy", "zed"]
    assert all(u.is_admin_user for u in store.admins())
    assert [u.username for u in store.list_users()] == ["amy", "app", "zed"]


def test_update_user(store):
    _, k1 = store.create_key(Permissions.from_dict(READ_TEST))
    _, k2 = store.create_key(Permissions.from_dict(MANAGE_ALL))
    store.create_user("bob", "pw", key_id=k1.key_id, extra={"mail": "b@x"})

    user = store.update_user("bob", user_type=0)
    assert (user.user_type, user.key_id, user.extra) == (0, k1.key_id, {"mail": "b@x"})
    user = store.update_user("bob", extra={"team": "ops"})
    assert user.extra == {"team": "ops"} and user.key_id == k1.key_id
    user = store.update_user("bob", key_id=k2.key_id)
    assert user.key_id == k2.key_id and user.user_type == 0
    assert store.get_user("bob") == user

    assert store.set_user_key("bob", None).key_id is None
    assert store.set_user_key("bob", k1.key_id).key_id == k1.key_id
    with pytest.raises(ProcessNotFound):
        store.set_user_key("bob", "0123456789abcdef")
    with pytest.raises(ProcessNotFound):
        store.update_user("nobody", user_type=1)
    with pytest.raises(InvalidArgument):
        store.update_user("bob", user_type=5)
    assert store.get_user("bob").key_id == k1.key_id


def test_deleting_a_key_unbinds_its_users(store):
    _, parent = store.create_key(ADMIN)
    _, sub = store.create_key(Permissions(), parent=parent.key_id)
    store.create_user("bob", "pw", key_id=sub.key_id)
    store.delete_key(parent.key_id)
    assert store.get_user("bob").key_id is None


def test_delete_user(store):
    _, key = store.create_key(ADMIN)
    store.create_user("bob", "pw", key_id=key.key_id)
    store.delete_user("bob")
    with pytest.raises(ProcessNotFound):
        store.get_user("bob")
    with pytest.raises(ProcessNotFound):
        store.delete_user("bob")
    assert store.authenticate_user("bob", "pw") is None
    assert store.get_key(key.key_id) == key  # the user's key stays
    assert store.create_user("bob", "pw2").username == "bob"  # the name is free again


def test_user_to_dict_has_no_password(db_path, store):
    user = store.create_user("bob", "hunter2", extra={"x": [1, 2]})
    data = user.to_dict()
    assert set(data) == {"username", "user_type", "key_id", "extra", "created"}
    text = json.dumps(data)
    assert "hunter2" not in text and "scrypt" not in text
    assert _stored_hash(db_path, "bob") not in text
    data["extra"]["x"].append(3)  # a copy: the record is not changed through it
    assert user.extra == {"x": [1, 2]}


def test_hash_and_verify_password():
    stored = hash_password("pw")
    assert verify_password("pw", stored)
    assert not verify_password("pw2", stored)
    assert hash_password("pw") != stored  # a fresh salt each time
    salt, digest = stored.split("$")[4:]
    # parameters are read back from the stored string, not assumed
    weaker = (
        f"scrypt$1024$1$1${salt}$"
        + base64.b64encode(
            hashlib.scrypt(b"pw", salt=base64.b64decode(salt), n=1024, r=1, p=1, dklen=32)
        ).decode()
    )
    assert verify_password("pw", weaker)
    for bad in (
        "",
        "pw",
        "pbkdf2$1$2$3$4$5",
        "scrypt$16384$8$1$!!!$" + digest,
        f"scrypt$1000$8$1${salt}${digest}",  # n not a power of two
        f"scrypt${2**30}$8$1${salt}${digest}",  # absurd cost from a tampered file
        f"scrypt${2**20}$32$1${salt}${digest}",  # 4 GiB of memory
        f"scrypt$16384$8$1${salt}$",
    ):
        assert not verify_password("pw", bad), bad
    assert not verify_password(None, stored)


# -- threads ----------------------------------------------------------------------------------


def test_concurrent_key_creation(store):
    barrier = threading.Barrier(10)
    results: list[tuple[str, KeyRecord]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work():
        try:
            barrier.wait(timeout=10)
            for _ in range(5):
                pair = store.create_key(Permissions.from_dict(READ_TEST))
                with lock:
                    results.append(pair)
                store.list_keys()
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(results) == 50
    assert len({key for key, _ in results}) == 50
    assert len({record.key_id for _, record in results}) == 50
    for key, record in results:
        assert store.authenticate_key(key) == record
    assert len(store.list_keys()) == 50


def test_concurrent_user_authentication(store):
    store.create_user("bob", "pw")
    outcomes: list[bool] = []
    lock = threading.Lock()

    def work(i):
        ok = store.authenticate_user("bob", "pw" if i % 2 == 0 else "no") is not None
        with lock:
            outcomes.append((i, ok))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == [(i, i % 2 == 0) for i in range(6)]
