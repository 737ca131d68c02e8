"""``ProcessTable``: every process of a manager by internal pid, and what spawning one takes.

The runners of all jobs share one table: it hands out internal pids (from 1, never
reused), builds ``Process`` objects with the manager's machinery (the child watcher, the
one stats sampler, the group watch, the guard, the output listeners) and keeps the
processes that run (``running``) and those stopped but not gone yet (``stopping``, which
the manager's stop waits for). It decides nothing: runners do.

It also wires each process's output: the job's log sinks (and, for streams no log file
takes, the manager's ``output`` choice: inherited (unless redirected), written to the
console, or captured for the history only), the job's history, and the lifecycle markers
written into the job's logs (``spawned pid N`` after a spawn, ``exited with 3`` after
the exit).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from gaffer.core import logformat
from gaffer.core.childwatch import ChildWatcher
from gaffer.core.config import ProcessConfig
from gaffer.core.groups import GroupWatch
from gaffer.core.history import LineFollower, OutputHistory
from gaffer.core.logfile import LogSink, LogTarget, Writer
from gaffer.core.logsinks import NULL_SINK, SinkRegistry
from gaffer.core.monitor import StatsMonitor
from gaffer.core.notify import NotifySocket
from gaffer.core.process import ExitListener, NotifyListener, Process, StateListener
from gaffer.core.procfs import proc_stat
from gaffer.core.ratelimit import RateLimiter
from gaffer.core.spawn import Command
from gaffer.core.stats import Sampler
from gaffer.errors import InvalidArgument

if TYPE_CHECKING:
    from gaffer.core.guard import Guard

logger = logging.getLogger(__name__)

IOListener = Callable[[str, dict], object]
# what happens to a stream no log file takes (the manager's ``output``)
OUTPUTS = ("inherit", "console", "capture")


class ProcessTable:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sampler: Sampler,
        monitor: StatsMonitor,
        sinks: SinkRegistry,
        output: str = "inherit",
    ) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        self.loop = loop
        self.watcher = ChildWatcher(loop)
        self.groups = GroupWatch(loop)
        self.sampler = sampler
        self.monitor = monitor
        self.sinks = sinks
        self.running: dict[int, Process] = {}
        self.stopping: dict[int, Process] = {}  # stopped or exited, their group not gone
        self.io_watchers: list[tuple[str | None, str, IOListener]] = []
        self.output = output
        self.followers: list[LineFollower] = []  # of every job's output (a shared list)
        # running processes: the writers their markers go to, and their job's history
        self._outputs: dict[int, tuple[tuple[Writer, ...], OutputHistory | None]] = {}
        self._stop_times: dict[int, float] = {}  # pid -> when gaffer began stopping it
        self.warnings = RateLimiter()  # the runners' repeated warnings, one a minute a job
        self.guard: Guard | None = None
        self.detached_sessions: set[int] = set()  # their orphans are left running too
        self._next_pid = 1
        self._gone_callback = self._gone  # bound once: every process holds it
        self._notify: NotifySocket | None = None  # made for the first job that wants it

    def new_process(
        self,
        name: str,
        config: ProcessConfig,
        env: Mapping[str, str],
        command: Command,
        *,
        once: bool,
        slot: int | None,
        graceful_timeout: float | None,
        sinks: tuple[LogSink | None, LogSink | None],
        history: OutputHistory | None,
        on_exit: ExitListener,
        on_state: StateListener | None,
        on_notify: NotifyListener | None = None,
    ) -> Process:
        """Spawn a process of job ``name`` and list it as running. Raises SpawnError,
        leaving nothing behind (its pid is not used up)."""
        pid = self._next_pid
        proc = self.make_process(
            pid,
            name,
            config,
            env,
            command,
            once=once,
            graceful_timeout=graceful_timeout,
            sinks=sinks,
            history=history,
            on_exit=on_exit,
            on_state=on_state,
            on_notify=on_notify,
        )
        proc.slot = slot
        proc.spawn()
        if config.detach:
            self.detached_sessions.add(proc.os_pid)
        elif self.guard is not None:
            self.guard.add(proc.os_pid)
        if self.guard is not None:
            self.guard.hold(proc)  # the keeper holds its pipes (on_daemon_crash = keep)
        self.hold_sinks(proc, sinks)
        self._next_pid = pid + 1
        self.running[pid] = proc
        self.mark_output(proc, sinks, history, spawned=True)
        return proc

    def make_process(
        self,
        pid: int,
        name: str,
        config: ProcessConfig,
        env: Mapping[str, str],
        command: Command,
        *,
        once: bool,
        graceful_timeout: float | None,
        sinks: tuple[LogSink | None, LogSink | None],
        history: OutputHistory | None,
        on_exit: ExitListener,
        on_state: StateListener | None,
        on_notify: NotifyListener | None = None,
    ) -> Process:
        """A ``Process`` with the manager's machinery, not spawned yet (or to adopt)."""
        writers = tuple(
            None
            if sink is None
            else sink.writer(pid, name, stream, config.log_format, config.log_timestamps)
            for sink, stream in zip(sinks, ("stdout", "stderr"), strict=True)
        )
        if history is not None:  # followers of every job hear of this one
            history.name, history.hub = name, self.followers
        return Process(
            self.loop,
            self.watcher,
            pid,
            name,
            config,
            env=env,
            command=command,
            once=once,
            graceful_timeout=graceful_timeout,
            on_exit=on_exit,
            on_gone=self._gone_callback,
            on_state=on_state,
            on_notify=on_notify,
            sampler=self.sampler,
            group_watch=self.groups,
            stats_monitor=self.monitor,
            log_writers=writers,  # type: ignore[arg-type]
            history=history,
            io_listeners=[
                (label, listener)
                for job, label, listener in self.io_watchers
                if job in (None, name)
            ],
        )

    def hold_sinks(self, proc: Process, sinks: tuple[LogSink | None, LogSink | None]) -> None:
        proc.held_sinks = tuple(sink for sink in sinks if sink is not None)
        for sink in proc.held_sinks:
            self.sinks.retain(sink)

    def mark_output(
        self,
        proc: Process,
        sinks: tuple[LogSink | None, LogSink | None],
        history: OutputHistory | None,
        spawned: bool,
    ) -> None:
        """Where the exit marker of ``proc`` goes (and, for a new process, the spawn
        marker now): one writer per log file of its job, with ``log_markers``."""
        marked = _one_per_sink(proc.log_writers, sinks) if proc.config.log_markers else ()
        if spawned:
            for writer in marked:
                writer.marker(logformat.spawned(proc.os_pid))
        self._outputs[proc.pid] = (marked, history)

    def exited(self, proc: Process) -> bool:
        """Book the exit of ``proc``; False when it was no longer listed as running."""
        listed = self.running.pop(proc.pid, None) is not None
        if proc.os_pid is not None:
            self.sampler.discard(proc.os_pid)
            if self.guard is not None:
                self.guard.drop(proc.os_pid)
        self._ended(proc)
        self.release_sinks(proc.held_sinks)
        proc.held_sinks = ()
        if not proc.gone:
            self.stopping[proc.pid] = proc  # its group lingers: the manager's stop waits
        return listed

    def stop(self, proc: Process) -> None:
        """Unlist ``proc`` and stop it (SIGTERM to its group, SIGKILL later)."""
        self.running.pop(proc.pid, None)
        if not proc.gone:
            self.stopping[proc.pid] = proc
        if proc.active and proc.pid in self._outputs:
            self._stop_times.setdefault(proc.pid, time.monotonic())
        proc.stop()

    def _ended(self, proc: Process) -> None:
        """The exit marker in the job's logs; the end of its unfinished lines for the
        followers of its output."""
        writers, history = self._outputs.pop(proc.pid, ((), None))
        stopped_at = self._stop_times.pop(proc.pid, None)
        if writers:
            text = logformat.exited(
                proc.exit_status or 0,
                proc.term_signal or 0,
                None if stopped_at is None else time.monotonic() - stopped_at,
            )
            for writer in writers:
                writer.marker(text)
        if history is not None:
            history.end(proc.pid)

    def forget_detached(self, proc: Process) -> None:
        """Leave a detached process running on its own (the manager stops)."""
        self.running.pop(proc.pid, None)
        self._outputs.pop(proc.pid, None)
        self._stop_times.pop(proc.pid, None)
        proc.forget()
        if self.guard is not None and proc.os_pid is not None:
            self.guard.drop(proc.os_pid)
        self.release_sinks(proc.held_sinks)
        proc.held_sinks = ()
        logger.info(
            "%s pid=%d os_pid=%s is detached: left running", proc.name, proc.pid, proc.os_pid
        )

    def _gone(self, proc: Process) -> None:
        """The process, its group and its escaped descendants are all gone."""
        self.stopping.pop(proc.pid, None)
        if self.guard is not None and not proc.config.detach and proc.os_pid is not None:
            self.guard.remove(proc.os_pid)

    async def wait_stopped(self) -> None:
        pending = [proc.wait_gone() for proc in list(self.stopping.values())]
        if pending:
            await asyncio.gather(*pending)

    # -- log files -------------------------------------------------------------------------
    def acquire_sinks(
        self, name: str, config: ProcessConfig
    ) -> tuple[LogSink | None, LogSink | None]:
        """The log sinks of a job's config (opened now: a bad path fails the load)."""
        if config.detach:  # a detached process writes its log files itself
            return None, None
        targets = list(config.log_targets)
        max_total = config.log_max_total
        files = {target.key for target in targets if target is not None and target.kind == "file"}
        if len(files) == 2:  # the job's budget, shared by its two files
            max_total //= 2
        settings = {
            "max_bytes": config.logfile_max_bytes,
            "backups": config.logfile_backups,
            "buffer_bytes": config.logfile_buffer_bytes,
            "rotate": config.log_rotate,
            "max_total": max_total,
        }
        for index, target in enumerate(targets):
            if target is not None:
                continue
            # a stream no log file takes: on the console (redirected or not: its job has
            # no other log), or captured for the history (redirected ones are already)
            if self.output == "console":
                targets[index] = LogTarget.console()
            elif self.output == "capture" and len(config.redirect_output) <= index:
                targets[index] = NULL_SINK.target
        sinks: list[LogSink | None] = []
        try:
            for target in targets:
                if target is None:
                    sinks.append(None)
                elif target is NULL_SINK.target:
                    sinks.append(NULL_SINK)
                else:
                    sinks.append(self.sinks.acquire(target, name, **settings))
        except ValueError as exc:
            self.release_sinks(sinks)
            raise InvalidArgument(f"job {name!r}: {exc}", reason="bad_logfile") from None
        return sinks[0], sinks[1]

    def release_sinks(self, sinks: Iterable[LogSink | None]) -> None:
        for sink in sinks:
            if sink is not None:
                self.sinks.release(sink)

    # -- output listeners ------------------------------------------------------------------
    def add_io_watcher(self, job: str | None, label: str, listener: IOListener) -> None:
        self.io_watchers.append((job, label, listener))
        for proc in self.running.values():
            if job in (None, proc.name) and (label == "." or label in proc.labels()):
                proc.monitor_io(label, listener)

    def remove_io_watcher(self, job: str | None, label: str, listener: IOListener) -> None:
        self.io_watchers = [watch for watch in self.io_watchers if watch != (job, label, listener)]
        for proc in self.running.values():
            if job in (None, proc.name):
                proc.unmonitor_io(label, listener)

    # -- sd_notify --------------------------------------------------------------------------
    def notify_address(self) -> str:
        """The address of the manager's ``NOTIFY_SOCKET`` (made at the first call)."""
        if self._notify is None:
            self._notify = NotifySocket(self.loop, self._notified)
        return self._notify.address

    def _notified(self, os_pid: int, fields: dict[str, str]) -> None:
        """A datagram from ``os_pid``: one of ours, or in the group one of ours leads."""
        proc = self._by_os_pid(os_pid)
        if proc is None:
            stat = proc_stat(os_pid)
            proc = self._by_os_pid(stat.pgid) if stat is not None else None
        if proc is not None:
            proc.notified(fields)

    def _by_os_pid(self, os_pid: int) -> Process | None:
        for proc in self.running.values():  # rare messages: a scan beats an index per process
            if proc.os_pid == os_pid:
                return proc
        return None

    def guard_group(self, pgid: int, added: bool) -> None:
        """Register (or not) a short-lived group of ours, a probe's, with the guard."""
        if self.guard is not None:
            (self.guard.add if added else self.guard.remove)(pgid)

    def close(self) -> None:
        self.groups.close()
        self.watcher.close()  # its epoll set: watched again if the manager starts again
        if self._notify is not None:
            self._notify.close()
            self._notify = None
        self.sampler.close()  # the descriptors kept for /metrics (usage.py)

    def __repr__(self) -> str:
        return f"<ProcessTable running={len(self.running)} stopping={len(self.stopping)}>"


def _one_per_sink(
    writers: tuple[Writer | None, ...], sinks: tuple[LogSink | None, ...]
) -> tuple[Writer, ...]:
    """The writers markers go through: one per log (stdout and stderr often share one),
    none for output captured for the history only, and the console only when it is the
    job's only log (a job logging its stdout to a file marks that file, not the console
    its stderr goes to)."""
    out: list[Writer] = []
    seen: list[LogSink] = []
    for writer, sink in zip(writers, sinks, strict=True):
        if writer is not None and sink is not None and sink is not NULL_SINK and sink not in seen:
            seen.append(sink)
            out.append(writer)
    if any(not writer.console for writer in out):
        out = [writer for writer in out if not writer.console]
    return tuple(out)


def describe(proc: Process) -> dict[str, Any]:
    """The fields every process event carries."""
    return {"name": proc.name, "pid": proc.pid, "os_pid": proc.os_pid}
