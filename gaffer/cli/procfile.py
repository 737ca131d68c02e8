"""Procfile apps: the Procfile, its ``.env`` files, and their export.

A Procfile lists the process types of an app, one ``name: command`` a line; ``.env``
files hold its environment. ``App.load`` reads both and ``App.jobs`` turns every entry
into a gaffer job (a ``ProcessConfig.from_dict`` dict): a shell command run in the app's
directory with the app's environment, its output captured, one ``PORT`` per process
as foreman gives them (``web.1`` 5000, ``web.2`` 5001, ``worker.1`` 5100, ...), and
crash-loop protection (``CRASH_LOOP``) so that an entry that cannot start does not
respawn a thousand times a second.

Exports: ``to_ini`` (a gafferd.ini whose jobs are exactly those), ``to_json`` (what
``gaffer load`` reads) and ``to_systemd`` (a target and one service per process).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gaffer.crashloop import (
    DEFAULT_RESTART,
    DEFAULT_START_RETRIES,
    DEFAULT_START_SECS,
    KEYS as FLAPPING_KEYS,
    BackoffInfo,
    FlappingInfo,
)
from gaffer.dotenv import DotenvError, load_env_files, parse_env, read_text  # noqa: F401 - its API

DEFAULT_BASE_PORT = 5000
PORT_STEP = 100  # foreman's rule: each process type gets its own hundred ports
APP_NAME = re.compile(r"^[a-z][a-z0-9_+-]*$")
DEFAULT_APP = "default"
PROCESS_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):(.*)$")
REDIRECT_OUTPUT = ("out", "err")
# Twice within a second is a crash loop: retried 7 s later, 5 times, then left stopped
# (the original's policy; supervisor gives up after 3 failed starts, circus after 5).
CRASH_LOOP = FlappingInfo()
DEFAULT_BACKOFF = BackoffInfo()


class ProcfileError(DotenvError):
    """A problem in a Procfile; ``str()`` is ``path:line: message`` (as an env file's)."""


# -- Procfile ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcfileEntry:
    """One process type: ``name: command`` at ``line``."""

    name: str
    command: str
    line: int


def parse_procfile(text: str, path: str = "Procfile") -> list[ProcfileEntry]:
    """The entries of a Procfile, in order. Raises ProcfileError.

    ``name: command`` (name: letters, digits, ``_`` and ``-``; the command is the rest of
    the line); blank lines and ``#`` comments are skipped; anything else is an error.
    """
    entries: list[ProcfileEntry] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PROCFILE_LINE.match(line)
        if match is None:
            raise ProcfileError(
                path,
                number,
                f"expected 'name: command' (a name of letters, digits, '_' and '-'), got {line!r}",
            )
        name, command = match.group(1), match.group(2).strip()
        if not command:
            raise ProcfileError(path, number, f"process type {name!r} has an empty command")
        if name in seen:
            raise ProcfileError(
                path,
                number,
                f"process type {name!r} is already defined at line {seen[name]}",
            )
        seen[name] = number
        entries.append(ProcfileEntry(name, command, number))
    return entries


# -- .env -------------------------------------------------------------------------------
# -- concurrency ------------------------------------------------------------------------
def parse_concurrency(specs: Iterable[str]) -> dict[str, int]:
    """``["web=2", "worker=3"]`` or ``["web=2,worker=3"]`` -> ``{"web": 2, "worker": 3}``.

    A name given twice keeps its last count. Raises ValueError naming the bad spec.
    """
    out: dict[str, int] = {}
    for spec in specs:
        parts = [part.strip() for part in str(spec).split(",")]
        if not any(parts):
            raise ValueError(f"bad concurrency {spec!r}: expected NAME=COUNT[,NAME=COUNT...]")
        for part in parts:
            if not part:
                continue
            name, sep, count = (piece.strip() for piece in part.partition("="))
            if not sep or not PROCESS_NAME.match(name):
                raise ValueError(
                    f"bad concurrency {part!r}: expected NAME=COUNT, NAME being a "
                    f"Procfile process type"
                )
            if not count.isdigit():
                raise ValueError(f"bad concurrency {part!r}: the count must be an integer >= 0")
            out[name] = int(count)
    return out


# -- the app ----------------------------------------------------------------------------
def normalize_app_name(text: str) -> str:
    """A valid app (session) name from a directory name: lower case, other characters
    than ``a-z0-9_+-`` replaced by ``-``, ``app-`` before a leading non-letter."""
    name = "".join(
        char if char in "abcdefghijklmnopqrstuvwxyz0123456789_+-" else "-" for char in text.lower()
    )
    if not name:
        return DEFAULT_APP
    if not "a" <= name[0] <= "z":
        name = "app-" + name
    return name


def check_app_name(name: str) -> str:
    if not isinstance(name, str) or not APP_NAME.match(name):
        raise ValueError(
            f"bad app name {name!r}: it must match {APP_NAME.pattern} "
            f"(lower-case letters, digits, '_', '+', '-', starting with a letter)"
        )
    return name


@dataclass(frozen=True)
class App:
    """A Procfile app: its directory, name, entries and environment."""

    root: str
    name: str
    entries: tuple[ProcfileEntry, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    procfile: str | None = None  # the file it was read from (for export comments)

    def __post_init__(self) -> None:
        check_app_name(self.name)
        object.__setattr__(self, "root", os.path.abspath(self.root))
        object.__setattr__(self, "entries", tuple(self.entries))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        names = [entry.name for entry in self.entries]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate process types in {names}")

    @classmethod
    def load(
        cls,
        procfile_path: str,
        env_files: list[str] | None = None,
        name: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> App:
        """Read a Procfile, the ``.env`` next to it (if there is one), then ``env_files``
        (which must exist). ``environ`` serves ``$VAR`` expansion in the env files.
        Raises ProcfileError (files) or ValueError (the name)."""
        path = os.path.abspath(procfile_path)
        root = os.path.dirname(path)
        entries = parse_procfile(read_text(procfile_path), procfile_path)
        paths = []
        default_env = os.path.join(root, ".env")
        if os.path.isfile(default_env):
            paths.append(default_env)
        paths.extend(env_files or ())
        env = load_env_files(paths, environ)
        if name is None:
            name = normalize_app_name(os.path.basename(root))
        return cls(root, check_app_name(name), tuple(entries), env, path)

    @property
    def names(self) -> list[str]:
        return [entry.name for entry in self.entries]

    def base_port(self, base_port: int | None = None) -> int:
        """``base_port``, else ``PORT`` from the app's env, else 5000."""
        if base_port is None:
            text = self.env.get("PORT")
            if text is None:
                return DEFAULT_BASE_PORT
            try:
                base_port = int(text.strip())
            except ValueError:
                raise ValueError(f"PORT={text!r} in the app's env is not a port number") from None
        if isinstance(base_port, bool) or not isinstance(base_port, int):
            raise ValueError(f"bad base port {base_port!r}: expected an integer")
        if not 1 <= base_port <= 65535:
            raise ValueError(f"bad base port {base_port}: expected 1 to 65535")
        return base_port

    def jobs(
        self,
        concurrency: Mapping[str, int] | None = None,
        base_port: int | None = None,
        only: list[str] | None = None,
        flapping: FlappingInfo | None = CRASH_LOOP,
    ) -> list[dict[str, Any]]:
        """One job config dict per entry (``ProcessConfig.from_dict`` takes it).

        ``concurrency`` gives the number of processes of each type (default 1; 0 keeps the
        job, stopped); ``only`` restricts to those entries. The entry at index ``i`` gets
        ``priority = i`` and ``port = base + 100 * i``; every job gets ``flapping``
        (None: restarted at once, every time). Raises ValueError for an unknown
        process type in ``concurrency`` or ``only``, or a port beyond 65535.
        """
        concurrency = dict(concurrency or {})
        known = set(self.names)
        for label, names in (("concurrency", concurrency), ("only", only or ())):
            unknown = [name for name in names if name not in known]
            if unknown:
                raise ValueError(
                    f"{label}: no process type {', '.join(map(repr, unknown))} in the "
                    f"Procfile (it has {', '.join(self.names) or 'none'})"
                )
        for name, count in concurrency.items():
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"concurrency of {name!r}: expected an integer >= 0")
        base = self.base_port(base_port)
        wanted = set(only) if only is not None else known
        jobs = []
        for index, entry in enumerate(self.entries):
            if entry.name not in wanted:
                continue
            numprocesses = concurrency.get(entry.name, 1)
            port = base + PORT_STEP * index
            last = port + max(numprocesses - 1, 0)
            if last > 65535:
                raise ValueError(
                    f"{entry.name}: ports {port}..{last} go beyond 65535 (base port {base})"
                )
            jobs.append(
                {
                    "name": entry.name,
                    "cmd": entry.command,
                    "shell": True,
                    "env": dict(self.env),
                    "os_env": True,
                    "cwd": self.root,
                    "numprocesses": numprocesses,
                    "redirect_output": list(REDIRECT_OUTPUT),
                    "priority": index,
                    "port": port,
                    "flapping": flapping.to_dict() if flapping else None,
                    "restart": DEFAULT_RESTART,
                    "backoff": DEFAULT_BACKOFF.to_dict(),
                    "start_secs": DEFAULT_START_SECS,
                    "start_retries": DEFAULT_START_RETRIES,
                }
            )
        return jobs

    @property
    def source(self) -> str:
        return self.procfile or os.path.join(self.root, "Procfile")


# -- export: gafferd ini ----------------------------------------------------------------
_INI_ORDER = (
    "cmd",
    "shell",
    "os_env",
    "cwd",
    "numprocesses",
    "redirect_output",
    "priority",
    "port",
    "flapping",
    "restart",
    "backoff",
    "start_secs",
    "start_retries",
)


def to_ini(
    app: App,
    concurrency: Mapping[str, int] | None = None,
    base_port: int | None = None,
    flapping: FlappingInfo | None = CRASH_LOOP,
) -> str:
    """A gafferd.ini holding the app's jobs as ``[job:<app>.<name>]`` (session = app)
    and their environment as ``[env:<app>.<name>]``.

    gafferd's ini format has no quoting: a value is the rest of the line, stripped, and
    `` ;`` starts a comment. A value that cannot come back unchanged (a line break,
    leading or trailing whitespace, a ``;`` after whitespace) is a ValueError naming it.
    """
    jobs = app.jobs(concurrency, base_port, flapping=flapping)
    lines = [
        f"# gafferd configuration of app {app.name}",
        f"# exported by gaffer from {_printable(app.source)}",
    ]
    for job in jobs:
        section = f"{app.name}.{job['name']}"
        lines += ["", f"[job:{section}]"]
        for key in _INI_ORDER:
            lines.append(_ini_entry(key, _ini_text(job[key]), f"[job:{section}] {key}"))
        if job["env"]:
            lines += ["", f"[env:{section}]"]
            for variable, value in job["env"].items():
                lines.append(_ini_entry(variable, value, f"variable {variable}"))
    return "\n".join(lines) + "\n"


def _ini_text(value: Any) -> str:
    if value is None:
        return "off"
    if isinstance(value, Mapping):  # flapping or backoff, in gafferd's order
        order = FLAPPING_KEYS if "attempts" in value else ("initial", "factor", "max")
        return " ".join(str(value[key]) for key in order)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return " ".join(value)
    return str(value)


def _ini_entry(key: str, value: str, what: str) -> str:
    problem = None
    if value and value.splitlines() != [value]:
        problem = "holds a line break"
    elif value != value.strip():
        problem = "starts or ends with whitespace, which the ini format strips"
    elif any(
        char == ";" and index and value[index - 1].isspace() for index, char in enumerate(value)
    ):
        problem = "holds ';' after whitespace, which the ini format reads as a comment"
    if problem:
        raise ValueError(f"cannot export {what} = {value!r} to ini: it {problem}")
    if not value:
        return f"{key} ="
    if value.startswith(";"):
        return f"{key} ={value}"  # "key = ;x" would be a comment
    return f"{key} = {value}"


def _printable(text: str) -> str:
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


# -- export: JSON -----------------------------------------------------------------------
def to_json(
    app: App,
    concurrency: Mapping[str, int] | None = None,
    base_port: int | None = None,
    flapping: FlappingInfo | None = CRASH_LOOP,
) -> str:
    """``{"name": app, "jobs": [job dicts]}``, as ``gaffer load`` reads it."""
    data = {"name": app.name, "jobs": app.jobs(concurrency, base_port, flapping=flapping)}
    return json.dumps(data, indent=2) + "\n"


# -- export: systemd --------------------------------------------------------------------
_UNIT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.-")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")
SYSTEMD_RESTART = {"always": "always", "on-failure": "on-failure", "never": "no"}


def to_systemd(
    app: App,
    concurrency: Mapping[str, int] | None = None,
    base_port: int | None = None,
    user: str | None = None,
    flapping: FlappingInfo | None = CRASH_LOOP,
) -> dict[str, str]:
    """Unit files by file name: ``<app>.target`` and ``<app>-<name>-<n>.service`` for
    each process n (1-based) of each entry, with its own ``PORT``.

    systemd has its own crash-loop protection (a unit started more than 5 times in 10 s
    fails): it is kept when ``flapping`` is set, turned off when it is None."""
    if user is not None and not _USER.match(user):
        raise ValueError(f"bad user name {user!r}")
    if any(not char.isprintable() for char in app.root):
        raise ValueError(f"cannot export a WorkingDirectory with control characters: {app.root!r}")
    unit_app = _unit_escape(app.name)
    target = f"{unit_app}.target"
    files: dict[str, str] = {}
    services: list[str] = []
    header = f"# exported by gaffer from {_printable(app.source)}"
    for job in app.jobs(concurrency, base_port):
        for number in range(1, job["numprocesses"] + 1):
            unit = f"{unit_app}-{_unit_escape(job['name'])}-{number}.service"
            services.append(unit)
            env = {key: value for key, value in job["env"].items() if key != "PORT"}
            env["PORT"] = str(job["port"] + number - 1)
            description = f"{app.name} {job['name']}.{number}"
            lines = [
                header,
                "[Unit]",
                f"Description={_specifiers(description)}",
                f"PartOf={target}",
                # systemd's own crash-loop limit, as the job's: start_retries + 1 starts
                *(
                    [f"StartLimitBurst={job['start_retries'] + 1}", "StartLimitIntervalSec=60"]
                    if flapping
                    else ["StartLimitIntervalSec=0"]
                ),
                "",
                "[Service]",
            ]
            if user is not None:
                lines.append(f"User={user}")
            else:  # the exporting user rarely exists where the units go: no guess
                lines.append("# runs as root: export with --user NAME to run it as NAME")
            lines.append(f"WorkingDirectory={_specifiers(job['cwd'])}")
            for key, value in env.items():
                lines.append("Environment=" + _systemd_quote(f"{key}={value}", '"'))
            lines += [
                f"ExecStart=/bin/sh -c {_systemd_command(job['cmd'])}",
                f"Restart={SYSTEMD_RESTART[job['restart']]}",
                f"RestartSec={job['backoff']['initial']}",
                "KillMode=mixed",
                "",
            ]
            files[unit] = "\n".join(lines)
    target_lines = [
        header,
        "[Unit]",
        f"Description={_specifiers(app.name)} (Procfile app)",
        *(f"Wants={unit}" for unit in services),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return {target: "\n".join(target_lines), **files}


def _unit_escape(text: str) -> str:
    """Characters a unit name cannot hold become ``\\xNN``, as systemd-escape does."""
    return "".join(char if char in _UNIT_CHARS else f"\\x{ord(char):02x}" for char in text)


def _specifiers(text: str) -> str:
    return text.replace("%", "%%")


def _systemd_quote(text: str, quote: str) -> str:
    """One quoted word for a unit file: C escapes inside quotes (systemd.syntax(5)),
    ``%`` doubled against specifier expansion."""
    out = []
    for char in text:
        if char in ("\\", quote):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return quote + "".join(out) + quote


def _systemd_command(command: str) -> str:
    """The shell line as one single-quoted ExecStart word; ``$`` doubled, as systemd
    would otherwise substitute ``$VAR`` itself (the shell must see it)."""
    return _systemd_quote(command.replace("$", "$$"), "'")
