"""``Process``: one OS process of a job, from spawn to reap.

A process runs in its own session, so in its own process group. Stopping it sends SIGTERM
to the whole group and SIGKILL to the group ``graceful_timeout`` seconds later, so its
children go with it. When the leader exits on its own, whatever is left in its group is
stopped the same way (unless the job is detached): a crashed process never leaves orphans
behind for its replacement to fight with.

The process knows nothing of jobs or of the manager: it reports its exit through the
``on_exit`` callback, after the last of its output has been delivered, and the end of its
group and of its escaped descendants through ``on_gone`` (which may come first, when
nothing outlived the leader).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from gaffer.core.childwatch import ChildHandle, ChildWatcher
from gaffer.core.config import ProcessConfig
from gaffer.core.escapees import Escapees
from gaffer.core.groups import GroupWatch, group_exists
from gaffer.core.history import OutputHistory
from gaffer.core.logfile import Writer
from gaffer.core.monitor import StatsMonitor
from gaffer.core.names import parse_signal
from gaffer.core.orphans import DETACHED_MARK
from gaffer.core.pipes import PipeReader, PipeWriter, release_capture_pipes
from gaffer.core.spawn import Command, spawn
from gaffer.core.states import PROCESS_TRANSITIONS, UP, State, allowed
from gaffer.core.stats import Sampler, descendants, descendants_map
from gaffer.core.stdio import Stdio, Stream, close_fds, make_stdio, output_labels, to_bytes
from gaffer.errors import SpawnError, StreamNotFound, StreamNotRedirected

logger = logging.getLogger(__name__)

ALL_LABELS = "."
_EMPTY: Mapping[Any, Any] = MappingProxyType({})  # read-only: replaced by a dict when written

IOListener = Callable[[str, dict], object]
ExitListener = Callable[["Process", int, int], None]
StateListener = Callable[["Process", State, State], None]  # (process, old, new)
NotifyListener = Callable[["Process", dict[str, str]], None]  # sd_notify fields


class Process(Escapees):
    """One OS process of a job.

    Attributes:
        pid: the manager's id for it (from 1, never reused).
        os_pid: the operating system's pid.
        name: the id of its job (``session.name``).
        once: a one-off (committed) process, never restarted.
        state: ``stopped`` until spawned, then ``starting``, ``running`` or ``ready``,
            ``stopping``, ``exited`` (see states.py); each move calls ``on_state``.
    """

    # a manager holds thousands: slots keep each at a few hundred bytes, not 1.6 KiB
    __slots__ = (
        "_enlarged_pipes", "_escaped", "_gone", "_gone_reported", "_group_alive",
        "_group_watch", "_handle", "_history", "_io_listeners", "_kill_timer", "_log_writers",
        "_on_exit", "_on_gone", "_on_notify", "_on_state", "_prepared", "_readers",
        "_stats_monitor", "_stdin", "_watcher", "command", "config", "create_time", "env",
        "exit_status", "graceful_timeout", "held_sinks", "last_exit", "loop", "name", "once",
        "os_pid", "output_labels", "pid", "restarts", "sampler", "slot", "spawned_at", "state",
        "stopping", "streams", "term_signal", "up_since",
    )  # fmt: skip

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        watcher: ChildWatcher,
        pid: int,
        name: str,
        config: ProcessConfig,
        *,
        env: Mapping[str, str],
        command: Command,
        sampler: Sampler,
        stats_monitor: StatsMonitor,
        group_watch: GroupWatch,
        once: bool = False,
        graceful_timeout: float | None = None,
        on_exit: ExitListener | None = None,
        on_gone: Callable[[Process], None] | None = None,
        on_state: StateListener | None = None,
        on_notify: NotifyListener | None = None,
        log_writers: tuple[Writer | None, Writer | None] = (None, None),
        history: OutputHistory | None = None,
        io_listeners: Iterable[tuple[str, IOListener]] = (),
    ) -> None:
        self.loop = loop
        self.sampler = sampler
        self._stats_monitor = stats_monitor
        self._watcher = watcher
        self.pid = pid
        self.name = name
        self.config = config
        self.once = once
        self.slot: int | None = None  # its place among the job's kept-alive processes
        self.graceful_timeout = (
            config.graceful_timeout if graceful_timeout is None else float(graceful_timeout)
        )
        # shared with the job and its other processes: never mutated
        self.env = env
        self._prepared = command
        self.command: Command | None = None
        self.state = State.STOPPED
        self.spawned_at: float | None = None  # loop time
        self.up_since: float | None = None  # loop time it became running (or ready)
        self.restarts = 0  # how many processes held its slot before it, since the job started
        self.last_exit: dict[str, Any] | None = None  # how the one before it ended
        self.os_pid: int | None = None
        self.create_time: float | None = None
        self.exit_status: int | None = None
        self.term_signal: int | None = None
        self.stopping = False
        # empty containers are shared until first written: thousands of sleeping
        # processes need none of them
        self.streams: Mapping[str, Stream] = _EMPTY
        self._on_exit = on_exit
        self._on_gone = on_gone
        self._on_state = on_state
        self._on_notify = on_notify  # ``ready = fd:N``: READY=1 at the first newline
        self._gone_reported = False
        self._handle: ChildHandle | None = None
        self._readers: list[PipeReader] | tuple[()] = ()
        self._stdin: PipeWriter | None = None
        self._io_listeners: Mapping[str, list[IOListener]] = _EMPTY
        self._log_writers = log_writers
        self._history = history  # the job's recent output
        self._group_watch = group_watch
        self._enlarged_pipes = 0
        self.held_sinks: Sequence[Any] = ()  # the log sinks this process keeps open (manager)
        self.output_labels = output_labels(config, log_writers)
        for label, listener in io_listeners:
            self._listeners_of(label).append(listener)
        self._kill_timer: asyncio.TimerHandle | None = None
        self._gone: asyncio.Future[None] | None = None
        self._group_alive = False
        # descendants that left the group, found at stop: pid -> pidfd (None: no pidfds)
        self._escaped: Mapping[int, int | None] = _EMPTY

    # -- spawn ---------------------------------------------------------------------------
    def spawn(self) -> None:
        """Start the OS process. Raises SpawnError, leaving nothing open behind."""
        command = self._prepared
        if self.config.detach:  # its orphans carry the mark: they are left running too
            command = dataclasses.replace(command, env={**command.env, DETACHED_MARK: self.name})
        try:
            stdio = make_stdio(self.config, self.output_labels, self._log_writers)
        except OSError as exc:  # pipes or sockets could not be made (EMFILE...)
            raise SpawnError(
                f"cannot give the process its pipes: {exc.strerror or exc}", os_errno=exc.errno
            ) from None
        self._enlarged_pipes = stdio.enlarged
        try:
            os_pid = spawn(
                command,
                stdin=stdio.stdin,
                stdout=stdio.stdout,
                stderr=stdio.stderr,
                extra_fds=stdio.extra,
                mapped_fds=stdio.mapped,
            )
        except BaseException:
            stdio.close_all()
            self._enlarged_pipes = 0
            raise
        try:
            self._watch(os_pid, command, stdio)
        except BaseException as exc:
            # the child runs but cannot be watched: it must not run untracked
            _kill_and_reap(os_pid)
            self._handle = None
            close_fds([stdio.stdin_w, stdio.ready_read, *(output[1] for output in stdio.outputs)])
            stdio.close_sockets()
            self._enlarged_pipes = 0
            raise SpawnError(f"cannot watch the process: {exc}") from None
        close_fds(stdio.child)
        self.spawned_at = self.loop.time()  # the runner moves it to starting

    def adopt(
        self, os_pid: int, pidfd: int, foreign: str | None, stdio: Stdio, create_time: float
    ) -> None:
        """Take over a process a previous life of the manager spawned (handover.py), with
        the descriptors it kept of it (``stdio``); ``pidfd`` and ``foreign`` as for
        ``ChildWatcher.adopt``."""
        self._enlarged_pipes = stdio.enlarged
        self._watch(os_pid, self._prepared, stdio, (pidfd, foreign))
        self.create_time = create_time

    def _watch(
        self, os_pid: int, command: Command, stdio: Stdio, adopted: tuple | None = None
    ) -> None:
        self.command = command
        self.os_pid = os_pid
        self.create_time = time.time()
        if adopted is None:
            self._handle = self._watcher.watch(os_pid, self._exited)
        else:
            self._handle = self._watcher.adopt(os_pid, adopted[0], self._exited, adopted[1])
        if self.config.redirect_input:
            self._stdin = PipeWriter(self.loop, stdio.stdin_w)
        for label, read_fd, writer, stream in stdio.outputs:
            reader = PipeReader(self.loop, read_fd, _Route(self, label, writer, stream))
            if writer is not None:
                writer.reader = reader  # the log pauses it when it cannot keep up
            self._readers = [*self._readers, reader]
        if stdio.ready_read >= 0:
            self._readers = [*self._readers, self._ready_pipe(stdio.ready_read)]
        if stdio.sockets:
            self.streams = {}
        for label, child_fd, ours, theirs in stdio.sockets:
            if theirs is not None:  # None: adopted, the child's end is the child's alone
                theirs.close()
            self.streams[label] = Stream(self, label, child_fd, ours)

    def _ready_pipe(self, fd: int) -> PipeReader:
        """``ready = fd:N``: the first newline the process writes there says it is ready."""

        def on_data(data: bytes) -> None:
            if b"\n" in data and not reader.closed:
                reader.close()
                if self._on_notify is not None:
                    self._on_notify(self, {"READY": "1"})

        reader = PipeReader(self.loop, fd, on_data)
        return reader

    # -- state ---------------------------------------------------------------------------
    @property
    def log_writers(self) -> tuple[Writer | None, Writer | None]:
        """The writers of its stdout and stderr to the job's log files (None: none)."""
        return self._log_writers

    def notified(self, fields: dict[str, str]) -> None:
        """An ``sd_notify`` message from the process (or one of its own)."""
        if self._on_notify is not None:
            self._on_notify(self, fields)

    def set_state(self, new: State) -> None:
        """Move to ``new`` (a move the table refuses raises InvalidStateTransition)."""
        old = self.state
        if new is old:
            return
        allowed(PROCESS_TRANSITIONS, old, new, f"process {self.pid} of {self.name}")
        self.state = new
        if new in UP and self.up_since is None:
            self.up_since = self.loop.time()
        if self._on_state is not None:
            self._on_state(self, old, new)

    @property
    def active(self) -> bool:
        return self._handle is not None and not self._handle.exited

    @property
    def cmd(self) -> str:
        return self.config.cmd

    @property
    def args(self) -> list[str]:
        return list(self.command.argv[1:]) if self.command else list(self.config.args)

    @property
    def info(self) -> dict[str, Any]:
        config = self.config
        return {
            "pid": self.pid,
            "name": self.name,
            "os_pid": self.os_pid,
            "cmd": config.cmd,
            "args": self.args,
            "env": dict(self.env),
            "uid": config.uid,
            "gid": config.gid,
            "cwd": config.cwd,
            "create_time": self.create_time,
            "commited": self.once,
            "once": self.once,
            "redirect_output": list(config.redirect_output),
            "output_labels": [label for label in self.output_labels if label],
            "redirect_input": config.redirect_input,
            "custom_streams": list(config.custom_streams),
            "slot": self.slot,
            "active": self.active,
            "state": str(self.state),
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "stopping": self.stopping,
            "detach": config.detach,
        }

    def summary(self) -> dict[str, Any]:
        """What a listing shows of it (``info()["process_info"]`` of its job)."""
        return {
            "pid": self.pid,
            "os_pid": self.os_pid,
            "state": str(self.state),
            "create_time": self.create_time,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "once": self.once,
        }

    @property
    def stats(self) -> dict[str, Any]:
        """CPU, memory and the same for every descendant, read now (see stats.py)."""
        return self.read_stats(descendants_map())

    def read_stats(self, tree: Mapping[int, list[int]]) -> dict[str, Any]:
        if self.os_pid is None:
            return {"pid": self.pid, "name": self.name, "os_pid": None, "children": []}
        sample = self.sampler.sample(self.os_pid, descendants(self.os_pid, tree))
        return {"pid": self.pid, "name": self.name, **sample}

    def monitor(self, listener: Callable[[str, dict], object]) -> None:
        """Call ``listener("stat", msg)`` with this process's stats every monitor interval."""
        self._stats_monitor.add(self.pid, listener)

    def unmonitor(self, listener: Callable[[str, dict], object]) -> None:
        self._stats_monitor.remove(self.pid, listener)

    def __repr__(self) -> str:
        return f"<Process {self.name} pid={self.pid} os_pid={self.os_pid} {self.state}>"

    # -- signals -------------------------------------------------------------------------
    def kill(self, sig: int | str) -> bool:
        """Send ``sig`` to the process (not its group). False if it already exited."""
        if self._handle is None:
            return False
        return self._handle.send_signal(parse_signal(sig))

    send_signal = kill

    def stop(self) -> None:
        """The job's stop signal (SIGTERM by default) to the process group now, SIGKILL to
        it after ``graceful_timeout``."""
        if self.stopping or self._handle is None:
            return
        self.stopping = True
        if not self.active:
            return
        self.set_state(State.STOPPING)
        self._find_escaped()
        stop_signal = parse_signal(self.config.stop_signal)
        self._signal_group(stop_signal)
        self._signal_escaped(stop_signal)
        self._kill_timer = self.loop.call_later(self.graceful_timeout, self._kill_group)

    def _signal_group(self, sig: int) -> bool:
        try:
            os.killpg(self.os_pid, sig)
        except ProcessLookupError:
            return False
        except PermissionError:
            # a group we may not signal as a whole: at least reach the leader
            return self._handle.send_signal(sig) if self._handle else False
        return True

    def _kill_group(self) -> None:
        self._kill_timer = None
        if self.active or self._group_alive or self._escaped:
            logger.info(
                "%s pid=%s os_pid=%s did not stop within %.1fs: SIGKILL",
                self.name,
                self.pid,
                self.os_pid,
                self.graceful_timeout,
            )
        self._signal_group(signal.SIGKILL)
        self._signal_escaped(signal.SIGKILL)
        if self.active and self._handle is not None:
            self._handle.send_signal(signal.SIGKILL)
        for pid in [pid for pid, pidfd in self._escaped.items() if pidfd is None]:
            self._drop_escaped(pid)  # no way to wait for them: SIGKILL is the last word
        self._check_gone()

    # -- exit ----------------------------------------------------------------------------
    def _exited(self, exit_status: int, term_signal: int) -> None:
        self.exit_status, self.term_signal = exit_status, term_signal
        self._close_io(drain=True)
        self.set_state(State.EXITED)
        lingering = not self.config.detach and group_exists(self.os_pid)
        self._group_alive = lingering
        if not lingering:
            self._end_group_watch()
        try:
            if self._on_exit is not None:
                self._on_exit(self, exit_status, term_signal)  # respawn first, clean up after
        finally:
            if lingering:
                self._watch_group()

    def _watch_group(self) -> None:
        """The leader is gone but its group is not: stop what is left (SIGTERM now unless
        a stop already sent it, SIGKILL at the deadline) and wait for it to be gone."""
        if not self.stopping:
            self._signal_group(signal.SIGTERM)
            self._kill_timer = self.loop.call_later(self.graceful_timeout, self._kill_group)
        if self._group_watch is None:
            self._group_watch = GroupWatch(self.loop)
        self._group_watch.add(self.os_pid, self._end_group_watch)

    def _end_group_watch(self) -> None:
        self._group_alive = False
        self._check_gone()

    def _check_gone(self) -> None:
        if self._gone_reported or not self.gone:
            return
        self._gone_reported = True
        if self._kill_timer is not None:
            self._kill_timer.cancel()
            self._kill_timer = None
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)
        if self._on_gone is not None:
            try:
                self._on_gone(self)
            except Exception:
                logger.exception("gone callback failed for %s", self)

    @property
    def gone(self) -> bool:
        """True once the process has exited and nothing is left in its group."""
        return (
            self._handle is not None
            and not self.active
            and not self._group_alive
            and not self._escaped
        )

    async def wait_gone(self) -> None:
        if self._handle is None or self.gone:
            return
        if self._gone is None:
            self._gone = self.loop.create_future()
        await asyncio.shield(self._gone)

    def forget(self) -> None:
        """Leave a detached process running on its own: stop watching it (the reaping is
        handed to a background thread) and close our ends of its pipes."""
        if self.os_pid is not None:
            self._watcher.forget(self.os_pid)
        for pid in list(self._escaped):
            self._drop_escaped(pid)
        self._close_io(drain=False)

    def _close_io(self, drain: bool) -> None:
        """Close our ends of the child's pipes, reading what is left first if ``drain``."""
        for reader in self._readers:
            if drain:
                reader.drain()
            else:
                reader.close()
        for stream in self.streams.values():
            stream.close()
        if self._stdin is not None:
            self._stdin.close()
        release_capture_pipes(self._enlarged_pipes)
        self._enlarged_pipes = 0

    # -- output --------------------------------------------------------------------------
    def monitor_io(self, label: str, listener: IOListener) -> None:
        """Call ``listener(label, msg)`` with every chunk of output of ``label`` ("." for
        every label); ``msg`` is ``{"event", "name", "pid", "os_pid", "data"}``."""
        if label != ALL_LABELS and label not in self.labels():
            raise StreamNotFound(
                f"pid {self.pid} has no stream {label!r}; it has "
                f"{', '.join(sorted(self.labels())) or 'none'}"
            )
        listeners = self._listeners_of(label)
        if listener not in listeners:
            listeners.append(listener)

    def _listeners_of(self, label: str) -> list[IOListener]:
        if self._io_listeners is _EMPTY:
            self._io_listeners = {}
        return self._io_listeners.setdefault(label, [])

    def unmonitor_io(self, label: str, listener: IOListener) -> None:
        listeners = self._io_listeners.get(label)
        if listeners and listener in listeners:
            listeners.remove(listener)

    def labels(self) -> set[str]:
        outputs = {label for label in self.output_labels if label is not None}
        return outputs | set(self.config.custom_streams)

    def dispatch(self, label: str, data: bytes) -> None:
        listeners = self._io_listeners
        targets = listeners.get(label, []) + listeners.get(ALL_LABELS, [])
        if not targets:
            return
        msg = {
            "event": label,
            "name": self.name,
            "pid": self.pid,
            "os_pid": self.os_pid,
            "data": data,
        }
        for listener in list(targets):
            try:
                listener(label, msg)
            except Exception:
                logger.exception("io listener %r failed for %s", listener, self.name)

    # -- input ---------------------------------------------------------------------------
    def write(self, data: bytes | str) -> None:
        """Write to the process's stdin, from any thread, in order."""
        if not self.config.redirect_input:
            raise StreamNotRedirected(
                f"stdin of pid {self.pid} ({self.name}) is not "
                "redirected: load the job with redirect_input=True"
            )
        self.call_on_loop(self._write_stdin, to_bytes(data))

    def writelines(self, lines: Iterable[bytes | str]) -> None:
        self.write(b"".join(to_bytes(line) for line in lines))

    def _write_stdin(self, data: bytes) -> None:
        if self._stdin is None or self._stdin.closed:
            raise BrokenPipeError(f"stdin of pid {self.pid} is closed")
        self._stdin.write(data)

    def call_on_loop(self, func: Callable[[bytes], None], data: bytes) -> None:
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = not self.loop.is_running()
        if on_loop:
            func(data)
        else:
            self.loop.call_soon_threadsafe(_logged, func, data)


def _kill_and_reap(os_pid: int) -> None:
    try:
        os.killpg(os_pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        os.waitpid(os_pid, 0)
    except ChildProcessError:
        pass


def _logged(func: Callable[[bytes], None], data: bytes) -> None:
    try:
        func(data)
    except OSError as exc:
        logger.warning("write failed: %s", exc)


class _Route:
    """Where each chunk a process writes goes: its log, its job's history, its listeners,
    each step apart, so a failing log loses nothing else. A slotted object, not a closure:
    a few dozen bytes per stream instead of 700 (a function, its cells, bound methods)."""

    __slots__ = ("label", "proc", "stream", "writer")

    def __init__(self, proc: Process, label: str, writer: Writer | None, stream: str) -> None:
        self.proc, self.label, self.writer, self.stream = proc, label, writer, stream

    def __call__(self, data: bytes) -> None:
        proc = self.proc
        try:
            if self.writer is not None:
                self.writer.write(data)
        finally:
            if proc._history is not None:
                proc._history.add(proc.pid, proc.os_pid, self.stream, data)
            proc.dispatch(self.label, data)
