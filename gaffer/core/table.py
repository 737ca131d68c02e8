"""``ProcessTable``: every process of a manager by internal pid, and what spawning one takes.

The runners of all jobs share one table: it hands out internal pids (from 1, never
reused), builds ``Process`` objects with the manager's machinery (the child watcher, the
one stats sampler, the group watch, the guard, the output listeners) and keeps the
processes that run (``running``) and those stopped but not gone yet (``stopping``, which
the manager's stop waits for). It decides nothing: runners do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from gaffer.core.childwatch import ChildWatcher
from gaffer.core.config import ProcessConfig
from gaffer.core.groups import GroupWatch
from gaffer.core.history import OutputHistory
from gaffer.core.logfile import LogSink, SinkRegistry
from gaffer.core.monitor import StatsMonitor
from gaffer.core.notify import NotifySocket
from gaffer.core.process import ExitListener, NotifyListener, Process, StateListener
from gaffer.core.procfs import proc_stat
from gaffer.core.spawn import Command
from gaffer.core.stats import Sampler
from gaffer.errors import InvalidArgument

if TYPE_CHECKING:
    from gaffer.core.guard import Guard

logger = logging.getLogger(__name__)

IOListener = Callable[[str, dict], object]


class ProcessTable:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sampler: Sampler,
        monitor: StatsMonitor,
        sinks: SinkRegistry,
    ) -> None:
        self.loop = loop
        self.watcher = ChildWatcher(loop)
        self.groups = GroupWatch(loop)
        self.sampler = sampler
        self.monitor = monitor
        self.sinks = sinks
        self.running: dict[int, Process] = {}
        self.stopping: dict[int, Process] = {}  # stopped or exited, their group not gone
        self.io_watchers: list[tuple[str | None, str, IOListener]] = []
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
        proc = Process(
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
            log_writers=(sinks[0] and sinks[0].writer(pid), sinks[1] and sinks[1].writer(pid)),
            history=history,
            io_listeners=[
                (label, listener)
                for job, label, listener in self.io_watchers
                if job in (None, name)
            ],
        )
        proc.slot = slot
        proc.spawn()
        if config.detach:
            self.detached_sessions.add(proc.os_pid)
        elif self.guard is not None:
            self.guard.add(proc.os_pid)
        proc.held_sinks = tuple(sink for sink in sinks if sink is not None)
        for sink in proc.held_sinks:
            self.sinks.retain(sink)
        self._next_pid = pid + 1
        self.running[pid] = proc
        return proc

    def exited(self, proc: Process) -> bool:
        """Book the exit of ``proc``; False when it was no longer listed as running."""
        listed = self.running.pop(proc.pid, None) is not None
        if proc.os_pid is not None:
            self.sampler.discard(proc.os_pid)
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
        proc.stop()

    def forget_detached(self, proc: Process) -> None:
        """Leave a detached process running on its own (the manager stops)."""
        self.running.pop(proc.pid, None)
        proc.forget()
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
                    None if target is None else self.sinks.acquire(target, name, **settings)
                )
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

    def __repr__(self) -> str:
        return f"<ProcessTable running={len(self.running)} stopping={len(self.stopping)}>"


def describe(proc: Process) -> dict[str, Any]:
    """The fields every process event carries."""
    return {"name": proc.name, "pid": proc.pid, "os_pid": proc.os_pid}
