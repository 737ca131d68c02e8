"""Who may do what: the permission model of API keys, pure (no I/O).

A key carries :class:`Permissions`: three booleans (``admin``, ``create_key``,
``create_user``) and three sets of entries (``manage``, ``write``, ``read``). An entry is

* ``"*"``: everything;
* a session id (a bare name, no dot): the session and every job of it;
* a job id ``"session.job"``: that job only, not its session.

Rights imply each other: ``admin`` gives everything; ``manage`` gives ``write``, which gives
``read``. A target of a check is a session id, a ``"session.job"`` id, or ``"*"`` meaning
"everything at once" (the global job list, loading into any session...), which only a ``"*"``
entry (or ``admin``) covers.

The HTTP layer must give job targets in their full ``session.job`` form: a bare name is
read as a session here, never as a job of the ``default`` session.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gaffer.errors import InvalidArgument, PermissionDenied

__all__ = [
    "ADMIN",
    "LOCAL",
    "REDACTED",
    "RIGHTS",
    "SECRET_NAMES",
    "PermissionDenied",
    "Permissions",
    "grants_within",
    "redact_env",
]

#: The rights a target is checked against, weakest first.
RIGHTS = ("read", "write", "manage")

_FLAGS = ("admin", "create_key", "create_user")
_FIELDS = (*_FLAGS, "manage", "write", "read")


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(message, reason="bad_permissions")


def _normalize_entry(name: str, entry: Any) -> str:
    """Check one ``manage``/``write``/``read`` entry; ``"s/j"`` is stored as ``"s.j"``."""
    if not isinstance(entry, str) or not entry:
        raise _bad(f"permission {name!r}: entries must be non-empty strings, got {entry!r}")
    if entry == "*":
        return entry
    if "*" in entry:
        raise _bad(
            f"permission {name!r}: bad entry {entry!r}: '*' is only allowed alone "
            "(there are no partial wildcards)"
        )
    cuts = [index for index in (entry.find("."), entry.find("/")) if index >= 0]
    if not cuts:
        return entry  # a session
    cut = min(cuts)
    session, job = entry[:cut], entry[cut + 1 :]
    if not session or not job:
        raise _bad(
            f"permission {name!r}: bad entry {entry!r}: expected '*', a session id "
            "or a 'session.job' id"
        )
    return f"{session}.{job}"


def _split_target(target: str) -> tuple[str, str | None]:
    """``"s"`` -> ``("s", None)``; ``"s.j"`` (or ``"s/j"``) -> ``("s", "j")``."""
    if not isinstance(target, str) or not target:
        raise InvalidArgument(f"bad target {target!r}", reason="bad_name")
    cuts = [index for index in (target.find("."), target.find("/")) if index >= 0]
    if not cuts:
        return target, None
    cut = min(cuts)
    session, job = target[:cut], target[cut + 1 :]
    if not session or not job:
        raise InvalidArgument(
            f"bad target {target!r}: expected a session id or session.job", reason="bad_name"
        )
    return session, job


def _covers(entries: frozenset[str], target: str, admin: bool) -> bool:
    # the target is checked first: a malformed one is an error for every key, admin included
    session, job = (target, None) if target == "*" else _split_target(target)
    if admin or "*" in entries:
        return True
    if target == "*":
        return False
    if session in entries:
        return True
    return job is not None and f"{session}.{job}" in entries


@dataclass(frozen=True)
class Permissions:
    """What a key (or a user through its key) may do. Immutable and hashable."""

    admin: bool = False
    create_key: bool = False
    create_user: bool = False
    manage: frozenset[str] = field(default_factory=frozenset)
    write: frozenset[str] = field(default_factory=frozenset)
    read: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for name in _FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise _bad(f"permission {name!r} must be true or false")
        for name in RIGHTS:
            value = getattr(self, name)
            if isinstance(value, str | bytes) or not isinstance(value, Iterable):
                raise _bad(f"permission {name!r} must be a list of strings")
            entries = frozenset(_normalize_entry(name, entry) for entry in value)
            object.__setattr__(self, name, entries)

    def reads_anything(self) -> bool:
        """The key may read at least one thing (a job, a session, everything)."""
        return bool(self.is_admin or self.read or self.write or self.manage)

    @classmethod
    def from_dict(cls, data: Any) -> Permissions:
        """Build from the JSON form, strictly: unknown keys and wrong types are errors
        (``InvalidArgument``, reason ``bad_permissions``). Missing keys default to no right."""
        if not isinstance(data, Mapping):
            raise _bad(f"permissions must be an object, got {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in _FIELDS:
                raise _bad(f"unknown permission {key!r} (expected one of {', '.join(_FIELDS)})")
            if key in _FLAGS:
                if not isinstance(value, bool):
                    raise _bad(f"permission {key!r} must be true or false, got {value!r}")
            elif not isinstance(value, list | tuple):
                raise _bad(f"permission {key!r} must be a list of strings, got {value!r}")
            kwargs[key] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, entries sorted: ``from_dict(p.to_dict()) == p``."""
        return {
            "admin": self.admin,
            "create_key": self.create_key,
            "create_user": self.create_user,
            "manage": sorted(self.manage),
            "write": sorted(self.write),
            "read": sorted(self.read),
        }

    # -- checks ------------------------------------------------------------------------------

    @property
    def is_admin(self) -> bool:
        return self.admin

    @property
    def can_create_key(self) -> bool:
        return self.admin or self.create_key

    @property
    def can_create_user(self) -> bool:
        return self.admin or self.create_user

    def can_read(self, target: str) -> bool:
        return _covers(self.read | self.write | self.manage, target, self.admin)

    def can_write(self, target: str) -> bool:
        return _covers(self.write | self.manage, target, self.admin)

    def can_manage(self, target: str) -> bool:
        return _covers(self.manage, target, self.admin)

    def can(self, right: str, target: str) -> bool:
        """``can("write", t)`` is ``can_write(t)``; ``right`` is one of :data:`RIGHTS`."""
        if right == "read":
            return self.can_read(target)
        if right == "write":
            return self.can_write(target)
        if right == "manage":
            return self.can_manage(target)
        raise ValueError(f"unknown right {right!r}")

    def require(self, right: str, target: str) -> None:
        """Raise :class:`PermissionDenied` unless ``can(right, target)``."""
        if not self.can(right, target):
            what = "everything" if target == "*" else repr(target)
            raise PermissionDenied(f"this key may not {right} {what}")


