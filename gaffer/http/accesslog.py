"""The access log of the HTTP API (logger ``gaffer.http.access``): quiet by default.

One line per request, at a level that says how much it matters:

* a request that changes something (POST, PUT, DELETE, PATCH): INFO, with the key that
  made it (``key=<key_id>``, ``key=-`` without one), so gafferd's log says who did what;
* a read (GET, HEAD, OPTIONS; ``gaffer ps`` makes several): DEBUG;
* refused for its key (401, 403): WARNING, whatever the method;
* a server error (5xx): ERROR (its traceback was logged by the handler).
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("gaffer.http.access")

MUTATING = frozenset(("POST", "PUT", "DELETE", "PATCH"))


def level_of(method: str, status: int) -> int:
    if status >= 500:
        return logging.ERROR
    if status in (401, 403):
        return logging.WARNING
    return logging.INFO if method in MUTATING else logging.DEBUG


def access_log(handler: Any) -> None:
    """Tornado's ``log_function``: called once each request is answered."""
    request = handler.request
    status = handler.get_status()
    level = level_of(request.method or "", status)
    if logger.isEnabledFor(level):
        logger.log(
            level,
            "%s %s %d %.1fms key=%s %s",
            request.method,
            request.path,
            status,
            1000 * request.request_time(),
            getattr(handler, "key_id", None) or "-",
            request.remote_ip or "-",
        )
