"""Every job option, declared once: its default, how a value is checked, how it is read
from text (an ini file, a command line), its JSON schema (the HTTP API and
``/openapi.json``) and its help (docs/configuration.md is checked against it).

``ProcessConfig`` (config.py) validates with ``check``; gafferd's ini reader converts
with ``from_text``; the HTTP layer builds its ``JobConfig`` schema from ``schema``.
"""

from __future__ import annotations

import math
import os
import resource
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gaffer.core.flapping import OFF, FlappingInfo
from gaffer.core.logformat import FORMATS
from gaffer.core.logrotate import ROTATIONS
from gaffer.core.logtarget import LogTarget
from gaffer.core.optiontext import (
    as_is,
    off_or_text,
    text_bool,
    text_int,
    text_logfile,
    text_path,
    text_rlimits,
    text_seconds,
    text_size,
    text_size_or_off,
    text_words,
)
from gaffer.core.probespec import PROBES, READINESS, ProbeSpec
from gaffer.core.restart import give_up_on, signal_name
from gaffer.crashloop import (
    DEFAULT_RESTART,
    DEFAULT_START_RETRIES,
    DEFAULT_START_SECS,
    RESTART_MODES,
    BackoffInfo,
)

DEFAULT_GRACEFUL_TIMEOUT = 10.0
DEFAULT_PRIORITY = 999  # lower starts first, as in supervisor; unset jobs start last
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_BACKUPS = 10
DEFAULT_BUFFER_BYTES = 16 * 1024 * 1024
DEFAULT_LOG_HISTORY = 1000
DEFAULT_READY_INTERVAL = 0.5
DEFAULT_READY_TIMEOUT = 60.0  # systemd's TimeoutStartSec is 90 s
DEFAULT_HEALTH_INTERVAL = 10.0
DEFAULT_HEALTH_TIMEOUT = 5.0
DEFAULT_HEALTH_FAILURES = 3
HEALTH_ACTIONS = ("restart", "stop", "event")
ON_EXIT = ("restart", "ignore", "shutdown")
UNLIMITED = "unlimited"
RLIMITS = {
    name.removeprefix("RLIMIT_").lower(): getattr(resource, name)
    for name in dir(resource)
    if name.startswith("RLIMIT_")
}

Schema = dict[str, Any]
STRING: Schema = {"type": "string"}
WORDS: Schema = {"type": "array", "items": STRING}
COUNT: Schema = {"type": "integer", "minimum": 0}
SECONDS: Schema = {"type": "number", "minimum": 0}
BOOLEAN: Schema = {"type": "boolean"}
LOGFILE: Schema = {"type": ["string", "null"], "minLength": 1}
# a count 0.5 clients may send as 2.0; FlappingInfo refuses 2.5 with a clear message
WHOLE: Schema = {"type": "number", "minimum": 1, "description": "a whole number (2 or 2.0)"}


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    check: Callable[[Any], Any]  # a Python value -> the stored value; ValueError/TypeError
    from_text: Callable[[str, str], Any] | None  # (text, base directory) -> a Python value
    schema: Schema
    help: str


# -- checks: a Python value (a dict, the API, a ProcessConfig call) to the stored value ----
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


class FrozenDict(dict):
    """A dict that refuses changes, so a config's env cannot be altered behind its back."""

    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a job config's env is read-only; use config.replace(env=...)")

    __setitem__ = __delitem__ = __ior__ = _readonly  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))


def _env(value: Any) -> Mapping[str, str]:
    if value is None:
        return FrozenDict()
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
    return FrozenDict(out)


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


def _path_or_none(value: Any) -> str | None:
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


def _positive(value: Any) -> int:
    size = _count(value)
    if size < 1:
        raise ValueError(f"expected an integer >= 1, got {value}")
    return size


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


def _log_format(value: Any) -> str:
    if not isinstance(value, str) or value.strip().lower() not in FORMATS:
        raise ValueError(f"expected one of {', '.join(FORMATS)}, got {value!r}")
    return value.strip().lower()


