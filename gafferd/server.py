"""The running daemon: a Manager, its applications, its jobs, its signals.

Signals (handled on the loop, never in a signal frame):

* TERM, INT, QUIT: graceful stop (children get SIGTERM, then SIGKILL after their
  graceful_timeout); exit 0.
* HUP: read the ini file again and apply only the difference: jobs new in the file are
  loaded, jobs gone from it unloaded, changed jobs updated, unchanged jobs untouched (same
  pids). Jobs loaded through the API are not the file's and are left alone. Webhooks, the
  log level and the HTTP binds follow the file too. A file that does not parse is logged
  and the running state is kept.
* USR1: reopen every log file (gafferd's own and the jobs'), for logrotate.
"""

from __future__ import annotations

import inspect
import logging
import os
import resource
import signal
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gaffer import Manager
from gaffer.console import DEFAULT_EVENTS, ConsoleOutput
from gaffer.core.keeper import Keeper
from gaffer.errors import ConfigError
from gaffer.http import binding
from gaffer.http.deferred import DeferredHttpHandler
from gaffer.http.telemetry import Telemetry
from gaffer.http.throttle import LoginThrottle
from gafferd import handover, withoutssl
from gafferd.config import (
    DaemonConfig,
    JobSpec,
    job_defaults,
    load_config,
    with_job_defaults,
)
from gafferd.handover import Restarter
from gafferd.jobs import JobLoading, warn_problems
from gafferd.keeper import keeper_fd
from gafferd.logs import DaemonLog
from gafferd.memory import MemoryTrimmer, map_large_allocations
from gafferd.pidfile import Pidfile
from gafferd.settings import Effective, SettingError, resolve

if TYPE_CHECKING:  # the HTTP server is imported at the first connection (deferred.py)
    from gaffer.http import HttpHandler
    from gaffer.http.keystore import KeyStore

