"""Every gafferd setting, declared once: type, default, help, ini key, environment variable
and command-line flag.

The same table builds the argument parser (so ``--help``), ``--print-config`` and the
settings table of docs/configuration.md (a test checks that page against it), so they
cannot drift apart. Values are layered: defaults < ini file ``[gaffer]`` < environment
(``GAFFERD_<NAME>``) < command line, and each effective value remembers where it came from.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gaffer.core.options import DEFAULT_LOG_HISTORY
from gaffer.errors import ConfigError
from gafferd.converters import (
    choice,
    to_binds,
    to_bool,
    to_cluster,
    to_count,
    to_int,
    to_key_prefix,
    to_limit,
    to_node_name,
    to_path,
    to_positive_int,
    to_seconds,
    to_state_file,
    to_text,
    to_urls,
    to_words,
)

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOOPS = ("uvloop", "asyncio")


class SettingError(ConfigError):
    """A setting value that cannot be used; ``origin`` says where it came from."""

    def __init__(self, name: str, raw: object, origin: str, reason: str) -> None:
        self.name, self.raw, self.origin, self.reason = name, raw, origin, reason
        super().__init__(f"{origin}: {name} = {raw!r}: {reason}")


@dataclass(frozen=True)
class Setting:
    name: str
    convert: Callable[[Any], Any]
    default: Any
    help: str
    flag: str | None = None  # e.g. "--bind"
    short: str | None = None  # e.g. "-v"
    cli: str = "value"  # "value", "true" (a flag setting true), "count", "append"
    aliases: tuple[str, ...] = ()  # ini keys the original gaffer used
    reload: bool = False  # applied on SIGHUP (else: needs a restart)
    metavar: str | None = None
    relative: bool = False  # a path, relative to the ini file that sets it

    @property
    def env(self) -> str:
        return "GAFFERD_" + self.name.upper()

    @property
    def ini_keys(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "bind",
        to_binds,
        ["127.0.0.1:5000"],
        "Addresses to serve the HTTP API on: host:port, [v6]:port or unix:/path "
        "(several: repeat the flag, or separate with spaces).",
        flag="--bind",
        cli="append",
        reload=True,
        metavar="ADDR",
    ),
    Setting(
        "backlog",
        to_positive_int,
        128,
        "Listen backlog of each bound socket.",
        flag="--backlog",
        reload=True,
        metavar="N",
    ),
    Setting(
        "require_key",
        to_bool,
        False,
        "Require an API key on every request (see docs/http-api.md).",
        flag="--require-key",
        cli="true",
        reload=True,
    ),
    Setting(
        "insecure",
        to_bool,
        False,
        "Allow binding a non-loopback address without require_key.",
        flag="--insecure",
        cli="true",
        reload=True,
    ),
    Setting(
        "certfile",
        to_path,
        None,
        (
            "TLS certificate (PEM): serve HTTPS on TCP binds. A gafferd started with no TLS "
            "at all turns it on at a restart in place, not a reload."
        ),
        flag="--certfile",
        reload=True,
        metavar="FILE",
        relative=True,
    ),
    Setting(
        "keyfile",
        to_path,
        None,
        "TLS private key (PEM) for certfile.",
        flag="--keyfile",
        reload=True,
        metavar="FILE",
        relative=True,
    ),
    Setting(
        "daemon",
        to_bool,
        False,
        "Detach from the terminal (double fork); stdio goes to /dev/null.",
        flag="--daemon",
        cli="true",
        aliases=("daemonize",),
    ),
    Setting(
        "pidfile",
        to_path,
        None,
        "Write gafferd's pid there; refuse to start while a live gafferd holds it.",
        flag="--pidfile",
        metavar="FILE",
        relative=True,
    ),
    Setting(
        "error_log",
        to_text,
        "-",
        "gafferd's own log: '-' (stderr), a file path, or 'syslog'.",
        flag="--error-log",
        metavar="FILE",
        relative=True,
    ),
    Setting(
        "log_level",
        choice(*LOG_LEVELS),
        "info",
        "Level of gafferd's own log.",
        flag="--log-level",
        reload=True,
        metavar="LEVEL",
    ),
    Setting(
        "verbose",
        to_int,
        0,
        "Print events (-v) and also process output (-vv) on stdout, foreman style.",
        short="-v",
        cli="count",
    ),
    Setting(
        "plugin_dir",
        to_path,
        None,
        "Directory of plugins (one sub-directory per plugin).",
        flag="--plugin-dir",
        aliases=("plugins_dir",),
        metavar="DIR",
        relative=True,
    ),
    Setting(
        "loop",
        choice(*LOOPS),
        "uvloop",
        "Event loop: uvloop or the stdlib asyncio.",
        flag="--loop",
        metavar="LOOP",
    ),
    Setting(
        "guard",
        to_bool,
        True,
        "Start a guard process that stops the jobs' processes if gafferd is killed "
        "(SIGKILL, out of memory); detached jobs excepted.",
    ),
    Setting(
        "container",
        to_bool,
        False,
        "Run as a container's PID 1: reap every zombie, print every job's output on "
        "stdout as job.N | lines with gafferd's events, stop in dependency order on "
        "SIGTERM/SIGINT, and exit with the code of a job with on_exit = shutdown.",
        flag="--container",
        cli="true",
    ),
    Setting(
        "on_daemon_crash",
        choice("stop", "keep"),
        "stop",
        "When gafferd dies without stopping its jobs (SIGKILL, out of memory): stop: the "
        "guard stops every process; keep: the keeper (gafferd's parent then) holds their "
        "pipes, starts gafferd again, and the new gafferd adopts them (docs/gafferd.md).",
    ),
    Setting(
        "state_file",
        to_state_file,
        None,
        "Where gafferd records what the operator asked through the API (jobs loaded, "
        "scaled, stopped; detached processes), to come back to it after a restart; "
        "default var/gafferd-state.json next to the ini file; off: nothing recorded.",
        flag="--state-file",
        metavar="FILE",
        relative=True,
    ),
    Setting(
        "subreaper",
        to_bool,
        True,
        "Become the child subreaper of the jobs: their orphaned descendants are reaped "
        "by gafferd and stopped with their job, or with gafferd (Linux).",
    ),
    Setting(
        "job_output",
        choice("console", "inherit"),
        "console",
        "What a job's stdout and stderr that no log file takes do: console (captured, its "
        "last log_history lines kept for gaffer logs, printed on gafferd's stdout prefixed "
        "with its process) or inherit (written by the job to gafferd's stdout itself: "
        "nothing kept; 2 descriptors and about 4 KiB less a process).",
        metavar="MODE",
    ),
    Setting(
        "log_history",
        to_count,
        DEFAULT_LOG_HISTORY,
        "Lines of each job's recent output kept in memory (gaffer logs, the dashboard, "
        "the fatal event), for the jobs that do not set their own log_history; 0: none.",
        metavar="N",
        reload=True,
    ),
    Setting(
        "process_limit",
        to_limit,
        10000,
        "At most this many processes for all jobs together (their targets and one-off "
        "processes): a load, scale or commit beyond it is refused (409 process_limit), so "
        "a typo cannot fork the machine to its knees. 0 or off: no limit.",
        flag="--process-limit",
        metavar="N",
        reload=True,
    ),
    Setting("webhook_timeout", to_seconds, 5.0, "Seconds a webhook POST may take.", reload=True),
    Setting(
        "webhook_retries",
        to_int,
        3,
        "Retries of a failed webhook POST (with a doubling delay).",
        reload=True,
    ),
    Setting(
        "auth_db",
        to_path,
        None,
        "SQLite file of API keys and users (also [auth] db); default auth.db next to the "
        "ini file. Opened when require_key is on or the file exists.",
        flag="--auth-db",
        metavar="FILE",
        relative=True,
    ),
    Setting(
        "login_ttl",
        to_seconds,
        30 * 24 * 3600.0,
        "Seconds a login key from /auth lives.",
        reload=True,
    ),
    Setting(
        "cors_origins",
        to_words,
        [],
        "Origins (https://ui.example.com) allowed to call the API from a browser; none by "
        "default: a request from any other web page is refused (403), see docs/security.md.",
        reload=True,
    ),
    Setting(
        "allowed_hosts",
        to_words,
        [],
        "Names the Host header of a request may give, besides the address it was sent to "
        "and localhost (* for any): others are refused (421), against DNS rebinding.",
        reload=True,
    ),
    Setting(
        "max_connections",
        to_positive_int,
        1000,
        "Open HTTP connections at most (WebSockets and feeds included); beyond it the "
        "connection idle the longest is closed, or the new one refused. At most half the "
        "descriptor limit.",
        flag="--max-connections",
        metavar="N",
        reload=True,
    ),
    Setting(
        "header_timeout",
        to_seconds,
        10.0,
        "Seconds a new connection has to send the head of its first request.",
        reload=True,
    ),
    Setting(
        "idle_timeout",
        to_seconds,
        60.0,
        "Seconds a kept-alive connection may wait for its next request.",
        reload=True,
    ),
    Setting(
        "login_attempts",
        to_int,
        5,
        "Failed logins (GET /auth) an address may make before each further one waits "
        "(1 s, doubling; 429 with Retry-After meanwhile). 0: every failure waits.",
        reload=True,
    ),
    Setting(
        "login_max_delay",
        to_seconds,
        300.0,
        "The longest wait between failed logins of one address (0: no limit on logins).",
        reload=True,
    ),
    Setting(
        "log_root",
        to_path,
        None,
        "Directory that log files given through the API (stdout_logfile, "
        "stderr_logfile) must be in (403 otherwise; relative ones are taken in it). "
        "Unset: anywhere.",
        flag="--log-root",
        metavar="DIR",
        relative=True,
        reload=True,
    ),
    Setting(
        "allow_root_without_keys",
        to_bool,
        False,
        "Let gafferd run as root with require_key off on a TCP address (by default it "
        "refuses: any local user could run commands as root).",
        reload=True,
    ),
    Setting(
        "metrics_without_key",
        choice("never", "loopback"),
        "never",
        "loopback: GET /metrics answers requests from loopback addresses and unix sockets "
        "without a key, even with require_key (for a Prometheus on the same host); never: "
        "/metrics asks for a key like every other route.",
        reload=True,
    ),
    Setting(
        "cluster",
        to_cluster,
        None,
        "etcd of the cluster this gafferd joins: etcd://host:port[,host:port] "
        "(docs/cluster.md). Empty: no cluster, and nothing of it is loaded.",
    ),
    Setting(
        "node_name",
        to_node_name,
        None,
        "This node's name in the cluster (unique); default: the host name.",
    ),
    Setting(
        "cluster_prefix",
        to_key_prefix,
        "/gaffer/",
        "Prefix of the cluster's keys in etcd (several clusters may share an etcd).",
    ),
    Setting(
        "cluster_ttl",
        to_positive_int,
        10,
        "Seconds the node's etcd lease lives without a keep-alive (renewed every TTL/3): "
        "a dead node leaves the registry that long after it died.",
    ),
    Setting(
        "cluster_advertise",
        to_urls,
        [],
        "API addresses other nodes and clients use to reach this node "
        "(http(s)://host:port, unix:/path); default: from bind (a wildcard bind "
        "advertises the host name).",
    ),
)
BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
BY_INI_KEY: dict[str, Setting] = {key: s for s in SETTINGS for key in s.ini_keys}


@dataclass(frozen=True)
class Effective:
    """The value of every setting and where it came from."""

    values: Mapping[str, Any]
    origins: Mapping[str, str]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def lines(self) -> list[str]:
        """``name = value    ; origin`` for every setting, for --print-config."""
        out = []
        for setting in SETTINGS:
            value = self.values[setting.name]
            shown = (
                " ".join(value)
                if isinstance(value, list)
                else (
                    ""
                    if value is None
                    else str(value).lower()
                    if isinstance(value, bool)
                    else str(value)
                )
            )
            out.append(f"{f'{setting.name} = {shown}':<46}  ; {self.origins[setting.name]}")
        return out


@dataclass(frozen=True)
class FileValue:
    raw: str
    origin: str  # "path:line"


def resolve(
    file_values: Mapping[str, FileValue], environ: Mapping[str, str], cli: Mapping[str, Any]
) -> Effective:
    """Layer defaults < file < environment < command line. Raises SettingError."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for setting in SETTINGS:
        value, origin = setting.default, "default"
        if setting.name in file_values:
            entry = file_values[setting.name]
            value, origin = _convert(setting, entry.raw, entry.origin), entry.origin
        if setting.env in environ:
            origin = f"environment {setting.env}"
            value = _convert(setting, environ[setting.env], origin)
        if cli.get(setting.name) is not None:
            origin = f"command line {setting.flag or setting.short}"
            value = _convert(setting, cli[setting.name], origin)
        values[setting.name] = value
        origins[setting.name] = origin
    return Effective(values, origins)


