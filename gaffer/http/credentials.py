"""What a key store keeps of a credential: password hashes (scrypt), key digests, and the
records of keys and users it answers with (no secret in them).

Passwords: ``scrypt$16384$8$1$<salt b64>$<hash b64>`` (n=2**14, r=8, p=1, 32 bytes, a
16-byte salt); ~50 ms each, so hash and verify off the event loop. Keys: never stored,
only their SHA-256 (its first 16 hex digits are the key's public name, ``key_id``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from gaffer.errors import InvalidArgument
from gaffer.http.auth import Permissions

ADMIN_USER = 0
APP_USER = 1

# scrypt parameters of new hashes; verification uses the ones stored with each hash.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_DKLEN = 32
_SALT_BYTES = 16
_SCRYPT_MAX_MEMORY = 128 * 2**20  # verification refuses costs above this (now: 16 MiB)


# -- passwords --------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=dklen,
        maxmem=256 * r * (n + p + 2) + (1 << 20),
    )


def hash_password(password: str) -> str:
    """``scrypt$16384$8$1$<salt b64>$<hash b64>`` with a fresh random salt (~50 ms)."""
    if not isinstance(password, str):
        raise InvalidArgument("password must be a string", reason="bad_password")
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_DKLEN)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Recompute with the parameters of ``stored`` and compare in constant time.

    A malformed ``stored`` (or absurd parameters, from a tampered file) is ``False``."""
    if not isinstance(password, str) or not isinstance(stored, str):
        return False
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return False
    if not (
        1 < n <= 2**20
        and n & (n - 1) == 0
        and 1 <= r <= 32
        and 1 <= p <= 16
        and 128 * r * n <= _SCRYPT_MAX_MEMORY
        and salt
        and 16 <= len(expected) <= 64
    ):
        return False  # malformed, or a cost no gaffer writes (a tampered file)
    try:
        actual = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so that an unknown username
    costs the same scrypt as a wrong password. Random bytes in the format of a real hash:
    no password matches it, and making it costs nothing."""
    salt, digest = secrets.token_bytes(_SALT_BYTES), secrets.token_bytes(_SCRYPT_DKLEN)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


# -- keys -------------------------------------------------------------------------------------


def key_digest(key: str) -> tuple[str, str]:
    """``(key_id, digest)`` of a key: the first 16 hex digits of its SHA-256, and all 64."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return digest[:16], digest


@dataclass(frozen=True)
class KeyRecord:
    """A stored key, without its secret. ``key_id`` is its public name."""

    key_id: str
    label: str
    permissions: Permissions
    parent: str | None
    created: float
    expires: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "label": self.label,
            "permissions": self.permissions.to_dict(),
            "parent": self.parent,
            "created": self.created,
            "expires": self.expires,
        }


@dataclass(frozen=True)
class UserRecord:
    """A stored user, without its password hash."""

    username: str
    user_type: int
    key_id: str | None
    extra: dict[str, Any] = field(hash=False)
    created: float

    @property
    def is_admin_user(self) -> bool:
        return self.user_type == ADMIN_USER

    def to_dict(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "user_type": self.user_type,
            "key_id": self.key_id,
            "extra": json.loads(json.dumps(self.extra)),
            "created": self.created,
        }
