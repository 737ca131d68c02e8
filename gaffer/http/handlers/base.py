"""What every handler shares: JSON bodies, and errors mapped to statuses in one place."""

from __future__ import annotations

import json
import logging
from typing import Any

import tornado.web

from gaffer.errors import ProcessError

logger = logging.getLogger("gaffer.http")


class BaseHandler(tornado.web.RequestHandler):
    @property
    def manager(self) -> Any:
        return self.settings["manager"]

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason
        code = _CODES.get(status_code, "error")
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            exc = exc_info[1]
            if isinstance(exc, ProcessError):
                code, reason = exc.reason, exc.message
            elif isinstance(exc, tornado.web.HTTPError) and exc.log_message:
                reason = exc.log_message % exc.args if exc.args else exc.log_message
            elif status_code >= 500:
                reason = "internal error: see gafferd's log"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": code, "reason": reason}))

    def send_error_json(self, status: int, code: str, reason: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": code, "reason": reason}))


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    500: "internal_error",
}
