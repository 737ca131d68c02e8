"""login, users and keys."""

from __future__ import annotations

import getpass
import re
from typing import Any

from gaffer.cli import userconfig
from gaffer.cli.commands import arg, command
from gaffer.cli.context import Context, UsageError


def _password(given: str | None, confirm: bool = True) -> str:
    if given:
        return given
    first = getpass.getpass("password: ")
    if confirm and first != getpass.getpass("password again: "):
        raise UsageError("the passwords differ")
    return first


@command("login", arg("-u", "--username"), arg("-p", "--password"))
async def login(context: Context) -> int:
    """Log in with a user name and password; the key given is saved for next time.

    The key is saved for that address in ~/.gaffer/gaffer.ini."""
    username = context.args.username or input("user name: ").strip()
    password = _password(context.args.password, confirm=False)
    key = await context.server().authenticate(username, password)
    path = userconfig.save(context.url, key=key)
    context.out.write(f"logged in to {context.url} as {username}; key saved in {path}")
    return 0


def _show(context: Context, value: Any) -> None:
    if context.out.json:
        context.out.data(value)
    elif isinstance(value, dict):
        context.out.pairs(value)
    else:
        context.out.write(str(value))


@command("users")
async def users(context: Context) -> int:
    """List the users."""
    found = await context.server().users.all_users()
    if context.out.json:
        context.out.data(found)
    else:
        context.out.table(
            ("USER", "TYPE", "KEY"),
            [
                (
                    user["username"],
                    "admin" if user["user_type"] == 0 else "user",
                    user.get("key_id") or "-",
                )
                for user in found
            ],
        )
    return 0


@command("user", arg("username"))
async def user(context: Context) -> int:
    """Show a user (never its password)."""
    _show(context, await context.server().users.get_user(context.args.username))
    return 0


@command(
    "user:add",
    arg("username"),
    arg("-p", "--password"),
    arg("-k", "--key", help="the key id the user gets"),
    arg(
        "-t",
        "--type",
        type=int,
        choices=(0, 1),
        default=1,
        help="0 admin user, 1 app user (default)",
    ),
)
async def user_add(context: Context) -> int:
    """Create a user."""
    created = await context.server().users.create_user(
        context.args.username, _password(context.args.password), context.args.type, context.args.key
    )
    context.out.write(f"user {created['username']} created")
    return 0


@command("user:del", arg("username"))
async def user_del(context: Context) -> int:
    """Delete a user (not its key)."""
    await context.server().users.delete_user(context.args.username)
    context.out.write(f"user {context.args.username} deleted")
    return 0


@command("user:setpassword", arg("username"), arg("-p", "--password"))
async def user_setpassword(context: Context) -> int:
    """Change a user's password."""
    await context.server().users.set_password(
        context.args.username, _password(context.args.password)
    )
    context.out.write(f"password of {context.args.username} changed")
    return 0


@command("user:setkey", arg("username"), arg("key", nargs="?", help="a key id (none: unbind)"))
async def user_setkey(context: Context) -> int:
    """Bind a user to a key (login then gives sub-keys of it)."""
    await context.server().users.set_key(context.args.username, context.args.key)
    context.out.write(f"key of {context.args.username} set")
    return 0


@command("keys")
async def keys(context: Context) -> int:
    """List the keys this key may see (all of them for an admin key)."""
    found = await context.server().keys.all_keys()
    if context.out.json:
        context.out.data(found)
    else:
        context.out.table(
            ("KEY ID", "LABEL", "PARENT", "PERMISSIONS"),
            [
                (
                    key["key_id"],
                    key.get("label") or "-",
                    key.get("parent") or "-",
                    describe_permissions(key["permissions"]),
                )
                for key in found
            ],
        )
    return 0


@command("key", arg("key_id"))
async def key(context: Context) -> int:
    """Show a key and its sub-keys (never its secret)."""
    _show(context, await context.server().keys.get_key(context.args.key_id))
    return 0


PERMISSION = re.compile(r"^(?P<target>[^+]*)\+(?P<flags>[a-z]+)$")


def parse_permissions(specs: list[str]) -> dict[str, Any]:
    """``+a`` admin, ``+k`` create_key, ``+u`` create_user, ``+m`` manage everything,
    ``SESSION[.JOB]+rwm`` read, write, manage that session or job."""
    permissions: dict[str, Any] = {}
    for spec in specs:
        match = PERMISSION.match(spec)
        if not match:
            raise UsageError(
                f"bad permission {spec!r}: expected +a, +k, +u, +m or SESSION[.JOB]+rwm"
            )
        target, flags = match["target"], match["flags"]
        if not target:
            for flag in flags:
                if flag not in "akum":
                    raise UsageError(f"bad permission {spec!r}: +{flag} means nothing alone")
                if flag == "m":
                    permissions.setdefault("manage", []).append("*")
                else:
                    permissions[{"a": "admin", "k": "create_key", "u": "create_user"}[flag]] = True
            continue
        for flag in flags:
            right = {"r": "read", "w": "write", "m": "manage"}.get(flag)
            if right is None:
                raise UsageError(f"bad permission {spec!r}: use r, w or m after a target")
            permissions.setdefault(right, []).append(target)
    return permissions


def describe_permissions(permissions: dict[str, Any]) -> str:
    parts = [name for name in ("admin", "create_key", "create_user") if permissions.get(name)]
    for right in ("manage", "write", "read"):
        if permissions.get(right):
            parts.append(f"{right}:{','.join(permissions[right])}")
    return " ".join(parts) or "-"


@command(
    "key:create",
    arg(
        "permissions",
        nargs="+",
        metavar="PERMISSION",
        help="+a admin, +k create_key, +u create_user, +m manage all, SESSION[.JOB]+rwm",
    ),
    arg("--label", default=""),
    arg("--ttl", type=float, metavar="SECONDS"),
)
async def key_create(context: Context) -> int:
    """Create a key; its secret is printed once."""
    permissions = parse_permissions(context.args.permissions)
    secret = await context.server().keys.create_key(
        permissions, context.args.label, ttl=context.args.ttl
    )
    if context.out.json:
        context.out.data({"api_key": secret, "permissions": permissions})
    else:
        context.out.write(f"key created (shown once): {secret}")
    return 0


@command("key:delete", arg("key_id"))
async def key_delete(context: Context) -> int:
    """Delete a key and every sub-key of it."""
    deleted = await context.server().keys.delete_key(context.args.key_id)
    context.out.write(f"deleted {len(deleted)} key(s): {', '.join(deleted)}")
    return 0
