"""gafferd's ini file, turned into typed settings and jobs.

Sections: ``[gaffer]`` (settings, ``include``, ``include_dir``), ``[job:session.name]``
(``[job:name]`` and ``[process:name]`` mean session ``default``), ``[env:session.name]``,
``[webhooks]``, ``[ssl]``, ``[auth]`` and ``[plugin:name]``. Anything unknown, a value of
the wrong type or an impossible value is a ``ConfigError`` whose message names the file,
the line, the section, the key and the value, and says why. Relative paths (``cwd``, log
files, ``certfile``...) are relative to the directory of the file they are written in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gaffer.core import deps
from gaffer.core.config import InvalidOption, ProcessConfig
from gaffer.core.names import split_job_id, validate_session
from gaffer.core.options import OPTIONS
from gaffer.core.optiontext import text_path
from gaffer.errors import ConfigError, InvalidArgument
from gafferd import ini
from gafferd.converters import to_bool, to_path, to_state_file, to_text
from gafferd.settings import BY_INI_KEY, FileValue

EX_CONFIG = 78  # sysexits.h: configuration error
_NOT_PATHS = ("off", "none")  # state_file = off: no file
CONFIG_NAME = "gafferd.ini"


# every job option's text form is declared with the option (gaffer/core/options.py)
JOB_KEYS: dict[str, Callable[[str, str], Any]] = {
    "cmd": lambda value, base: value,
    **{option.name: option.from_text for option in OPTIONS if option.from_text is not None},
    "start": lambda value, base: to_bool(value),  # not an option: load the job started or not
}
JOB_DEFAULTS = {"os_env": True}  # gafferd's jobs start from its environment, as in 0.5
SSL_KEYS = ("certfile", "keyfile")
AUTH_KEYS = ("db",)
GAFFER_FILE_KEYS = ("include", "include_dir")


#: job keys whose values are text (commands, paths, names): a ";" may belong in them, so
#: an inline comment that would cut one is refused rather than guessed
TEXT_JOB_KEYS = (
    "cmd", "args", "uid", "gid", "cwd", "env_file", "stdout_logfile", "stderr_logfile",
)  # fmt: skip


@dataclass(frozen=True)
class JobSpec:
    """A job as the ini file describes it."""

    session: str
    config: ProcessConfig
    start: bool
    origin: str
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)  # key: path:line

    @property
    def id(self) -> str:
        return f"{self.session}.{self.config.name}"

    def same_as(self, other: JobSpec) -> bool:
        return (self.config, self.start) == (other.config, other.start)


@dataclass(frozen=True)
class DaemonConfig:
    path: str | None
    directory: str
    settings: Mapping[str, FileValue] = field(default_factory=dict)
    jobs: Mapping[str, JobSpec] = field(default_factory=dict)
    webhooks: tuple[tuple[str, str], ...] = ()
    auth: Mapping[str, str] = field(default_factory=dict)
    plugins: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def jobs_by_priority(self) -> list[JobSpec]:
        return sorted(self.jobs.values(), key=lambda spec: spec.config.priority)


#: job options a [gaffer] setting of the same name gives a default to
JOB_DEFAULT_SETTINGS = ("log_history",)


def job_defaults(effective: Any) -> dict[str, Any]:
    """The options the settings give the jobs that do not set them (ini jobs and API loads)."""
    return {name: getattr(effective, name) for name in JOB_DEFAULT_SETTINGS}


def with_job_defaults(config: DaemonConfig, defaults: Mapping[str, Any]) -> DaemonConfig:
    """``config`` with ``defaults`` in every job whose section does not set them, so that
    what is compared on reload and recorded in the state file is what runs."""
    jobs = {}
    for job, spec in config.jobs.items():
        changes = {key: value for key, value in defaults.items() if key not in spec.origins}
        if changes and any(getattr(spec.config, key) != value for key, value in changes.items()):
            spec = replace(spec, config=spec.config.replace(**changes))
        jobs[job] = spec
    return replace(config, jobs=jobs)


def find_config(given: str | None, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """The ini file to read (None: none) and the configuration directory.

    ``-c PATH`` (a file, or a directory holding gafferd.ini), else ``$GAFFERD_CONFIG``,
    else ``~/.gaffer/gafferd.ini`` (``/etc/gaffer/gafferd.ini`` for root). An explicit
    path that does not exist is an error; no file at the default places is fine.
    """
    explicit = given or environ.get("GAFFERD_CONFIG")
    if explicit:
        where = "-c" if given else "GAFFERD_CONFIG"
        path = os.path.abspath(os.path.expanduser(explicit))
        if os.path.isdir(path):
            candidate = os.path.join(path, CONFIG_NAME)
            return (candidate if os.path.exists(candidate) else None), path
        if not os.path.exists(path):
            raise ConfigError(f"{where} {explicit}: no such file or directory")
        return path, os.path.dirname(path)
    directory = "/etc/gaffer" if os.geteuid() == 0 else os.path.expanduser("~/.gaffer")
    candidate = os.path.join(directory, CONFIG_NAME)
    return (candidate if os.path.exists(candidate) else None), directory


def load_config(path: str | None, directory: str | None = None) -> DaemonConfig:
    """Read ``path`` (and its includes). Raises ConfigError."""
    if path is None:
        return DaemonConfig(None, directory or os.getcwd())
    try:
        sections = ini.merge(ini.read(path))
    except ini.IniError as exc:
        raise ConfigError(str(exc)) from None
    if not any(section.path == os.path.abspath(path) for section in sections):
        # a file being rewritten may be read empty: applying it would unload every job
        raise ConfigError(
            f"{path}: the file is empty (no [section]): refused; write at least [gaffer], "
            "or start gafferd without -c for no configuration"
        )
    return _build(path, directory or os.path.dirname(os.path.abspath(path)), sections)


def _build(path: str, directory: str, sections: list[ini.Section]) -> DaemonConfig:
    settings: dict[str, FileValue] = {}
    jobs: dict[str, JobSpec] = {}
    envs: dict[str, ini.Section] = {}
    webhooks: list[tuple[str, str]] = []
    auth: dict[str, str] = {}
    plugins: dict[str, dict[str, str]] = {}
    for section in sections:
        kind, _, target = section.name.partition(":")
        kind = kind.strip().lower()
        target = target.strip()
        if section.name == "gaffer":
            _read_gaffer(section, settings)
        elif kind in ("job", "process") and target:
            spec = _read_job(section, target)
            if spec.id in jobs:
                raise _error(
                    section, None, f"job {spec.id} is already defined at {jobs[spec.id].origin}"
                )
            jobs[spec.id] = spec
        elif kind == "env" and target:
            envs[_job_key(section, target)] = section
        elif section.name == "webhooks":
            webhooks.extend(_read_webhooks(section))
        elif section.name == "ssl":
            _read_ssl(section, settings)
        elif section.name == "auth":
            for key, value in _read_keys(section, AUTH_KEYS, os.path.dirname(section.path)).items():
                if "auth_db" in settings:
                    raise _error(
                        section, key, f"auth_db is already set at {settings['auth_db'].origin}"
                    )
                settings["auth_db"] = FileValue(value, section.entries[key].origin)
                auth[key] = value
        elif kind == "plugin" and target:
            for key in section.entries:
                _refuse_cut(section, key)  # free text, for the plugin
            plugins[target] = {key: entry.value for key, entry in section.entries.items()}
        else:
            raise _error(
                section,
                None,
                "unknown section; expected [gaffer], [job:NAME], "
                "[process:NAME], [env:NAME], [webhooks], [ssl], "
                "[auth] or [plugin:NAME]",
            )
    for job, section in envs.items():
        if job not in jobs:
            raise _error(
                section, None, f"environment for job {job}, which no [job:...] section defines"
            )
        jobs[job] = _with_env(jobs[job], section)
    _check_requirements(jobs)
    return DaemonConfig(path, directory, settings, jobs, tuple(webhooks), auth, plugins)


def _check_requirements(jobs: Mapping[str, JobSpec]) -> None:
    """``requires`` may not make a cycle (a job would wait for itself for ever)."""
    graph = {job: deps.resolve(job, spec.config.requires) for job, spec in jobs.items()}
    cycle = deps.find_cycle(graph)
    if cycle is None:
        return
    spec = jobs[cycle[0]]
    where = spec.origins.get("requires", spec.origin)
    raise ConfigError(
        f"{where}: [job:{cycle[0]}] requires = {', '.join(spec.config.requires)}: "
        f"a dependency cycle: {' -> '.join(cycle)}"
    )


def _error(section: ini.Section, key: str | None, reason: str) -> ConfigError:
    if key is None:
        return ConfigError(f"{section.origin}: [{section.name}] {reason}")
    entry = section.entries[key]
    return ConfigError(f"{entry.origin}: [{section.name}] {key} = {entry.value}: {reason}")


def _read_gaffer(section: ini.Section, settings: dict[str, FileValue]) -> None:
    for key, entry in section.entries.items():
        if key in GAFFER_FILE_KEYS:
            _refuse_cut(section, key)  # paths
            continue  # read by the ini reader
        setting = BY_INI_KEY.get(key.lower())
        if setting is None:
            known = sorted({*BY_INI_KEY, *GAFFER_FILE_KEYS})
            raise _error(section, key, f"unknown setting; known: {', '.join(known)}")
        if setting.name in settings:
            raise _error(
                section, key, f"{setting.name} is already set at {settings[setting.name].origin}"
            )
        if setting.convert in (to_path, to_text, to_state_file):
            _refuse_cut(section, key)
        value = entry.value
        if setting.relative and value and value not in ("-", "syslog", *_NOT_PATHS):
            value = text_path(value, os.path.dirname(entry.path))
        try:
            setting.convert(value)
        except ValueError as exc:
            raise _error(section, key, str(exc)) from None
        settings[setting.name] = FileValue(value, entry.origin)


def _read_ssl(section: ini.Section, settings: dict[str, FileValue]) -> None:
    for key, value in _read_keys(section, SSL_KEYS, os.path.dirname(section.path)).items():
        if key in settings:
            raise _error(section, key, f"{key} is already set at {settings[key].origin}")
        settings[key] = FileValue(value, section.entries[key].origin)


def _read_keys(section: ini.Section, allowed: tuple[str, ...], base: str) -> dict[str, str]:
    out = {}
    for key, entry in section.entries.items():
        if key.lower() not in allowed:
            raise _error(section, key, f"unknown key; known: {', '.join(allowed)}")
        _refuse_cut(section, key)  # paths
        out[key.lower()] = text_path(entry.value, base) if entry.value else ""
    return out


def _read_webhooks(section: ini.Section) -> list[tuple[str, str]]:
    hooks = []
    for key, entry in section.entries.items():
        _refuse_cut(section, key)  # URLs
        urls = entry.value.replace(",", " ").split()
        if not urls:
            raise _error(section, key, "expected one or more http(s):// URLs")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise _error(section, key, f"{url!r} is not an http:// or https:// URL")
            hooks.append((key, url))
    return hooks


def _job_key(section: ini.Section, target: str) -> str:
    try:
        session, name = split_job_id(target)
        validate_session(session)
    except InvalidArgument as exc:
        raise _error(section, None, str(exc)) from None
    return f"{session}.{name}"


def _read_job(section: ini.Section, target: str) -> JobSpec:
    session, name = _job_key(section, target).split(".", 1)
    base = os.path.dirname(section.path)
    values: dict[str, Any] = dict(JOB_DEFAULTS)
    env: dict[str, str] = {}
    for key, entry in section.entries.items():
        if key.lower().startswith("env:") or key.lower() in TEXT_JOB_KEYS:
            _refuse_cut(section, key)
        if key.lower().startswith("env:"):
            variable = key[len("env:") :].strip()
            if not variable:
                raise _error(section, key, "expected env:NAME = value")
            env[variable] = entry.value
            continue
        convert = JOB_KEYS.get(key.lower())
        if convert is None:
            raise _error(
                section, key, f"unknown key; known: {', '.join(sorted(JOB_KEYS))}, env:NAME"
            )
        try:
            values[key.lower()] = convert(entry.value, base)
        except ValueError as exc:
            raise _error(section, key, str(exc)) from None
    if not values.get("cmd"):
        raise _error(section, None, "has no cmd: every job needs one")
    start = values.pop("start", True)
    cmd = values.pop("cmd")
    try:
        config = ProcessConfig(name, cmd, env=env, **values)
    except InvalidOption as exc:
        key = _key_of(section, exc.option)
        reason = re.sub(r"^option '[^']*' of job '[^']*': ", "", str(exc))
        raise _error(section, key, reason) from None
    origins = {key.lower(): entry.origin for key, entry in section.entries.items()}
    return JobSpec(session, config, start, section.origin, origins)


def _refuse_cut(section: ini.Section, key: str) -> None:
    """A text value (a command line, an environment value, a path, a URL) cut by an
    inline comment would run, set or open half of what is written: an error, never
    silence. Values of other types (numbers, booleans, lists of addresses) cannot hold a
    ';' and take comments."""
    entry = section.entries[key]
    if entry.comment:
        raise _error(
            section,
            key,
            f"' ;' starts a comment here, which would cut the value before "
            f"{entry.comment[:40]!r}: put comments on a line of their own, quote the ';', "
            "or write it without a space before it ('a; b')",
        )


def _key_of(section: ini.Section, option: str) -> str | None:
    for key in section.entries:
        if key.lower() == option:
            return key
    return None


def _with_env(spec: JobSpec, section: ini.Section) -> JobSpec:
    env = dict(spec.config.env)
    for key, entry in section.entries.items():
        _refuse_cut(section, key)
        if key in env:
            raise _error(
                section, key, f"{key} is also set as env:{key} in [job:...] at {spec.origin}"
            )
        env[key] = entry.value
    config = spec.config.replace(env=env)
    return JobSpec(spec.session, config, spec.start, spec.origin, spec.origins)


def describe(config: DaemonConfig) -> list[str]:
    """The jobs, webhooks and plugin sections of a config, for --print-config."""
    lines = [f"# configuration file: {config.path or '(none)'}"]
    for spec in config.jobs_by_priority():
        state = "" if spec.start else " (not started)"
        lines.append(
            f"# job {spec.id}: {spec.config.cmd} x{spec.config.numprocesses}"
            f"{state}  ; {spec.origin}"
        )
    for event, url in config.webhooks:
        lines.append(f"# webhook {event} -> {url}")
    for name in config.plugins:
        lines.append(f"# plugin settings [plugin:{name}]")
    return lines
