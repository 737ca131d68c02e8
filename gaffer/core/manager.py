"""``Manager``: keeps jobs alive on an asyncio loop (uvloop by default).

The manager owns sessions -> jobs -> processes. It reconciles each running job with its
target number of processes (spawning the missing, reaping the oldest extras), restarts
processes when they exit (under the job's flapping policy), publishes everything on
``manager.events``, and hosts applications (objects with ``start(loop, manager)``,
``stop()`` and ``restart()``).

Every public method may be called from any thread: called off the loop's thread while the
loop runs, it is executed on the loop and the caller waits for its result. ``stop()`` and
``restart()`` never wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from gaffer.core.childwatch import ChildWatcher
from gaffer.core.config import ProcessConfig, os_string
from gaffer.core.events import EventEmitter
from gaffer.core.flapping import Verdict
from gaffer.core.groups import GroupWatch
from gaffer.core.guard import Guard
from gaffer.core.job import Job
from gaffer.core.logfile import LogSink, SinkRegistry
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
from gaffer.core.orphans import OrphanReaper, become_subreaper
from gaffer.core.process import Process
from gaffer.core.stats import Sampler, descendants, descendants_map, summarize
from gaffer.errors import (
    InvalidArgument,
    ManagerStopped,
    ProcessConflict,
    ProcessLimitReached,
    ProcessNotFound,
    SpawnError,
    StreamNotFound,
)

logger = logging.getLogger(__name__)

SPAWN_BATCH = 16  # spawned before a call returns, however long they take
SPAWN_SLICE = 0.010  # then seconds of spawning before yielding to the loop
SPAWN_BACKOFF_FIRST = 0.1  # delay after a failed spawn, doubling up to the max
SPAWN_BACKOFF_MAX = 5.0

F = TypeVar("F", bound=Callable[..., Any])
Callback = Callable[["Manager"], object]
IOListener = Callable[[str, dict], object]
LOG_FLUSH_TIMEOUT = 5.0


def on_loop(method: F) -> F:
    """Run ``method`` on the manager's loop; from another thread, wait for its result."""

    @functools.wraps(method)
    def wrapper(self: Manager, *args: Any, **kwargs: Any) -> Any:
        loop = self.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop or (running is None and not loop.is_running()):
            return method(self, *args, **kwargs)
        if running is not None:  # waiting here would block that loop for ever
            raise RuntimeError(
                f"Manager.{method.__name__}() called from another event loop "
                "than the manager's: create the Manager inside the loop "
                "that runs it, or pass it loop="
            )
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def call() -> None:
            self._pending_calls.discard(future)
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(method(self, *args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        self._pending_calls.add(future)
        loop.call_soon_threadsafe(call)
        return future.result()

    return wrapper  # type: ignore[return-value]


class Manager:
    """Keeps jobs of processes alive. See the module docstring and docs/embedding.md."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        loop_kind: str | None = None,
        *,
        guard: bool = False,
        subreaper: bool = False,
        process_limit: int | None = None,
    ) -> None:
        self.process_limit = process_limit  # checked first: a bad value leaves no loop open
        if loop is None:
            try:
                loop = asyncio.get_running_loop()  # `async with Manager()`: the caller's loop
                self._own_loop = False
            except RuntimeError:
                loop = new_event_loop(loop_kind)
                self._own_loop = True
        else:
            self._own_loop = False
        self._bind_loop(loop)
        self._sampler = Sampler()
        self._pending_calls: set[concurrent.futures.Future[Any]] = set()
        self._io_watchers: list[tuple[str | None, str, IOListener]] = []
        self._sessions: dict[str, dict[str, Job]] = {}
        self._jobs: dict[str, Job] = {}
        self.running: dict[int, Process] = {}
        self._stopping_procs: dict[int, Process] = {}
        self._next_pid = 1
        self._apps: list[Any] = []
        self.started = False
        self._stopping = False
        self._stop_callbacks: list[Callback] = []
        self._stopped: asyncio.Future[None] | None = None
        self._run_forever = False
        # the last defences against leaks (gafferd turns them on; see guard.py, orphans.py)
        self._use_guard = guard
        self._use_subreaper = subreaper
        self._guard: Guard | None = None
        self._orphans: OrphanReaper | None = None
        self._detached_sessions: set[int] = set()
        # bound once: each process holds them, and a bound method is an object each time
        self._exit_callback, self._gone_callback = self._on_exit, self._on_gone

    def _bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        if not hasattr(self, "events"):
            self.events = EventEmitter(loop)
        else:
            self.events.bind(loop)
        self._watcher = ChildWatcher(loop)
        self._groups = GroupWatch(loop)
        self._monitor = StatsMonitor(self)
        self._sinks = SinkRegistry(loop, self._on_log_drop)

    def _fail_pending_calls(self) -> None:
        """Calls from other threads that the stopped loop will never run: fail them."""
        pending, self._pending_calls = self._pending_calls, set()
        for future in pending:
            if future.set_running_or_notify_cancel():
                future.set_exception(ManagerStopped("the manager's loop stopped"))

    # == lifecycle =========================================================================
    def start(
        self, apps: Iterable[Any] | None = None, applications: Iterable[Any] | None = None
    ) -> None:
        """Start the applications in order, then every job loaded with ``start=True``."""
        if self.started:
            raise RuntimeError("manager already started")
        if self._use_guard:
            self._guard = Guard(self.loop, self._watcher, on_restart=self._publish)
        if self._use_subreaper:
            self._start_subreaper()
        self._stopped = None
        self.started = True
        for app in [*(apps or ()), *(applications or ())]:
            app.start(self.loop, self)
            self._apps.append(app)
        for job in sorted(self._jobs.values(), key=lambda job: job.priority):
            if not job.stopped:
                self._manage(job)

    def _start_subreaper(self) -> None:
        if not become_subreaper():
            logger.warning(
                "this system cannot make gaffer a child subreaper: orphaned descendants "
                "of jobs go to init and are not stopped with gaffer"
            )
            return
        self._orphans = OrphanReaper(
            self.loop,
            is_managed=self._is_own_child,
            is_kept_session=self._detached_sessions.__contains__,
            guard=self._guard,
            is_job_stopped=self._grace_if_stopped,
        )
        self._orphans.start()

    def _grace_if_stopped(self, job_id: str) -> float | None:
        """For an orphan found after its job was stopped: that job's graceful timeout;
        None when the job runs (or is not one of ours)."""
        job = self._jobs.get(job_id)
        return job.config.graceful_timeout if job is not None and job.stopped else None

    def _stop_orphans(self, job: Job) -> None:
        """The orphans of a job go with its processes (stop, unload, reload, update,
        flapping); without the subreaper they are init's."""
        if self._orphans is not None and not job.config.detach:
            self._orphans.stop_job(job.name, job.config.graceful_timeout)

    def _is_own_child(self, os_pid: int) -> bool:
        """A child the watcher reaps (a managed process, the guard, a detached process
        left running): not an orphan."""
        return self._watcher.knows(os_pid)

    def run(self) -> None:
        """Run the loop until ``stop()`` (from any thread) has stopped everything."""
        if not self.started:
            raise RuntimeError("call manager.start() before manager.run()")
        self._run_forever = True
        try:
            self.loop.run_forever()
        finally:
            self._run_forever = False
            self._fail_pending_calls()
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
        self._threadsafe_call(self._begin_stop, callback)

    def restart(self, callback: Callback | None = None) -> None:
        """Restart the applications, then every running job, rolling: new processes first,
        then the old ones reaped. Safe from any thread; returns at once."""
        self._threadsafe_call(self._do_restart, callback)

    def _threadsafe_call(self, func: Callable[..., None], *args: Any) -> None:
        try:
            here = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            here = False
        if here:
            func(*args)
        else:
            self.loop.call_soon_threadsafe(func, *args)

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
        for job in sorted(self._jobs.values(), key=lambda job: job.priority, reverse=True):
            job.cancel_timers()
            if not job.stopped:
                job.stopped = True
                self._publish_job(job, "stop", {"name": job.name})
            for proc in job.processes:
                if proc.config.detach:
                    self._forget_detached(job, proc)
                else:
                    self._stop_process(proc)
        pending = [proc.wait_gone() for proc in list(self._stopping_procs.values())]
        if pending:
            await asyncio.gather(*pending)
        if self._orphans is not None:
            # an orphan came from one of the jobs: it gets the longest grace among them
            grace = max((job.config.graceful_timeout for job in self._jobs.values()), default=None)
            await self._orphans.close(grace)
            self._orphans = None
        if self._guard is not None:
            await self._guard.close()
            self._guard = None
        self._groups.close()
        self._sinks.close()
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
        for job in sorted(self._jobs.values(), key=lambda job: job.priority):
            if not job.stopped and job.retry_timer is None:  # not paused by flapping
                self._rolling_restart(job)
        if callback is not None:
            callback(self)

    def _rolling_restart(self, job: Job) -> None:
        """New processes first (sliced like any spawn), then the old ones reaped."""
        job.retiring = list(job.running)
        self._manage(job)

    def _forget_detached(self, job: Job, proc: Process) -> None:
        self._remove(job, proc)
        proc.forget()
        self._release_sinks(proc.held_sinks)
        logger.info(
            "%s pid=%d os_pid=%s is detached: left running", job.name, proc.pid, proc.os_pid
        )

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
        config = _as_config(config)
        session = validate_session(sessionid or DEFAULT_SESSION)
        name = f"{session}.{config.name}"
        if name in self._jobs:
            raise ProcessConflict(f"job {name!r} is already loaded")
        self._check_not_stopping()
        self._check_limit(f"loading {name}", None, config.numprocesses)
        job = Job(session, config, _check_env(env))
        job.sinks = self._acquire_sinks(job.name, config)
        self._jobs[name] = job
        self._sessions.setdefault(session, {})[config.name] = job
        self._publish("load", {"name": name})
        if start:
            self._start_job(job)

    @on_loop
    def unload(self, name: str | ProcessConfig, sessionid: str | None = None) -> None:
        """Stop every process of the job and forget it (and its session when empty)."""
        if isinstance(name, ProcessConfig):
            name = name.name
        job = self._get_job(name, sessionid)
        job.cancel_timers()
        job.stopped = True
        for proc in job.processes:
            self._stop_process(proc)
        self._stop_orphans(job)
        del self._jobs[job.name]
        self._release_sinks(job.sinks)
        session = self._sessions[job.session]
        del session[job.bare_name]
        if not session:
            del self._sessions[job.session]
        self._monitor.forget_job(job.name)
        self._publish("unload", {"name": job.name})
        self._publish_job(job, "stop", {"name": job.name})

    @on_loop
    def reload(self, name: str, sessionid: str | None = None) -> None:
        """Replace every process of the job by a new one (new pids), with the target and
        the crash history back to the config's."""
        job = self._get_job(name, sessionid)
        self._check_not_stopping()
        job.cancel_timers()
        job.numprocesses = job.config.numprocesses
        if job.flapping is not None:
            job.flapping.reset()
        for proc in list(job.running):
            self._stop_process(proc)
        self._stop_orphans(job)
        self._publish_job(job, "reload", {"name": job.name})
        if job.stopped:
            job.stopped = False
            self._publish_job(job, "start", {"name": job.name})
        self._manage(job)

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
        config = _as_config(config)
        job = self._get_job(config.name, sessionid)
        self._check_not_stopping()
        self._check_limit(
            f"updating {job.name}", job, max(config.numprocesses, job.numprocesses), config
        )
        sinks = self._acquire_sinks(job.name, config)
        job.cancel_timers()
        self._release_sinks(job.sinks)
        job.sinks = sinks
        job.set_config(config, _check_env(env) if env is not None else job.env)
        job.numprocesses = max(config.numprocesses, job.numprocesses)
        for proc in list(job.running):
            self._stop_process(proc)
        self._stop_orphans(job)
        self._publish_job(job, "update", {"name": job.name, "numprocesses": job.numprocesses})
        if start and job.stopped:
            self._start_job(job)
        else:
            self._manage(job)

    @on_loop
    def get(self, name: str) -> ProcessConfig:
        return self._get_job(name).config

    @property
    def process_limit(self) -> int | None:
        """At most this many processes (targets, and one-off processes) for all jobs
        together; None: no limit. Loads, updates, scales and commits beyond it raise
        ProcessLimitReached and change nothing."""
        return self._process_limit

    @process_limit.setter
    def process_limit(self, value: int | None) -> None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"process_limit: expected an integer >= 1 or None, got {value!r}")
        self._process_limit = value

    # -- the process limit: a typo (=1000 for =10) must not fork the host to its knees ---
    @staticmethod
    def _reserved(job: Job, target: int | None = None, config: ProcessConfig | None = None) -> int:
        """Processes a job may run: its target, or its config's (which start_job and
        reload go back to) when larger, plus its one-off processes."""
        target = job.numprocesses if target is None else target
        config = job.config if config is None else config
        return max(target, config.numprocesses) + len(job.running_out)

    def _check_limit(
        self,
        what: str,
        job: Job | None,
        target: int,
        config: ProcessConfig | None = None,
        one_offs: int = 0,
    ) -> None:
        """Raise ProcessLimitReached when giving ``job`` (None: a new one) this target
        and config would raise the manager's total over ``process_limit``; lowering a
        total that is already over it (the limit was lowered) is always allowed."""
        limit = self.process_limit
        if limit is None:
            return
        others = sum(self._reserved(other) for other in self._jobs.values() if other is not job)
        if job is None:
            before, after = 0, max(target, config.numprocesses if config else 0) + one_offs
        else:
            before = self._reserved(job)
            after = self._reserved(job, target, config) + one_offs
        if after > before and others + after > limit:
            raise ProcessLimitReached(
                f"{what}: the manager would have up to {others + after} processes, over its "
                f"limit of {limit} (process_limit); {others} are taken by other jobs"
            )

    @on_loop
    def start_job(self, name: str) -> None:
        """Start a stopped job: its target back to the config's, its crash history reset."""
        self._start_job(self._get_job(name))

    def _start_job(self, job: Job) -> None:
        self._check_not_stopping()
        if not job.stopped and job.retry_timer is None:
            self._manage(job)
            return
        job.cancel_timers()
        job.stopped = False
        job.numprocesses = job.config.numprocesses
        job.spawn_failures = 0
        if job.flapping is not None:
            job.flapping.reset()
        self._publish_job(job, "start", {"name": job.name})
        self._manage(job)

    @on_loop
    def stop_job(self, name: str) -> None:
        """Stop every process of the job (one-off ones too) and keep it stopped; a pending
        flapping retry is cancelled."""
        job = self._get_job(name)
        job.cancel_timers()
        job.stopped = True
        job.numprocesses = 0
        for proc in job.processes:
            self._stop_process(proc)
        self._stop_orphans(job)
        self._publish_job(job, "stop", {"name": job.name})

    @on_loop
    def scale(self, name: str, n: int | str) -> int:
        """Change the target: an int adds (subtracts when <= 0), ``"+n"``, ``"-n"``,
        ``"=n"``. Returns the new target."""
        job = self._get_job(name)
        target = apply_scale(job.numprocesses, n)
        self._check_limit(f"scaling {job.name} to {target}", job, target)
        job.numprocesses = target
        self._publish_job(job, "update", {"name": job.name, "numprocesses": job.numprocesses})
        self._manage(job)
        return job.numprocesses

    @on_loop
    def commit(
        self, name: str, graceful_timeout: float | None = None, env: Mapping[str, str] | None = None
    ) -> int:
        """Run one more process of the job, once: never restarted, not counted in the
        target, not reaped by scaling. Returns its pid. Raises SpawnError."""
        job = self._get_job(name)
        self._check_not_stopping()
        if graceful_timeout is not None and (
            isinstance(graceful_timeout, bool)
            or not isinstance(graceful_timeout, int | float)
            or graceful_timeout < 0
        ):
            raise InvalidArgument(
                f"graceful_timeout: expected seconds >= 0, got {graceful_timeout!r}"
            )
        self._check_limit(f"committing {job.name}", job, job.numprocesses, one_offs=1)
        try:
            proc = self._spawn(
                job, once=True, env=_check_env(env), graceful_timeout=graceful_timeout
            )
        except SpawnError as exc:
            self._publish_job(job, "spawn_error", _spawn_error_msg(job, exc))
            raise
        return proc.pid

    @on_loop
    def info(self, name: str) -> dict[str, Any]:
        return self._get_job(name).info()

    @on_loop
    def stats(self, name: str) -> dict[str, Any]:
        """Per-process stats of the job and totals (sum, min, max of cpu and mem). Reads
        /proc now, on the caller's thread: ``await astats(name)`` reads it off the loop."""
        job = self._get_job(name)
        tree = descendants_map()
        return summarize(job.name, [proc.read_stats(tree) for proc in job.processes])

    async def astats(self, name: str) -> dict[str, Any]:
        """``stats(name)``, reading /proc in a worker thread (for servers on the loop)."""
        job = self._get_job(name)
        targets = [(proc.pid, proc.name, proc.os_pid) for proc in job.processes]
        return await self.loop.run_in_executor(None, _read_stats, job.name, targets)

    async def aprocess_stats(self, pid: int) -> dict[str, Any]:
        """The stats of one process, read in a worker thread."""
        proc = self.get_process(pid)
        stats = await self.loop.run_in_executor(
            None, _read_stats, proc.name, [(proc.pid, proc.name, proc.os_pid)]
        )
        return stats["stats"][0]

    @on_loop
    def stopall(self, name: str) -> None:
        """Stop every process of the job; the job stays started, so they are replaced."""
        job = self._get_job(name)
        for proc in job.processes:
            self._stop_process(proc)
        self._stop_orphans(job)
        self._manage(job)

    @on_loop
    def killall(self, name: str, sig: int | str) -> None:
        """Send ``sig`` to every process of the job, one-off ones included."""
        job = self._get_job(name)
        signum = parse_signal(sig)
        self._publish(f"job.{job.name}.kill", {"name": job.name, "signum": signum})
        for proc in job.processes:
            proc.kill(signum)
            self._publish(
                f"proc.{proc.pid}.kill", {"name": job.name, "pid": proc.pid, "signum": signum}
            )

    @property
    def sessions(self) -> list[str]:
        return list(self._sessions)

    @on_loop
    def jobs(self, sessionid: str | None = None) -> list[str]:
        if sessionid is None:
            return list(self._jobs)
        if sessionid not in self._sessions:
            raise ProcessNotFound(f"no session {sessionid!r}")
        return [job.name for job in self._sessions[sessionid].values()]

    @on_loop
    def jobs_walk(
        self, callback: Callable[[Manager, str], object], sessionid: str | None = None
    ) -> None:
        for name in self.jobs(sessionid):
            callback(self, name)

    # == processes =========================================================================
    @on_loop
    def pids(self, name: str | None = None) -> list[int]:
        """Every running pid (one-off included), or the kept-alive pids of a job."""
        if name is None:
            return list(self.running)
        return self._get_job(name).pids

    list = pids

    @on_loop
    def get_process(self, pid: int) -> Process:
        try:
            return self.running[_as_pid(pid)]
        except KeyError:
            raise ProcessNotFound(f"no running process with pid {pid}") from None

    @on_loop
    def kill(self, pid: int, sig: int | str) -> None:
        proc = self.get_process(pid)
        signum = parse_signal(sig)
        proc.kill(signum)
        self._publish(
            f"proc.{proc.pid}.kill", {"name": proc.name, "pid": proc.pid, "signum": signum}
        )

    @on_loop
    def send(
        self, pid: int, data: bytes | str | Iterable[bytes | str], stream: str | None = None
    ) -> None:
        """Write ``data`` (or a list of lines) to stdin, or to a custom stream."""
        proc = self.get_process(pid)
        if stream in (None, "stdin"):
            target: Any = proc
        else:
            target = proc.streams.get(stream)
            if target is None:
                raise StreamNotFound(f"pid {proc.pid} has no stream {stream!r}")
        if isinstance(data, bytes | bytearray | str):
            target.write(data)
        else:
            target.writelines(data)

    @on_loop
    def stop_process(self, pid: int | str) -> None:
        """Stop one process (an int pid); for a kept-alive job a new one replaces it.
        (A str names a job: the 0.4 ``stop_process(name)``, which stops the job.)"""
        if isinstance(pid, str) and not pid.isdigit():
            self.stop_job(pid)
            return
        proc = self.get_process(pid)
        self._stop_process(proc)
        job = self._jobs.get(proc.name)
        if job is not None and not proc.once:
            self._manage(job)

    @on_loop
    def walk(self, callback: Callable[[Manager, Process], object], name: str | None = None) -> None:
        procs = list(self.running.values()) if name is None else self._get_job(name).processes
        for proc in procs:
            callback(self, proc)

    @on_loop
    def monitor(self, listener: Callable[[str, dict], object], name: str | int) -> None:
        """Call ``listener("stat", msg)`` every ``monitor.interval`` seconds with the stats
        of each process of job ``name`` (or of one pid)."""
        self._monitor.add(self._monitor_target(name), listener)

    @on_loop
    def unmonitor(self, listener: Callable[[str, dict], object], name: str | int) -> None:
        self._monitor.remove(self._monitor_target(name), listener)

    @on_loop
    def monitor_io(self, listener: IOListener, name: str | None = None, label: str = ".") -> None:
        """Call ``listener(label, msg)`` with the output of every process of job ``name``
        (of every job when None), those running now and those spawned later, from their
        first byte. ``label`` selects one stream ("." for all)."""
        job_name = None if name is None else job_id(name)  # may be loaded later
        self._io_watchers.append((job_name, label, listener))
        for proc in self.running.values():
            if job_name in (None, proc.name) and (label == "." or label in proc._labels()):
                proc.monitor_io(label, listener)

    @on_loop
    def unmonitor_io(self, listener: IOListener, name: str | None = None, label: str = ".") -> None:
        job_name = None if name is None else job_id(name)
        self._io_watchers = [
            watch for watch in self._io_watchers if watch != (job_name, label, listener)
        ]
        for proc in self.running.values():
            if job_name in (None, proc.name):
                proc.unmonitor_io(label, listener)

    @on_loop
    def reopen_logs(self) -> None:
        """Reopen every log file at its path (after logrotate moved the files away)."""
        self._sinks.reopen()

    async def flush_logs(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109 - waited in a thread
        """Wait until the output read so far is written to the log files."""
        return await self.loop.run_in_executor(None, self._sinks.flush, timeout)

    @property
    def monitor_interval(self) -> float:
        return self._monitor.interval

    @monitor_interval.setter
    def monitor_interval(self, seconds: float) -> None:
        self._monitor.interval = seconds

    def _monitor_target(self, name: str | int) -> str | int:
        if isinstance(name, int) and not isinstance(name, bool):
            return self.get_process(name).pid
        return self._get_job(name).name

    def processes_of(self, target: str | int) -> list[Process]:
        """The processes a monitor target stands for (used by the stats monitor)."""
        if isinstance(target, int):
            proc = self.running.get(target)
            return [proc] if proc is not None else []
        job = self._jobs.get(target)
        return job.processes if job is not None else []

    # == 0.4 names =========================================================================
    def add_process(self, name: str, cmd: str, **settings: Any) -> None:
        start = settings.pop("start", True)
        self.load(ProcessConfig(name, cmd, **settings), start=start)

    def remove_process(self, name: str) -> None:
        self.unload(name)

    def start_process(self, name: str) -> None:
        self.start_job(name)

    def restart_process(self, name: str) -> None:
        self.reload(name)

    def ttin(self, name: str, n: int = 1) -> int:
        return self.scale(name, n)

    def ttou(self, name: str, n: int = 1) -> int:
        return self.scale(name, -n)

    def send_signal(self, name_or_pid: str | int, sig: int | str) -> None:
        if (isinstance(name_or_pid, int) and not isinstance(name_or_pid, bool)) or (
            isinstance(name_or_pid, str) and name_or_pid.isdigit()
        ):
            self.kill(name_or_pid, sig)
        else:
            self.killall(name_or_pid, sig)

    def get_process_info(self, name: str) -> dict[str, Any]:
        return self.get(name).to_dict(with_channels=False)

    def get_process_status(self, name: str) -> dict[str, Any]:
        info = self.info(name)
        return {key: info[key] for key in ("active", "running", "max_processes")}

    # == internals =========================================================================
    def _get_job(self, name: str, sessionid: str | None = None) -> Job:
        try:
            return self._jobs[job_id(name, sessionid)]
        except KeyError:
            session, bare = split_job_id(name, sessionid)
            raise ProcessNotFound(f"no job {bare!r} in session {session!r}") from None

    def _acquire_sinks(
        self, name: str, config: ProcessConfig
    ) -> tuple[LogSink | None, LogSink | None]:
        if config.detach:  # a detached process writes its log files itself
            return None, None
        out_target, err_target = config.log_targets
        settings = {
            "max_bytes": config.logfile_max_bytes,
            "backups": config.logfile_backups,
            "buffer_bytes": config.logfile_buffer_bytes,
            "timestamps": config.log_timestamps,
        }
        sinks: list[LogSink | None] = []
        try:
            for target in (out_target, err_target):
                sinks.append(
                    None if target is None else self._sinks.acquire(target, name, **settings)
                )
        except ValueError as exc:
            self._release_sinks(sinks)
            raise InvalidArgument(f"job {name!r}: {exc}", reason="bad_logfile") from None
        return sinks[0], sinks[1]

    def _release_sinks(self, sinks: Iterable[LogSink | None]) -> None:
        for sink in sinks:
            if sink is not None:
                self._sinks.release(sink)

    def _on_log_drop(self, sink: LogSink, dropped_bytes: int, dropped_chunks: int) -> None:
        target = sink.target.path or sink.target.key
        logger.warning(
            "%d bytes of output of %s dropped: log %s could not take them",
            dropped_bytes,
            ", ".join(sorted(sink.jobs)),
            target,
        )
        for name in sorted(sink.jobs):
            msg = {
                "name": name,
                "target": target,
                "dropped_bytes": dropped_bytes,
                "dropped_chunks": dropped_chunks,
                "total_dropped_bytes": sink.dropped_bytes,
            }
            job = self._jobs.get(name)
            if job is not None:
                self._publish_job(job, "log_dropped", msg)
            else:
                self._publish("log_dropped", msg)

    def _check_not_stopping(self) -> None:
        if self._stopping:
            raise ManagerStopped("the manager is stopping")

    def _publish(self, evtype: str, msg: dict[str, Any]) -> None:
        msg["event"] = evtype
        self.events.publish(evtype, msg)

    def _publish_job(self, job: Job, evtype: str, msg: dict[str, Any]) -> None:
        """``evtype`` and its per-job twin ``job.<id>.<evtype>``."""
        self._publish(evtype, msg)
        self._publish(f"job.{job.name}.{evtype}", dict(msg))

    def _manage(self, job: Job) -> None:
        """Bring the job to its target: reap the oldest extras, spawn what is missing, a
        slice of time at a time so a big job never starves the loop."""
        if job.manage_handle is not None:  # a pending slice: this call does its work
            job.manage_handle.cancel()
            job.manage_handle = None
        if job.stopped or not self.started or self._stopping or job.retry_timer is not None:
            return
        # during a rolling restart the old processes count on top of the target until the
        # new ones all run
        job.retiring = [proc for proc in job.retiring if proc.pid in self.running]
        target = job.numprocesses + len(job.retiring)
        while len(job.running) > target:
            self._reap(job, job.running[0])
        if job.backoff_handle is not None:  # a spawn failed: wait for the backoff
            return
        deadline = time.monotonic() + SPAWN_SLICE
        spawned = 0
        while len(job.running) < target:
            if spawned >= SPAWN_BATCH and time.monotonic() > deadline:
                job.manage_handle = self.loop.call_soon(self._manage, job)
                return
            spawned += 1
            try:
                self._spawn(job)
            except Exception as exc:
                self._spawn_failed(job, _as_spawn_error(exc))
                return
        retiring, job.retiring = job.retiring, []
        for proc in retiring:
            self._reap(job, proc)

    def _schedule_backoff(self, job: Job, delay: float) -> None:
        if job.backoff_handle is not None:
            job.backoff_handle.cancel()
        job.backoff_handle = self.loop.call_later(delay, self._backoff_done, job)

    def _backoff_done(self, job: Job) -> None:
        job.backoff_handle = None
        self._manage(job)

    def _spawn(
        self,
        job: Job,
        once: bool = False,
        env: Mapping[str, str] | None = None,
        graceful_timeout: float | None = None,
    ) -> Process:
        slot = None if once else job.free_slot()
        penv, command = job.prepare_once(env) if once else job.prepare(slot or 0)
        pid = self._next_pid
        sinks = job.sinks
        proc = Process(
            self.loop,
            self._watcher,
            pid,
            job.name,
            job.config,
            env=penv,
            command=command,
            once=once,
            graceful_timeout=graceful_timeout,
            on_exit=self._exit_callback,
            on_gone=self._gone_callback,
            sampler=self._sampler,
            group_watch=self._groups,
            stats_monitor=self._monitor,
            log_writers=(sinks[0] and sinks[0].writer(pid), sinks[1] and sinks[1].writer(pid)),
            io_listeners=[
                (label, listener)
                for name, label, listener in self._io_watchers
                if name in (None, job.name)
            ],
        )
        proc.slot = slot
        proc.spawn()
        if proc.config.detach:
            self._detached_sessions.add(proc.os_pid)  # its orphans are left running too
        elif self._guard is not None:
            self._guard.add(proc.os_pid)
        proc.held_sinks = tuple(sink for sink in sinks if sink is not None)
        for sink in proc.held_sinks:
            self._sinks.retain(sink)
        self._next_pid = pid + 1
        self.running[pid] = proc
        if once:
            job.running_out[pid] = proc
            self._publish("spawn", {"name": job.name, "pid": pid, "os_pid": proc.os_pid})
        else:
            job.spawn_failures = 0
            job.add_running(proc)
            self._publish_job(job, "spawn", {"name": job.name, "pid": pid, "os_pid": proc.os_pid})
        return proc

    def _spawn_failed(self, job: Job, exc: SpawnError) -> None:
        job.spawn_failures += 1
        logger.warning("cannot spawn %s: %s", job.name, exc, extra={"event": "spawn_error"})
        self._publish_job(job, "spawn_error", _spawn_error_msg(job, exc))
        # a job that cannot start at all is flapping; one that has healthy processes and
        # cannot add one more (cwd gone, no descriptors...) only waits for the backoff
        if (
            job.flapping is not None
            and not job.running
            and self._flapping_verdict(job) is not Verdict.RESPAWN
        ):
            return
        delay = min(SPAWN_BACKOFF_FIRST * 2 ** (job.spawn_failures - 1), SPAWN_BACKOFF_MAX)
        self._schedule_backoff(job, delay)

    def _flapping_verdict(self, job: Job) -> Verdict:
        assert job.flapping is not None
        verdict = job.flapping.record_exit(self.loop.time())
        if verdict is Verdict.RESPAWN:
            return verdict
        retry_in = job.flapping.info.retry_in if verdict is Verdict.RETRY_LATER else None
        logger.warning(
            "%s is flapping: %s",
            job.name,
            f"retry in {retry_in}s" if retry_in is not None else "giving up",
            extra={"event": "flap"},
        )
        job.cancel_timers()
        job.stopped = True
        for proc in list(job.running):
            self._stop_process(proc)
        self._stop_orphans(job)
        self._publish_job(
            job, "flap", {"name": job.name, "retry_in": retry_in, "retries": job.flapping.retries}
        )
        if retry_in is not None:
            job.stopped = False  # still started: the retry timer holds the spawns back
            job.retry_timer = self.loop.call_later(retry_in, self._flap_retry, job)
        return verdict

    def _flap_retry(self, job: Job) -> None:
        job.retry_timer = None
        if self._jobs.get(job.name) is job and not job.stopped:
            self._manage(job)

    def _reap(self, job: Job, proc: Process) -> None:
        msg = {"name": job.name, "pid": proc.pid, "os_pid": proc.os_pid}
        self._publish_job(job, "reap", msg)
        self._publish(f"proc.{proc.pid}.reap", dict(msg))
        self._stop_process(proc)

    def _stop_process(self, proc: Process) -> None:
        job = self._jobs.get(proc.name)
        if job is not None:
            self._remove(job, proc)
        self.running.pop(proc.pid, None)
        self._publish("stop_process", {"name": proc.name, "pid": proc.pid, "os_pid": proc.os_pid})
        if not proc.gone:
            self._stopping_procs[proc.pid] = proc
        proc.stop()

    def _remove(self, job: Job, proc: Process) -> None:
        if proc.once:
            job.running_out.pop(proc.pid, None)
        else:
            try:
                job.remove_running(proc)
            except ValueError:
                pass
        self.running.pop(proc.pid, None)

    def _on_exit(self, proc: Process, exit_status: int, term_signal: int) -> None:
        was_running = self.running.pop(proc.pid, None) is not None
        if proc.os_pid is not None:
            self._sampler.discard(proc.os_pid)
        self._release_sinks(proc.held_sinks)
        proc.held_sinks = ()
        job = self._jobs.get(proc.name)
        if job is not None and was_running:
            self._remove(job, proc)
        msg = {
            "name": proc.name,
            "pid": proc.pid,
            "os_pid": proc.os_pid,
            "exit_status": exit_status,
            "term_signal": term_signal,
            "once": proc.once,
        }
        self._publish("exit", msg)
        self._publish(f"job.{proc.name}.exit", dict(msg))
        self._publish(f"proc.{proc.pid}.exit", dict(msg))
        if not proc.gone:
            self._stopping_procs[proc.pid] = proc  # its group lingers: wait for it on stop
        if (
            job is None
            or not was_running
            or proc.once
            or job.stopped
            or self._stopping
            or job.retry_timer is not None
        ):
            return
        if job.flapping is not None and self._flapping_verdict(job) is not Verdict.RESPAWN:
            return
        self._manage(job)

    def _on_gone(self, proc: Process) -> None:
        """The process, its group and its escaped descendants are all gone."""
        self._stopping_procs.pop(proc.pid, None)
        if self._guard is not None and not proc.config.detach and proc.os_pid is not None:
            self._guard.remove(proc.os_pid)


def _as_config(config: ProcessConfig | Mapping[str, Any]) -> ProcessConfig:
    if isinstance(config, ProcessConfig):
        return config
    if isinstance(config, Mapping):
        return ProcessConfig.from_dict(config)
    raise InvalidArgument(
        f"expected a ProcessConfig or a dict, got {type(config).__name__}", reason="bad_config"
    )


def _check_env(env: Mapping[str, str] | None) -> dict[str, str] | None:
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


def _as_pid(pid: int | str) -> int:
    if isinstance(pid, bool):
        raise ProcessNotFound(f"bad pid {pid!r}")
    if isinstance(pid, int):
        return pid
    if isinstance(pid, str) and pid.isdigit():
        return int(pid)
    raise ProcessNotFound(f"bad pid {pid!r}")


STATS_MAX_AGE = 60.0  # a pid not read for that long has its CPU reading forgotten
_stats_lock = threading.Lock()
_stats_sampler = Sampler()


def _read_stats(name: str, targets: list[tuple[int, str, int | None]]) -> dict[str, Any]:
    """Runs in a worker thread: one /proc scan for the tree, then each process."""
    tree = descendants_map()
    stats = []
    with _stats_lock:  # the sampler keeps CPU readings: one thread at a time
        for pid, proc_name, os_pid in targets:
            if os_pid is None:
                stats.append({"pid": pid, "name": proc_name, "os_pid": None, "children": []})
            else:
                sample = _stats_sampler.sample(os_pid, descendants(os_pid, tree))
                stats.append({"pid": pid, "name": proc_name, **sample})
        _stats_sampler.prune(STATS_MAX_AGE)
    return summarize(name, stats)


def _as_spawn_error(exc: Exception) -> SpawnError:
    if isinstance(exc, SpawnError):
        return exc
    logger.error("unexpected error while spawning", exc_info=exc)
    return SpawnError(f"cannot spawn: {exc}")


def _spawn_error_msg(job: Job, exc: SpawnError) -> dict[str, Any]:
    return {
        "name": job.name,
        "error": str(exc),
        "errno": exc.os_errno,
        "failures": job.spawn_failures,
    }
