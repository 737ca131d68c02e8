"""``JobRunner``: one job's lifecycle, through the named states of states.py.

A runner owns everything that moves in one job: its target, its kept-alive and one-off
processes, its timers (the next slice of spawns, the delay before a restart), the checks
of its processes (checks.py: start_secs, readiness, health), what it does when one ends
or fails (outcomes.py: the restart policy), whether the jobs it requires are up (it waits
for them), and the job's state, published as a ``state`` event at each change. It is
handed what it needs (the process table, a publish function, a way to stop the job's
orphans, to ask whether the manager runs and what it waits for, to ask for a shutdown),
never the manager itself.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from gaffer.core.checks import Checks
from gaffer.core.config import ProcessConfig
from gaffer.core.job import Job
from gaffer.core.logfile import LogSink
from gaffer.core.options import IN_PLACE
from gaffer.core.outcomes import Outcomes
from gaffer.core.process import Process
from gaffer.core.states import JOB_TRANSITIONS, UP, State, allowed, summarize
from gaffer.core.table import ProcessTable, describe
from gaffer.errors import SpawnError

logger = logging.getLogger(__name__)

SPAWN_BATCH = 16  # spawned before a call returns, however long they take
SPAWN_SLICE = 0.010  # then seconds of spawning before yielding to the loop

Publish = Callable[[str, dict[str, Any]], None]


def _none_waited(runner: JobRunner) -> list[str]:
    return []


class JobRunner(Outcomes):
    def __init__(
        self,
        session: str,
        config: ProcessConfig,
        env: Mapping[str, str] | None,
        *,
        table: ProcessTable,
        publish: Publish,
        stop_orphans: Callable[[str, float], None],
        host_active: Callable[[], bool],
        blockers: Callable[[JobRunner], list[str]] = _none_waited,
        on_state_change: Callable[[JobRunner], None] = lambda runner: None,
        request_shutdown: Callable[[str, int, int], None] = lambda job, code, sig: None,
    ) -> None:
        self.job = Job(session, config, env)
        self.name = self.job.name
        self.loop = table.loop
        self._table = table
        self._publish_raw = publish
        self._stop_orphans_of = stop_orphans
        self._host_active = host_active
        self._blockers = blockers  # the jobs it requires that are not up
        self._on_state_change = on_state_change
        self._request_shutdown = request_shutdown
        self.waiting_for: list[str] = []
        self._gate_open = False  # what it requires was up when it started
        self.wanted = False  # started by a command: runs whenever the manager runs
        self.stopped_by_command = False  # 0.5: a job loaded unstarted is not "stopped"
        self._respawn_on_exit: set[int] = set()  # stopall: replaced as they exit
        self.numprocesses = config.numprocesses
        self.retiring: list[Process] = []  # old processes of a rolling restart
        self.state = State.STOPPED
        self.restarts = 0
        self.last_exit: dict[str, Any] | None = None
        self.error: str | None = None  # why the last spawn failed
        self.spawn_failures = 0
        self.paused_by_flapping = False
        self.gave_up = False
        self.finished = 0  # processes that ended as the policy wants: not replaced
        self.next_restart_at: float | None = None  # a Unix time
        self._restart_timer: Any = None
        self._slice: Any = None
        self._up = 0  # kept-alive processes running or ready
        self._exiting: set[int] = set()  # stopped by us, not exited yet
        self._unhealthy: set[int] = set()  # failing their health checks
        self._checks = Checks(
            self.loop,
            table.watcher.watch,
            table.guard_group,
            self._on_up,
            self._on_not_ready,
            self._on_health,
        )
        # slot -> (restarts, last exit) of the process that died there, for its replacement
        self._slot_history: dict[int, tuple[int, dict[str, Any]]] = {}
        self.sinks: tuple[LogSink | None, LogSink | None] = table.acquire_sinks(self.name, config)
        # bound once: every process of the job holds them
        self._exit_callback, self._state_callback = self._on_exit, self._on_process_state
        self._notify_callback = self._on_notify
        self._set_notify_env()

    def _set_notify_env(self) -> None:
        ready = self.config.ready
        if ready is not None and ready.kind == "notify":
            self.job.extra_env = {"NOTIFY_SOCKET": self._table.notify_address()}
        else:
            self.job.extra_env = {}

    # -- what the manager reads ---------------------------------------------------------
    @property
    def config(self) -> ProcessConfig:
        return self.job.config

    @property
    def running(self) -> deque[Process]:
        return self.job.running

    @property
    def running_out(self) -> dict[int, Process]:
        return self.job.running_out

    @property
    def processes(self) -> list[Process]:
        return self.job.processes

    @property
    def pids(self) -> list[int]:
        return self.job.pids

    @property
    def priority(self) -> int:
        return self.job.priority

    @property
    def stopped(self) -> bool:
        """Not meant to run: stopped, never started, or given up (the 0.5 meaning)."""
        return not self.wanted or self.gave_up

    @property
    def target(self) -> int:
        """The processes to keep running: the target, less those that ended for good."""
        return max(self.numprocesses - self.finished, 0)

    @property
    def restart_pending(self) -> bool:
        return self._restart_timer is not None

    def info(self) -> dict[str, Any]:
        processes = self.processes
        flapping = self.job.flapping
        return {
            "name": self.name,
            "state": str(self.state),
            "active": bool(processes),
            "stopped": self.stopped,
            "running": len(processes),
            "running_out": len(self.running_out),
            "max_processes": self.numprocesses,
            "numprocesses": self.numprocesses,
            "processes": [proc.pid for proc in processes],
            "process_info": [
                {**proc.summary(), **self._checks.describe(proc.pid)} for proc in processes
            ],
            "waiting_for": list(self.waiting_for),
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "next_restart_at": self.next_restart_at,
            "error": self.error,
            "flapping": flapping.snapshot() if flapping else None,
            "retry_pending": self.paused_by_flapping,
            "config": self.config.to_dict(),
        }

    # -- commands -----------------------------------------------------------------------
    def start(self) -> None:
        """Start a stopped (or given up, paused, exited) job: its target back to the
        config's, its crash history reset. On a running job: reconcile only."""
        if (
            self.wanted
            and not self.gave_up
            and not self.paused_by_flapping
            and self.state is not State.EXITED
        ):
            self.manage()
            return
        self._cancel_timers()
        self.wanted = True
        self.stopped_by_command = False
        self.gave_up = self.paused_by_flapping = False
        self._gate_open = False  # what it requires must be up again
        self.numprocesses = self.config.numprocesses
        self._reset_history()
        self.job.refresh()
        self._publish_job("start", {"name": self.name})
        self.manage()

    def stop(self) -> None:
        """Stop every process (one-off ones too) and stay stopped."""
        self._cancel_timers()
        self.wanted = False
        self.stopped_by_command = True
        self._respawn_on_exit.clear()
        self._gate_open, self.waiting_for = False, []
        self.gave_up = self.paused_by_flapping = False
        self.numprocesses = 0
        for proc in self.processes:
            self._stop_process(proc)
        self._stop_orphans()
        self._publish_job("stop", {"name": self.name})
        self._update_state()

    def unload(self) -> None:
        self._cancel_timers()
        self.wanted = False
        for proc in self.processes:
            self._stop_process(proc)
        self._stop_orphans()
        self._table.release_sinks(self.sinks)
        self.sinks = (None, None)
        self._update_state()

    def reload(self) -> None:
        """New processes for all (new pids), target and crash history back to the config's."""
        was_stopped = self.stopped
        self._cancel_timers()
        self.numprocesses = self.config.numprocesses
        self._reset_history()
        self.job.refresh()
        self.gave_up = self.paused_by_flapping = False
        for proc in list(self.running):
            self._stop_process(proc)
        self._stop_orphans()
        self._publish_job("reload", {"name": self.name})
        if was_stopped:
            self.wanted = True
            self._publish_job("start", {"name": self.name})
        self.manage()

    def update(self, config: ProcessConfig, env: Mapping[str, str] | None, start: bool) -> None:
        """A new config (and env): processes replaced, the target the larger of both. A
        config that changes only options of ``IN_PLACE`` keeps the processes: a new
        ``numprocesses`` scales the job (an ini file edited to run 4 instead of 2 starts 2,
        it does not replace 2), a new ``log_history`` keeps what is kept."""
        unchanged = {name: getattr(self.config, name) for name in IN_PLACE}
        if (env is None or env == self.job.env) and config.replace(**unchanged) == self.config:
            self.job.retune(config)
            if start and self.stopped:
                self.start()
            else:
                self.scale(config.numprocesses)
            return
        sinks = self._table.acquire_sinks(self.name, config)
        self._cancel_timers()
        self._table.release_sinks(self.sinks)
        self.sinks = sinks
        self.job.set_config(config, env if env is not None else self.job.env)
        self._set_notify_env()
        self.numprocesses = max(config.numprocesses, self.numprocesses)
        self.finished = 0
        for proc in list(self.running):
            self._stop_process(proc)
        self._stop_orphans()
        self._publish_job("update", {"name": self.name, "numprocesses": self.numprocesses})
        if start and self.stopped:
            self.start()
        else:
            self.paused_by_flapping = False  # its retry timer was cancelled
            self.manage()

    def scale(self, target: int) -> int:
        self.numprocesses = target
        self._publish_job("update", {"name": self.name, "numprocesses": target})
        self.reconcile_now()
        return target

    def reconcile_now(self) -> None:
        """Reconcile; a job loaded with ``start=False`` and never stopped starts, as in
        0.5 (where such a job was not "stopped": ``scale`` and ``manage`` spawned)."""
        if not self.wanted and not self.stopped_by_command and not self.gave_up:
            self.wanted = True
        self.manage()

    def commit(self, env: Mapping[str, str] | None, graceful_timeout: float | None) -> int:
        try:
            proc = self._spawn(once=True, env=env, graceful_timeout=graceful_timeout)
        except SpawnError as exc:
            self._publish_job("spawn_error", self._spawn_error_msg(exc))
            raise
        return proc.pid

    def stopall(self) -> None:
        """Stop every process; the job stays started, so they are replaced, as they exit
        (0.5: right after the call the job lists no process)."""
        for proc in self.processes:
            if not proc.once and proc.active:
                self._respawn_on_exit.add(proc.pid)
            self._stop_process(proc)
        self._stop_orphans()
        self._update_state()

    def killall(self, signum: int) -> None:
        self._publish(f"job.{self.name}.kill", {"name": self.name, "signum": signum})
        for proc in self.processes:
            proc.kill(signum)
            self._publish(
                f"proc.{proc.pid}.kill", {"name": self.name, "pid": proc.pid, "signum": signum}
            )

    def stop_one(self, proc: Process) -> None:
        """Stop one process; a kept-alive one is replaced."""
        self._stop_process(proc)
        if not proc.once:
            self.manage()
        else:
            self._update_state()

    def rolling_restart(self) -> None:
        """New processes first (sliced like any spawn), then the old ones reaped."""
        if self.stopped or self.paused_by_flapping:
            return
        self.retiring = list(self.running)
        self.manage()

    def shutdown(self) -> None:
        """The manager stops: every process stopped, detached ones left running."""
        self._cancel_timers()
        self._checks.close()
        self._gate_open, self.waiting_for = False, []
        if not self.stopped:
            self._publish_job("stop", {"name": self.name})
        self.wanted = False
        for proc in self.processes:
            if proc.config.detach:
                self._remove(proc)
                self._table.forget_detached(proc)
            else:
                self._stop_process(proc)
        self._update_state()

    # -- reconciliation -----------------------------------------------------------------
    def manage(self) -> None:
        """Bring the job to its target: reap the oldest extras, spawn what is missing, a
        slice of time at a time so a big job never starves the loop."""
        if self._slice is not None:  # a pending slice: this call does its work
            self._slice.cancel()
            self._slice = None
        if self.stopped or not self._host_active() or self.paused_by_flapping:
            self._update_state()
            return
        if not self._gate_open:  # waits until every job it requires is up
            self.waiting_for = self._blockers(self)
            if self.waiting_for:
                self._update_state()
                return
            self._gate_open = True
        # during a rolling restart the old processes count on top of the target until the
        # new ones all run
        self.retiring = [proc for proc in self.retiring if proc.pid in self._table.running]
        target = self.target + len(self.retiring)
        while len(self.running) > target:
            self._reap(self.running[0])
        if self._restart_timer is not None:  # a spawn failed: wait for the backoff
            self._update_state()
            return
        deadline = time.monotonic() + SPAWN_SLICE
        spawned = 0
        while len(self.running) < target:
            if spawned >= SPAWN_BATCH and time.monotonic() > deadline:
                self._slice = self.loop.call_soon(self.manage)
                self._update_state()
                return
            spawned += 1
            try:
                self._spawn()
            except Exception as exc:
                self._spawn_failed(_as_spawn_error(exc))
                return
        retiring, self.retiring = self.retiring, []
        for proc in retiring:
            self._reap(proc)
        self._update_state()

    def _spawn(
        self,
        once: bool = False,
        env: Mapping[str, str] | None = None,
        graceful_timeout: float | None = None,
    ) -> Process:
        job = self.job
        slot = None if once else job.free_slot()
        penv, command = job.prepare_once(env) if once else job.prepare(slot or 0)
        proc = self._table.new_process(
            self.name,
            job.config,
            penv,
            command,
            once=once,
            slot=slot,
            graceful_timeout=graceful_timeout,
            sinks=self.sinks,
            history=job.output,
            on_exit=self._exit_callback,
            on_state=self._state_callback,
            on_notify=self._notify_callback,
        )
        if slot is not None and slot in self._slot_history:
            proc.restarts, proc.last_exit = self._slot_history.pop(slot)
        msg = describe(proc)
        if once:
            job.running_out[proc.pid] = proc
            self._publish("spawn", msg)
        else:
            self.spawn_failures = 0
            self.error = None
            job.add_running(proc)
            self._publish_job("spawn", msg)
        proc.set_state(State.STARTING)
        self._checks.started(proc, job.config)
        return proc

    def _spawn_error_msg(self, exc: SpawnError) -> dict[str, Any]:
        return {
            "name": self.name,
            "error": str(exc),
            "errno": exc.os_errno,
            "failures": self.spawn_failures,
        }

    # -- stopping -----------------------------------------------------------------------
    def _reap(self, proc: Process) -> None:
        msg = describe(proc)
        self._publish_job("reap", msg)
        self._publish(f"proc.{proc.pid}.reap", dict(msg))
        self._stop_process(proc)

    def _stop_process(self, proc: Process) -> None:
        self._remove(proc)
        self._checks.forget(proc.pid)
        self._unhealthy.discard(proc.pid)
        if proc.slot is not None:
            self._slot_history.pop(proc.slot, None)
        if proc.active:
            self._exiting.add(proc.pid)
        self._publish("stop_process", describe(proc))
        self._table.stop(proc)

    def _remove(self, proc: Process) -> None:
        if proc.once:
            self.job.running_out.pop(proc.pid, None)
        else:
            try:
                self.job.remove_running(proc)
            except ValueError:
                pass

    def _stop_orphans(self) -> None:
        if not self.config.detach:
            self._stop_orphans_of(self.name, self.config.graceful_timeout)

    # -- states -------------------------------------------------------------------------
    def _on_process_state(self, proc: Process, old: State, new: State) -> None:
        if not proc.once and (new in UP) != (old in UP):
            self._up += 1 if new in UP else -1
        msg = {**describe(proc), "old": str(old), "new": str(new)}
        self._publish_job("state", msg)
        if new in UP and not proc.once:
            self._update_state()

    def _update_state(self) -> None:
        new = summarize(
            started=self.wanted and self._host_active() and not self.gave_up,
            alive=len(self.running) + len(self._exiting),
            target=self.target,
            finished=self.finished > 0 and self.target == 0,
            up=self._up,
            ready_probe=self.config.ready is not None,
            waiting=bool(self.waiting_for) and not self._gate_open,
            backoff=self._restart_timer is not None,
            fatal=self.gave_up,
        )
        old = self.state
        if new is old:
            return
        allowed(JOB_TRANSITIONS, old, new, f"job {self.name}")
        self.state = new
        msg = {"name": self.name, "old": str(old), "new": str(new)}
        if new is State.WAITING:
            msg["waiting_for"] = list(self.waiting_for)
        self._publish_job("state", msg)
        self._on_state_change(self)

    # -- helpers ------------------------------------------------------------------------
    def _cancel_timers(self) -> None:
        """Cancel a pending restart, spawn slice or rolling restart."""
        for attr in ("_restart_timer", "_slice"):
            handle = getattr(self, attr)
            if handle is not None:
                handle.cancel()
                setattr(self, attr, None)
        self.next_restart_at = None
        self.retiring = []

    def _reset_history(self) -> None:
        self.spawn_failures = 0
        self.finished = 0
        self._slot_history.clear()
        self.job.history.reset()

    def _publish(self, evtype: str, msg: dict[str, Any]) -> None:
        self._publish_raw(evtype, msg)

    def _publish_job(self, evtype: str, msg: dict[str, Any]) -> None:
        """``evtype`` and its per-job twin ``job.<id>.<evtype>``."""
        self._publish_raw(evtype, msg)
        self._publish_raw(f"job.{self.name}.{evtype}", dict(msg))

    def __repr__(self) -> str:
        return f"<JobRunner {self.name} {self.state} {len(self.running)}/{self.numprocesses}>"


def _as_spawn_error(exc: Exception) -> SpawnError:
    if isinstance(exc, SpawnError):
        return exc
    logger.error("unexpected error while spawning", exc_info=exc)
    return SpawnError(f"cannot spawn: {exc}")
