"""What every handler shares: who is asking (keys), bodies (size, JSON, schema), and errors.

Errors are mapped to statuses in one place (``error_status``): gaffer's ``ProcessError``
carries an HTTP-like ``errno`` and a stable ``reason``; the body of every error is
``{"error": <code>, "reason": <text for a person>}``. A handler never lets a traceback
reach the client: unexpected exceptions are logged with their traceback and answered with
a 500 that says to look at gafferd's log.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import tornado.web

from gaffer.core.config import InvalidOption
from gaffer.core.names import MAX_DIGITS
from gaffer.errors import ProcessError
from gaffer.http.auth import LOCAL, Permissions, redact_env
from gaffer.http.schema import SCHEMAS, SchemaError, validate

logger = logging.getLogger("gaffer.http")


class ApiError(tornado.web.HTTPError):
    """An error answered as ``{"error": code, "reason": reason}`` with ``status``."""

    def __init__(
        self, status: int, code: str, reason: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status, self.code, self.api_reason = status, code, reason
        self.headers = headers or {}  # sent with the error (WWW-Authenticate...)

    def __str__(self) -> str:
        return self.api_reason


@dataclass(frozen=True)
class Op:
    """What an operation is, for /openapi.json (and the body it reads)."""

    summary: str
    body: str | None = None  # a schema of schema.SCHEMAS, or "text"
    permission: str = "none"
    statuses: tuple[int, ...] = (200,)
    response: str = "application/json"
    params: dict[str, str] = field(default_factory=dict)  # query parameters


def error_status(exc: BaseException) -> tuple[int, str, str]:
    """(status, code, reason) of an exception: the one table of the HTTP layer."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.api_reason
    if isinstance(exc, ProcessError):
        status = exc.errno if 400 <= exc.errno < 600 else 500
        return status, exc.reason, exc.message
    if isinstance(exc, InvalidOption):  # a job config that does not validate
        return 400, "bad_config", str(exc)
    if isinstance(exc, tornado.web.HTTPError):
        reason = (
            exc.log_message % exc.args
            if exc.log_message and exc.args
            else (exc.log_message or exc.reason or "")
        )
        return exc.status_code, _CODES.get(exc.status_code, "error"), reason
    return 500, "internal_error", "internal error: see gafferd's log"


VERBS = ("get", "head", "post", "put", "delete", "patch")


