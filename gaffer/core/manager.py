"""``Manager``: the registry of jobs and the public, thread-safe facade of the engine.

The manager owns sessions -> jobs; each job's lifecycle (spawning, exits, restarts, its
named state) is its ``JobRunner``'s (runner.py). The manager keeps the registry, the
``process_limit``, the applications it hosts (objects with ``start(loop, manager)``,
``stop()`` and ``restart()``), the last defences (guard, subreaper) and its own start and
stop. Everything is published on ``manager.events``.

Every public method may be called from any thread: called off the loop's thread while the
loop runs, it is executed on the loop and the caller waits for its result. ``stop()`` and
``restart()`` never wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gaffer.core import deps, limits
from gaffer.core.aliases import Aliases04, Aliases05
from gaffer.core.config import ProcessConfig, as_config, check_env
from gaffer.core.events import EventEmitter
from gaffer.core.guard import Guard
from gaffer.core.handover import Handover
from gaffer.core.logsinks import SinkRegistry
from gaffer.core.loop import new_event_loop
from gaffer.core.monitor import StatsMonitor
from gaffer.core.names import (
    DEFAULT_SESSION,
    apply_scale,
    job_id,
    parse_signal,
    split_job_id,
    validate_session,
)
from gaffer.core.observe import Observing
from gaffer.core.onloop import call_soon_here, fail_pending, on_loop
from gaffer.core.orphans import OrphanReaper, become_subreaper
from gaffer.core.process import Process
from gaffer.core.processes import ProcessCommands
from gaffer.core.requires import Requirements
from gaffer.core.runner import JobRunner
from gaffer.core.stats import Sampler
from gaffer.core.table import OUTPUTS, ProcessTable
from gaffer.errors import (
    InvalidArgument,
    ManagerStopped,
    ProcessConflict,
    ProcessNotFound,
)

logger = logging.getLogger(__name__)

Callback = Callable[["Manager"], object]
IOListener = Callable[[str, dict], object]
LOG_FLUSH_TIMEOUT = 5.0


class Manager(ProcessCommands, Observing, Handover, Requirements, Aliases04, Aliases05):
    """Keeps jobs of processes alive. See the module docstring and docs/embedding.md."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        loop_kind: str | None = None,
        *,
        guard: bool = False,
        subreaper: bool = False,
        process_limit: int | None = None,
        container: bool = False,
        output: str = "inherit",
    ) -> None:
        self.process_limit = process_limit  # checked first: a bad value leaves no loop open
        # a stream no log file takes: "inherit" (the manager's own stdout or stderr, unless
        # redirected), "console" (captured, kept, written to stdout prefixed with its
        # process) or "capture" (captured and kept only); see table.py
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        self._output = output
        if loop is None:
            try:
                loop = asyncio.get_running_loop()  # `async with Manager()`: the caller's loop
                self._own_loop = False
            except RuntimeError:
                loop = new_event_loop(loop_kind)
                self._own_loop = True
        else:
            self._own_loop = False
        self._sampler = Sampler()
        self._bind_loop(loop)
        self._pending_calls: set[concurrent.futures.Future[Any]] = set()
        self._sessions: dict[str, dict[str, JobRunner]] = {}
        self._jobs: dict[str, JobRunner] = {}
        self._apps: list[Any] = []
        self.started = False
        self._stopping = False
        self._stop_callbacks: list[Callback] = []
        self._stopped: asyncio.Future[None] | None = None
        self._run_forever = False
        # the last defences against leaks (gafferd turns them on; see guard.py, orphans.py)
        self._use_guard = guard
        self._use_subreaper = subreaper
        self._container = container  # PID 1 of a container: every zombie is ours to reap
        self._orphans: OrphanReaper | None = None
        self._handed_orphans: list[list[Any]] = []  # set by restore() (handover.py)
        # set when a job with ``on_exit = shutdown`` ended: the code gafferd exits with
        self.exit_code: int | None = None

    def _bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        if not hasattr(self, "events"):
            self.events = EventEmitter(loop)
        else:
            self.events.bind(loop)
        self._monitor = StatsMonitor(self, self._sampler)
        self._table = ProcessTable(
            loop,
            self._sampler,
            self._monitor,
            SinkRegistry(loop, self._on_log_drop),
            output=self._output,
        )

    @property
    def running(self) -> dict[int, Process]:
        """Every running process by internal pid (one-off ones included)."""
        return self._table.running

    # == lifecycle =========================================================================
    def start(
        self, apps: Iterable[Any] | None = None, applications: Iterable[Any] | None = None
    ) -> None:
        """Start the applications in order, then every job loaded with ``start=True``."""
        if self.started:
            raise RuntimeError("manager already started")
        if self._use_guard and self._table.guard is None:  # else: handed over (restore)
            self._table.guard = Guard(self.loop, self._table.watcher, on_restart=self._publish)
        if self._use_subreaper:
            self._start_subreaper()
        self._stopped = None
        self.started = True
        for app in [*(apps or ()), *(applications or ())]:
            app.start(self.loop, self)
            self._apps.append(app)
        for runner in self._by_priority():
            runner.manage()

    def _by_priority(self, reverse: bool = False) -> list[JobRunner]:
        return sorted(self._jobs.values(), key=lambda runner: runner.priority, reverse=reverse)

    def _start_subreaper(self) -> None:
        if not become_subreaper():
            logger.warning(
                "this system cannot make gaffer a child subreaper: orphaned descendants "
                "of jobs go to init and are not stopped with gaffer"
            )
            return
        self._orphans = OrphanReaper(
            self.loop,
            is_managed=self._table.watcher.knows,
            is_kept_session=self._table.detached_sessions.__contains__,
            guard=self._table.guard,
            is_job_stopped=self._grace_if_stopped,
        )
        self._orphans.reap_all = self._container
        self._orphans.adopt(self._handed_orphans)  # those of a previous life (restore)
        self._orphans.start()

    def _grace_if_stopped(self, job_id: str) -> float | None:
        """For an orphan found after its job was stopped: that job's graceful timeout;
        None when the job runs (or is not one of ours)."""
        runner = self._jobs.get(job_id)
        return runner.config.graceful_timeout if runner is not None and runner.stopped else None

    def _stop_orphans(self, job_id: str, graceful_timeout: float) -> None:
        """The orphans of a job go with its processes; without the subreaper they are
        init's."""
        if self._orphans is not None:
            self._orphans.stop_job(job_id, graceful_timeout)

    def _host_active(self) -> bool:
        return self.started and not self._stopping

    def run(self) -> None:
        """Run the loop until ``stop()`` (from any thread) has stopped everything."""
        if not self.started:
            raise RuntimeError("call manager.start() before manager.run()")
        self._run_forever = True
        try:
            self.loop.run_forever()
        finally:
            self._run_forever = False
            fail_pending(self._pending_calls)
            if self._own_loop and not self.started:
                self._close_loop()

    def _close_loop(self) -> None:
        loop = self.loop
        if loop.is_closed():
            return
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def stop(self, callback: Callback | None = None) -> None:
        """Stop every process (SIGTERM, then SIGKILL after its graceful timeout), then the
        applications, then call ``callback(manager)``. Safe from any thread; returns at once;
        repeated calls only add callbacks."""
        call_soon_here(self.loop, self._begin_stop, callback)

    def restart(self, callback: Callback | None = None) -> None:
        """Restart the applications, then every running job, rolling: new processes first,
        then the old ones reaped. Safe from any thread; returns at once."""
        call_soon_here(self.loop, self._do_restart, callback)

    @property
    def active(self) -> bool:
        return self.started and not self._stopping

    async def wait_stopped(self) -> None:
        """Wait until a stop has completed (returns at once if the manager is not started)."""
        if not self.started and not self._stopping:
            return
        if self._stopped is None:
            self._stopped = self.loop.create_future()
        await asyncio.shield(self._stopped)

    async def __aenter__(self) -> Manager:
        running = asyncio.get_running_loop()
        if running is not self.loop:
            self._adopt(running)
        if not self.started:
            self.start()
        return self

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """``Manager()`` made outside any loop, then entered with ``async with`` inside one:
        use that loop instead of the one made for blocking use (while nothing runs yet)."""
        if not self._own_loop or self.started or self._jobs or self.loop.is_running():
            raise RuntimeError(
                "this Manager already runs on another event loop: create it "
                "inside the loop that uses it, or pass it loop="
            )
        self.loop.close()
        self._own_loop = False
        self._bind_loop(loop)

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
        await self.wait_stopped()

    def _begin_stop(self, callback: Callback | None) -> None:
        if callback is not None:
            self._stop_callbacks.append(callback)
        if self._stopping:
            return
        if not self.started:
            self._finish_stop()
            return
        self._stopping = True
        self.loop.create_task(self._shutdown(), name="gaffer-shutdown")

    async def _shutdown(self) -> None:
        self._monitor.close()
        # a job stops (its graceful timeout honoured) before the jobs it requires; jobs
        # that nothing links stop together, in the first wave
        for wave in deps.stop_waves(self._requirements()):
            for runner in sorted(
                (self._jobs[name] for name in wave), key=lambda r: r.priority, reverse=True
            ):
                try:
                    runner.shutdown()
                except Exception:  # the others must stop all the same
                    logger.exception("stopping %s failed", runner.name)
            await self._table.wait_stopped()
        if self._orphans is not None:
            # an orphan came from one of the jobs: it gets the longest grace among them
            grace = max((job.config.graceful_timeout for job in self._jobs.values()), default=None)
            await self._orphans.close(grace)
            self._orphans = None
        if self._table.guard is not None:
            await self._table.guard.close()
            self._table.guard = None
        self._table.close()
        self._table.sinks.close()
        await self.flush_logs(LOG_FLUSH_TIMEOUT)
        for app in reversed(self._apps):
            try:
                result = app.stop()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("application %r failed to stop", app)
        self._apps.clear()
        await asyncio.sleep(0)  # let the last events reach their listeners
        self._finish_stop()

    def _finish_stop(self) -> None:
        self.started = False
        self._stopping = False
        callbacks, self._stop_callbacks = self._stop_callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception("stop callback %r failed", callback)
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)
        self._stopped = None
        if self._run_forever:
            self.loop.stop()

    def _do_restart(self, callback: Callback | None) -> None:
        if not self.active:  # called through the loop: there is no caller to raise to
            logger.warning("restart ignored: the manager is not running")
            return
        for app in self._apps:
            try:
                app.restart()
            except Exception:
                logger.exception("application %r failed to restart", app)
        for runner in self._by_priority():
            runner.rolling_restart()
        if callback is not None:
            callback(self)

    # == jobs ==============================================================================
    @on_loop
    def load(
        self,
        config: ProcessConfig | Mapping[str, Any],
        sessionid: str | None = None,
        env: Mapping[str, str] | None = None,
        start: bool = True,
    ) -> None:
        """Register a job (``session.name``) and start it unless ``start=False``.
        Raises ProcessConflict when the session already has a job of that name."""
        config = as_config(config)
        session = validate_session(sessionid or DEFAULT_SESSION)
        name = f"{session}.{config.name}"
        if name in self._jobs:
            raise ProcessConflict(f"job {name!r} is already loaded")
        self._check_not_stopping()
        limits.enforce(
            self.process_limit,
            self._jobs.values(),
            f"loading {name}",
            None,
            config.numprocesses,
            config,
        )
        self._check_cycles(name, config)
        runner = self._add_runner(session, config, check_env(env))
        self._publish("load", {"name": name})
        if start:
            self._start_job(runner)

    def _add_runner(
        self, session: str, config: ProcessConfig, env: Mapping[str, str] | None
    ) -> JobRunner:
        runner = JobRunner(
            session,
            config,
            env,
            table=self._table,
            publish=self._publish,
            stop_orphans=self._stop_orphans,
            host_active=self._host_active,
            blockers=self._blockers,
            on_state_change=self._job_state_changed,
            request_shutdown=self._shutdown_requested,
        )
        self._jobs[runner.name] = runner
        self._sessions.setdefault(session, {})[config.name] = runner
        return runner

    @on_loop
    def unload(self, name: str | ProcessConfig, sessionid: str | None = None) -> None:
        """Stop every process of the job and forget it (and its session when empty)."""
        if isinstance(name, ProcessConfig):
            name = name.name
        runner = self._get_job(name, sessionid)
        runner.unload()
        del self._jobs[runner.name]
        session = self._sessions[runner.job.session]
        del session[runner.job.bare_name]
        if not session:
            del self._sessions[runner.job.session]
        self._monitor.forget_job(runner.name)
        self._publish("unload", {"name": runner.name})
        self._publish_job(runner.name, "stop", {"name": runner.name})

    @on_loop
    def reload(self, name: str, sessionid: str | None = None) -> None:
        """Replace every process of the job by a new one (new pids), with the target and
        the crash history back to the config's."""
        runner = self._get_job(name, sessionid)
        self._check_not_stopping()
        runner.reload()

    @on_loop
    def update(
        self,
        config: ProcessConfig | Mapping[str, Any],
        sessionid: str | None = None,
        env: Mapping[str, str] | None = None,
        start: bool = False,
    ) -> None:
        """Give a loaded job a new config (and env): its processes are replaced by processes
        of the new config. The target becomes the larger of the new config's and the
        current one. ``start=True`` also starts a stopped job."""
        config = as_config(config)
        runner = self._get_job(config.name, sessionid)
        self._check_not_stopping()
        self._check_cycles(runner.name, config)
        limits.enforce(
            self.process_limit,
            self._jobs.values(),
            f"updating {runner.name}",
            runner,
            max(config.numprocesses, runner.numprocesses),
            config,
        )
        runner.update(config, check_env(env) if env is not None else None, start)

    @on_loop
    def get(self, name: str) -> ProcessConfig:
        return self._get_job(name).config

    @property
    def process_limit(self) -> int | None:
        """At most this many processes (targets, and one-off processes) for all jobs
        together; None: no limit. Loads, updates, scales and commits beyond it raise
        ProcessLimitReached and change nothing (limits.py)."""
        return self._process_limit

    @process_limit.setter
    def process_limit(self, value: int | None) -> None:
        self._process_limit = limits.check_limit(value)

    @on_loop
    def start_job(self, name: str) -> None:
        """Start a stopped job: its target back to the config's, its crash history reset."""
        self._start_job(self._get_job(name))

    def _start_job(self, runner: JobRunner) -> None:
        self._check_not_stopping()
        runner.start()

    @on_loop
    def stop_job(self, name: str) -> None:
        """Stop every process of the job (one-off ones too) and keep it stopped; a pending
        restart is cancelled."""
        self._get_job(name).stop()

    @on_loop
    def scale(self, name: str, n: int | str) -> int:
        """Change the target: an int adds (subtracts when <= 0), ``"+n"``, ``"-n"``,
        ``"=n"``. Returns the new target."""
        runner = self._get_job(name)
        target = apply_scale(runner.numprocesses, n)
        limits.enforce(
            self.process_limit,
            self._jobs.values(),
            f"scaling {runner.name} to {target}",
            runner,
            target,
        )
        return runner.scale(target)

    @on_loop
    def commit(
        self, name: str, graceful_timeout: float | None = None, env: Mapping[str, str] | None = None
    ) -> int:
        """Run one more process of the job, once: never restarted, not counted in the
        target, not reaped by scaling. Returns its pid. Raises SpawnError."""
        runner = self._get_job(name)
        self._check_not_stopping()
        if graceful_timeout is not None and (
            isinstance(graceful_timeout, bool)
            or not isinstance(graceful_timeout, int | float)
            or graceful_timeout < 0
        ):
            raise InvalidArgument(
                f"graceful_timeout: expected seconds >= 0, got {graceful_timeout!r}"
            )
        limits.enforce(
            self.process_limit,
            self._jobs.values(),
            f"committing {runner.name}",
            runner,
            runner.numprocesses,
            one_offs=1,
        )
        return runner.commit(check_env(env), graceful_timeout)

    @on_loop
    def info(self, name: str) -> dict[str, Any]:
        return self._get_job(name).info()

    @on_loop
    def stopall(self, name: str) -> None:
        """Stop every process of the job; the job stays started, so they are replaced."""
        self._get_job(name).stopall()

    @on_loop
    def killall(self, name: str, sig: int | str) -> None:
        """Send ``sig`` to every process of the job, one-off ones included."""
        runner = self._get_job(name)
        runner.killall(parse_signal(sig))

    @property
    def sessions(self) -> list[str]:
        return list(self._sessions)

    @on_loop
    def jobs(self, sessionid: str | None = None) -> list[str]:
        if sessionid is None:
            return list(self._jobs)
        if sessionid not in self._sessions:
            raise ProcessNotFound(f"no session {sessionid!r}")
        return [runner.name for runner in self._sessions[sessionid].values()]

    @on_loop
    def jobs_walk(
        self, callback: Callable[[Manager, str], object], sessionid: str | None = None
    ) -> None:
        for name in self.jobs(sessionid):
            callback(self, name)

    def _shutdown_requested(self, job: str, exit_status: int, term_signal: int) -> None:
        """A job with ``on_exit = shutdown`` ended: the manager stops, and keeps its exit
        code (a signal n: 128 + n, as a shell says) for the program that runs it."""
        if self.exit_code is None:
            self.exit_code = 128 + term_signal if term_signal else exit_status
            logger.warning(
                "%s ended (%s) and has on_exit = shutdown: stopping, exit code %d",
                job,
                f"signal {term_signal}" if term_signal else f"exit {exit_status}",
                self.exit_code,
            )
        self.stop()

    # == internals =========================================================================
    def _get_job(self, name: str, sessionid: str | None = None) -> JobRunner:
        try:
            return self._jobs[job_id(name, sessionid)]
        except KeyError:
            session, bare = split_job_id(name, sessionid)
            raise ProcessNotFound(f"no job {bare!r} in session {session!r}") from None

    def _check_not_stopping(self) -> None:
        if self._stopping:
            raise ManagerStopped("the manager is stopping")

    def _publish(self, evtype: str, msg: dict[str, Any]) -> None:
        msg["event"] = evtype
        self.events.publish(evtype, msg)

    def _publish_job(self, name: str, evtype: str, msg: dict[str, Any]) -> None:
        """``evtype`` and its per-job twin ``job.<id>.<evtype>``."""
        self._publish(evtype, msg)
        self._publish(f"job.{name}.{evtype}", dict(msg))
