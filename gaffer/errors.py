"""The exceptions gaffer raises, in one tree.

::

    GafferError
      ProcessError (errno: an HTTP-like status, reason: a stable machine code)
        ProcessNotFound      404 not_found          unknown job, pid or session
        ProcessConflict      409 process_conflict   a job of that name is already loaded
        ProcessLimitReached  409 process_limit      more processes than the manager's limit
        InvalidArgument      400 bad_request ...    also a ValueError: bad scale, bad signal
        StreamNotFound       404 stream_not_found   no such stdio or custom stream
        StreamNotRedirected  409 not_redirected     write to a stdin that is not a pipe
        SpawnError           500 spawn_error        the OS refused to start a process
        ManagerStopped       409 manager_stopped    the manager is stopping or stopped
        InvalidStateTransition 500                  a state move the tables refuse (a bug)
      PluginError                                 a gafferd plugin cannot be loaded
      ClientError                                 raised by gaffer.client
        Unreachable                               no gafferd answers at that address
        ApiError (status, code, reason)           gafferd answered with an error
          BadRequest 400 · Unauthorized 401 · Forbidden 403 · NotFound 404
          Conflict 409 · TooLarge 413 · ServerError 5xx

The HTTP layer maps ``errno`` to a status and ``reason`` to the ``"error"`` code of its JSON
body; the command-line client maps them to exit codes. Nothing below the edges knows about
either.
"""

from __future__ import annotations


class GafferError(Exception):
    """Base of every error gaffer raises on purpose."""


class ProcessError(GafferError):
    """A manager command failed. ``errno`` is HTTP-like, ``reason`` a stable code."""

    errno: int = 500
    reason: str = "process_error"

    def __init__(
        self, message: str | None = None, *, errno: int | None = None, reason: str | None = None
    ) -> None:
        if errno is not None:
            self.errno = errno
        if reason is not None:
            self.reason = reason
        self.message = message or self.reason.replace("_", " ")
        super().__init__(self.message)

    def to_dict(self) -> dict[str, object]:
        return {"error": self.reason, "reason": self.message, "errno": self.errno}


class ProcessNotFound(ProcessError):
    errno = 404
    reason = "not_found"


class ProcessConflict(ProcessError):
    errno = 409
    reason = "process_conflict"


class InvalidArgument(ProcessError, ValueError):
    """Bad input to a command (a scale string, a signal name...)."""

    errno = 400
    reason = "bad_request"


class StreamNotFound(ProcessError):
    errno = 404
    reason = "stream_not_found"


class StreamNotRedirected(ProcessError, OSError):
    errno = 409
    reason = "not_redirected"


class SpawnError(ProcessError):
    """The OS refused to start a process: command not found, bad cwd, permission..."""

    errno = 500
    reason = "spawn_error"

    def __init__(self, message: str, *, os_errno: int | None = None) -> None:
        super().__init__(message)
        self.os_errno = os_errno


class PluginError(GafferError):
    """A gafferd plugin cannot be loaded: no name, a bad ``requires``..."""


class ProcessLimitReached(ProcessError):
    """A load, update, scale or commit would give the manager more processes than its
    ``process_limit``; nothing was changed."""

    errno = 409
    reason = "process_limit"


class ManagerStopped(ProcessError):
    errno = 409
    reason = "manager_stopped"


class InvalidStateTransition(ProcessError):
    """A move the state tables of ``gaffer.core.states`` refuse: a bug, never bad input."""

    errno = 500
    reason = "invalid_state_transition"

    def __init__(self, message: str, *, old: object, new: object) -> None:
        super().__init__(message)
        self.old, self.new = old, new


class ClientError(GafferError):
    """Raised by gaffer.client."""


class Unreachable(ClientError):
    """No gafferd answers at the address (connection refused, no such socket, timeout)."""


class ApiError(ClientError):
    """gafferd answered with an error: ``status``, ``code`` (its ``"error"``), ``reason``."""

    status = 0

    def __init__(self, status: int, code: str, reason: str) -> None:
        self.status, self.code, self.reason = status, code, reason
        super().__init__(f"{reason} ({status} {code})")

    @staticmethod
    def of(status: int, code: str, reason: str) -> ApiError:
        kind = _API_ERRORS.get(status, ServerError if status >= 500 else ApiError)
        return kind(status, code, reason)


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class TooLarge(ApiError):
    pass


class ServerError(ApiError):
    pass


_API_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
}
