"""The RPC commands of the ``/channel`` WebSocket: ``Controller(manager, permissions)``.

``await controller.run(name, args, kwargs)`` runs one command for one key and returns its
result (a dict), or raises an exception that :func:`command_error` turns into the
``{"errno", "reason", "message"}`` of a ``gaffer:command_error`` (``errno`` is the HTTP
status of the error, computed here at the edge, as for REST):

* an unknown command: 404 ``command_not_found``;
* missing, extra or wrong arguments: 400 ``bad_command`` (the message says which);
* what the manager raises (``ProcessError``): its status and reason (404 ``not_found``...);
* a key that may not: 403 ``forbidden``.

This module only reads the arguments of a call (positional ``args`` then ``kwargs``, like
a Python call) and shapes the answer: the permission of each command, and the command
itself, are the one table of gaffer/http/commands.py, which REST uses too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gaffer.core.names import DEFAULT_SESSION, job_id, split_job_id, validate_session
from gaffer.errors import InvalidArgument, ProcessConflict, ProcessError, ProcessNotFound
from gaffer.http import commands
from gaffer.http.auth import Permissions
from gaffer.http.handlers.base import error_status
from gaffer.http.schema import SCHEMAS, SchemaError, validate

logger = logging.getLogger("gaffer.http")


class BadCommand(InvalidArgument):
    """A command called with missing, extra or wrong arguments."""

    reason = "bad_command"


class UnknownCommand(ProcessNotFound):
    reason = "command_not_found"


class StreamClosed(ProcessConflict):
    """The stdin (or custom stream) of a process is closed."""

    reason = "stream_closed"


def bad_command(message: str) -> BadCommand:
    return BadCommand(message)


def command_error(exc: BaseException) -> dict[str, Any]:
    """The ``error`` of a ``gaffer:command_error``: ``{"errno", "reason", "message"}``."""
    status, code, message = error_status(exc)
    if status >= 500 and not isinstance(exc, ProcessError):
        logger.error("channel command failed", exc_info=exc)
    return {"errno": status, "reason": code, "message": message}


# -- arguments -------------------------------------------------------------------------------


class _Args:
    """The arguments of one call, by name, checked as they are read."""

    def __init__(self, command: str, values: dict[str, Any]) -> None:
        self.command = command
        self.values = values

    def has(self, name: str) -> bool:
        return self.values.get(name) is not None

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value

    def _fail(self, name: str, expected: str) -> BadCommand:
        value = self.values.get(name)
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return bad_command(f"{self.command}: {name} must be {expected}, got {shown}")

    def job(self, name: str = "name") -> str:
        value = self.values.get(name)
        if not isinstance(value, str) or not value:
            raise self._fail(name, "a job id (session.name, or a name of session default)")
        try:
            return job_id(value)
        except ProcessError:
            raise self._fail(name, "a job id (session.name)") from None

    def pid(self, name: str = "pid") -> int:
        value = self.values.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value)
        raise self._fail(name, "a pid (a positive integer)")

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self._fail(name, "a non-empty string")
        return value

    def session(self, name: str = "sessionid") -> str | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return validate_session(value)
        except ProcessError:
            raise self._fail(name, "a session id (no '.' nor '/')") from None

    def flag(self, name: str, default: bool) -> bool:
        value = self.values.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._fail(name, "true or false")
        return value

    def env(self, name: str = "env") -> dict[str, str] | None:
        value = self.values.get(name)
        if value is None:
            return None
        if not isinstance(value, dict) or not all(
            isinstance(key, str) and isinstance(item, str) for key, item in value.items()
        ):
            raise self._fail(name, "an object of strings")
        return value

    def number(self, name: str) -> float | None:
        value = self.values.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self._fail(name, "a number of seconds >= 0")
        return value

    def int_or_text(self, name: str, what: str) -> int | str:
        value = self.values.get(name)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self._fail(name, what)
        return value

    def config(self, name: str = "config") -> dict[str, Any]:
        value = self.values.get(name)
        if not isinstance(value, dict):
            raise self._fail(name, "a job config (an object with name and cmd)")
        try:
            validate(value, SCHEMAS["JobConfig"], where=name)
        except SchemaError as exc:
            raise bad_command(f"{self.command}: {exc}") from None
        if "name" not in value:
            raise bad_command(f"{self.command}: {name}.name: required")
        return dict(value)


def _bind(
    command: str,
    params: tuple[str, ...],
    required: int,
    extra: tuple[str, ...],
    args: Any,
    kwargs: Any,
) -> _Args:
    """Positional ``args`` then ``kwargs`` to names, like a Python call would."""
    if args is None:
        args = []
    if kwargs is None:
        kwargs = {}
    if not isinstance(args, list):
        raise bad_command(f"{command}: args must be a list")
    if not isinstance(kwargs, dict):
        raise bad_command(f"{command}: kwargs must be an object")
    if len(args) > len(params):
        raise bad_command(
            f"{command}: takes at most {len(params)} argument(s) "
            f"({', '.join(params) or 'none'}), got {len(args)}"
        )
    values = dict(zip(params, args, strict=False))
    for key, value in kwargs.items():
        if key not in params and key not in extra:
            known = ", ".join((*params, *extra)) or "none"
            raise bad_command(f"{command}: unknown argument {key!r} (known: {known})")
        if key in values:
            raise bad_command(f"{command}: {key} given twice")
        values[key] = value
    missing = [name for name in params[:required] if values.get(name) is None]
    if missing:
        raise bad_command(f"{command}: missing argument(s) {', '.join(missing)}")
    return _Args(command, values)


Handler = Callable[["Controller", _Args], Awaitable[dict[str, Any]]]
_COMMANDS: dict[str, tuple[Handler, tuple[str, ...], int, tuple[str, ...]]] = {}


def _command(
    name: str, params: tuple[str, ...] = (), required: int = 0, extra: tuple[str, ...] = ()
) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        _COMMANDS[name] = (func, params, required, extra)
        return func

    return register


COMMANDS = _COMMANDS  # name -> (handler, positional names, how many required, kwargs only)


class Controller:
    """Runs RPC commands on ``manager`` for a key holding ``permissions``."""

    def __init__(
        self, manager: Any, permissions: Permissions, policy: commands.Policy | None = None
    ) -> None:
        self.manager = manager
        self.permissions = permissions
        self.policy = policy

    async def run(self, name: Any, args: Any = None, kwargs: Any = None) -> dict[str, Any]:
        if not isinstance(name, str) or name not in _COMMANDS:
            shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
            raise UnknownCommand(f"unknown command {shown}; known: {', '.join(sorted(_COMMANDS))}")
        func, params, required, extra = _COMMANDS[name]
        return await func(self, _bind(name, params, required, extra, args, kwargs))

    def call(self, command: str, **values: Any) -> Any:
        """Check, then run ``command`` of the one table (gaffer/http/commands.py)."""
        return commands.run(command, self.manager, self.permissions, values, self.policy)

    async def acall(self, command: str, **values: Any) -> Any:
        return await self.call(command, **values)

    def config(self, args: _Args, loading: bool) -> tuple[dict[str, Any], str, bool | None]:
        """The config body of load/update, the job (update) or session (load) it is for,
        and its ``start`` if it holds one."""
        sessionid = args.session()
        body = args.config()
        start = body.pop("start", None)
        if loading:  # the manager loads a config named "a.b" as job "<session>.a.b"
            return body, sessionid or DEFAULT_SESSION, start
        try:  # and updates the job the name designates
            session, name = split_job_id(body["name"], sessionid)
        except ProcessError:
            raise args._fail("config", "a job config with a valid name") from None
        return body, f"{session}.{name}", start

    def session_job(self, args: _Args) -> str:
        """The job id of unload/reload: ``name``, in ``sessionid`` if given."""
        sessionid = args.session()
        name = args.text("name")
        assert name is not None  # required
        try:
            session, bare = split_job_id(name, sessionid)
        except ProcessError:
            raise args._fail("name", "a job id (session.name)") from None
        return f"{session}.{bare}"

    # -- the daemon ------------------------------------------------------------------------
    @_command("daemon_restart")
    async def daemon_restart(self, args: _Args) -> dict[str, Any]:
        return {"ok": True, **await self.acall("daemon_restart")}

    @_command("daemon_state")
    async def daemon_state(self, args: _Args) -> dict[str, Any]:
        return self.call("daemon_state")

    # -- lists -------------------------------------------------------------------------------
    @_command("sessions")
    async def sessions(self, args: _Args) -> dict[str, Any]:
        return {"sessions": self.call("sessions")}

    @_command("jobs", ("sessionid",))
    async def jobs(self, args: _Args) -> dict[str, Any]:
        sessionid = args.session()
        if sessionid is None:
            return {"jobs": self.call("jobs")}
        return {"sessionid": sessionid, "jobs": self.call("jobs", sessionid=sessionid)}

    @_command("pids", ("name",))
    async def pids(self, args: _Args) -> dict[str, Any]:
        if not args.has("name"):
            return {"pids": self.call("pids")}
        job = args.job()
        pids = self.call("job_pids", name=job)
        return {"name": job, "sessionid": job.split(".", 1)[0], "pids": pids}

    # -- jobs --------------------------------------------------------------------------------
    @_command("load", ("config",), 1, ("sessionid", "env", "start"))
    async def load(self, args: _Args) -> dict[str, Any]:
        env = args.env()
        start = args.flag("start", True)
        config, session, body_start = self.config(args, loading=True)
        if body_start is not None and not args.has("start"):
            start = body_start
        self.call("load", config=config, sessionid=session, env=env, start=start)
        return {"ok": True}

    @_command("update", ("config",), 1, ("sessionid", "env", "start"))
    async def update(self, args: _Args) -> dict[str, Any]:
        env = args.env()
        start = args.flag("start", False)
        config, job, body_start = self.config(args, loading=False)
        if body_start is not None and not args.has("start"):
            start = body_start
        self.call("update", name=job, config=config, env=env, start=start)
        return {"ok": True}

    @_command("unload", ("name",), 1, ("sessionid",))
    async def unload(self, args: _Args) -> dict[str, Any]:
        self.call("unload", name=self.session_job(args))
        return {"ok": True}

    @_command("reload", ("name",), 1, ("sessionid",))
    async def reload(self, args: _Args) -> dict[str, Any]:
        self.call("reload", name=self.session_job(args))
        return {"ok": True}

    @_command("start_job", ("name",), 1)
    async def start_job(self, args: _Args) -> dict[str, Any]:
        self.call("start_job", name=args.job())
        return {"ok": True}

    @_command("stop_job", ("name",), 1)
    async def stop_job(self, args: _Args) -> dict[str, Any]:
        self.call("stop_job", name=args.job())
        return {"ok": True}

    @_command("stopall", ("name",), 1)
    async def stopall(self, args: _Args) -> dict[str, Any]:
        self.call("stopall", name=args.job())
        return {"ok": True}

    @_command("scale", ("name", "n"), 2)
    async def scale(self, args: _Args) -> dict[str, Any]:
        job = args.job()
        n = args.int_or_text("n", 'an int, or "+n", "-n", "=n"')
        return {"numprocesses": self.call("scale", name=job, n=n)}

    @_command("info", ("name",), 1)
    async def info(self, args: _Args) -> dict[str, Any]:
        return {"info": self.call("info", name=args.job())}

    @_command("stats", ("name",), 1)
    async def stats(self, args: _Args) -> dict[str, Any]:
        return {"stats": await self.acall("stats", name=args.job())}

    @_command("killall", ("name", "sig"), 2)
    async def killall(self, args: _Args) -> dict[str, Any]:
        job = args.job()
        sig = args.int_or_text("sig", "a signal number or name")
        self.call("killall", name=job, sig=sig)
        return {"ok": True}

    @_command("commit", ("name", "graceful_timeout", "env"), 1)
    async def commit(self, args: _Args) -> dict[str, Any]:
        job = args.job()
        timeout, env = args.number("graceful_timeout"), args.env()
        pid = self.call("commit", name=job, graceful_timeout=timeout, env=env)
        return {"ok": True, "pid": pid}

    # -- processes ---------------------------------------------------------------------------
    @_command("process_info", ("pid",), 1)
    async def process_info(self, args: _Args) -> dict[str, Any]:
        return {"info": self.call("process_info", pid=args.pid())}

    @_command("process_stats", ("pid",), 1)
    async def process_stats(self, args: _Args) -> dict[str, Any]:
        return {"stats": await self.acall("process_stats", pid=args.pid())}

    @_command("stop_process", ("pid",), 1)
    async def stop_process(self, args: _Args) -> dict[str, Any]:
        self.call("stop_process", pid=args.pid())
        return {"ok": True}

    @_command("kill", ("pid", "sig"), 2)
    async def kill(self, args: _Args) -> dict[str, Any]:
        pid, sig = args.pid(), args.int_or_text("sig", "a signal number or name")
        self.call("kill", pid=pid, sig=sig)
        return {"ok": True}

    @_command("send", ("pid", "data", "stream"), 2)
    async def send(self, args: _Args) -> dict[str, Any]:
        pid = args.pid()
        data = args.values.get("data")
        if isinstance(data, list) and all(isinstance(line, str) for line in data):
            payload: str | list[str] = data
        elif isinstance(data, str):
            payload = data
        else:
            raise args._fail("data", "a string or a list of strings")
        stream = args.text("stream")
        try:
            self.call("send", pid=pid, data=payload, stream=stream)
        except OSError as exc:
            if isinstance(exc, ProcessError):
                raise
            raise StreamClosed(f"send: {stream or 'stdin'} of pid {pid} is closed") from None
        return {"ok": True}