def grants_within(child: Permissions, parent: Permissions) -> bool:
    """True when ``parent`` holds every right of ``child`` (no escalation through a sub-key).

    An admin parent may grant anything. Otherwise the child is not admin, has
    ``create_key``/``create_user`` only if the parent has them, and each of its
    ``manage``/``write``/``read`` entries is covered by the parent's same right (``"*"`` only
    by a parent ``"*"``; a session only by the session or ``"*"``, not by its jobs).
    """
    if parent.admin:
        return True
    if child.admin:
        return False
    if child.create_key and not parent.can_create_key:
        return False
    if child.create_user and not parent.can_create_user:
        return False
    return (
        all(parent.can_manage(entry) for entry in child.manage)
        and all(parent.can_write(entry) for entry in child.write)
        and all(parent.can_read(entry) for entry in child.read)
    )


#: Everything.
ADMIN = Permissions(admin=True)

#: When auth is disabled (the local unix socket): run everything, but no key or user
#: administration (there is no key store to administer, and no key to create sub-keys from).
LOCAL = Permissions(manage=frozenset({"*"}))

#: Environment variable names whose values are hidden in API output.
SECRET_NAMES = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)

REDACTED = "<redacted>"


#: Values that carry credentials whatever their name: ``scheme://user:password@host``.
#: Possessive and anchored on "://": linear in the value (a value of 1 MiB of letters
#: made a scheme-first pattern backtrack for minutes).
SECRET_VALUES = re.compile(r"(?<=[A-Za-z0-9])://[^/@\s:]*+:[^/@\s]*+@")


def redact_env(env: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``env`` where the value of every variable whose name contains KEY, SECRET,
    TOKEN or PASSWORD (any case), or that holds a URL with a password
    (``postgres://user:pw@host``), is ``"<redacted>"``. ``None`` gives ``{}``."""
    if not env:
        return {}
    return {
        name: REDACTED
        if SECRET_NAMES.search(str(name))
        or (isinstance(value, str) and SECRET_VALUES.search(value))
        else value
        for name, value in env.items()
    }
