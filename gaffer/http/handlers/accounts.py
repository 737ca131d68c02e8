"""API keys and users: ``/auth``, ``/keys[/<id>]``, ``/users[/<name>[/password|/key]]``.

* ``/auth`` trades HTTP Basic credentials for a login key: a sub-key of the user's key,
  with the same permissions, that expires (``login_ttl``, 30 days). Keys are stored as
  digests, so a key cannot be given back twice: every login mints one.
* A key that may create keys creates sub-keys of itself, holding at most its own rights
  (no escalation); deleting a key deletes its sub-keys. An admin key may create any key.
* Passwords are hashed with scrypt, in a worker thread (about 50 ms each). Failed logins
  are counted per client address and slowed down (gaffer/http/throttle.py).
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import functools
import math
from typing import Any

from gaffer.errors import ProcessNotFound
from gaffer.http.auth import ADMIN, Permissions, grants_within
from gaffer.http.handlers.base import BaseHandler, Op, RequestError
from gaffer.http.keystore import ADMIN_USER, KeyStore, UserRecord

CHALLENGE = {"WWW-Authenticate": 'Basic realm="gaffer"'}
MAX_KEY_DEPTH = 32  # sub-keys of sub-keys... looked up to find the user a key is of


class AccountsHandler(BaseHandler):
    @property
    def store(self) -> KeyStore:
        identity = self.settings.get("auth")
        if identity is None or identity.store is None:
            raise RequestError(404, "not_found", "this gafferd has no key store (see auth_db)")
        return identity.store

    def is_own_user(self, user: UserRecord) -> bool:
        """Whether the caller acts as ``user``: its key is the user's key, or descends from
        it (a login key) holding *every* right of it. A narrower sub-key is a key handed
        to someone else, for less: it never acts on the user it comes from (changing the
        user's password would give it the user's full rights back at the next login)."""
        if self.key_id is None or user.key_id is None:
            return False
        store = self.store
        try:
            user_key = store.get_key(user.key_id)
        except ProcessNotFound:
            return False
        if not grants_within(user_key.permissions, self.permissions):
            return False
        key_id: str | None = self.key_id
        for _ in range(MAX_KEY_DEPTH):
            if key_id is None:
                return False
            if key_id == user.key_id:
                return True
            try:
                key_id = store.get_key(key_id).parent
            except ProcessNotFound:
                return False
        return False

    def may_see_key(self, key_id: str) -> bool:
        """An admin sees every key; another key itself and its sub-keys, never its
        parent (a sub-key has less power than the key it was made from)."""
        if self.permissions.is_admin or key_id == self.key_id:
            return True
        return self.key_id is not None and any(
            sub.key_id == key_id for sub in self.store.sub_keys(self.key_id)
        )

    def may_manage_user(self, user: UserRecord) -> bool:
        if self.permissions.is_admin:
            return True
        if user.is_admin_user:
            return False
        if self.is_own_user(user):
            return True  # the caller's own user: its password, its details
        if not self.permissions.can_create_user:
            return False
        if user.key_id is None:
            return True
        try:
            key = self.store.get_key(user.key_id)
        except ProcessNotFound:
            return True
        # a user bound to a stronger key would give the caller that key's power
        return grants_within(key.permissions, self.permissions)

    async def in_thread(self, func: Any, *args: Any) -> Any:
        return await self.manager.loop.run_in_executor(None, func, *args)


class AuthHandler(AccountsHandler):
    ops = {
        "get": Op(
            "Trade HTTP Basic credentials for a login API key",
            permission="a user's name and password",
            statuses=(200, 401, 403, 404),
        ),
        "head": Op(
            "Check HTTP Basic credentials",
            permission="a user's name and password",
            statuses=(200, 401, 403, 404),
        ),
    }

    async def prepare(self) -> None:  # the way to get a key: no key needed
        self._cors()

    async def get(self) -> None:
        username, password = self._credentials()
        throttle = self.settings.get("login_throttle")
        address = self.request.remote_ip or "-"
        store = self.store
        if throttle is not None and (wait := throttle.begin(address)) > 0:
            seconds = str(math.ceil(wait))
            raise RequestError(
                429,
                "too_many_requests",
                f"too many failed logins from {address}: try again in {seconds} s",
                {"Retry-After": seconds},
            )
        try:
            user = await self.manager.loop.run_in_executor(
                _password_checks(), store.authenticate_user, username, password
            )
        except BaseException:
            if throttle is not None:
                throttle.failed(address)
            raise
        if user is None:
            if throttle is not None:
                throttle.failed(address)
            raise RequestError(401, "unauthorized", "wrong user name or password", CHALLENGE)
        if throttle is not None:
            throttle.succeeded(address)
        if user.key_id is None:
            raise RequestError(
                403,
                "forbidden",
                f"user {username!r} has no key: an admin binds one with "
                f"'gaffer user:setkey {username} KEY_ID' (PUT /users/{username}/key)",
            )
        parent = self.store.get_key(user.key_id)
        identity = self.settings["auth"]
        key, record = self.store.create_key(
            parent.permissions,
            label=f"login {username}",
            parent=parent.key_id,
            ttl=identity.login_ttl,
        )
        self.set_header("X-Api-Key", key)
        if self.request.method == "HEAD":
            self.finish()
            return
        self.write_json({"api_key": key, "key": record.to_dict()})

    head = get

    def _credentials(self) -> tuple[str, str]:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            raise RequestError(
                401,
                "unauthorized",
                "send a user name and password with HTTP Basic authentication",
                CHALLENGE,
            )
        try:
            username, _, password = base64.b64decode(token).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise RequestError(400, "bad_request", "malformed Basic credentials") from None
        return username, password


class KeysHandler(AccountsHandler):
    ops = {
        "get": Op(
            "The keys the caller may see (an admin sees them all; no secrets)",
            permission="a key",
            statuses=(200, 403, 404),
        ),
        "post": Op(
            "Create a key; its secret is shown once, in the answer",
            body="NewKey",
            permission="create_key (no more rights than the caller's)",
            statuses=(201, 400, 403, 404),
        ),
    }

    def get(self) -> None:
        store = self.store
        if self.permissions.is_admin:
            keys = store.list_keys()
        elif self.key_id is not None:
            keys = [store.get_key(self.key_id), *store.sub_keys(self.key_id)]
        else:
            raise RequestError(403, "forbidden", "send an API key to see keys")
        self.write_json({"keys": [key.to_dict() for key in keys]})

    def post(self) -> None:
        if not self.permissions.can_create_key or self.key_id is None:
            raise RequestError(403, "forbidden", "this key may not create keys")
        body = self.json_body("NewKey")
        permissions = Permissions.from_dict(body["permissions"])
        parent = body.get("parent")
        if not self.permissions.is_admin:
            if parent not in (None, self.key_id) and not self.may_see_key(parent):
                raise RequestError(403, "forbidden", "a key may only make sub-keys of itself")
            parent = parent or self.key_id  # the store refuses escalation from the parent
        key, record = self.store.create_key(
            permissions, label=body.get("label", ""), parent=parent, ttl=body.get("ttl")
        )
        self.set_header("X-Api-Key", key)
        self.set_header("Location", f"/keys/{record.key_id}")
        self.write_json({"ok": True, "api_key": key, "key": record.to_dict()}, 201)


class KeyHandler(AccountsHandler):
    ops = {
        "head": Op(
            "Whether the key exists",
            permission="admin, or the key or its parent",
            statuses=(200, 403, 404),
        ),
        "get": Op(
            "A key (no secret) and its sub-keys",
            permission="admin, or the key or its parent",
            statuses=(200, 403, 404),
        ),
        "delete": Op(
            "Delete a key and its sub-keys",
            permission="admin, or the key or its parent",
            statuses=(200, 403, 404),
        ),
    }

    def _record(self, key: str) -> Any:
        record = self.store.get_key(key)  # 404
        if not self.may_see_key(record.key_id):
            raise RequestError(403, "forbidden", "this key may not see that key")
        return record

    def head(self, key: str) -> None:
        self._record(key)
        self.finish()

    def get(self, key: str) -> None:
        record = self._record(key)
        subs = [sub.to_dict() for sub in self.store.sub_keys(record.key_id)]
        self.write_json({**record.to_dict(), "keys": subs})

    def delete(self, key: str) -> None:
        record = self._record(key)
        deleted = self.store.delete_key(record.key_id)
        self.write_json({"ok": True, "deleted": deleted})


class UsersHandler(AccountsHandler):
    ops = {
        "get": Op(
            "Every user (no password hashes)",
            permission="admin or create_user",
            statuses=(200, 403, 404),
        ),
        "post": Op(
            "Create a user",
            body="NewUser",
            permission="create_user (an admin user needs admin)",
            statuses=(201, 400, 403, 404, 409),
        ),
    }

    def get(self) -> None:
        if not self.permissions.can_create_user:
            raise RequestError(403, "forbidden", "this key may not list users")
        self.write_json({"users": [user.to_dict() for user in self.store.list_users()]})

    async def post(self) -> None:
        if not self.permissions.can_create_user:
            raise RequestError(403, "forbidden", "this key may not create users")
        body = self.json_body("NewUser")
        user_type = body.get("user_type", 1)
        if user_type == ADMIN_USER and not self.permissions.is_admin:
            raise RequestError(403, "forbidden", "only an admin key may create an admin user")
        key_id = body.get("key")
        if key_id is not None and not self.may_see_key(key_id):
            raise RequestError(
                403, "forbidden", "a user may only be bound to a key the caller may see"
            )
        user = await self.in_thread(
            self.store.create_user,
            body["username"],
            body["password"],
            user_type,
            key_id,
            body.get("extra"),
        )
        self.set_header("Location", f"/users/{user.username}")
        self.write_json({"ok": True, "user": user.to_dict()}, 201)


class UserAccess(AccountsHandler):
    """Handlers of one user: who may manage it."""

    def user(self, username: str) -> UserRecord:
        user = self.store.get_user(username)  # 404
        if not self.may_manage_user(user):
            raise RequestError(403, "forbidden", f"this key may not manage user {username!r}")
        return user


class UserHandler(UserAccess):
    ops = {
        "head": Op(
            "Whether the user exists",
            permission="create_user, or the user's key",
            statuses=(200, 403, 404),
        ),
        "get": Op(
            "A user (no password hash)",
            permission="create_user, or the user's key",
            statuses=(200, 403, 404),
        ),
        "put": Op(
            "Change a user: password, user_type, key, extra",
            body="UpdateUser",
            permission="create_user, or the user's key",
            statuses=(200, 400, 403, 404),
        ),
        "delete": Op(
            "Delete a user (not its key)", permission="create_user", statuses=(200, 403, 404)
        ),
    }

    def head(self, username: str) -> None:
        self.user(username)
        self.finish()

    def get(self, username: str) -> None:
        self.write_json(self.user(username).to_dict())

    async def put(self, username: str) -> None:
        user = self.user(username)
        body = self.json_body("UpdateUser")
        if body.get("user_type") == ADMIN_USER and not self.permissions.is_admin:
            raise RequestError(403, "forbidden", "only an admin key may make an admin user")
        if "key" in body and body["key"] is not None and not self.may_see_key(body["key"]):
            raise RequestError(
                403, "forbidden", "a user may only be bound to a key the caller may see"
            )
        if "password" in body:
            await self.in_thread(self.store.set_password, user.username, body["password"])
        if "key" in body:
            self.store.set_user_key(user.username, body["key"])
        if "user_type" in body or "extra" in body:
            self.store.update_user(
                user.username, user_type=body.get("user_type"), extra=body.get("extra")
            )
        self.write_json({"ok": True, "user": self.store.get_user(user.username).to_dict()})

    def delete(self, username: str) -> None:
        user = self.user(username)
        if not self.permissions.can_create_user:
            raise RequestError(403, "forbidden", "this key may not delete users")
        self.store.delete_user(user.username)
        self.write_json({"ok": True})


class UserPasswordHandler(UserAccess):
    ops = {
        "put": Op(
            "Set a user's password",
            body="Password",
            permission="create_user, or the user's key",
            statuses=(200, 400, 403, 404),
        )
    }

    async def put(self, username: str) -> None:
        user = self.user(username)
        body = self.json_body("Password")
        await self.in_thread(self.store.set_password, user.username, body["password"])
        self.write_json({"ok": True})


class UserKeyHandler(UserAccess):
    ops = {
        "put": Op(
            "Bind a user to a key (null: none)",
            body="UserKey",
            permission="create_user, or the user's key",
            statuses=(200, 400, 403, 404),
        )
    }

    def put(self, username: str) -> None:
        user = self.user(username)
        body = self.json_body("UserKey")
        if body["key"] is not None and not self.may_see_key(body["key"]):
            raise RequestError(
                403, "forbidden", "a user may only be bound to a key the caller may see"
            )
        self.store.set_user_key(user.username, body["key"])
        self.write_json({"ok": True})


@functools.cache
def _password_checks() -> concurrent.futures.ThreadPoolExecutor:
    """The threads of /auth's password checks: two, for all clients together (a scrypt
    takes ~16 MiB: twenty guessers at once must not take twenty times that)."""
    return concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="gaffer-login")


def create_admin(store: KeyStore, username: str, password: str) -> tuple[str, UserRecord]:
    """An admin key and an admin user bound to it (gafferd --create-admin-user)."""
    key, record = store.create_key(ADMIN, label=f"admin key of {username}")
    try:
        user = store.create_user(username, password, ADMIN_USER, record.key_id)
    except Exception:
        store.delete_key(record.key_id)
        raise
    return key, user
