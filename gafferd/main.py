"""``gafferd``: parse, configure, bind, detach, run.

Exit codes: 0 stopped normally; 1 could not run (another gafferd holds the pidfile, a
plugin list failed...); 2 bad command line; 78 bad configuration (the message names the
file, line, section, key and value) or an address that cannot be bound.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from typing import Any

import gaffer
import gafferd
from gaffer.errors import ConfigError, GafferError, SecurityError, UsageError
from gaffer.http import binding
from gafferd import handover, keeper
from gafferd.checks import check_jobs
from gafferd.config import (
    EX_CONFIG,
    DaemonConfig,
    describe,
    find_config,
    job_defaults,
    load_config,
    with_job_defaults,
)
from gafferd.daemon import daemonize
from gafferd.logs import DaemonLog
from gafferd.pidfile import AlreadyRunning, Pidfile, PidfileError
from gafferd.settings import SETTINGS, Effective, add_arguments, resolve

EX_OK = 0
EX_FAILURE = 1
EX_USAGE = 2

#: The exit code of each class of error (the first of its classes found, most derived
#: first): gafferd's edge, as error_status is the HTTP layer's.
EXIT_CODES: dict[type[BaseException], int] = {
    UsageError: EX_USAGE,
    ConfigError: EX_CONFIG,
    SecurityError: EX_CONFIG,
    AlreadyRunning: EX_FAILURE,
    PidfileError: EX_CONFIG,
    GafferError: EX_FAILURE,
}


def exit_code(exc: BaseException) -> int:
    return next((EXIT_CODES[k] for k in type(exc).__mro__ if k in EXIT_CODES), EX_FAILURE)


logger = logging.getLogger("gafferd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gafferd",
        description="The gaffer daemon: keeps the jobs of its ini file running and serves "
        "the HTTP API.",
        epilog="Configuration: docs/configuration.md. Signals: TERM/INT/QUIT stop, HUP "
        "reloads the ini file, USR1 reopens the log files.",
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        help="the ini file, or a directory holding gafferd.ini "
        "[GAFFERD_CONFIG; default ~/.gaffer/gafferd.ini, "
        "/etc/gaffer/gafferd.ini for root]",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration and exit: also reports, with file and line, a cmd "
        "whose program is not found, a cwd that does not exist, an unbalanced quote, an "
        "undefined $VAR (errors, exit 78, unless --lenient)",
    )
    parser.add_argument(
        "--lenient",
        action="store_true",
        help="with --check-config: report the problems jobs would meet as warnings (exit 0)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print every effective setting and where it came from, and exit",
    )
    parser.add_argument(
        "--apps", action="store_true", help="list the applications gafferd would start, and exit"
    )
    parser.add_argument("--plugins", action="store_true", help="list the plugins found, and exit")
    admin = parser.add_argument_group("keys and users")
    admin.add_argument(
        "--create-admin-user",
        action="store_true",
        help="create an admin API key and an admin user bound to it, print "
        "the key, and exit (asks for what --username/--password omit)",
    )
    admin.add_argument("--username", help="the admin user's name")
    admin.add_argument(
        "--password",
        help="the admin user's password (prefer the prompt: "
        "a command line is visible to other users)",
    )
    admin.add_argument(
        "--list-admins",
        action="store_true",
        help="list the admin users and their key ids, and exit",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start from the ini file alone: do not read the state file (what was loaded, "
        "scaled or stopped through the API before; detached processes to adopt)",
    )
    parser.add_argument("--version", action="version", version=f"gafferd {gaffer.__version__}")
    add_arguments(parser)
    return parser


def cli_values(args: argparse.Namespace) -> dict[str, Any]:
    return {setting.name: getattr(args, setting.name, None) for setting in SETTINGS}


def check_process_limit(config: DaemonConfig, effective: Effective) -> None:
    """The file's jobs must fit in ``process_limit`` (gafferd would refuse the last ones)."""
    limit = effective.process_limit
    wanted = sum(spec.config.numprocesses for spec in config.jobs.values())
    if limit is not None and wanted > limit:
        raise ConfigError(
            f"the jobs of {config.path or 'the configuration'} ask for {wanted} processes, "
            f"over process_limit = {limit} (from {effective.origins['process_limit']})"
        )


def check_exposure(effective: Effective) -> None:
    """Refuse to serve the API beyond this machine without keys, unless told to."""
    if effective.require_key or effective.insecure:
        return
    exposed = [bind for bind in effective.bind if not binding.parse_address(bind).is_loopback]
    if exposed:
        raise SecurityError(
            f"refusing to bind {', '.join(exposed)} (reachable from other machines) without "
            f"require_key: set require_key = true, or insecure = true to accept the risk "
            f"(bind from {effective.origins['bind']})"
        )


