"""``ProcessConfig``: the template of a job, every option validated once, here.

A config is immutable: ``replace(**changes)`` gives a new one. It also reads like the
original's dict-like object (``cfg["numprocesses"]``, ``cfg.get("env")``, ``"cmd" in cfg``)
and round-trips through ``to_dict()`` / ``from_dict()``.
"""

from __future__ import annotations

import grp
import math
import os
import pwd
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from gaffer.core.flapping import FlappingInfo
from gaffer.core.logfile import (
    DEFAULT_BACKUPS,
    DEFAULT_BUFFER_BYTES,
    DEFAULT_MAX_BYTES,
    LogTarget,
)
from gaffer.core.names import MAX_NAME
from gaffer.errors import ConfigError

DEFAULT_GRACEFUL_TIMEOUT = 10.0


class InvalidOption(ConfigError):
    """A job option that cannot be used; ``option`` names it."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(message)


DEFAULT_PRIORITY = 999  # lower starts first, as in supervisor; unset jobs start last
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
        graceful_timeout: seconds between SIGTERM and SIGKILL when stopping.
        priority: start order in gafferd and at manager start (lower first).
        stdout_logfile, stderr_logfile: where the output also goes: a path, ``"-"`` for
            gaffer's own stdout, or ``"syslog[:facility][@address]"``.
        logfile_max_bytes: rotate a log file at this size (0: never).
        logfile_backups: how many rotated files to keep (``path.1`` ...).
        logfile_buffer_bytes: output kept in memory for a slow log; beyond, it is dropped
            and counted (event ``log_dropped``), never blocking the child.
        log_timestamps: prefix every line of the log with the time.
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
    graceful_timeout: float
    priority: int
    port: int | None
    stdout_logfile: str | None
    stderr_logfile: str | None
    logfile_max_bytes: int
    logfile_backups: int
    logfile_buffer_bytes: int
    log_timestamps: bool

    def __init__(self, name: str, cmd: str, **settings: Any) -> None:
        unknown = sorted(set(settings) - _SETTING_NAMES)
        if unknown:
            raise InvalidOption(
                unknown[0],
                f"unknown option(s) {', '.join(map(repr, unknown))} for job "
                f"{name!r}; known options: {', '.join(sorted(_SETTING_NAMES))}",
            )
        values: dict[str, Any] = {"name": _check_name(name), "cmd": _check_cmd(cmd)}
        for key, default in _DEFAULTS.items():
            raw = settings.get(key, default)
            try:
                values[key] = _VALIDATORS[key](raw)
            except (TypeError, ValueError) as exc:
                raise InvalidOption(key, f"option {key!r} of job {name!r}: {exc}") from None
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
        return {key: getattr(self, key) for key in _DEFAULTS}

    def replace(self, **changes: Any) -> ProcessConfig:
        values = {**self.settings, **changes}
        name = values.pop("name", self.name)
        cmd = values.pop("cmd", self.cmd)
        return ProcessConfig(name, cmd, **values)

    # -- dict forms ----------------------------------------------------------------------
    def to_dict(self, with_channels: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "cmd": self.cmd}
        for key in _DEFAULTS:
            value = getattr(self, key)
            if key == "custom_channels":
                if not with_channels:
                    continue
                value = list(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, FlappingInfo):
                value = value.to_dict()
            out[key] = value
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
        return iter(("name", "cmd", *_DEFAULTS))

    def __hash__(self) -> int:
        return hash((self.name, self.cmd))


# -- validators ---------------------------------------------------------------------------
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


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected true or false, got {value!r}")


def os_string(text: str) -> str:
    """What the OS can take: C strings (a NUL byte could never reach the process) that
    encode to bytes (a lone surrogate such as "\\ud800" does not; "\\udc80", Python's
    stand-in for an undecodable byte of a file name, does)."""
    if "\0" in text:
        raise ValueError(f"{text!r} holds a NUL byte")
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        raise ValueError(f"{text!r} holds a lone surrogate, which no OS string can") from None
    return text


def _args(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            return tuple(os_string(word) for word in shlex.split(value))
        except ValueError as exc:
            raise ValueError(f"cannot split {value!r}: {exc}") from None
    if isinstance(value, list | tuple):
        out = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise TypeError(f"expected strings, got {item!r}")
            out.append(os_string(str(item)))
        return tuple(out)
    raise TypeError(f"expected a list or a string, got {value!r}")


def _env(value: Any) -> Mapping[str, str]:
    if value is None:
        return _FrozenDict()
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a dict of strings, got {value!r}")
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key:
            raise ValueError(f"bad variable name {key!r}")
        os_string(key)
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise TypeError(f"variable {key!r}: expected a string, got {item!r}")
        out[key] = os_string(str(item))
    return _FrozenDict(out)


def _user_or_group(value: Any) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"expected a name or a number, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a number >= 0, got {value}")
        return value
    if isinstance(value, str) and value.strip():
        text = os_string(value.strip())
        return int(text) if text.isdigit() else text
    raise TypeError(f"expected a name or a number, got {value!r}")


def _cwd(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and value:
        return os_string(value)
    raise TypeError(f"expected a path, got {value!r}")


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"expected an integer >= 0, got {value}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _port(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a port number, got {value!r}")
    if not 1 <= value <= 65535:
        raise ValueError(f"expected a port from 1 to 65535, got {value}")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a number of seconds >= 0, got {value!r}")
    return float(value)


def _labels(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list of labels, got {value!r}")
    for label in value:
        if (
            not isinstance(label, str)
            or not label
            or any(ch.isspace() for ch in label)
            or "/" in label
        ):
            raise ValueError(f"bad label {label!r}: a non-empty word without '/'")
    return tuple(value)


def _output_labels(value: Any) -> tuple[str, ...]:
    labels = _labels(value)
    if len(labels) > 2:
        raise ValueError(f"at most two labels (stdout, stderr), got {list(labels)}")
    return labels


def _stream_labels(value: Any) -> tuple[str, ...]:
    labels = _labels(value)
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate labels in {list(labels)}")
    return labels


def _channels(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list of open files or sockets, got {value!r}")
    for item in value:
        if isinstance(item, bool) or not (isinstance(item, int) or hasattr(item, "fileno")):
            raise TypeError(f"expected a file descriptor or an object with fileno(), got {item!r}")
    return tuple(value)


def _logfile(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"expected a path, '-' or 'syslog[:facility][@address]', got {value!r}")
    LogTarget.parse(value)
    return value


def _positive(value: Any) -> int:
    size = _count(value)
    if size < 1:
        raise ValueError(f"expected an integer >= 1, got {value}")
    return size


def _flapping(value: Any) -> FlappingInfo | None:
    return FlappingInfo.coerce(value)


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


class _FrozenDict(dict):
    """A dict that refuses changes, so a config's env cannot be altered behind its back."""

    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a job config's env is read-only; use config.replace(env=...)")

    __setitem__ = __delitem__ = __ior__ = _readonly  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))