def _after_body(method: Any) -> Any:
    """Run the verb only if nothing was refused while the body was still coming."""

    @functools.wraps(method)
    def verb(self: BaseHandler, *args: Any, **kwargs: Any) -> Any:
        if self._deferred is not None:
            raise self._deferred
        return method(self, *args, **kwargs)

    return verb


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    ops: dict[str, Op] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in VERBS:
            if name in cls.__dict__:
                setattr(cls, name, _after_body(cls.__dict__[name]))

    def initialize(self, **kwargs: Any) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._deferred: ApiError | None = None
        self.permissions: Permissions = LOCAL
        self.key_id: str | None = None

    # -- who -------------------------------------------------------------------------------
    @property
    def manager(self) -> Any:
        return self.settings["manager"]

    async def prepare(self) -> None:
        self._cors()
        try:
            limit = self.settings["max_body_bytes"]
            length = self.request.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise ApiError(413, "too_large", f"the body is {length} bytes; at most {limit}")
            auth = self.settings.get("auth")
            if auth is not None:
                self.permissions, self.key_id = await auth.identify(
                    self.request.headers.get("X-Api-Key")
                )
        except ApiError as exc:
            if not self._has_body():
                raise
            # answering before the body is read would close the connection under a client
            # still sending it (a broken pipe, not our answer): read it (and drop it) first
            self._deferred = exc
            self._too_large = True

    def _has_body(self) -> bool:
        headers = self.request.headers
        length = headers.get("Content-Length", "0")
        return (length.isdigit() and int(length) > 0) or "chunked" in headers.get(
            "Transfer-Encoding", ""
        ).lower()

    def require(self, right: str, target: str = "*") -> None:
        """Raise 403 unless the key may ``right`` ("read", "write", "manage") ``target``."""
        allowed = {
            "read": self.permissions.can_read,
            "write": self.permissions.can_write,
            "manage": self.permissions.can_manage,
        }[right](target)
        if not allowed:
            what = "everything" if target == "*" else target
            raise ApiError(403, "forbidden", f"this key may not {right} {what}")

    def require_admin(self) -> None:
        if not self.permissions.is_admin:
            raise ApiError(403, "forbidden", "this needs an admin key")

    def redact(self, env: dict[str, str]) -> dict[str, str]:
        """Secrets in environments are shown to admin keys only."""
        return env if self.permissions.is_admin else redact_env(env)

    # -- bodies ----------------------------------------------------------------------------
    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.settings["max_body_bytes"]:
            self._too_large = True
            self._chunks.clear()
        elif not self._too_large:
            self._chunks.append(chunk)

    @property
    def body(self) -> bytes:
        if self._too_large:
            limit = self.settings["max_body_bytes"]
            raise ApiError(413, "too_large", f"the body is over {limit} bytes")
        return b"".join(self._chunks)

    def json_body(self, schema: str) -> Any:
        raw = self.body
        if not raw.strip():
            data: Any = {}
        else:
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ApiError(400, "invalid_json", f"the body is not JSON: {exc}") from None
            _check_unicode(data)
        try:
            validate(data, SCHEMAS[schema])
        except SchemaError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        return data

    # -- answers ---------------------------------------------------------------------------
    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_text(self, text: str, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text)

    def send_error_json(
        self, status: int, code: str, reason: str, headers: dict[str, str] | None = None
    ) -> None:
        self.clear()
        self._cors()
        for name, value in (headers or {}).items():
            self.set_header(name, value)
        self.write_json({"error": code, "reason": reason}, status)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        headers = None
        if exc_info is not None:
            status, code, reason = error_status(exc_info[1])
            headers = getattr(exc_info[1], "headers", None)
        else:
            status, code, reason = status_code, _CODES.get(status_code, "error"), self._reason
        if status == 405:
            reason = f"{self.request.method} is not allowed on {self.request.path}"
        self.send_error_json(status, code, reason or self._reason, headers)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError | ProcessError | InvalidOption):
            return  # an answered error: the access log line says it
        logger.error(
            "%s %s failed", self.request.method, self.request.uri, exc_info=(typ, value, tb)
        )

    def _cors(self) -> None:
        origins = self.settings.get("cors_origins") or ()
        origin = self.request.headers.get("Origin")
        if origin and (origin in origins or "*" in origins):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")
            self.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, HEAD, OPTIONS")
            self.set_header("Access-Control-Allow-Headers", "Content-Type, X-Api-Key")
            self.set_header("Access-Control-Max-Age", "86400")

    def options(self, *args: Any, **kwargs: Any) -> None:
        """CORS pre-flight: 204 (the headers say what is allowed, if anything)."""
        self.set_status(204)
        self.finish()


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


def as_pid(text: str) -> int:
    """A pid from a path: any run of digits (a long one names no process: 404)."""
    if not (text.isascii() and text.isdigit()):
        raise ApiError(400, "bad_request", f"the pid must be a number, got {text!r}")
    if len(text) > MAX_DIGITS:
        raise ApiError(404, "not_found", f"no process with pid {text[:20]}...")
    return int(text)


def _check_unicode(data: Any, where: str = "the body") -> None:
    """JSON may escape lone surrogates ("\\ud800"), which are no text: no file name,
    environment, URL or log line can hold them. Refused wherever they are."""
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(
                400, "bad_request", f"{where} holds a lone surrogate, which is not text"
            ) from None
    elif isinstance(data, dict):
        for key, value in data.items():
            _check_unicode(key, where)
            _check_unicode(value, f"{where}[{key!r}]")
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _check_unicode(value, f"{where}[{index}]")
