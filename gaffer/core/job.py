"""``Job``: what a job's processes are made of and who they are.

The config and load env, the environment and command line built once from them (once per
slot with ``port``), the slots of the kept-alive processes, the processes themselves and
the crash history. A job is bookkeeping only: its runner (runner.py) decides and acts.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

from gaffer.core.config import ProcessConfig
from gaffer.core.flapping import FlappingHistory
from gaffer.core.history import OutputHistory
from gaffer.core.names import parse_signal
from gaffer.core.orphans import JOB_MARK
from gaffer.core.restart import History, Policy
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
        self.extra_env: dict[str, str] = {}  # set by the runner (NOTIFY_SOCKET)
        self.set_config(config, env)

    def set_config(self, config: ProcessConfig, env: Mapping[str, str] | None) -> None:
        self.config = config
        self.env: dict[str, str] = dict(env or {})
        self.flapping = FlappingHistory(config.flapping) if config.flapping else None
        self.history = History(self.flapping)
        if getattr(self, "output", None) is None:
            self.output = OutputHistory(config.log_history)
        elif self.output.max_lines != config.log_history:  # an update: the lines stay
            self.output.resize(config.log_history)
        self.policy = Policy(
            restart=config.restart,
            backoff=config.backoff,
            start_secs=config.start_secs,
            start_retries=config.start_retries,
            give_up_on=config.give_up_on,
            stop_signal=parse_signal(config.stop_signal),
        )
        self.refresh()

    def retune(self, config: ProcessConfig) -> None:
        """A config that differs only in options of ``IN_PLACE``: its processes stay."""
        self.config = config
        if self.output.max_lines != config.log_history:
            self.output.resize(config.log_history)

    def refresh(self) -> None:
        """Build the environment and command line again at the next spawn (``env_file``
        is read again: a reload or a start sees its changes)."""
        self._prepared: tuple[dict[str, str], Command | None] | None = None
        self._slots: dict[int, tuple[dict[str, str], Command]] = {}

    @property
    def _mark(self) -> dict[str, str]:
        """In every process's environment, inherited by what it starts: the job's id (as
        supervisor's SUPERVISOR_PROCESS_NAME), by which its orphans are known; and
        ``NOTIFY_SOCKET`` for a job with ``ready = notify``."""
        return {JOB_MARK: self.name, **self.extra_env}

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