def check_root(effective: Effective, euid: int | None = None) -> None:
    """As root, without keys, serve a unix socket only (mode 0600: root alone connects),
    unless told to: on a TCP port, any local user, or a web page of the operator's
    browser, would run commands as root."""
    if (os.geteuid() if euid is None else euid) != 0:
        return
    if effective.require_key or effective.allow_root_without_keys:
        return
    tcp = [bind for bind in effective.bind if binding.parse_address(bind).kind != "unix"]
    if tcp:
        raise SecurityError(
            f"refusing to run as root without keys on {', '.join(tcp)} (bind from "
            f"{effective.origins['bind']}): every local user could run commands as root. "
            "Run gafferd as a user of its own (etc/gafferd.service), or set require_key = "
            "true (gafferd --create-admin-user makes the first key), or bind only "
            "unix:/run/gaffer/gafferd.sock, or set allow_root_without_keys = true to "
            "accept the risk"
        )


def bind_all(effective: Effective, keep: list[socket.socket] | None = None) -> list[socket.socket]:
    """A listening socket per address; those already bound in ``keep`` are duplicated
    rather than bound again. Raises OSError naming the address."""
    kept = {binding.bound_address(sock): sock for sock in keep or ()}
    sockets: list[socket.socket] = []
    try:
        for text in effective.bind:
            address = binding.parse_address(text)
            old = kept.get(str(address))
            # an address already served is kept (port 0 means "any port": bind anew)
            reuse = old is not None and (address.kind == "unix" or address.port)
            sockets.append(old.dup() if reuse else binding.bind(address, effective.backlog))
    except OSError:
        for sock in sockets:
            binding.close(sock)
        raise
    return sockets


def main(argv: list[str] | None = None) -> int:
    began = time.monotonic()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        handed = handover.receive()  # a previous gafferd exec'd this one: adopt, not start
    except GafferError as exc:
        print(f"gafferd: {exc}", file=sys.stderr)
        return exit_code(exc)
    try:
        path, directory = find_config(args.config, os.environ)
        config = load_config(path, directory)
        effective = resolve(config.settings, os.environ, cli_values(args))
        config = with_job_defaults(config, job_defaults(effective))
    except ConfigError as exc:
        if handed is not None:  # changed since the check: the processes still run
            return run_handed(args, handed, None, None, str(exc))
        print(f"gafferd: {exc}", file=sys.stderr)
        return exit_code(exc)
    if handed is not None:
        handed.setdefault("timings", {}).update(imported=gafferd.IMPORTED_AT, main=began)
        return run_handed(args, handed, config, effective)
    plugin_dir = effective.plugin_dir or _default_plugin_dir(directory)
    _choose_ssl(effective, config, plugin_dir)
    plugins = _plugins(plugin_dir, config)
    if args.print_config:
        print("\n".join(effective.lines() + describe(config)))
        return EX_OK
    if args.plugins or args.apps:
        return _list_plugins(plugins, args.apps)
    if args.create_admin_user or args.list_admins:
        return _admins(args, effective, config)
    try:
        check_exposure(effective)
        check_root(effective)
        check_process_limit(config, effective)
        _check_tls(effective)
    except (SecurityError, ConfigError) as exc:
        print(f"gafferd: {exc}", file=sys.stderr)
        return exit_code(exc)
    if args.check_config:
        problems = check_jobs(config)
        kind = "warning" if args.lenient else "error"
        for problem in problems:
            print(f"gafferd: {kind}: {problem}", file=sys.stderr)
        if problems and not args.lenient:
            print(
                f"gafferd: {len(problems)} problem(s) in {path}; --lenient reports them "
                "as warnings",
                file=sys.stderr,
            )
            return EX_CONFIG
        print(
            f"gafferd: configuration OK ({path or 'no file'}: {len(config.jobs)} job(s), "
            f"{len(config.webhooks)} webhook(s)"
            f"{f', {len(problems)} warning(s)' if problems else ''})"
        )
        return EX_OK
    pidfile = Pidfile(effective.pidfile) if effective.pidfile else None
    inherited = keeper.inherited_sockets()  # under a keeper: its listening sockets
    try:
        if pidfile is not None:
            pidfile.check()
        if inherited is None:
            sockets = bind_all(effective)
        else:
            sockets = handover.adopt_sockets(inherited, effective)
    except (AlreadyRunning, PidfileError) as exc:
        print(f"gafferd: {exc}", file=sys.stderr)
        return exit_code(exc)
    except OSError as exc:
        print(
            f"gafferd: {exc.strerror or exc} (bind from {effective.origins['bind']})",
            file=sys.stderr,
        )
        return EX_CONFIG
    if effective.daemon and not keeper.under_keeper():
        daemonize()
    if effective.on_daemon_crash == "keep" and not keeper.under_keeper():
        try:
            keeper.launch(sockets)  # this process becomes the keeper: no return
        except OSError as exc:
            print(f"gafferd: cannot start the keeper: {exc}", file=sys.stderr)
            return EX_FAILURE
    log = DaemonLog(effective.error_log, effective.log_level)
    try:
        if pidfile is not None:
            pidfile.acquire()
    except (AlreadyRunning, PidfileError) as exc:
        logger.error("%s", exc)
        log.close()
        return exit_code(exc)
    except OSError as exc:
        logger.error("cannot write the pidfile %s: %s", effective.pidfile, exc.strerror or exc)
        log.close()
        return EX_CONFIG
    return _serve(args, config, effective, sockets, plugins, log, pidfile)