_DEFAULTS: dict[str, Any] = {
    "args": None,
    "env": None,
    "os_env": False,
    "uid": None,
    "gid": None,
    "cwd": None,
    "shell": False,
    "detach": False,
    "numprocesses": 1,
    "flapping": None,
    "redirect_output": None,
    "redirect_input": False,
    "custom_streams": None,
    "custom_channels": None,
    "graceful_timeout": DEFAULT_GRACEFUL_TIMEOUT,
    "priority": DEFAULT_PRIORITY,
    "port": None,
    "stdout_logfile": None,
    "stderr_logfile": None,
    "logfile_max_bytes": DEFAULT_MAX_BYTES,
    "logfile_backups": DEFAULT_BACKUPS,
    "logfile_buffer_bytes": DEFAULT_BUFFER_BYTES,
    "log_timestamps": False,
}
_VALIDATORS = {
    "args": _args,
    "env": _env,
    "os_env": _bool,
    "uid": _user_or_group,
    "gid": _user_or_group,
    "cwd": _cwd,
    "shell": _bool,
    "detach": _bool,
    "numprocesses": _count,
    "flapping": _flapping,
    "redirect_output": _output_labels,
    "redirect_input": _bool,
    "custom_streams": _stream_labels,
    "custom_channels": _channels,
    "graceful_timeout": _seconds,
    "priority": _int,
    "port": _port,
    "stdout_logfile": _logfile,
    "stderr_logfile": _logfile,
    "logfile_max_bytes": _count,
    "logfile_backups": _count,
    "logfile_buffer_bytes": _positive,
    "log_timestamps": _bool,
}
_SETTING_NAMES = frozenset(_DEFAULTS)
_ALL_NAMES = _SETTING_NAMES | {"name", "cmd"}
assert set(_VALIDATORS) == _SETTING_NAMES
assert {f.name for f in fields(ProcessConfig)} == _ALL_NAMES
