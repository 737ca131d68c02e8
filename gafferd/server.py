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
from gaffer.core.config import ProcessConfig
from gaffer.errors import ConfigError, ProcessError
from gaffer.http import binding
from gaffer.http.deferred import DeferredHttpHandler
from gaffer.http.throttle import LoginThrottle
from gafferd.checks import check_jobs
from gafferd.config import DaemonConfig, JobSpec, load_config
from gafferd.logs import DaemonLog
from gafferd.memory import MemoryTrimmer, map_large_allocations
from gafferd.settings import Effective, SettingError, resolve

if TYPE_CHECKING:  # the HTTP server is imported at the first connection (deferred.py)
    from gaffer.http import HttpHandler
    from gaffer.http.keystore import KeyStore

logger = logging.getLogger("gafferd")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class StartupError(ConfigError):
    """A job of the file could not be loaded at start: a configuration error."""


def raise_fd_limit() -> None:
    """Children, pipes and pidfds take descriptors: use the hard limit, not 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Gafferd:
    def __init__(
        self,
        config: DaemonConfig,
        effective: Effective,
        cli: Mapping[str, Any],
        sockets: list[socket.socket],
        plugins: Any,
        log: DaemonLog | None,
        webhooks_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.config = config
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
        )
        loop = manager.loop
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGUSR1, self.reopen_logs)
        if self.effective.cluster:  # imported only then: no cost to a gafferd alone
            from gafferd.cluster import make_registry

            self.cluster = make_registry(self.effective, self._sockets)
        self._store(self.effective)  # opened now: a key store that cannot be used is fatal
        self._http_slot.app = DeferredHttpHandler(self._sockets, self._http_handler)
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
        loop.call_soon(self._load_jobs)
        trimmer = MemoryTrimmer(loop)
        trimmer.start()
        try:
            manager.run()
        finally:
            trimmer.stop()
            self.plugins.on_shutdown(manager)
            for sig in (*STOP_SIGNALS, signal.SIGHUP, signal.SIGUSR1):
                if not loop.is_closed():
                    loop.remove_signal_handler(sig)
        if self.keystore is not None:
            self.keystore.close()
        logger.info("gafferd stopped")
        if self._failed:
            return 78
        # a job with on_exit = shutdown ended: its code is gafferd's (a container's)
        return manager.exit_code if manager.exit_code is not None else 0

    def _load_jobs(self) -> None:
        assert self.manager is not None
        _warn_problems(self.config, "")
        try:
            for spec in self.config.jobs_by_priority():
                self._load(spec)
        except StartupError as exc:
            logger.error("%s", exc)
            self._failed = True
            self.manager.stop()
            return
        self.plugins.on_start(self.manager)
        logger.info(
            "gafferd started (pid %d): %d job(s) from %s",
            os.getpid(),
            len(self.file_jobs),
            self.config.path or "no configuration file",
        )

    def _load(self, spec: JobSpec) -> None:
        try:
            self.manager.load(
                self._contained(spec.config), sessionid=spec.session, start=spec.start
            )
        except (ProcessError, ValueError) as exc:
            raise StartupError(f"{spec.origin}: [job:{spec.id}] cannot be loaded: {exc}") from None
        self.file_jobs[spec.id] = spec

    def _contained(self, config: ProcessConfig) -> ProcessConfig:
        """In a container every job's output is captured, to show on gafferd's stdout."""
        if self.effective.container and not config.redirect_output and not config.detach:
            return config.replace(redirect_output=("stdout", "stderr"))
        return config

    def stop(self, sig: int = signal.SIGTERM) -> None:
        logger.info("%s: stopping", signal.Signals(sig).name)
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
        except (ConfigError, SettingError) as exc:
            logger.error("SIGHUP: configuration not reloaded, keeping the running one: %s", exc)
            return
        logger.info("SIGHUP: reloading %s", self.config.path or "(no file)")
        _warn_problems(config, "reload: ")
        self._apply_jobs(config)
        self._apply_settings(config, effective)
        self.config, self.effective = config, effective

    def _apply_jobs(self, config: DaemonConfig) -> None:
        manager = self.manager
        assert manager is not None
        loaded = set(manager.jobs())
        for job_id in [job for job in self.file_jobs if job not in config.jobs]:
            if job_id in loaded:
                manager.unload(job_id)
                logger.info("reload: unloaded %s", job_id)
            del self.file_jobs[job_id]
        for spec in config.jobs_by_priority():
            old = self.file_jobs.get(spec.id)
            try:
                if spec.id not in loaded:
                    manager.load(
                        self._contained(spec.config), sessionid=spec.session, start=spec.start
                    )
                    logger.info("reload: loaded %s", spec.id)
                elif old is None or not old.same_as(spec):
                    self._update(spec, old)
                    logger.info("reload: updated %s", spec.id)
            except (ProcessError, ValueError) as exc:
                logger.error("reload: %s: [job:%s] not applied: %s", spec.origin, spec.id, exc)
                continue
            self.file_jobs[spec.id] = spec

    def _update(self, spec: JobSpec, old: JobSpec | None) -> None:
        manager = self.manager
        assert manager is not None
        if old is not None and old.config == spec.config:  # only `start` changed
            (manager.start_job if spec.start else manager.stop_job)(spec.id)
            return
        manager.update(self._contained(spec.config), sessionid=spec.session, start=spec.start)
        if not spec.start:
            manager.stop_job(spec.id)

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
        )
        if any(getattr(effective, key) != getattr(old, key) for key in http_keys):
            self._rebind(effective)
        restart_only = ("daemon", "pidfile", "error_log", "plugin_dir", "loop", "auth_db")
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
            http = DeferredHttpHandler(sockets, lambda bound: self._http_handler(bound, effective))
        except (OSError, ValueError, SecurityError) as exc:
            logger.error("reload: HTTP binds not changed: %s", exc)
            return
        kept = {binding.bound_address(sock) for sock in sockets}
        old = self.http
        if old is not None:  # addresses still served: the old handler must not unlink them
            old.release_sockets([s for s in self._sockets if binding.bound_address(s) in kept])
        self._sockets = sockets
        self._http_slot.replace(http)
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
                "policy": Policy(log_root=effective.log_root),
                "login_throttle": self.login_throttle,
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


def _warn_problems(config: DaemonConfig, prefix: str) -> None:
    """What jobs of the file will meet (gafferd --check-config calls them errors)."""
    for problem in check_jobs(config):
        logger.warning("%s%s", prefix, problem)


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
