"""Who is asking: an API key (``X-Api-Key``), or nobody.

Without ``require_key``, a request without a key acts with ``LOCAL`` permissions (manage
every job; no admin, no keys, no users); a request with a key acts with that key's
permissions. With ``require_key``, a request without a key gets 401, an unknown or expired
key 403. Keys are checked in the key store by digest, in constant time (keystore.py).
"""

from __future__ import annotations

import logging

from gaffer.http.auth import LOCAL, Permissions
from gaffer.http.handlers.base import RequestError
from gaffer.http.keystore import KeyStore

logger = logging.getLogger("gaffer.http")

LOGIN_TTL = 30 * 24 * 3600.0


class Identity:
    def __init__(
        self, store: KeyStore | None, require_key: bool, login_ttl: float = LOGIN_TTL
    ) -> None:
        if require_key and store is None:
            raise ValueError("require_key needs a key store")
        self.store = store
        self.require_key = require_key
        self.login_ttl = login_ttl

    async def identify(self, key: str | None) -> tuple[Permissions, str | None]:
        if not key:
            if self.require_key:
                raise RequestError(
                    401,
                    "unauthorized",
                    "this gafferd requires an API key: send it in the X-Api-Key header",
                )
            return LOCAL, None
        if self.store is None:
            raise RequestError(403, "forbidden", "this gafferd has no keys: remove X-Api-Key")
        record = self.store.authenticate_key(key)
        if record is None:
            raise RequestError(403, "forbidden", "unknown or expired API key")
        return record.permissions, record.key_id

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