def _convert(setting: Setting, raw: Any, origin: str) -> Any:
    try:
        return setting.convert(raw)
    except ValueError as exc:
        raise SettingError(setting.name, raw, origin, str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per setting that has a flag; defaults stay None so that only what was
    given on the command line overrides the other layers."""
    group = parser.add_argument_group("settings (also [gaffer] keys and GAFFERD_* variables)")
    for setting in SETTINGS:
        names = [n for n in (setting.short, setting.flag) if n]
        if not names:
            continue
        help_text = f"{setting.help} [{setting.env}]"
        if setting.cli == "true":
            group.add_argument(
                *names,
                dest=setting.name,
                action="store_const",
                const=True,
                default=None,
                help=help_text,
            )
        elif setting.cli == "count":
            group.add_argument(
                *names, dest=setting.name, action="count", default=None, help=help_text
            )
        elif setting.cli == "append":
            group.add_argument(
                *names,
                dest=setting.name,
                action="append",
                default=None,
                metavar=setting.metavar,
                help=help_text,
            )
        else:
            group.add_argument(
                *names, dest=setting.name, default=None, metavar=setting.metavar, help=help_text
            )


def markdown_table() -> str:
    """The settings table of docs/configuration.md."""
    lines = [
        "| setting (`[gaffer]` key) | command line | environment | default | reload | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        flag = {
            "true": s.flag,
            "count": f"{s.short}, {s.short}v" if s.short else "",
            "append": f"{s.flag} ADDR (repeatable)",
        }.get(s.cli, f"{s.flag} {s.metavar}" if s.flag else "")
        default = " ".join(s.default) if isinstance(s.default, list) else s.default
        key = ", ".join(f"`{name}`" for name in s.ini_keys)
        lines.append(
            f"| {key} | "
            f"{'`' + flag + '`' if flag else ''} | `{s.env}` | "
            f"{'' if default is None else f'`{default}`'} | "
            f"{'yes' if s.reload else 'restart'} | {s.help} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # python -m gafferd.settings: the table of docs/configuration.md
    print(markdown_table())
