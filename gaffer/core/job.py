"""``Job``: a loaded job, its config, its processes, its target and its crash history.

A job is bookkeeping only: the manager decides and acts; the job remembers.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gaffer.core.config import ProcessConfig
from gaffer.core.flapping import FlappingHistory
from gaffer.core.logfile import LogSink
from gaffer.core.orphans import JOB_MARK
from gaffer.core.spawn import Command, build_command, build_env

if TYPE_CHECKING:
    from gaffer.core.process import Process


class Job:
    def __init__(
        self, session: str, config: ProcessConfig, env: Mapping[str, str] | None = None
    ) -> None:
        self.session = session
        self.name = f"{session}.{config.name}"
        self.running: deque[Process] = deque()  # kept alive, oldest first
        self._free_slots: list[int] = []  # a heap of the slots below _slot_end not held
        self._slot_end = 0
        self.running_out: dict[int, Process] = {}  # one-off (committed) processes
        self.stopped = True
        self.retry_timer: asyncio.TimerHandle | None = None
        self.manage_handle: asyncio.Handle | None = None  # the next slice of spawns
        self.backoff_handle: asyncio.TimerHandle | None = None  # after a failed spawn
        self.retiring: list[Process] = []  # old processes of a rolling restart
        self.spawn_failures = 0
        self.sinks: tuple[LogSink | None, LogSink | None] = (None, None)
        self.set_config(config, env)
        self.numprocesses = config.numprocesses

    def set_config(self, config: ProcessConfig, env: Mapping[str, str] | None) -> None:
        self.config = config
        self.env: dict[str, str] = dict(env or {})
        self.flapping = FlappingHistory(config.flapping) if config.flapping else None
        self._prepared: tuple[dict[str, str], Command | None] | None = None
        self._slots: dict[int, tuple[dict[str, str], Command]] = {}

    @property
    def _mark(self) -> dict[str, str]:
        """In every process's environment, inherited by what it starts: the job's id (as
        supervisor's SUPERVISOR_PROCESS_NAME), by which its orphans are known."""
        return {JOB_MARK: self.name}

    @property
    def bare_name(self) -> str:
        return self.config.name

    @property
    def priority(self) -> int:
        return self.config.priority

    def prepare(self, slot: int = 0) -> tuple[dict[str, str], Command]:
        """The environment and command line of the job's processes, built once (once per
        slot with ``port``). Raises SpawnError (and builds again next time) when the
        command is wrong."""
        if self.config.port is not None:
            return self._prepare_slot(slot)
        if self._prepared is None:
            env = build_env(self.config, self.env, self._mark)
            self._prepared = (env, None)
        env, command = self._prepared
        if command is None:
            command = build_command(self.config, env)
            self._prepared = (env, command)
        return env, command

    def _prepare_slot(self, slot: int) -> tuple[dict[str, str], Command]:
        prepared = self._slots.get(slot)
        if prepared is None:
            port = {"PORT": str(self.config.port + slot)}
            env = build_env(self.config, self.env, port, self._mark)
            prepared = self._slots[slot] = (env, build_command(self.config, env))
        return prepared

    def free_slot(self) -> int:
        """The lowest slot no kept-alive process holds (O(1): spawning 1,000 processes
        must not cost 1,000 scans of the running ones)."""
        return self._free_slots[0] if self._free_slots else self._slot_end

    def add_running(self, proc: Process) -> None:
        self.running.append(proc)
        slot = proc.slot
        if slot is None:
            return
        if self._free_slots and self._free_slots[0] == slot:
            heapq.heappop(self._free_slots)
        elif slot >= self._slot_end:
            for skipped in range(self._slot_end, slot):
                heapq.heappush(self._free_slots, skipped)
            self._slot_end = slot + 1
        elif slot in self._free_slots:
            self._free_slots.remove(slot)
            heapq.heapify(self._free_slots)

    def remove_running(self, proc: Process) -> None:
        """Raises ValueError if ``proc`` is not among the kept-alive processes."""
        self.running.remove(proc)
        if proc.slot is not None:
            heapq.heappush(self._free_slots, proc.slot)

    def prepare_once(self, extra_env: Mapping[str, str] | None) -> tuple[dict[str, str], Command]:
        """Environment and command line of a one-off process with its own extra env."""
        if not extra_env:
            return self.prepare()
        env = build_env(self.config, self.env, extra_env, self._mark)
        return env, build_command(self.config, env)

    @property
    def processes(self) -> list[Process]:
        return [*self.running, *self.running_out.values()]

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.running]

    def cancel_timers(self) -> None:
        """Cancel every pending retry, backoff and spawn slice, and a rolling restart."""
        for attr in ("retry_timer", "manage_handle", "backoff_handle"):
            handle = getattr(self, attr)
            if handle is not None:
                handle.cancel()
                setattr(self, attr, None)
        self.retiring = []

    def info(self) -> dict[str, Any]:
        processes = self.processes
        return {
            "name": self.name,
            "active": bool(processes),
            "stopped": self.stopped,
            "running": len(processes),
            "running_out": len(self.running_out),
            "max_processes": self.numprocesses,
            "numprocesses": self.numprocesses,
            "processes": [proc.pid for proc in processes],
            "flapping": self.flapping.snapshot() if self.flapping else None,
            "retry_pending": self.retry_timer is not None,
            "config": self.config.to_dict(),
        }