def _log_rotate(value: Any) -> str | None:
    """None (by size only), ``daily`` or ``hourly``."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in OFF:
        return None
    if not isinstance(value, str) or value.strip().lower() not in ROTATIONS:
        raise ValueError(f"expected one of {', '.join(ROTATIONS)} or off, got {value!r}")
    return value.strip().lower()


def _restart(value: Any) -> str:
    if not isinstance(value, str) or value.strip().lower() not in RESTART_MODES:
        raise ValueError(f"expected one of {', '.join(RESTART_MODES)}, got {value!r}")
    return value.strip().lower()


def _stop_signal(value: Any) -> str:
    """A signal, stored by name (``TERM``, ``QUIT``, ``RTMIN+3``)."""
    from gaffer.core.names import parse_signal

    return signal_name(parse_signal(value))


def _umask(value: Any) -> int | None:
    """None (gafferd's own), an integer, or octal text (``"022"``, ``"0o027"``)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        try:
            value = int(text, 8)
        except ValueError:
            raise ValueError(f"expected an octal umask such as 022, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ValueError(f"expected a umask from 000 to 777 (octal), got {value!r}")
    return value


def _rlimits(value: Any) -> Mapping[str, int | str]:
    """``{"nofile": 4096, "core": 0, "as": "unlimited"}``; a limit above gafferd's own
    hard limit can only be set by root, so it is refused now rather than at each spawn."""
    if value is None:
        return FrozenDict()
    if not isinstance(value, Mapping):
        raise TypeError(f"expected NAME=VALUE limits, got {value!r}")
    out: dict[str, int | str] = {}
    for name, amount in value.items():
        key = str(name).strip().lower()
        if key not in RLIMITS:
            raise ValueError(f"unknown limit {name!r}; known: {', '.join(sorted(RLIMITS))}")
        if isinstance(amount, str) and amount.strip().lower() in (UNLIMITED, "infinity"):
            wanted = resource.RLIM_INFINITY
            out[key] = UNLIMITED
        else:
            try:
                wanted = int(amount)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError(f"{key}: expected a number or unlimited, got {amount!r}") from None
            if isinstance(amount, bool) or wanted < 0:
                raise ValueError(f"{key}: expected a number >= 0 or unlimited, got {amount!r}")
            out[key] = wanted
        hard = resource.getrlimit(RLIMITS[key])[1]
        over = hard != resource.RLIM_INFINITY and (
            wanted == resource.RLIM_INFINITY or wanted > hard
        )
        if over and os.geteuid() != 0:
            raise ValueError(
                f"{key}: {amount} is over gafferd's hard limit ({hard}); only root may raise it"
            )
    return FrozenDict(out)


def rlimit_values(limits: Mapping[str, int | str]) -> list[tuple[int, int]]:
    """``(resource, value)`` pairs to give ``setrlimit`` (soft and hard)."""
    return [
        (RLIMITS[name], resource.RLIM_INFINITY if amount == UNLIMITED else int(amount))
        for name, amount in limits.items()
    ]


def _give_up_on(value: Any) -> tuple[Any, ...]:
    return give_up_on(value)


def _probe(kinds: tuple[str, ...]) -> Callable[[Any], ProbeSpec | None]:
    def check(value: Any) -> ProbeSpec | None:
        if value is None or isinstance(value, ProbeSpec):
            return value
        if isinstance(value, str) and value.strip().lower() in OFF | {""}:
            return None
        return ProbeSpec.parse(value, kinds)

    return check


def _positive_seconds(value: Any) -> float:
    seconds = _seconds(value)
    if seconds <= 0:
        raise ValueError(f"expected a number of seconds > 0, got {value!r}")
    return seconds


def _choice(allowed: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return value.strip().lower()

    return check


def _job_names(value: Any) -> tuple[str, ...]:
    """``requires``: job names (``db``, the job's own session) or ids (``infra.db``)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = text_words(value)
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list of job names, got {value!r}")
    names = []
    for name in value:
        if not isinstance(name, str) or not name or not name.isprintable() or "/" in name:
            raise ValueError(f"bad job name {name!r}")
        if any(ch.isspace() for ch in name) or name.startswith("."):
            raise ValueError(f"bad job name {name!r}")
        if name not in names:
            names.append(name)
    return tuple(names)


def opt(
    name: str, default: Any, check: Callable[[Any], Any], from_text: Any, schema: Schema, help: str
) -> Option:
    return Option(name, default, check, from_text, schema, help)


OPTIONS: tuple[Option, ...] = (
    opt("args", None, _args, as_is, {"oneOf": [STRING, WORDS]},
        "more arguments (a list, or a string split like a shell would)"),
    opt("env", None, _env, None, {"type": "object", "additionalProperties": STRING},
        "environment of the process (the ini file's [env:NAME] section)"),
    opt("os_env", False, _bool, text_bool, BOOLEAN,
        "start from gaffer's own environment (gafferd's jobs: true)"),
    opt("uid", None, _user_or_group, as_is, {"type": ["string", "integer", "null"]},
        "the user to run as, a name or a number"),
    opt("gid", None, _user_or_group, as_is, {"type": ["string", "integer", "null"]},
        "the group to run as, a name or a number"),
    opt("cwd", None, _path_or_none, text_path, {"type": ["string", "null"]},
        "working directory"),
    opt("shell", False, _bool, text_bool, BOOLEAN, "run `sh -c cmd`"),
    opt("detach", False, _bool, text_bool, BOOLEAN,
        "not stopped when gaffer stops; outlives it"),
    opt("numprocesses", 1, _count, text_int, COUNT, "how many copies to keep running"),
    opt("flapping", FlappingInfo(), FlappingInfo.coerce, off_or_text,
        {"oneOf": [
            {"type": "null"}, STRING, {"type": "array", "items": {"type": "number"}},
            {"type": "object", "additionalProperties": False, "properties": {
                "attempts": WHOLE, "window": SECONDS,
                "retry_in": SECONDS, "max_retry": WHOLE}},
        ]},
        "crash-loop protection: attempts window retry_in max_retry, or off"),
    opt("restart", DEFAULT_RESTART, _restart, as_is,
        {"type": "string", "enum": list(RESTART_MODES)},
        "always, on-failure (not after exit 0 or its stop signal) or never"),
    opt("backoff", BackoffInfo(), BackoffInfo.coerce, off_or_text,
        {"oneOf": [
            {"type": "null"}, STRING, {"type": "array", "items": {"type": "number"}},
            {"type": "object", "additionalProperties": False, "properties": {
                "initial": SECONDS, "factor": {"type": "number", "minimum": 1},
                "max": SECONDS}},
        ]},
        "delay before restarting a process that failed to start: initial, factor, max"),
    opt("start_secs", DEFAULT_START_SECS, _seconds, text_seconds, SECONDS,
        "a process that lives this long counts as started: running"),
    opt("start_retries", DEFAULT_START_RETRIES, _count, text_int, COUNT,
        "failed starts in a row retried before the job is fatal"),
    opt("give_up_on", None, _give_up_on, text_words,
        {"type": "array", "items": {"type": ["integer", "string"]}},
        "exit codes and signals after which the job is fatal at once"),
    opt("stop_signal", "TERM", _stop_signal, as_is, {"type": ["string", "integer"]},
        "the signal that stops a process (TERM; QUIT for nginx, INT...)"),
    opt("redirect_output", None, _output_labels, text_words, WORDS,
        "labels capturing stdout (and stderr) through pipes"),
    opt("redirect_input", False, _bool, text_bool, BOOLEAN,
        "give the process a stdin pipe"),
    opt("custom_streams", None, _stream_labels, text_words, WORDS,
        "labels of extra bidirectional pipes at fd 3, 4, ..."),
    opt("custom_channels", None, _channels, None, {"type": "array", "maxItems": 0},
        "embedding only: open files and sockets cannot be sent over HTTP"),
    opt("graceful_timeout", DEFAULT_GRACEFUL_TIMEOUT, _seconds, text_seconds, SECONDS,
        "seconds between the stop signal and SIGKILL"),
    opt("priority", DEFAULT_PRIORITY, _int, text_int, {"type": "integer"},
        "start order (lower first)"),
    opt("port", None, _port, text_int, {"type": ["integer", "null"], "minimum": 1},
        "PORT = port + slot for each process, as foreman does"),
    opt("ready", None, _probe(READINESS), as_is, {"type": ["string", "null"]},
        "how a process says it is ready: notify (sd_notify), fd:N, tcp:PORT, http:URL, "
        "exec:COMMAND; none: ready when started (start_secs)"),
    opt("ready_interval", DEFAULT_READY_INTERVAL, _positive_seconds, text_seconds, SECONDS,
        "seconds between readiness probes (tcp, http, exec)"),
    opt("ready_timeout", DEFAULT_READY_TIMEOUT, _positive_seconds, text_seconds, SECONDS,
        "seconds a process has to be ready; beyond, it is a failed start"),
    opt("health", None, _probe(PROBES), as_is, {"type": ["string", "null"]},
        "a health probe of each running process: tcp:PORT, http:URL, exec:COMMAND"),
    opt("health_interval", DEFAULT_HEALTH_INTERVAL, _positive_seconds, text_seconds, SECONDS,
        "seconds between health probes"),
    opt("health_timeout", DEFAULT_HEALTH_TIMEOUT, _positive_seconds, text_seconds, SECONDS,
        "seconds a health probe may take"),
    opt("health_failures", DEFAULT_HEALTH_FAILURES, _positive, text_int,
        {"type": "integer", "minimum": 1},
        "failed health probes in a row that trigger health_action"),
    opt("health_action", "restart", _choice(HEALTH_ACTIONS), as_is,
        {"type": "string", "enum": list(HEALTH_ACTIONS)},
        "restart (the process), stop (the job) or event (only the health event)"),
    opt("requires", None, _job_names, text_words, WORDS,
        "jobs that must be ready before this one starts (session.name, or a name of its "
        "own session); stopped after it"),
    opt("on_exit", "restart", _choice(ON_EXIT), as_is,
        {"type": "string", "enum": list(ON_EXIT)},
        "restart (the restart policy), ignore (never restarted) or shutdown (gafferd "
        "stops, with the process's exit code)"),
    opt("umask", None, _umask, as_is, {"type": ["integer", "string", "null"]},
        "the process's umask, octal (022); default: gafferd's"),
    opt("rlimits", None, _rlimits, text_rlimits,
        {"type": "object", "additionalProperties": {"type": ["integer", "string"]}},
        "resource limits: nofile=4096, nproc=64, core=0, as=unlimited..."),
    opt("env_file", None, _path_or_none, text_path, {"type": ["string", "null"]},
        "a dotenv file read at each (re)start; the job's env wins over it"),
    opt("stdout_logfile", None, _logfile, text_logfile, LOGFILE,
        "a path, - (gafferd's stdout) or syslog[:facility][@address]"),
    opt("stderr_logfile", None, _logfile, text_logfile, LOGFILE,
        "the same for stderr"),
    opt("logfile_max_bytes", DEFAULT_MAX_BYTES, _count, text_size, COUNT,
        "rotate a log file at this size (0: never)"),
    opt("logfile_backups", DEFAULT_BACKUPS, _count, text_int, COUNT,
        "rotated files kept"),
    opt("logfile_buffer_bytes", DEFAULT_BUFFER_BYTES, _positive, text_size,
        {"type": "integer", "minimum": 1},
        "output kept in memory for a slow log; beyond, it is dropped and counted"),
    opt("log_timestamps", False, _bool, text_bool, BOOLEAN,
        "prefix every line of the log files with the time"),
    opt("log_format", "text", _log_format, as_is, {"type": "string", "enum": list(FORMATS)},
        "text (as written), or json: one {ts, job, pid, stream, line} object a line"),
    opt("log_rotate", None, _log_rotate, as_is,
        {"type": ["string", "null"], "enum": [*ROTATIONS, "off", None]},
        "also rotate the log files daily or hourly (local time), beside the size"),
    opt("log_max_total", 0, _count, text_size_or_off, COUNT,
        "disk the job's log files may take, rotated ones included (0: no limit)"),
    opt("log_markers", True, _bool, text_bool, BOOLEAN,
        "write `spawned pid N`, `exited with 3`... lines into the job's log files"),
    opt("log_history", DEFAULT_LOG_HISTORY, _count, text_int, COUNT,
        "lines of output kept in memory for `gaffer logs` (0: none); gafferd's setting "
        "of the same name is the default of its jobs"),
)  # fmt: skip
BY_NAME: Mapping[str, Option] = {option.name: option for option in OPTIONS}

#: options a running job takes without replacing its processes (an update or a reload
#: that changes only these keeps them): how many run, how much of their output is kept
IN_PLACE = ("numprocesses", "log_history")


def to_json(name: str, value: Any) -> Any:
    """An option's stored value as the API, ``to_dict()`` and ``export`` show it."""
    if isinstance(value, FlappingInfo | BackoffInfo):
        return value.to_dict()
    if isinstance(value, ProbeSpec):
        return str(value)
    if name == "give_up_on":
        return [match.to_json() for match in value]
    if name == "umask" and value is not None:
        return f"{value:03o}"
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value
