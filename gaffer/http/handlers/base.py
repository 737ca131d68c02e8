"""What every handler shares: who is asking (keys), bodies (size, JSON, schema), and errors.

Errors are mapped to statuses in one place (``error_status``, from the class of the
error: the engine's errors know no HTTP); the body of every error is ``{"error": <code>,
"reason": <text for a person>}``. A handler never lets a traceback reach the client:
unexpected exceptions are logged with their traceback and answered with a 500 that says to
look at gafferd's log.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import tornado.web

from gaffer.core.names import MAX_DIGITS
from gaffer.errors import (
    ConfigError,
    GafferError,
    InvalidArgument,
    ManagerStopped,
    PermissionDenied,
    ProcessConflict,
    ProcessError,
    ProcessLimitReached,
    ProcessNotFound,
    ProtocolError,
    SpawnError,
    StreamNotFound,
    StreamNotRedirected,
)
from gaffer.http import commands
from gaffer.http.auth import LOCAL, Permissions
from gaffer.http.schema import SCHEMAS, SchemaError, validate

logger = logging.getLogger("gaffer.http")


class RequestError(GafferError, tornado.web.HTTPError):
    """An error answered as ``{"error": code, "reason": reason}`` with ``status``."""

    def __init__(
        self, status: int, code: str, reason: str, headers: dict[str, str] | None = None
    ) -> None:
        tornado.web.HTTPError.__init__(self, status)
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


#: The HTTP status of each class of error (the first of its classes found here, most
#: derived first); ``ProcessError.reason`` is the ``"error"`` code of the body.
STATUSES: dict[type[BaseException], int] = {
    PermissionDenied: 403,
    ProcessNotFound: 404,
    StreamNotFound: 404,
    ProcessConflict: 409,
    StreamNotRedirected: 409,
    ProcessLimitReached: 409,
    ManagerStopped: 409,
    InvalidArgument: 400,
    SpawnError: 500,
    ProcessError: 500,
}
_status_of: dict[type[BaseException], int] = {}


def _status(kind: type[BaseException]) -> int:
    status = _status_of.get(kind)
    if status is None:
        status = next((STATUSES[k] for k in kind.__mro__ if k in STATUSES), 500)
        _status_of[kind] = status
    return status


def error_status(exc: BaseException) -> tuple[int, str, str]:
    """(status, code, reason) of an exception: the one table of the HTTP layer."""
    if isinstance(exc, RequestError):
        return exc.status, exc.code, exc.api_reason
    if isinstance(exc, ProcessError):
        return _status(type(exc)), exc.reason, exc.message
    if isinstance(exc, ConfigError):  # a job config that does not validate
        return 400, "bad_config", str(exc)
    if isinstance(exc, ProtocolError):
        return 400, "bad_request", str(exc)
    if isinstance(exc, tornado.web.HTTPError):
        reason = (
            exc.log_message % exc.args
            if exc.log_message and exc.args
            else (exc.log_message or exc.reason or "")
        )
        return exc.status_code, _CODES.get(exc.status_code, "error"), reason
    return 500, "internal_error", "internal error: see gafferd's log"


VERBS = ("get", "head", "post", "put", "delete", "patch")


MAX_JSON_DEPTH = 32  # nesting of a JSON body: no request needs more
HARD_BODY_LIMIT = 16 * 1024 * 1024  # a body longer than this is not even read


def _after_body(method: Any) -> Any:
    """Run the verb only if nothing was refused while the body was still coming."""

    @functools.wraps(method)
    def verb(self: BaseHandler, *args: Any, **kwargs: Any) -> Any:
        self._body_read = True  # tornado calls verbs once the whole body came
        if self._deferred is not None:
            raise self._deferred
        return method(self, *args, **kwargs)

    return verb


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    ops: dict[str, Op] = {}
    #: Content-Types a body may have: JSON only, never a type a web page may send to
    #: another site without a CORS pre-flight (text/plain, forms)
    body_types: tuple[str, ...] = ("application/json",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in VERBS:
            if name in cls.__dict__:
                setattr(cls, name, _after_body(cls.__dict__[name]))

    def initialize(self, **kwargs: Any) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._deferred: RequestError | None = None
        self._body_read = False
        self.permissions: Permissions = LOCAL
        self.key_id: str | None = None

    # -- who -------------------------------------------------------------------------------
    @property
    def manager(self) -> Any:
        return self.settings["manager"]

    async def prepare(self) -> None:
        self._cors()
        try:
            self.check_body()
            auth = self.settings.get("auth")
            if auth is not None:
                self.permissions, self.key_id = await auth.identify(
                    self.request.headers.get("X-Api-Key")
                )
        except RequestError as exc:
            self.refuse(exc)

    def refuse(self, exc: RequestError) -> None:
        """Answer ``exc`` from the verb, once the body (if one comes) is read and dropped.
        An answer from prepare() would close the connection (tornado closes a connection
        whose request it has not read to the end), under a client that may still be
        sending (a broken pipe, not our answer). A body too long to be worth reading is
        not read: that answer says ``Connection: close``."""
        length = self.request.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > HARD_BODY_LIMIT:
            raise exc
        self._deferred = exc
        self._too_large = True

    def check_body(self) -> None:
        """413 for a declared length over the limit, 415 for a body that is not JSON."""
        if not self._has_body():
            return
        headers = self.request.headers
        limit = self.settings["max_body_bytes"]
        length = headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise RequestError(413, "too_large", f"the body is {length} bytes; at most {limit}")
        kind = headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if kind not in self.body_types:
            raise RequestError(
                415,
                "unsupported_media_type",
                f"send the body as {' or '.join(self.body_types)} (Content-Type), "
                f"not {kind[:60] or 'without a type'}",
            )

    def _has_body(self) -> bool:
        headers = self.request.headers
        length = headers.get("Content-Length", "0")
        return (length.isdigit() and int(length) > 0) or "chunked" in headers.get(
            "Transfer-Encoding", ""
        ).lower()

    def _body_unread(self) -> bool:
        """A body came (or is coming) that nobody read: the connection cannot go on."""
        if self._body_read or not self._has_body():
            return False
        length = self.request.headers.get("Content-Length", "")
        return not (length.isdigit() and self._size >= int(length))

    def authorize(self, command: str, **values: Any) -> commands.Call:
        """Check that the key may run ``command`` (gaffer/http/commands.py) on its target."""
        return commands.authorize(
            command, self.manager, self.permissions, values, self.settings.get("policy")
        )

    def call(self, command: str, **values: Any) -> Any:
        """Check, then run ``command``: its result (an awaitable for the stats)."""
        return commands.run(
            command, self.manager, self.permissions, values, self.settings.get("policy")
        )

    @staticmethod
    def execute(command: str, call: commands.Call, **values: Any) -> Any:
        """Run ``command`` for a call :meth:`authorize` checked, with more arguments."""
        call.values.update(values)
        return commands.execute(command, call)

    # -- bodies ----------------------------------------------------------------------------
    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.settings["max_body_bytes"]:
            self._too_large = True
            self._chunks.clear()
            if self._size > HARD_BODY_LIMIT // 2 and not self._finished:
                # a chunked body that does not end: answer now, the connection closes
                limit = self.settings["max_body_bytes"]
                self.send_error_json(413, "too_large", f"the body is over {limit} bytes")
        elif not self._too_large:
            self._chunks.append(chunk)

    @property
    def body(self) -> bytes:
        if self._too_large:
            limit = self.settings["max_body_bytes"]
            raise RequestError(413, "too_large", f"the body is over {limit} bytes")
        return b"".join(self._chunks)

    def json_body(self, schema: str) -> Any:
        raw = self.body
        data = parse_json(raw) if raw.strip() else {}
        try:
            validate(data, SCHEMAS[schema])
        except SchemaError as exc:
            raise RequestError(400, "bad_request", str(exc)) from None
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
        if status == 405:
            self.set_header("Allow", ", ".join(allowed_methods(type(self))))
        if self._body_unread():  # tornado closes such a connection: say so
            self.set_header("Connection", "close")
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
        if isinstance(value, tornado.web.HTTPError | ProcessError | ConfigError):
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
        raise RequestError(400, "bad_request", f"the pid must be a number, got {text!r}")
    if len(text) > MAX_DIGITS:
        raise RequestError(404, "not_found", f"no process with pid {text[:20]}...")
    return int(text)


def allowed_methods(handler: type[tornado.web.RequestHandler]) -> list[str]:
    """The methods a handler answers (the ``Allow`` of its 405)."""
    base = tornado.web.RequestHandler
    return [
        name.upper()
        for name in (*VERBS, "options")
        if getattr(handler, name, None) is not getattr(base, name)
    ]


def parse_json(raw: bytes | str, what: str = "the body") -> Any:
    """JSON, nested at most MAX_JSON_DEPTH deep, all of it text (400 invalid_json)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, "invalid_json", f"{what} is not JSON: {exc}") from None
    except RecursionError:
        raise _too_deep(what) from None
    _check_unicode(data, what, root=what)
    return data


def _too_deep(what: str) -> RequestError:
    reason = f"{what} is nested deeper than {MAX_JSON_DEPTH} levels"
    return RequestError(400, "invalid_json", reason)


def _check_unicode(data: Any, where: str = "the body", depth: int = 0, root: str = "") -> None:
    """JSON may escape lone surrogates ("\\ud800"), which are no text: no file name,
    environment, URL or log line can hold them. Refused wherever they are; so is a
    nesting deeper than MAX_JSON_DEPTH."""
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(
                400, "bad_request", f"{where} holds a lone surrogate, which is not text"
            ) from None
        return
    if isinstance(data, dict | list) and depth >= MAX_JSON_DEPTH:
        raise _too_deep(root or where)
    if isinstance(data, dict):
        for key, value in data.items():
            _check_unicode(key, where, depth + 1, root)
            _check_unicode(value, f"{where}[{key!r}]", depth + 1, root)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _check_unicode(value, f"{where}[{index}]", depth + 1, root)
