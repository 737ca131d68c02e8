"""The RPC commands of the ``/channel`` WebSocket: ``Controller(manager, permissions)``.

``await controller.run(name, args, kwargs)`` runs one command for one key and returns its
result (a dict), or raises an exception that :func:`command_error` turns into the
``{"errno", "reason", "message"}`` of a ``gaffer:command_error``:

* an unknown command: 404 ``command_not_found``;
* missing, extra or wrong arguments: 400 ``bad_command`` (the message says which);
* what the manager raises (``ProcessError``): its errno and reason (404 ``not_found``...);
* a key that may not: 403 ``forbidden``.

Permissions are checked before anything is done, so a denied command changes nothing:

============================================  ===========================================
command                                       the key needs
============================================  ===========================================
sessions, jobs, pids                          nothing: they list what the key may read
load, unload, reload, update                  manage on the session of the job (and an
                                              admin key for a config with uid or gid)
info, stats                                   read on the job (``args[0]``: ``session.name``,
                                              or a bare name in session ``default``)
start_job, stop_job, stopall, scale,          manage on the job
killall, commit
process_info, process_stats                   read on the job of the process
stop_process, kill                            manage on the job of the process
send                                          write on the job of the process
============================================  ===========================================

Environments are shown with their secrets redacted (``gaffer.http.auth.redact_env``)
unless the key is an admin key.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gaffer.core.config import ProcessConfig
from gaffer.core.names import DEFAULT_SESSION, job_id, split_job_id, validate_session
from gaffer.errors import ProcessError
from gaffer.http.auth import Permissions, redact_env
from gaffer.http.handlers.base import error_status
from gaffer.http.schema import SCHEMAS, SchemaError, config_json, validate

logger = logging.getLogger("gaffer.http")


class CommandError(ProcessError):
    """A command that cannot run as asked; ``errno`` and ``reason`` say why."""


def bad_command(message: str) -> CommandError:
    return CommandError(message, errno=400, reason="bad_command")


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

    def _fail(self, name: str, expected: str) -> CommandError:
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

    def __init__(self, manager: Any, permissions: Permissions) -> None:
        self.manager = manager
        self.permissions = permissions

    async def run(self, name: Any, args: Any = None, kwargs: Any = None) -> dict[str, Any]:
        if not isinstance(name, str) or name not in _COMMANDS:
            shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
            raise CommandError(
                f"unknown command {shown}; known: {', '.join(sorted(_COMMANDS))}",
                errno=404,
                reason="command_not_found",
            )
        func, params, required, extra = _COMMANDS[name]
        return await func(self, _bind(name, params, required, extra, args, kwargs))

    # -- checks ------------------------------------------------------------------------------
    def require(self, right: str, target: str) -> None:
        self.permissions.require(right, target)

    def redact(self, env: Mapping[str, str]) -> dict[str, str]:
        return dict(env) if self.permissions.is_admin else redact_env(env)

    def process(self, pid: int, right: str) -> Any:
        """The process, once the key may ``right`` its job (404 for an unknown pid)."""
        proc = self.manager.get_process(pid)
        self.require(right, proc.name)
        return proc

    def config(self, args: _Args, loading: bool) -> tuple[ProcessConfig, str, bool | None]:
        """The config of load/update, its session, and its ``start`` if it holds one; the
        permission (manage on the session; admin for uid/gid) checked."""
        sessionid = args.session()
        body = args.config()
        start = body.pop("start", None)
        if loading:  # the manager loads a config named "a.b" as job "<session>.a.b"
            session = sessionid or DEFAULT_SESSION
        else:  # and updates the job the name designates
            try:
                session, _ = split_job_id(body["name"], sessionid)
            except ProcessError:
                raise args._fail("config", "a job config with a valid name") from None
        self.require("manage", session)
        if (body.get("uid") is not None or body.get("gid") is not None) and (
            not self.permissions.is_admin
        ):
            raise CommandError(
                f"{args.command}: only an admin key may set uid or gid",
                errno=403,
                reason="forbidden",
            )
        return ProcessConfig.from_dict(body), session, start

    def managed_job(self, args: _Args) -> str:
        job = args.job()
        self.require("manage", job)
        return job

    def readable_job(self, args: _Args) -> str:
        job = args.job()
        self.require("read", job)
        return job

    # -- lists -------------------------------------------------------------------------------
    @_command("sessions")
    async def sessions(self, args: _Args) -> dict[str, Any]:
        manager, can_read = self.manager, self.permissions.can_read
        sessions = [
            sid for sid in manager.sessions if any(can_read(job) for job in manager.jobs(sid))
        ]
        return {"sessions": sessions}

    @_command("jobs", ("sessionid",))
    async def jobs(self, args: _Args) -> dict[str, Any]:
        sessionid = args.session()
        can_read = self.permissions.can_read
        if sessionid is None:
            return {"jobs": [job for job in self.manager.jobs() if can_read(job)]}
        jobs = self.manager.jobs(sessionid)  # 404 for an unknown session
        readable = [job for job in jobs if can_read(job)]
        if jobs and not readable:
            self.require("read", sessionid)
        return {"sessionid": sessionid, "jobs": readable}

    @_command("pids", ("name",))
    async def pids(self, args: _Args) -> dict[str, Any]:
        if not args.has("name"):
            running = self.manager.running
            can_read = self.permissions.can_read
            return {"pids": [pid for pid, proc in list(running.items()) if can_read(proc.name)]}
        job = args.job()
        self.require("read", job)
        session, _ = split_job_id(job)
        return {"name": job, "sessionid": session, "pids": self.manager.pids(job)}

    # -- jobs --------------------------------------------------------------------------------
    @_command("load", ("config",), 1, ("sessionid", "env", "start"))
    async def load(self, args: _Args) -> dict[str, Any]:
        env = args.env()
        start = args.flag("start", True)
        config, session, body_start = self.config(args, loading=True)
        if body_start is not None and not args.has("start"):
            start = body_start
        self.manager.load(config, sessionid=session, env=env, start=start)
        return {"ok": True}

    @_command("update", ("config",), 1, ("sessionid", "env", "start"))
    async def update(self, args: _Args) -> dict[str, Any]:
        env = args.env()
        start = args.flag("start", False)
        config, _session, body_start = self.config(args, loading=False)
        if body_start is not None and not args.has("start"):
            start = body_start
        self.manager.update(config, sessionid=args.session(), env=env, start=start)
        return {"ok": True}

    @_command("unload", ("name",), 1, ("sessionid",))
    async def unload(self, args: _Args) -> dict[str, Any]:
        self.manager.unload(self._session_job(args))
        return {"ok": True}

    @_command("reload", ("name",), 1, ("sessionid",))
    async def reload(self, args: _Args) -> dict[str, Any]:
        self.manager.reload(self._session_job(args))
        return {"ok": True}

    def _session_job(self, args: _Args) -> str:
        """The job id of unload/reload, once the key may manage its session."""
        sessionid = args.session()
        name = args.text("name")
        assert name is not None  # required
        try:
            session, bare = split_job_id(name, sessionid)
        except ProcessError:
            raise args._fail("name", "a job id (session.name)") from None
        self.require("manage", session)
        return f"{session}.{bare}"

    @_command("start_job", ("name",), 1)
    async def start_job(self, args: _Args) -> dict[str, Any]:
        self.manager.start_job(self.managed_job(args))
        return {"ok": True}

    @_command("stop_job", ("name",), 1)
    async def stop_job(self, args: _Args) -> dict[str, Any]:
        self.manager.stop_job(self.managed_job(args))
        return {"ok": True}

    @_command("stopall", ("name",), 1)
    async def stopall(self, args: _Args) -> dict[str, Any]:
        self.manager.stopall(self.managed_job(args))
        return {"ok": True}

    @_command("scale", ("name", "n"), 2)
    async def scale(self, args: _Args) -> dict[str, Any]:
        n = args.int_or_text("n", 'an int, or "+n", "-n", "=n"')
        return {"numprocesses": self.manager.scale(self.managed_job(args), n)}

    @_command("info", ("name",), 1)
    async def info(self, args: _Args) -> dict[str, Any]:
        info = self.manager.info(self.readable_job(args))
        info["config"] = config_json(info["config"])
        info["config"]["env"] = self.redact(info["config"].get("env") or {})
        return {"info": info}

    @_command("stats", ("name",), 1)
    async def stats(self, args: _Args) -> dict[str, Any]:
        return {"stats": await self.manager.astats(self.readable_job(args))}

    @_command("killall", ("name", "sig"), 2)
    async def killall(self, args: _Args) -> dict[str, Any]:
        sig = args.int_or_text("sig", "a signal number or name")
        self.manager.killall(self.managed_job(args), sig)
        return {"ok": True}

    @_command("commit", ("name", "graceful_timeout", "env"), 1)
    async def commit(self, args: _Args) -> dict[str, Any]:
        timeout, env = args.number("graceful_timeout"), args.env()
        pid = self.manager.commit(self.managed_job(args), graceful_timeout=timeout, env=env)
        return {"ok": True, "pid": pid}

    # -- processes ---------------------------------------------------------------------------
    @_command("process_info", ("pid",), 1)
    async def process_info(self, args: _Args) -> dict[str, Any]:
        info = self.process(args.pid(), "read").info
        info["env"] = self.redact(info.get("env") or {})
        return {"info": info}

    @_command("process_stats", ("pid",), 1)
    async def process_stats(self, args: _Args) -> dict[str, Any]:
        proc = self.process(args.pid(), "read")
        return {"stats": await self.manager.aprocess_stats(proc.pid)}

    @_command("stop_process", ("pid",), 1)
    async def stop_process(self, args: _Args) -> dict[str, Any]:
        proc = self.process(args.pid(), "manage")
        self.manager.stop_process(proc.pid)
        return {"ok": True}

    @_command("kill", ("pid", "sig"), 2)
    async def kill(self, args: _Args) -> dict[str, Any]:
        pid, sig = args.pid(), args.int_or_text("sig", "a signal number or name")
        proc = self.process(pid, "manage")
        self.manager.kill(proc.pid, sig)
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
        proc = self.process(pid, "write")
        try:
            self.manager.send(proc.pid, payload, stream=stream)
        except OSError as exc:
            if isinstance(exc, ProcessError):
                raise
            raise CommandError(
                f"send: {stream or 'stdin'} of pid {proc.pid} is closed",
                errno=409,
                reason="stream_closed",
            ) from None
        return {"ok": True}
