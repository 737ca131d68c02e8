"""``Checks``: when one job's processes count as started, and their health.

Without ``ready``, a process counts as started (``running``) once it has lived
``start_secs``: one timer per job for all its starting processes, confirmed in spawn order,
so 1,000 processes cost one timer. Readiness (the ``ready`` option): a process is
``starting`` until it says it is ready
(``notify``: an ``sd_notify`` ``READY=1``; ``fd:N``: a newline on its fd N) or a probe
succeeds (``tcp:``, ``http:``, ``exec:``, tried every ``ready_interval``); after
``ready_timeout`` it failed to start. Health (``health``): once a process is up, a probe
every ``health_interval``; ``health_failures`` failures in a row call for the job's
``health_action``. Each check is one task per process, bounded by its own timeout, so a
probe that hangs never holds the loop or the other processes. The runner decides what a
result means (runner.py); this module only runs the checks and reports.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gaffer.core import probes
from gaffer.core.config import ProcessConfig
from gaffer.core.probespec import PROBES
from gaffer.core.states import State

if TYPE_CHECKING:
    from gaffer.core.process import Process

logger = logging.getLogger(__name__)


@dataclass
class Health:
    """The last health result of a process."""

    ok: bool
    reason: str
    time: float
    failures: int  # in a row

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "time": self.time, "failures": self.failures}


class Checks:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        watch: probes.Watch,
        guard: Callable[[int, bool], None] | None,
        on_up: Callable[[Process, State], None],
        on_not_ready: Callable[[Process, str], None],
        on_health: Callable[[Process, Health], None],
    ) -> None:
        self._loop = loop
        self._watch = watch
        self._guard = guard
        self._on_up = on_up
        self._on_not_ready = on_not_ready
        self._on_health = on_health
        # spawned processes waiting out start_secs, in order: (pid, due); the processes
        # themselves by pid, dropped when they end (a crash loop must not keep ~1 s of
        # dead processes, with their pipes and handles, alive until the timer comes)
        self._confirming: deque[tuple[int, float]] = deque()
        self._unconfirmed: dict[int, Process] = {}
        self._confirm_timer: asyncio.TimerHandle | None = None
        self._readiness: dict[int, tuple[asyncio.Task[None] | None, asyncio.TimerHandle]] = {}
        self._health: dict[int, asyncio.Task[None]] = {}
        self._last_reason: dict[int, str] = {}  # pid -> why its last readiness probe failed
        self.results: dict[int, Health] = {}  # pid -> its last health result
        self.status: dict[int, str] = {}  # pid -> its last sd_notify STATUS=
        self.watchdog: dict[int, float] = {}  # pid -> its last sd_notify WATCHDOG=1

    # -- started ---------------------------------------------------------------------------
    def started(self, proc: Process, config: ProcessConfig) -> None:
        """A process was spawned: it is up after ``start_secs``, or once ready."""
        if config.ready is not None and not proc.once:
            self.wait_ready(proc, config)
        elif config.start_secs <= 0:
            self._on_up(proc, State.RUNNING)
        else:
            due = (proc.spawned_at or self._loop.time()) + config.start_secs
            self._confirming.append((proc.pid, due))
            self._unconfirmed[proc.pid] = proc
            if self._confirm_timer is None:
                self._confirm_timer = self._loop.call_at(due, self._confirm)

    def _confirm(self) -> None:
        self._confirm_timer = None
        now = self._loop.time()
        queue = self._confirming
        while queue:
            pid, due = queue[0]
            proc = self._unconfirmed.get(pid)
            if proc is None or proc.state is not State.STARTING:
                queue.popleft()
                self._unconfirmed.pop(pid, None)
                continue
            if due > now:
                self._confirm_timer = self._loop.call_at(due, self._confirm)
                return
            queue.popleft()
            del self._unconfirmed[pid]
            self._on_up(proc, State.RUNNING)

    # -- readiness ------------------------------------------------------------------------
    def wait_ready(self, proc: Process, config: ProcessConfig) -> None:
        """A process of a job with ``ready`` was spawned: probe it, or wait for it to say
        it is ready, until ``ready_timeout``."""
        spec = config.ready
        assert spec is not None
        task = None
        if spec.kind in PROBES:
            task = self._loop.create_task(self._poll_ready(proc, config))
        timer = self._loop.call_later(config.ready_timeout, self._timed_out, proc, config)
        self._readiness[proc.pid] = (task, timer)

    async def _poll_ready(self, proc: Process, config: ProcessConfig) -> None:
        spec = config.ready
        assert spec is not None
        while True:
            result = await probes.run(
                spec, proc.env, config.cwd, config.ready_interval, self._watch, self._guard
            )
            if result.ok:
                self._ready(proc)
                return
            self._last_reason[proc.pid] = result.reason
            await asyncio.sleep(config.ready_interval)

    def notified(self, proc: Process, fields: dict[str, str]) -> None:
        """An ``sd_notify`` message (or the ``fd:N`` newline, as ``READY=1``)."""
        if "STATUS" in fields:
            self.status[proc.pid] = fields["STATUS"][:200]
        if "WATCHDOG" in fields:
            self.watchdog[proc.pid] = time.time()
        if fields.get("READY") == "1" and proc.pid in self._readiness:
            self._ready(proc)

    def _ready(self, proc: Process) -> None:
        self._end_readiness(proc.pid)
        self._on_up(proc, State.READY)

    def _timed_out(self, proc: Process, config: ProcessConfig) -> None:
        entry = self._readiness.pop(proc.pid, None)
        if entry is None:
            return
        if entry[0] is not None:
            entry[0].cancel()
        last = self._last_reason.pop(proc.pid, None)
        reason = f"not ready within {config.ready_timeout:g}s ({config.ready})"
        self._on_not_ready(proc, f"{reason}: {last}" if last else reason)

    def _end_readiness(self, pid: int) -> None:
        entry = self._readiness.pop(pid, None)
        self._last_reason.pop(pid, None)
        if entry is not None:
            task, timer = entry
            timer.cancel()
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    # -- health ---------------------------------------------------------------------------
    def watch_health(self, proc: Process, config: ProcessConfig) -> None:
        """A process is up: probe its health every ``health_interval``."""
        if config.health is not None and proc.pid not in self._health:
            self._health[proc.pid] = self._loop.create_task(self._poll_health(proc, config))

    async def _poll_health(self, proc: Process, config: ProcessConfig) -> None:
        spec = config.health
        assert spec is not None
        failures = 0
        while True:
            await asyncio.sleep(config.health_interval)
            result = await probes.run(
                spec, proc.env, config.cwd, config.health_timeout, self._watch, self._guard
            )
            failures = 0 if result.ok else failures + 1
            health = Health(result.ok, result.reason, time.time(), failures)
            self.results[proc.pid] = health
            self._on_health(proc, health)

    # -- the end of a process ---------------------------------------------------------------
    def forget(self, pid: int) -> None:
        """The process is stopping or gone: its checks end."""
        self._unconfirmed.pop(pid, None)
        self._end_readiness(pid)
        task = self._health.pop(pid, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self.results.pop(pid, None)
        self.status.pop(pid, None)
        self.watchdog.pop(pid, None)

    def close(self) -> None:
        for pid in [*self._readiness, *self._health]:
            self.forget(pid)
        if self._confirm_timer is not None:
            self._confirm_timer.cancel()
            self._confirm_timer = None
        self._confirming.clear()
        self._unconfirmed.clear()

    def describe(self, pid: int) -> dict[str, Any]:
        """What a listing shows of a process's checks."""
        out: dict[str, Any] = {}
        if pid in self.results:
            out["health"] = self.results[pid].to_dict()
        if pid in self.status:
            out["status"] = self.status[pid]
        if pid in self.watchdog:
            out["watchdog"] = self.watchdog[pid]
        return out