def _serve(
    args: argparse.Namespace,
    config: DaemonConfig,
    effective: Effective,
    sockets: list[socket.socket],
    plugins: Any,
    log: DaemonLog,
    pidfile: Pidfile | None,
    handed: dict[str, Any] | None = None,
) -> int:
    from gafferd.server import Gafferd

    server = Gafferd(
        config,
        effective,
        cli_values(args),
        sockets,
        plugins,
        log,
        webhooks_factory=_webhooks,
        pidfile=pidfile,
        handed=handed,
        fresh=args.fresh,
    )
    try:
        return server.run()
    finally:
        if pidfile is not None:
            pidfile.release()
        log.close()


def run_handed(
    args: argparse.Namespace,
    handed: dict[str, Any],
    config: DaemonConfig | None,
    effective: Effective | None,
    error: str | None = None,
) -> int:
    """Go on where the previous gafferd stopped: its processes, its sockets, its pidfile
    (gafferd/handover.py). Nothing here may make this gafferd exit: it holds them all."""
    previous = handed["gafferd"]
    if config is None or effective is None:  # the file broke since the check: the last one
        values, origins = previous["settings"]
        effective = Effective(values, origins)
        path, directory = previous.get("config", (None, os.getcwd()))
        config = DaemonConfig(path, directory)  # no job of its own: they were handed over
    log = DaemonLog(effective.error_log, effective.log_level)
    if error is not None:
        logger.error("configuration not read, going on with the previous one: %s", error)
        handed["config_failed"] = True
    pidfile = None
    path, fd = previous["pidfile"]
    if path and fd >= 0:
        pidfile = Pidfile(path)
        pidfile.adopt(fd)
    sockets = handover.adopt_sockets(previous["sockets"], effective)
    plugin_dir = effective.plugin_dir or _default_plugin_dir(config.directory)
    _choose_ssl(effective, config, plugin_dir)
    try:
        plugins = _plugins(plugin_dir, config)
    except Exception:
        logger.exception("plugins not loaded")
        plugins = _plugins(None, DaemonConfig(None, config.directory))
    return _serve(args, config, effective, sockets, plugins, log, pidfile, handed)


def _admins(args: argparse.Namespace, effective: Effective, config: Any) -> int:
    from gaffer.http.handlers.accounts import create_admin
    from gaffer.http.keystore import KeyStore
    from gafferd.server import auth_db_path

    path = auth_db_path(effective, config)
    try:
        with KeyStore(path) as store:
            if args.list_admins:
                admins = store.admins()
                for user in admins:
                    print(f"{user.username} - {user.key_id or '(no key)'}")
                if not admins:
                    print(f"no admin user in {path}", file=sys.stderr)
                return EX_OK
            username = args.username or input("admin user name: ").strip()
            password = args.password or _ask_password()
            key, user = create_admin(store, username, password)
    except (GafferError, ValueError) as exc:
        print(f"gafferd: {exc}", file=sys.stderr)
        return exit_code(exc)
    print(f"created admin user {user.username!r} in {path}")
    print(f"API key (shown once, keep it): {key}")
    return EX_OK


def _ask_password() -> str:
    import getpass

    first = getpass.getpass("password: ")
    if first != getpass.getpass("password again: "):
        raise UsageError("the passwords differ")
    return first


def _default_plugin_dir(directory: str) -> str | None:
    candidate = os.path.join(directory, "plugins")
    return candidate if os.path.isdir(candidate) else None


def _choose_ssl(effective: Effective, config: DaemonConfig, plugin_dir: str | None) -> None:
    """Load ssl only if something configured may use TLS (gafferd/withoutssl.py)."""
    from gafferd import withoutssl

    if withoutssl.tls_reason(effective, config, plugin_dir) is None:
        withoutssl.install()


def _check_tls(effective: Effective) -> None:
    if not (effective.certfile or effective.keyfile):
        return  # the HTTP server (and its TLS code) is loaded at the first connection
    from gaffer.http.app import _ssl_context

    _ssl_context(effective.certfile, effective.keyfile)


def _plugins(plugin_dir: str | None, config: Any) -> Any:
    from gafferd.plugins import PluginManager

    manager = PluginManager(plugin_dir, dict(config.plugins))
    manager.discover()
    return manager


def _list_plugins(plugins: Any, apps: bool) -> int:
    from gafferd.plugins import describe as describe_plugins, describe_apps

    print(describe_apps(plugins) if apps else describe_plugins(plugins.infos))
    return EX_OK


def _webhooks(**kwargs: Any) -> Any:
    from gafferd.webhooks import WebHooks  # here: only a file with webhooks needs it

    return WebHooks(**kwargs)


if __name__ == "__main__":
    sys.exit(main())