logger = logging.getLogger("gafferd")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def raise_fd_limit() -> None:
    """Children, pipes and pidfds take descriptors: use the hard limit, not 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Gafferd(JobLoading):
    def __init__(
        self,
        config: DaemonConfig,
        effective: Effective,
        cli: Mapping[str, Any],
        sockets: list[socket.socket],
        plugins: Any,
        log: DaemonLog | None,
        webhooks_factory: Callable[..., Any] | None = None,
        pidfile: Pidfile | None = None,
        handed: dict[str, Any] | None = None,
        fresh: bool = False,
    ) -> None:
        self.config = config
        self.pidfile = pidfile
        self._handed = handed  # what the previous gafferd handed over (handover.py)
        self.restarter = Restarter(self)
        self._adopted_counts: dict[str, int] = {}
        self.fresh = fresh  # --fresh: the state file is not read
        self._held: dict[str, list[dict[str, Any]]] = {}
        self.state_file: Any = None
        self.recorder: Any = None
        self.keeper: Any = None  # the keeper's client (on_daemon_crash = keep)
        self.effective = effective
        self._cli = dict(cli)
        self._sockets = sockets
        self.plugins = plugins
        self._log = log
        self._webhooks_factory = webhooks_factory
        self.manager: Manager | None = None
        self._http_slot = AppSlot()  # the manager holds the slots; a reload swaps inside
        self._webhooks_slot = AppSlot()
        self.file_jobs: dict[str, JobSpec] = {}
        self.keystore: KeyStore | None = None
        self.cluster: Any = None  # the ClusterRegistry when `cluster` is set
        self.telemetry = Telemetry()  # /metrics counters: kept when a reload rebinds
        # failed logins are counted across reloads
        self.login_throttle = LoginThrottle(effective.login_attempts, effective.login_max_delay)
        self._failed = False

    # -- start and stop --------------------------------------------------------------------
    def run(self) -> int:
        raise_fd_limit()
        map_large_allocations()
        manager = self.manager = Manager(
            loop_kind=self.effective.loop,
            guard=self.effective.guard,
            subreaper=self.effective.subreaper,
            process_limit=self.effective.process_limit,
            container=self.effective.container,
            # every job's output is captured, so `gaffer logs` has it; what no log file
            # takes is printed on gafferd's stdout, prefixed by its process (with -vv, or
            # in a container, the console view below prints every job's output instead);
            # job_output = inherit leaves it to the jobs
            output=(
                "inherit"
                if self.effective.job_output == "inherit"
                else "capture"
                if self.effective.verbose >= 2 or self.effective.container
                else "console"
            ),
        )
        loop = manager.loop
        fd = keeper_fd()  # on_daemon_crash = keep: gafferd runs under the keeper
        if self._handed is not None:
            self._adopt(manager, self._handed)
            guard = manager._table.guard  # the keeper, when the previous gafferd had one
            self.keeper = guard if isinstance(guard, Keeper) else None
        elif fd is not None:
            self.keeper, held, end = manager.use_keeper(fd, receive=True)
            self._take_held(held, end)
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGUSR1, self.reopen_logs)
        loop.add_signal_handler(signal.SIGUSR2, self.restarter.on_signal)
        handover.unblock_signals()  # those that came during a hand-over are handled now
        if self.effective.cluster:  # imported only then: no cost to a gafferd alone
            from gafferd.cluster import make_registry

            self.cluster = make_registry(self.effective, self._sockets)
            if self._handed is not None:  # the same node, the same lease (handover.py)
                self.cluster._lease = self._handed["gafferd"].get("cluster_lease", 0)
        self._store(self.effective)  # opened now: a key store that cannot be used is fatal
        self._http_slot.app = DeferredHttpHandler(
            self._sockets, self._http_handler, telemetry=self.telemetry
        )
        self._webhooks_slot.app = self._make_webhooks(self.config, self.effective)
        apps: list[Any] = [*self.plugins.apps, self._webhooks_slot, self._http_slot]
        if self.cluster is not None:
            apps.append(self.cluster)
        if self.effective.container:  # the container's log is gafferd's stdout
            apps.append(ConsoleOutput(output=True, events=DEFAULT_EVENTS))
        elif self.effective.verbose:
            apps.append(
                ConsoleOutput(
                    output=self.effective.verbose >= 2,
                    events=DEFAULT_EVENTS if self.effective.verbose == 1 else None,
                )
            )
        self.plugins.initialize(manager)
        manager.start(apps=apps)
        self._start_recording()
        loop.call_soon(self._load_jobs if self._handed is None else self._adopted)
        trimmer = MemoryTrimmer(loop)
        trimmer.start()
        try:
            manager.run()
        finally:
            trimmer.stop()
            if self.recorder is not None:
                self.recorder.close()
            self.plugins.on_shutdown(manager)
            for sig in (*STOP_SIGNALS, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
                if not loop.is_closed():
                    loop.remove_signal_handler(sig)
        if self.keystore is not None:
            self.keystore.close()
        logger.info("gafferd stopped")
        if self._failed:
            return 78
        # a job with on_exit = shutdown ended: its code is gafferd's (a container's)
        return manager.exit_code if manager.exit_code is not None else 0

    def stop(self, sig: int = signal.SIGTERM) -> None:
        logger.info("%s: stopping", signal.Signals(sig).name)
        if self.keeper is not None and not self.keeper.lost:
            self.keeper.bye()  # a crash from now on is not restarted
        if self.recorder is not None:
            self.recorder.flush()  # a change of the last 0.2 s, before the stop begins
        if self.manager is not None:
            self.manager.stop()

    def reopen_logs(self) -> None:
        logger.info("SIGUSR1: reopening log files")
        if self._log is not None:
            self._log.reopen()
        if self.manager is not None:
            self.manager.reopen_logs()

    # -- reload ----------------------------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP: apply the difference between the running state and the file."""
        try:
            config = load_config(self.config.path, self.config.directory)
            effective = resolve(config.settings, os.environ, self._cli)
            config = with_job_defaults(config, job_defaults(effective))
        except (ConfigError, SettingError) as exc:
            logger.error("SIGHUP: configuration not reloaded, keeping the running one: %s", exc)
            return
        reason = withoutssl.reload_reason(effective, config) if withoutssl.active() else None
        if reason is not None:
            logger.error(
                "SIGHUP: configuration not reloaded, keeping the running one: it needs TLS "
                "(%s) and this gafferd started without the ssl module; restart it in place "
                "(gaffer daemon:restart, or SIGUSR2): the jobs keep running",
                reason,
            )
            return
        logger.info("SIGHUP: reloading %s", self.config.path or "(no file)")
        warn_problems(config, "reload: ")
        self._apply_jobs(config)
        self._apply_settings(config, effective)
        self.config, self.effective = config, effective

    def _apply_settings(self, config: DaemonConfig, effective: Effective) -> None:
        old = self.effective
        if self._log is not None and effective.log_level != old.log_level:
            self._log.set_level(effective.log_level)
        if self.manager is not None:
            self.manager.process_limit = effective.process_limit
        self.login_throttle.free = effective.login_attempts
        self.login_throttle.max_delay = effective.login_max_delay
        if self.webhooks is not None or config.webhooks:
            old_hooks = self._webhooks_slot.replace(self._make_webhooks(config, effective))
            if old_hooks is not None:
                self._stop_later(old_hooks)
        http_keys = (
            "bind",
            "backlog",
            "certfile",
            "keyfile",
            "require_key",
            "insecure",
            "login_ttl",
            "cors_origins",
            "allowed_hosts",
            "max_connections",
            "header_timeout",
            "idle_timeout",
            "log_root",
            "allow_root_without_keys",
            "metrics_without_key",
        )
        if any(getattr(effective, key) != getattr(old, key) for key in http_keys):
            self._rebind(effective)
        restart_only = (
            "daemon",
            "pidfile",
            "error_log",
            "plugin_dir",
            "loop",
            "auth_db",
            "job_output",
        )
        cluster_keys = (
            "cluster",
            "node_name",
            "cluster_prefix",
            "cluster_ttl",
            "cluster_advertise",
        )
        for name in restart_only + cluster_keys:
            if getattr(effective, name) != getattr(old, name):
                logger.warning("reload: %s changed; it takes effect at the next start", name)

    def _rebind(self, effective: Effective) -> None:
        from gafferd.main import SecurityError, bind_all, check_exposure, check_root

        try:
            check_exposure(effective)
            check_root(effective)
            sockets = bind_all(effective, keep=self._sockets)
            self._store(effective)
            http = DeferredHttpHandler(
                sockets,
                lambda bound: self._http_handler(bound, effective),
                telemetry=self.telemetry,
            )
        except (OSError, ValueError, SecurityError) as exc:
            logger.error("reload: HTTP binds not changed: %s", exc)
            return
        kept = {binding.bound_address(sock) for sock in sockets}
        old = self.http
        if old is not None:  # addresses still served: the old handler must not unlink them
            old.release_sockets([s for s in self._sockets if binding.bound_address(s) in kept])
        self._sockets = sockets
        self._http_slot.replace(http)
        if self.keeper is not None:
            self.keeper.listen(sockets)  # the next gafferd after a crash serves these
        if self.cluster is not None:
            from gafferd.cluster import advertised

            self.cluster.set_addresses(advertised(effective, sockets))
        if old is not None:
            self._stop_later(old)

    def _stop_later(self, app: Any) -> None:
        """Stop an application replaced by a reload (its stop may be a coroutine)."""
        result = app.stop()
        if inspect.isawaitable(result):
            assert self.manager is not None
            self.manager.loop.create_task(result)

    @property
    def http(self) -> DeferredHttpHandler | None:
        return self._http_slot.app

    @property
    def webhooks(self) -> Any:
        return self._webhooks_slot.app

    # -- parts -----------------------------------------------------------------------------
    def _http_handler(
        self, sockets: list[socket.socket], effective: Effective | None = None
    ) -> HttpHandler:
        """The HTTP server, built when the first client connects (deferred.py)."""
        from gaffer.http import HttpHandler
        from gaffer.http.commands import Policy
        from gaffer.http.connections import ConnectionLimits

        effective = effective or self.effective
        store = self._store(effective)
        identity = None
        if store is not None:  # keys: the key store's modules are loaded
            from gaffer.http.identity import Identity

            identity = Identity(store, effective.require_key, effective.login_ttl)
        return HttpHandler(
            sockets=sockets,
            certfile=effective.certfile,
            keyfile=effective.keyfile,
            plugin_sites=self.plugins.sites,
            settings={
                "auth": identity,
                "cors_origins": tuple(effective.cors_origins),
                "cluster": self.cluster,
                "allowed_hosts": tuple(effective.allowed_hosts),
                "policy": Policy(
                    log_root=effective.log_root,
                    daemon=self.restarter,
                    job_defaults=lambda: job_defaults(self.effective),  # as reloaded
                ),
                "login_throttle": self.login_throttle,
                "telemetry": self.telemetry,
                "metrics_without_key": effective.metrics_without_key,
            },
            limits=ConnectionLimits(
                effective.max_connections, effective.header_timeout, effective.idle_timeout
            ),
        )

    def _store(self, effective: Effective) -> KeyStore | None:
        """The key store, opened once: when keys are required or the file exists."""
        if self.keystore is None:
            path = auth_db_path(effective, self.config)
            if effective.require_key or os.path.exists(path):
                from gaffer.http.keystore import KeyStore

                self.keystore = KeyStore(path)
                if effective.require_key and not self.keystore.admins():
                    logger.warning(
                        "require_key is on but %s has no admin user: create one "
                        "with gafferd --create-admin-user",
                        path,
                    )
        return self.keystore

    def _make_webhooks(self, config: DaemonConfig, effective: Effective) -> Any:
        if not config.webhooks or self._webhooks_factory is None:
            return None
        return self._webhooks_factory(
            hooks=list(config.webhooks),
            timeout=effective.webhook_timeout,
            retries=effective.webhook_retries,
        )


def auth_db_path(effective: Effective, config: DaemonConfig) -> str:
    return effective.auth_db or os.path.join(config.directory, "auth.db")


class AppSlot:
    """An application whose implementation a reload may replace while the manager runs:
    the manager starts and stops the slot, the slot whatever is in it."""

    def __init__(self, app: Any = None) -> None:
        self.app = app
        self._started: tuple[Any, Any] | None = None

    def start(self, loop: Any, manager: Any) -> None:
        self._started = (loop, manager)
        if self.app is not None:
            self.app.start(loop, manager)

    def stop(self) -> Any:
        self._started = None
        return self.app.stop() if self.app is not None else None

    def restart(self) -> None:
        if self.app is not None:
            self.app.restart()

    def replace(self, app: Any) -> Any:
        """Put ``app`` in (started if the slot is) and return the previous one, which the
        caller stops."""
        old, self.app = self.app, app
        if app is not None and self._started is not None:
            app.start(*self._started)
        return old
