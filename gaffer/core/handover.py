"""Handing a running manager over to its next life, its processes kept running.

gafferd restarts (or upgrades) itself by ``exec``-ing a fresh gafferd in its own process
(gafferd/handover.py): the same pid, so every child stays its child (``waitpid`` still
works, no exit status is lost), and every descriptor not marked close-on-exec survives:
the pipes' read ends, the pidfds, the guard's pipe, the notification socket. What does
not survive is Python's memory, so before the exec the manager is *frozen* and
*described* (``freeze``): nothing is read from the pipes any more (a child writing
meanwhile fills its pipe, then blocks until the next life reads), what was read is
written to the log files, and the jobs, their counters, timers and processes are written
as plain data (JSON-able) with the numbers of the descriptors to keep. After the exec,
``restore`` (adopt.py) rebuilds the same jobs and adopts the same processes, by the same
internal pids, before ``start()``.

Clock values are the loop's (``CLOCK_MONOTONIC``, uvloop's and asyncio's alike), which an
exec does not reset, so deadlines carry over as they are.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gaffer.core.guard import Guard
from gaffer.core.keeper import Keeper
from gaffer.core.pipes import CAPTURE_PIPE_SIZE
from gaffer.core.spawn import Command
from gaffer.errors import HandoverError

if TYPE_CHECKING:
    from gaffer.core.process import Process
    from gaffer.core.runner import JobRunner
    from gaffer.core.table import ProcessTable

logger = logging.getLogger(__name__)

FORMAT = 1  # the version of the description; a next life refuses one it does not know
FLUSH_TIMEOUT = 5.0  # seconds the log files may take to take what was read
F_GETPIPE_SZ = 1032


class Handover:
    """``freeze`` and ``restore``, mixed into ``Manager``."""

    _table: ProcessTable
    _jobs: dict[str, JobRunner]
    _orphans: Any
    exit_code: int | None

    def freeze(self) -> tuple[dict[str, Any], list[int]]:
        """Stop reading the processes' output, flush the log files, and describe the
        manager for its next life: the description and the descriptors it names (the
        caller makes them survive the exec). ``thaw()`` undoes it if the exec fails.
        Raises HandoverError when the manager cannot be handed over."""
        table = self._table
        procs = [*table.running.values(), *table.stopping.values()]
        channels = [job for job, runner in self._jobs.items() if runner.config.custom_channels]
        if channels:
            raise HandoverError(
                f"jobs with custom_channels cannot be handed over: {', '.join(channels)}"
            )
        for proc in procs:
            _pause(proc)
        if self._orphans is not None:
            self._orphans.pause()
        self._end_probes({proc.os_pid for proc in procs})
        if not table.sinks.flush_now(FLUSH_TIMEOUT):
            logger.warning("log files did not take everything within %.0f s", FLUSH_TIMEOUT)
        return self._describe(procs)

    def _end_probes(self, ours: set[int | None]) -> None:
        """The other children watched are ``exec:`` probes (checks.py): their tasks end
        with the exec, the next gafferd runs them again. They are killed now, and let go
        by the guard (the subreaper of the next gafferd reaps them)."""
        table = self._table
        guard = table.guard
        keep = ours | {getattr(guard, "pid", None)}
        for pid in table.watcher.watched():
            if pid in keep:
                continue
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            if guard is not None and pid in guard:
                guard.remove(pid)

    def thaw(self) -> None:
        """The exec failed: read again."""
        for proc in [*self._table.running.values(), *self._table.stopping.values()]:
            for reader in _readers(proc):
                reader.resume()
        if self._orphans is not None:
            self._orphans.start()

    def _describe(self, procs: list[Process]) -> tuple[dict[str, Any], list[int]]:
        table = self._table
        out = _Out()
        by_job: dict[str, list[dict[str, Any]]] = {}
        for proc in procs:
            record = out.process(proc)
            record["listed"] = proc.pid in table.running
            if proc.name not in self._jobs:  # a job unloaded, its processes still stopping
                record["config"] = proc.config.to_dict()
            by_job.setdefault(proc.name, []).append(record)
        state: dict[str, Any] = {
            "format": FORMAT,
            "time": time.time(),
            "next_pid": table._next_pid,
            "exit_code": self.exit_code,
            "detached_sessions": sorted(table.detached_sessions),
            "forgotten": table.watcher.forgotten,
            "jobs": [_runner(runner, by_job.pop(name, [])) for name, runner in self._jobs.items()],
            "unloaded": [proc for procs in by_job.values() for proc in procs],
            "sampler": [[pid, *value] for pid, value in table.sampler._previous.items()],
        }
        if table.guard is not None:
            state["guard"], fds = table.guard.export()
            out.fds += fds
        if table._notify is not None:
            state["notify"] = [table._notify.fileno, table._notify.address]
            out.fds.append(table._notify.fileno)
        if self._orphans is not None:
            state["orphans"], fds = self._orphans.export()
            out.fds += fds
        state["envs"], state["commands"] = out.envs, out.commands
        state["fds"] = out.fds
        return state, out.fds

    def restore(self, state: dict[str, Any]) -> dict[str, int]:
        """Before ``start()``: rebuild the jobs of a description ``freeze`` made in a
        previous life of the manager, and adopt its processes. Returns counts."""
        from gaffer.core.adopt import restore

        return restore(self, state)

    def use_keeper(self, fd: int, receive: bool) -> tuple[Keeper, list[dict], dict]:
        """Before ``start()``: the keeper (keeper.py) on descriptor ``fd`` takes the
        guard's place. With ``receive``, what it holds is read first (records, and its
        ``end`` message); the internal pids go on after those it knew."""
        keeper = self._table.guard = Keeper(
            self._table.loop, self._table.watcher, fd, on_lost=self._keeper_lost
        )
        held: tuple[list[dict], dict] = ([], {})
        if receive:
            held = keeper.receive_held()
            self._table._next_pid = max(self._table._next_pid, held[1].get("next_pid", 1))
        keeper.start()
        return keeper, *held

    def _keeper_lost(self, keeper: Keeper) -> None:
        """The keeper died: a guard takes its place; the processes adopted from it are
        watched through their pidfds from now on (their exit statuses are unknown)."""
        table = self._table
        if table.guard is keeper and getattr(self, "started", False):
            guard = table.guard = Guard(table.loop, table.watcher, on_restart=self._publish)
            for pgid, count in keeper.groups.items():
                for _ in range(count):
                    guard.add(pgid)
        for handle in table.watcher.foreign_handles():
            table.watcher.watch_unknown(handle)

    def adopt(self, name: str, records: list[dict[str, Any]]) -> list[int]:
        """Adopt processes a previous gafferd started (and did not hand over) into the
        job ``name``, loaded and not started yet: see ``adopt.adopt_into``. Returns
        their internal pids; those gone are left out."""
        from gaffer.core.adopt import adopt_into

        return adopt_into(self, name, records)


class _Out:
    """What a description gathers: shared environments and command lines (a job's
    processes share theirs: 1,000 of them are written once), and descriptors."""

    def __init__(self) -> None:
        self.fds: list[int] = []
        self.envs: list[dict[str, str]] = []
        self.commands: list[dict[str, Any]] = []
        self._env_index: dict[int, int] = {}
        self._command_index: dict[int, int] = {}

    def env(self, env: Any) -> int:
        index = self._env_index.get(id(env))
        if index is None:
            index = self._env_index[id(env)] = len(self.envs)
            self.envs.append(dict(env))
        return index

    def command(self, command: Command | None) -> int | None:
        if command is None:
            return None
        index = self._command_index.get(id(command))
        if index is None:
            index = self._command_index[id(command)] = len(self.commands)
            self.commands.append(
                {
                    "executable": command.executable,
                    "argv": list(command.argv),
                    "env": self.env(command.env),
                    "cwd": command.cwd,
                    "uid": command.uid,
                    "gid": command.gid,
                    "groups": None if command.groups is None else list(command.groups),
                    "umask": command.umask,
                    "rlimits": [list(limit) for limit in command.rlimits],
                }
            )
        return index

    def keep(self, fd: int) -> int:
        if fd >= 0:
            self.fds.append(fd)
        return fd

    def process(self, proc: Process) -> dict[str, Any]:
        handle = proc._handle
        assert handle is not None and proc.os_pid is not None
        outputs = []
        for (label, stream, writer), reader in zip(
            output_streams(proc), proc._readers, strict=False
        ):
            if reader.fd >= 0:
                at_start = writer._at_line_start if writer is not None else True
                outputs.append([label, self.keep(reader.fd), stream, at_start])
        ready = proc._readers[len(output_streams(proc))] if _has_ready_pipe(proc) else None
        stdin = proc._stdin
        kill_timer = proc._kill_timer
        return {
            "pid": proc.pid,
            "os_pid": proc.os_pid,
            "job": proc.name,
            "alive": not handle.exited,
            "pidfd": self.keep(handle.pidfd) if not handle.exited else -1,
            "foreign": "reported" if handle.foreign else None,
            "slot": proc.slot,
            "once": proc.once,
            "restarts": proc.restarts,
            "last_exit": proc.last_exit,
            "create_time": proc.create_time,
            "spawned_at": proc.spawned_at,
            "up_since": proc.up_since,
            "state": str(proc.state),
            "stopping": proc.stopping,
            "graceful_timeout": proc.graceful_timeout,
            "kill_at": kill_timer.when() if kill_timer is not None else None,
            "exit": [proc.exit_status, proc.term_signal],
            "group_alive": proc._group_alive,
            "escaped": [
                [pid, self.keep(fd if fd is not None else -1)] for pid, fd in proc._escaped.items()
            ],
            "env": self.env(proc.env),
            "command": self.command(proc.command),
            "outputs": outputs,
            "stdin": self.keep(stdin.fd) if stdin is not None and not stdin.closed else -1,
            "stdin_pending": _b64(b"".join(bytes(c) for c in stdin._buffer)) if stdin else "",
            "ready": self.keep(ready.fd) if ready is not None and not ready.closed else -1,
            "streams": [
                [label, stream.id, self.keep(stream._sock.fileno())]
                for label, stream in proc.streams.items()
                if stream._sock.fileno() >= 0
            ],
            "enlarged": sum(1 for out in outputs if _enlarged(out[1])),
        }


def _runner(runner: JobRunner, procs: list[dict[str, Any]]) -> dict[str, Any]:
    job = runner.job
    flapping = job.flapping
    checks = runner._checks
    return {
        "session": job.session,
        "config": runner.config.to_dict(),
        "env": job.env,
        "wanted": runner.wanted,
        "numprocesses": runner.numprocesses,
        "state": str(runner.state),
        "restarts": runner.restarts,
        "last_exit": runner.last_exit,
        "error": runner.error,
        "spawn_failures": runner.spawn_failures,
        "paused_by_flapping": runner.paused_by_flapping,
        "gave_up": runner.gave_up,
        "finished": runner.finished,
        "next_restart_at": runner.next_restart_at if runner.restart_pending else None,
        "gate_open": runner._gate_open,
        "waiting_for": runner.waiting_for,
        "slot_history": [[slot, *entry] for slot, entry in runner._slot_history.items()],
        "retiring": [proc.pid for proc in runner.retiring],
        "exiting": sorted(runner._exiting),
        "unhealthy": sorted(runner._unhealthy),
        "streak": job.history.streak,
        "flapping": None if flapping is None else [list(flapping.exits), flapping.retries],
        "status": [[pid, text] for pid, text in checks.status.items()],
        "health": [[pid, health.to_dict()] for pid, health in checks.results.items()],
        "output": [
            [when, pid, os_pid, stream, _b64(data)]
            for when, pid, os_pid, stream, data in job.output.export()
        ],
        "order": [proc.pid for proc in runner.running],  # kept-alive, oldest first
        "processes": procs,
    }


def output_streams(proc: Process) -> list[tuple[str, str, Any]]:
    """``(label, "stdout"|"stderr", log writer)`` of each output pipe of ``proc``, in the
    order its readers were made (stdio.py: stdout, then stderr unless merged)."""
    out_label, err_label = proc.output_labels
    writers = proc._log_writers
    streams = []
    if out_label is not None:
        streams.append((out_label, "stdout", writers[0]))
    if err_label is not None and err_label != out_label:
        streams.append((err_label, "stderr", writers[1]))
    return streams


def _has_ready_pipe(proc: Process) -> bool:
    ready = proc.config.ready
    return (
        ready is not None and ready.kind == "fd" and len(proc._readers) > len(output_streams(proc))
    )


def _readers(proc: Process) -> Iterable[Any]:
    yield from proc._readers
    for stream in proc.streams.values():
        yield stream._reader


def _pause(proc: Process) -> None:
    for reader in _readers(proc):
        reader.pause()


def _enlarged(fd: int) -> bool:
    import fcntl

    try:
        return fcntl.fcntl(fd, F_GETPIPE_SZ) >= CAPTURE_PIPE_SIZE
    except OSError:
        return False


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def inheritable(fds: Iterable[int], value: bool = True) -> None:
    """Let these descriptors survive an exec (or not, when it failed)."""
    for fd in fds:
        try:
            os.set_inheritable(fd, value)
        except OSError as exc:
            logger.warning("descriptor %d: %s", fd, exc)
