"""API keys and users, kept in one SQLite file.

Keys
    ``gk_`` + ``secrets.token_urlsafe(32)`` (46 characters). The key itself is given once, at
    creation, and never stored: a row holds ``key_id`` (the first 16 hex digits of its
    SHA-256, the public name of the key) and ``digest`` (the full SHA-256 hex). To
    authenticate, the presented key is hashed, its row found by ``key_id`` and the digests
    compared in constant time. A copy of the database gives no usable key.

Users
    A username, a password hash (scrypt, n=2**14, r=8, p=1, 32 bytes, 16-byte salt, stored as
    ``scrypt$16384$8$1$<salt b64>$<hash b64>``), a type (0 admin user, 1 app user), the key
    bound to the user (the one ``/auth`` hands back) and a free JSON ``extra`` dict.
    Hashing takes ~50 ms: call :meth:`KeyStore.create_user`, :meth:`KeyStore.set_password`,
    :meth:`KeyStore.authenticate_user`, :func:`hash_password` and :func:`verify_password`
    from a worker thread, not from the event loop. Key operations are plain SQL lookups
    (microseconds) and may run on the loop.

Every method is thread-safe (one lock around the connection; password hashing runs outside
it). Expired keys are invisible: they are deleted, with their sub-keys, when seen.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite3

from gaffer.errors import (
    GafferError,
    InvalidArgument,
    PermissionDenied,
    ProcessConflict,
    ProcessNotFound,
)
from gaffer.http.auth import Permissions, grants_within
from gaffer.http.credentials import (
    ADMIN_USER,
    APP_USER,
    KeyRecord,
    UserRecord,
    _dummy_hash,
    hash_password,
    key_digest,
    verify_password,
)

__all__ = [
    "ADMIN_USER",
    "APP_USER",
    "KEY_PREFIX",
    "SCHEMA_VERSION",
    "KeyRecord",
    "KeyStore",
    "KeyStoreError",
    "UserRecord",
    "hash_password",
    "key_digest",
    "verify_password",
]

SCHEMA_VERSION = 1
KEY_PREFIX = "gk_"

_KEY_RE = re.compile(r"gk_[A-Za-z0-9_-]{43}")
_USERNAME_RE = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_MAX_PASSWORD = 4096
_MAX_LABEL = 256
_MAX_EXTRA = 64 * 1024


class KeyStoreError(GafferError):
    """The key store file cannot be used: not a database, or a newer schema."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    label TEXT NOT NULL,
    permissions TEXT NOT NULL,
    parent TEXT,
    created REAL NOT NULL,
    expires REAL
);
CREATE INDEX IF NOT EXISTS keys_parent ON keys (parent);
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password TEXT NOT NULL,
    user_type INTEGER NOT NULL,
    key_id TEXT,
    extra TEXT NOT NULL,
    created REAL NOT NULL
);
"""

_KEY_COLUMNS = "key_id, label, permissions, parent, created, expires"
_USER_COLUMNS = "username, user_type, key_id, extra, created"

_DESCENDANTS = """
WITH RECURSIVE tree(key_id) AS (
    SELECT key_id FROM keys WHERE parent = ?
    UNION
    SELECT keys.key_id FROM keys JOIN tree ON keys.parent = tree.key_id
)
SELECT key_id FROM tree
"""


def _key_record(row: tuple[Any, ...]) -> KeyRecord:
    key_id, label, permissions, parent, created, expires = row
    return KeyRecord(
        key_id=key_id,
        label=label,
        permissions=Permissions.from_dict(json.loads(permissions)),
        parent=parent,
        created=created,
        expires=expires,
    )


def _user_record(row: tuple[Any, ...]) -> UserRecord:
    username, user_type, key_id, extra, created = row
    return UserRecord(
        username=username,
        user_type=user_type,
        key_id=key_id,
        extra=json.loads(extra),
        created=created,
    )


def _check_username(username: Any) -> str:
    if not isinstance(username, str) or not _USERNAME_RE.fullmatch(username):
        raise InvalidArgument(
            f"bad username {username!r}: 1 to 64 letters, digits, '.', '_', '@' or '-'",
            reason="bad_username",
        )
    return username


def _check_password(password: Any) -> str:
    if not isinstance(password, str) or not password:
        raise InvalidArgument("password must be a non-empty string", reason="bad_password")
    if len(password) > _MAX_PASSWORD:
        raise InvalidArgument(
            f"password too long (more than {_MAX_PASSWORD} characters)", reason="bad_password"
        )
    return password


def _check_user_type(user_type: Any) -> int:
    if isinstance(user_type, bool) or user_type not in (ADMIN_USER, APP_USER):
        raise InvalidArgument(
            f"bad user_type {user_type!r}: 0 (admin user) or 1 (app user)",
            reason="bad_user_type",
        )
    return int(user_type)


def _dump_extra(extra: Any) -> str:
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise InvalidArgument("extra must be a JSON object", reason="bad_extra")
    try:
        text = json.dumps(extra, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"extra is not JSON: {exc}", reason="bad_extra") from None
    if len(text) > _MAX_EXTRA:
        raise InvalidArgument(f"extra too large (over {_MAX_EXTRA} bytes)", reason="bad_extra")
    return text


class KeyStore:
    """Keys and users in the SQLite file ``path`` (``":memory:"`` for a throwaway store).

    The directory is created if missing (mode 0700) and the file is created, or tightened,
    to mode 0600. ``clock`` gives the current unix time (tests pass a fake one).
    """

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        import sqlite3  # here: gafferd without keys never loads it

        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        if path != ":memory:":
            _prepare_file(path)
        try:
            self._db: sqlite3.Connection | None = sqlite3.connect(path, check_same_thread=False)
        except sqlite3.Error as exc:
            raise KeyStoreError(f"cannot open key store {path}: {exc}") from None
        try:
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise KeyStoreError(f"cannot use key store {path}: {exc}") from None
        except BaseException:
            self.close()
            raise

    def _init_schema(self) -> None:
        db = self._conn()
        with db:
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO meta (name, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise KeyStoreError(
                    f"key store {self.path} has schema version {row[0]}, newer than this "
                    f"gaffer's ({SCHEMA_VERSION})"
                )

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise KeyStoreError("the key store is closed")
        return self._db

    @property
    def schema_version(self) -> int:
        with self._lock:
            row = (
                self._conn()
                .execute("SELECT value FROM meta WHERE name = 'schema_version'")
                .fetchone()
            )
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- keys ---------------------------------------------------------------------------------

    def create_key(
        self,
        permissions: Permissions | dict[str, Any],
        label: str = "",
        parent: str | None = None,
        ttl: float | None = None,
    ) -> tuple[str, KeyRecord]:
        """Create a key; return ``(key, record)``. The key is never available again.

        With ``parent`` (a key_id), the new key is a sub-key: deleted with its parent, it may
        not hold rights its parent lacks (:class:`~gaffer.errors.PermissionDenied` otherwise)
        and never outlives it (its expiry is capped to the parent's).
        """
        import sqlite3  # here: gafferd without keys never loads it

        if not isinstance(permissions, Permissions):
            permissions = Permissions.from_dict(permissions)
        if not isinstance(label, str) or len(label) > _MAX_LABEL:
            raise InvalidArgument(
                f"label must be a string of at most {_MAX_LABEL} characters", reason="bad_label"
            )
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < 1e12
        ):
            raise InvalidArgument(
                f"bad ttl {ttl!r}: a positive number of seconds", reason="bad_ttl"
            )
        perms_json = json.dumps(permissions.to_dict(), sort_keys=True)
        with self._lock:
            db = self._conn()
            now = self._clock()
            expires = None if ttl is None else now + ttl
            if parent is not None:
                parent_record = self._get_key_locked(parent, now)
                if not grants_within(permissions, parent_record.permissions):
                    raise PermissionDenied(f"key {parent} may not grant these permissions")
                cap = parent_record.expires  # a sub-key never outlives its parent
                if cap is not None and (expires is None or expires > cap):
                    expires = cap
            while True:
                key = KEY_PREFIX + secrets.token_urlsafe(32)
                key_id, digest = key_digest(key)
                try:
                    with db:
                        db.execute(
                            "INSERT INTO keys (key_id, digest, label, permissions, parent, "
                            "created, expires) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (key_id, digest, label, perms_json, parent, now, expires),
                        )
                except sqlite3.IntegrityError:  # a 64-bit key_id collision: draw again
                    continue
                break
        record = KeyRecord(key_id, label, permissions, parent, now, expires)
        return key, record

    def authenticate_key(self, key: str) -> KeyRecord | None:
        """The record of ``key``, or ``None`` if it is malformed, unknown or expired."""
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            return None
        key_id, digest = key_digest(key)
        with self._lock:
            db = self._conn()
            row = db.execute(
                f"SELECT digest, {_KEY_COLUMNS} FROM keys WHERE key_id = ?", (key_id,)
            ).fetchone()
            if row is None or not hmac.compare_digest(row[0], digest):
                return None
            expires = row[6]
            if expires is not None and expires <= self._clock():
                self._delete_tree_locked(key_id)
                return None
        return _key_record(row[1:])

    def get_key(self, key_id: str) -> KeyRecord:
        with self._lock:
            return self._get_key_locked(key_id, self._clock())

    def list_keys(self) -> list[KeyRecord]:
        """Every live key, oldest first (expired ones are deleted on the way)."""
        with self._lock:
            self._purge_expired_locked(self._clock())
            rows = (
                self._conn()
                .execute(f"SELECT {_KEY_COLUMNS} FROM keys ORDER BY created, key_id")
                .fetchall()
            )
        return [_key_record(row) for row in rows]

    def sub_keys(self, key_id: str) -> list[KeyRecord]:
        """The sub-keys of ``key_id``, direct and indirect, oldest first."""
        with self._lock:
            now = self._clock()
            self._get_key_locked(key_id, now)
            self._purge_expired_locked(now)
            rows = (
                self._conn()
                .execute(
                    f"SELECT {_KEY_COLUMNS} FROM keys WHERE key_id IN ({_DESCENDANTS}) "
                    "ORDER BY created, key_id",
                    (key_id,),
                )
                .fetchall()
            )
        return [_key_record(row) for row in rows]

    def delete_key(self, key_id: str) -> list[str]:
        """Delete a key and all its sub-keys, recursively; return the deleted key_ids (the key
        first), for caches to evict. Users bound to a deleted key lose it (``key_id`` None)."""
        with self._lock:
            self._get_key_locked(key_id, self._clock())
            return self._delete_tree_locked(key_id)

    def purge_expired(self) -> list[str]:
        """Delete every expired key (and its sub-keys); return the deleted key_ids."""
        with self._lock:
            return self._purge_expired_locked(self._clock())

    def _get_key_locked(self, key_id: str, now: float) -> KeyRecord:
        row = None
        if isinstance(key_id, str):
            row = (
                self._conn()
                .execute(f"SELECT {_KEY_COLUMNS} FROM keys WHERE key_id = ?", (key_id,))
                .fetchone()
            )
        if row is not None and row[5] is not None and row[5] <= now:
            self._delete_tree_locked(key_id)
            row = None
        if row is None:
            raise ProcessNotFound(f"no key {key_id!r}")
        return _key_record(row)

    def _delete_tree_locked(self, key_id: str) -> list[str]:
        db = self._conn()
        with db:
            ids = [key_id] + [row[0] for row in db.execute(_DESCENDANTS, (key_id,)).fetchall()]
            self._delete_ids_locked(db, ids)
        return ids

    def _purge_expired_locked(self, now: float) -> list[str]:
        db = self._conn()
        with db:
            roots = [
                row[0]
                for row in db.execute(
                    "SELECT key_id FROM keys WHERE expires IS NOT NULL AND expires <= ?", (now,)
                ).fetchall()
            ]
            ids: dict[str, None] = {}
            for root in roots:
                ids[root] = None
                for row in db.execute(_DESCENDANTS, (root,)).fetchall():
                    ids[row[0]] = None
            self._delete_ids_locked(db, ids)
        return list(ids)

    @staticmethod
    def _delete_ids_locked(db: sqlite3.Connection, ids: Iterable[str]) -> None:
        params = [(key_id,) for key_id in ids]
        db.executemany("DELETE FROM keys WHERE key_id = ?", params)
        db.executemany("UPDATE users SET key_id = NULL WHERE key_id = ?", params)

    def _check_key_exists_locked(self, key_id: str | None) -> None:
        if key_id is not None:
            self._get_key_locked(key_id, self._clock())

    # -- users --------------------------------------------------------------------------------

    def create_user(
        self,
        username: str,
        password: str,
        user_type: int = APP_USER,
        key_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> UserRecord:
        """Create a user (hashes the password: ~50 ms, call it from a thread). A taken
        username is a ``ProcessConflict`` (reason ``conflict``); an unknown ``key_id`` a
        ``ProcessNotFound``."""
        import sqlite3  # here: gafferd without keys never loads it

        _check_username(username)
        _check_password(password)
        user_type = _check_user_type(user_type)
        extra_json = _dump_extra(extra)
        with self._lock:  # fail fast before hashing; the insert below is the real check
            self._check_user_free_locked(username)
        hashed = hash_password(password)
        with self._lock:
            db = self._conn()
            now = self._clock()
            self._check_key_exists_locked(key_id)
            try:
                with db:
                    db.execute(
                        "INSERT INTO users (username, password, user_type, key_id, extra, "
                        "created) VALUES (?, ?, ?, ?, ?, ?)",
                        (username, hashed, user_type, key_id, extra_json, now),
                    )
            except sqlite3.IntegrityError:
                raise ProcessConflict(
                    f"user {username!r} already exists", reason="conflict"
                ) from None
        return UserRecord(username, user_type, key_id, json.loads(extra_json), now)

    def _check_user_free_locked(self, username: str) -> None:
        row = self._conn().execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone()
        if row is not None:
            raise ProcessConflict(f"user {username!r} already exists", reason="conflict")

    def get_user(self, username: str) -> UserRecord:
        with self._lock:
            return self._get_user_locked(username)

    def _get_user_locked(self, username: str) -> UserRecord:
        row = None
        if isinstance(username, str):
            row = (
                self._conn()
                .execute(f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,))
                .fetchone()
            )
        if row is None:
            raise ProcessNotFound(f"no user {username!r}")
        return _user_record(row)

    def list_users(self) -> list[UserRecord]:
        with self._lock:
            rows = (
                self._conn()
                .execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username")
                .fetchall()
            )
        return [_user_record(row) for row in rows]

    def admins(self) -> list[UserRecord]:
        """The admin users (``user_type`` 0), by username."""
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    f"SELECT {_USER_COLUMNS} FROM users WHERE user_type = ? ORDER BY username",
                    (ADMIN_USER,),
                )
                .fetchall()
            )
        return [_user_record(row) for row in rows]

    def authenticate_user(self, username: str, password: str) -> UserRecord | None:
        """The user if the password matches, else ``None``. Always runs one full scrypt
        (against a dummy hash for an unknown user), so timing does not tell whether a
        username exists. ~50 ms: call it from a thread."""
        row = None
        if isinstance(username, str) and _USERNAME_RE.fullmatch(username):
            with self._lock:
                row = (
                    self._conn()
                    .execute(
                        f"SELECT password, {_USER_COLUMNS} FROM users WHERE username = ?",
                        (username,),
                    )
                    .fetchone()
                )
        stored = row[0] if row is not None else _dummy_hash()
        ok = verify_password(password if isinstance(password, str) else "", stored)
        if row is None or not ok or not isinstance(password, str) or not password:
            return None
        return _user_record(row[1:])

    def set_password(self, username: str, password: str) -> None:
        """Replace the password (hashes it: ~50 ms, call it from a thread)."""
        _check_password(password)
        with self._lock:
            self._get_user_locked(username)
        hashed = hash_password(password)
        self._update_user_columns(username, {"password": hashed})

    def set_user_key(self, username: str, key_id: str | None) -> UserRecord:
        """Bind ``key_id`` to the user (``None`` unbinds)."""
        return self._update_user_columns(username, {"key_id": key_id}, check_key=True)

    def update_user(
        self,
        username: str,
        user_type: int | None = None,
        key_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> UserRecord:
        """Change the given fields; ``None`` leaves a field as it is (to unbind the key, use
        ``set_user_key(username, None)``). ``extra`` replaces the whole dict."""
        changes: dict[str, Any] = {}
        if user_type is not None:
            changes["user_type"] = _check_user_type(user_type)
        if key_id is not None:
            changes["key_id"] = key_id
        if extra is not None:
            changes["extra"] = _dump_extra(extra)
        return self._update_user_columns(username, changes, check_key=key_id is not None)

    def _update_user_columns(
        self, username: str, changes: dict[str, Any], *, check_key: bool = False
    ) -> UserRecord:
        with self._lock:
            db = self._conn()
            self._get_user_locked(username)
            if check_key:
                self._check_key_exists_locked(changes.get("key_id"))
            if changes:
                assignments = ", ".join(f"{column} = ?" for column in changes)
                with db:
                    db.execute(
                        f"UPDATE users SET {assignments} WHERE username = ?",
                        (*changes.values(), username),
                    )
            return self._get_user_locked(username)

    def delete_user(self, username: str) -> None:
        """Delete a user (its key, if any, stays: delete it with :meth:`delete_key`)."""
        with self._lock:
            db = self._conn()
            self._get_user_locked(username)
            with db:
                db.execute("DELETE FROM users WHERE username = ?", (username,))


def _prepare_file(path: str) -> None:
    """Create the parent directory (0700) and the file (0600), or tighten an existing file."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as exc:
        raise KeyStoreError(f"cannot create key store {path}: {exc}") from None
