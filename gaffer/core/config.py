"""``ProcessConfig``: the template of a job, every option validated once, here.

A config is immutable: ``replace(**changes)`` gives a new one. It also reads like the
original's dict-like object (``cfg["numprocesses"]``, ``cfg.get("env")``, ``"cmd" in cfg``)
and round-trips through ``to_dict()`` / ``from_dict()``.
"""

from __future__ import annotations

import grp
import pwd
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from gaffer.core.flapping import FlappingInfo
from gaffer.core.logtarget import LogTarget
from gaffer.core.names import MAX_NAME
from gaffer.core.options import (
    BY_NAME,
    DEFAULT_GRACEFUL_TIMEOUT,
    DEFAULT_PRIORITY,
    DEFAULT_START_SECS,
    OPTIONS,
    os_string,
    to_json,
)
from gaffer.core.probespec import ProbeSpec
from gaffer.core.restart import BackoffInfo, ExitMatch
from gaffer.errors import ConfigError, InvalidArgument

__all__ = [
    "DEFAULT_GRACEFUL_TIMEOUT",
    "DEFAULT_PRIORITY",
    "DEFAULT_START_SECS",
    "InvalidOption",
    "ProcessConfig",
    "as_config",
    "check_env",
    "os_string",
]


class InvalidOption(ConfigError):
    """A job option that cannot be used; ``option`` names it."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(message)


RESERVED_STREAM_LABELS = frozenset({"stdin"})


@dataclass(frozen=True, init=False, eq=True)
class ProcessConfig:
    """A job template: ``ProcessConfig(name, cmd, **settings)``.

    Args:
        name: the job name (``session.name`` ids are built by the manager).
        cmd: the program; when it holds spaces it is split like a shell would, the first
            word is the executable and the others come before ``args``.
        args: more arguments (a list, or a string split like a shell would). ``$VAR`` and
            ``${VAR}`` in the command line are replaced from the process environment.
        env: environment of the child. Without ``os_env`` the child gets only this.
        os_env: start from gaffer's own environment (``env`` wins over it).
        uid, gid: user and group to run as, names or numbers.
        cwd: working directory.
        shell: run ``sh -c cmd`` (``args`` become the shell's positional parameters).
        detach: the process is not stopped when the manager stops, and outlives it.
        numprocesses: how many copies to keep running.
        flapping: crash-loop protection (``FlappingInfo``, a dict, ``"2 1. 7. 5"``), or None.
        redirect_output: one or two labels capturing stdout and stderr through pipes.
        redirect_input: give the child a stdin pipe that ``write()`` feeds.
        custom_streams: labels of extra bidirectional pipes at fd 3, 4, ...
        custom_channels: already-open files or sockets passed after the custom streams.
        graceful_timeout: seconds between the stop signal and SIGKILL when stopping.
        restart: ``always``, ``on-failure`` (not after exit 0 or the stop signal) or
            ``never`` (restart.py).
        backoff: the delay before restarting a process that failed to start
            (``BackoffInfo``, ``"0.1, 2, 30"``: initial, factor, max), or None.
        start_secs: a process that lives this long counts as started: ``running``.
        start_retries: failed starts in a row retried before the job is ``fatal``.
        give_up_on: exit codes and signals after which the job is ``fatal`` at once.
        stop_signal: the signal that stops a process (``TERM``, ``QUIT``, ``INT``...).
        umask: the process's umask (an int, or octal text ``"022"``).
        rlimits: resource limits, ``{"nofile": 4096, "core": 0, "as": "unlimited"}``.
        env_file: a dotenv file read at each (re)start; ``env`` wins over it.
        ready: how a process says it is ready: ``notify`` (systemd's sd_notify),
            ``fd:N``, ``tcp:PORT``, ``http:URL``, ``exec:COMMAND`` (readiness.py).
        ready_interval, ready_timeout: seconds between readiness probes; seconds a
            process has to be ready (beyond: a failed start).
        health: a probe run on every running process: ``tcp:``, ``http:``, ``exec:``.
        health_interval, health_timeout, health_failures, health_action: how often, how
            long, how many failures in a row, then ``restart``, ``stop`` or ``event``.
        requires: jobs that must be ready before this one starts; stopped after it.
        on_exit: ``restart`` (the restart policy), ``ignore`` or ``shutdown``.
        priority: start order in gafferd and at manager start (lower first).
        stdout_logfile, stderr_logfile: where the output also goes: a path, ``"-"`` for
            gaffer's own stdout, or ``"syslog[:facility][@address]"``.
        logfile_max_bytes: rotate a log file at this size (0: never).
        logfile_backups: how many rotated files to keep (``path.1`` ...).
        logfile_buffer_bytes: output kept in memory for a slow log; beyond, it is dropped
            and counted (event ``log_dropped``), never blocking the child.
        log_timestamps: prefix every line of the log with the time.
        log_format: ``text`` (as written) or ``json`` (``{ts, job, pid, stream, line}``
            objects, one a line).
        log_rotate: ``daily`` or ``hourly``: also rotate the log files at local midnight
            (or each hour), beside ``logfile_max_bytes``.
        log_max_total: the disk the job's log files may take, rotated copies included
            (0: no limit); the oldest copies are removed first.
        log_markers: write lifecycle lines (``spawned pid 4242``, ``exited with 3``,
            ``killed by SIGKILL after 10 s``) into the job's log files.
        log_history: lines of output kept in memory (``gaffer logs``).
        port: give each kept-alive process ``PORT = port + slot``, its slot being 0 to
            numprocesses - 1 (a replacement takes the slot of the process it replaces),
            as foreman does; ``$PORT`` in the command line follows.
    """

    name: str
    cmd: str
    args: tuple[str, ...]
    env: Mapping[str, str]
    os_env: bool
    uid: int | str | None
    gid: int | str | None
    cwd: str | None
    shell: bool
    detach: bool
    numprocesses: int
    flapping: FlappingInfo | None
    redirect_output: tuple[str, ...]
    redirect_input: bool
    custom_streams: tuple[str, ...]
    custom_channels: tuple[Any, ...]
    restart: str
    backoff: BackoffInfo | None
    start_secs: float
    start_retries: int
    give_up_on: tuple[ExitMatch, ...]
    stop_signal: str
    graceful_timeout: float
    priority: int
    port: int | None
    ready: ProbeSpec | None
    ready_interval: float
    ready_timeout: float
    health: ProbeSpec | None
    health_interval: float
    health_timeout: float
    health_failures: int
    health_action: str
    requires: tuple[str, ...]
    on_exit: str
    umask: int | None
    rlimits: Mapping[str, int | str]
    env_file: str | None
    stdout_logfile: str | None
    stderr_logfile: str | None
    logfile_max_bytes: int
    logfile_backups: int
    logfile_buffer_bytes: int
    log_timestamps: bool
    log_format: str
    log_rotate: str | None
    log_max_total: int
    log_markers: bool
    log_history: int

    def __init__(self, name: str, cmd: str, **settings: Any) -> None:
        unknown = sorted(set(settings) - BY_NAME.keys())
        if unknown:
            raise InvalidOption(
                unknown[0],
                f"unknown option(s) {', '.join(map(repr, unknown))} for job "
                f"{name!r}; known options: {', '.join(sorted(BY_NAME))}",
            )
        values: dict[str, Any] = {"name": _check_name(name), "cmd": _check_cmd(cmd)}
        for option in OPTIONS:
            raw = settings.get(option.name, option.default)
            try:
                values[option.name] = option.check(raw)
            except (TypeError, ValueError) as exc:
                raise InvalidOption(
                    option.name, f"option {option.name!r} of job {name!r}: {exc}"
                ) from None
        _check_labels(values["redirect_output"], values["custom_streams"], name)
        _check_detach(values, name)
        for key, value in values.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_ids", _resolve_ids(values["uid"], values["gid"], name))

    # -- derived -------------------------------------------------------------------------
    @property
    def resolved_uid(self) -> int | None:
        return self._ids[0]

    @property
    def resolved_gid(self) -> int | None:
        return self._ids[1]

    @property
    def username(self) -> str | None:
        return self._ids[2]

    @property
    def log_targets(self) -> tuple[LogTarget | None, LogTarget | None]:
        """The parsed ``stdout_logfile`` and ``stderr_logfile``."""
        return tuple(  # type: ignore[return-value]
            None if value is None else LogTarget.parse(value)
            for value in (self.stdout_logfile, self.stderr_logfile)
        )

    @property
    def settings(self) -> dict[str, Any]:
        return {option.name: getattr(self, option.name) for option in OPTIONS}

    def replace(self, **changes: Any) -> ProcessConfig:
        values = {**self.settings, **changes}
        name = values.pop("name", self.name)
        cmd = values.pop("cmd", self.cmd)
        return ProcessConfig(name, cmd, **values)

    # -- dict forms ----------------------------------------------------------------------
    def to_dict(self, with_channels: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "cmd": self.cmd}
        for option in OPTIONS:
            if option.name == "custom_channels" and not with_channels:
                continue
            out[option.name] = to_json(option.name, getattr(self, option.name))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessConfig:
        if not isinstance(data, Mapping):
            raise InvalidOption("config", f"a job config must be a dict, got {type(data).__name__}")
        missing = [key for key in ("name", "cmd") if key not in data]
        if missing:
            raise InvalidOption(missing[0], f"job config misses {' and '.join(missing)}")
        settings = dict(data)
        return cls(settings.pop("name"), settings.pop("cmd"), **settings)

    # -- read-only mapping access, as the original ------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in _ALL_NAMES:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in _ALL_NAMES else default

    def __contains__(self, key: object) -> bool:
        return key in _ALL_NAMES

    def keys(self) -> Iterator[str]:
        return iter(("name", "cmd", *BY_NAME))

    def __hash__(self) -> int:
        return hash((self.name, self.cmd))


# -- what commands receive ----------------------------------------------------------------
def as_config(config: ProcessConfig | Mapping[str, Any]) -> ProcessConfig:
    if isinstance(config, ProcessConfig):
        return config
    if isinstance(config, Mapping):
        return ProcessConfig.from_dict(config)
    raise InvalidArgument(
        f"expected a ProcessConfig or a dict, got {type(config).__name__}", reason="bad_config"
    )


def check_env(env: Mapping[str, str] | None) -> dict[str, str] | None:
    if env is None:
        return None
    if not isinstance(env, Mapping):
        raise InvalidArgument(f"env: expected a dict of strings, got {env!r}")
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or not isinstance(value, str):
            raise InvalidArgument(f"env: bad variable {key!r}={value!r}")
        try:
            os_string(key)
            os_string(value)
        except ValueError as exc:
            raise InvalidArgument(f"env: {exc}") from None
    return dict(env)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidOption("name", f"option 'name': expected a non-empty string, got {name!r}")
    if any(ch.isspace() for ch in name) or "/" in name or name.startswith("."):
        raise InvalidOption(
            "name", f"option 'name': {name!r} may not contain spaces or '/', nor start with '.'"
        )
    if not name.isprintable():  # control characters, lone surrogates: no URL, no log line
        raise InvalidOption("name", f"option 'name': {name!r} holds unprintable characters")
    if len(name) > MAX_NAME:
        raise InvalidOption("name", f"option 'name': longer than {MAX_NAME} characters")
    return name


def _check_cmd(cmd: object) -> str:
    if not isinstance(cmd, str) or not cmd.strip():
        raise InvalidOption("cmd", f"option 'cmd': expected a non-empty string, got {cmd!r}")
    try:
        return os_string(cmd)
    except ValueError as exc:
        raise InvalidOption("cmd", f"option 'cmd': {exc}") from None


def _check_labels(outputs: tuple[str, ...], streams: tuple[str, ...], name: str) -> None:
    clash = (set(outputs) | RESERVED_STREAM_LABELS) & set(streams)
    if clash:
        raise InvalidOption(
            "custom_streams",
            f"option 'custom_streams' of job {name!r}: label(s) "
            f"{', '.join(sorted(clash))} already used for stdio",
        )


def _check_detach(values: dict[str, Any], name: str) -> None:
    """A detached process outlives gaffer: nothing of it may go through gaffer's pipes
    (it would get SIGPIPE once gaffer is gone). Its log files it writes itself."""
    if not values["detach"]:
        return
    for option in ("redirect_output", "redirect_input", "custom_streams", "custom_channels"):
        if values[option]:
            raise InvalidOption(
                option,
                f"option {option!r} of job {name!r}: a detached process cannot use pipes to gaffer",
            )
    for option in ("stdout_logfile", "stderr_logfile"):
        target = values[option]
        if target is not None and LogTarget.parse(target).kind != "file":
            raise InvalidOption(
                option,
                f"option {option!r} of job {name!r}: a detached "
                "process writes its log itself: give a file path",
            )


def _resolve_ids(
    uid: int | str | None, gid: int | str | None, name: str
) -> tuple[int | None, int | None, str | None]:
    """Resolve user and group names now, so a typo fails at load, not at each spawn."""
    resolved_uid = resolved_gid = None
    username = None
    if uid is not None:
        try:
            entry = pwd.getpwnam(uid) if isinstance(uid, str) else pwd.getpwuid(uid)
        except KeyError:
            if isinstance(uid, str):
                raise InvalidOption(
                    "uid", f"option 'uid' of job {name!r}: unknown user {uid!r}"
                ) from None
            resolved_uid = uid  # a numeric uid needs no passwd entry
        else:
            resolved_uid, username = entry.pw_uid, entry.pw_name
            resolved_gid = entry.pw_gid
    if gid is not None:
        try:
            resolved_gid = (grp.getgrnam(gid) if isinstance(gid, str) else grp.getgrgid(gid)).gr_gid
        except KeyError:
            if isinstance(gid, str):
                raise InvalidOption(
                    "gid", f"option 'gid' of job {name!r}: unknown group {gid!r}"
                ) from None
            resolved_gid = gid
    return resolved_uid, resolved_gid, username


_ALL_NAMES = frozenset({"name", "cmd", *BY_NAME})
assert {f.name for f in fields(ProcessConfig)} == _ALL_NAMES
