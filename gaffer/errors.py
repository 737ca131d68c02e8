"""The exceptions gaffer raises, in one tree.

Every exception gaffer defines derives from :class:`GafferError` (a test walks every class
of ``gaffer/`` and ``gafferd/`` to keep it so, and keeps their names unique). The base
classes are here; a few specialised ones live next to the code that raises them (module in
brackets). Builtin bases are kept where callers rely on them (``except ValueError``)::

    GafferError
      ConfigError (ValueError)              a configuration that cannot be used
        InvalidOption [core.config]         a job option: ``option`` names it
        IniError [gafferd.ini]              an ini file, at ``path:line``
        SettingError [gafferd.settings]     a gafferd setting and where it came from
        StartupError [gafferd.jobs]         a job of the file cannot be loaded at start
        DotenvError [dotenv]                an env file, at ``path:line``
          ProcfileError [cli.procfile]      a Procfile, at ``path:line``
      SecurityError (ValueError)            settings gafferd refuses: they would expose it
      UsageError (ValueError)               a command line that makes no sense
      AlreadyRunning (RuntimeError) [gafferd.pidfile]  another gafferd holds the pidfile
      PidfileError (OSError) [gafferd.pidfile]  the pidfile is a symbolic link...
      ProcessError (reason: a stable code)  a manager command failed
        ProcessNotFound                     unknown job, pid or session
          UnknownCommand [http.controller]  no such /channel command
        ProcessConflict                     a job of that name is already loaded
          StreamClosed [http.controller]    the stdin of a process is closed
          HandoverError                     gafferd cannot hand over to a new gafferd now
        ProcessLimitReached                 more processes than the manager's limit
        ManagerStopped                      the manager is stopping or stopped
        InvalidArgument (ValueError)        bad input: a scale, a signal, a name...
          BadCommand [http.controller]      /channel: missing, extra or wrong arguments
          TopicError [core.topics]          a topic (subscribe, /channel) that does not parse
        StreamNotFound                      no such stdio or custom stream
        StreamNotRedirected (OSError)       write to a stdin that is not a pipe
        SpawnError                          the OS refused to start a process
        InvalidStateTransition              a state move the tables refuse (a bug)
        PermissionDenied                    the caller's key does not cover the request
      PluginError                           a gafferd plugin cannot be loaded
      ProtocolError (ValueError)            bytes of the API that do not parse
        SchemaError [http.schema]           a body that does not fit its schema
        FrameError [http.frames]            not a ``V1 <type> <id>\\0<body>`` frame
      ChannelError [http.handlers.pidchannel]  an error frame of a process channel
      KeyStoreError [http.keystore]         the key store file cannot be used
      RequestError [http.handlers.base]     an HTTP answer: status, code, reason
      EtcdError [cluster.etcd]              etcd answered an error (``code``: gRPC's)
        EtcdUnavailable [cluster.etcd]      no etcd endpoint could serve the request
        NameTaken [cluster.registry]        another live gafferd holds this node name
        LeaseLost [cluster.registry]        etcd forgot our lease while out of reach
      ClientError                           raised by gaffer.client
        Unreachable                         no gafferd answers at that address
        ChannelClosed [client.channel]      the WebSocket closed
        ChannelModeError (OSError) [client.channel]  an IO channel used against its mode
        ApiError (status, code, reason)     gafferd answered with an error
          BadRequest 400 · Unauthorized 401 · Forbidden 403 · NotFound 404
          Conflict 409 · TooLarge 413 · ServerError 5xx

No error of the engine knows an HTTP status or an exit code: ``ProcessError`` carries a
stable ``reason`` code (the ``"error"`` of the API's JSON bodies) and a message. The edges
map classes to what they need: the HTTP layer to statuses (one table,
``gaffer.http.handlers.base.error_status``), the command line and gafferd to exit codes.
"""

from __future__ import annotations


class GafferError(Exception):
    """Base of every error gaffer raises on purpose."""


class ConfigError(GafferError, ValueError):
    """A configuration that cannot be used; the message says where and why."""


class SecurityError(GafferError, ValueError):
    """A combination of settings refused because it would expose the API or the host."""


class UsageError(GafferError, ValueError):
    """A command line that makes no sense (the command line clients exit with 2)."""


class ProcessError(GafferError):
    """A manager command failed; ``reason`` is a stable machine code."""

    reason: str = "process_error"

    def __init__(self, message: str | None = None, *, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        self.message = message or self.reason.replace("_", " ")
        super().__init__(self.message)


class ProcessNotFound(ProcessError):
    reason = "not_found"


class ProcessConflict(ProcessError):
    reason = "process_conflict"


class HandoverError(ProcessConflict):
    """A restart of gafferd in place (a hand-over to a new gafferd) cannot be made now:
    the new code or configuration failed its check, or a job cannot be handed over."""

    reason = "handover_failed"


class InvalidArgument(ProcessError, ValueError):
    """Bad input to a command (a scale string, a signal name...)."""

    reason = "bad_request"


class StreamNotFound(ProcessError):
    reason = "stream_not_found"


class StreamNotRedirected(ProcessError, OSError):
    reason = "not_redirected"


class SpawnError(ProcessError):
    """The OS refused to start a process: command not found, bad cwd, permission..."""

    reason = "spawn_error"

    def __init__(self, message: str, *, os_errno: int | None = None) -> None:
        super().__init__(message)
        self.os_errno = os_errno


class ProcessLimitReached(ProcessError):
    """A load, update, scale or commit would give the manager more processes than its
    ``process_limit``; nothing was changed."""

    reason = "process_limit"


class ManagerStopped(ProcessError):
    reason = "manager_stopped"


class InvalidStateTransition(ProcessError):
    """A move the state tables of ``gaffer.core.states`` refuse: a bug, never bad input."""

    reason = "invalid_state_transition"

    def __init__(self, message: str, *, old: object, new: object) -> None:
        super().__init__(message)
        self.old, self.new = old, new


class PermissionDenied(ProcessError):
    """The caller is known but its permissions do not cover the request."""

    reason = "forbidden"


class PluginError(GafferError):
    """A gafferd plugin cannot be loaded: no name, a bad ``requires``..."""


class ProtocolError(GafferError, ValueError):
    """Bytes received by the API that do not parse (a body, a frame)."""


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
