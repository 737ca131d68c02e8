"""What a runner does when one of its processes ends, fails to start or fails a check.

Mixed into ``JobRunner`` (runner.py), which holds the state these methods change; kept
apart so that runner.py reads as the job's commands and its reconciliation, and this
module as the reactions: an exit (the restart policy of restart.py, or ``on_exit``), a
spawn that failed, a process that counts as started (``start_secs``) or said it is ready,
one not ready in time, a health check that failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gaffer.core.checks import Health
from gaffer.core.restart import Action, Decision, signal_name
from gaffer.core.states import State
from gaffer.core.table import describe
from gaffer.errors import SpawnError

if TYPE_CHECKING:
    from gaffer.core.process import Process

logger = logging.getLogger(__name__)

FATAL_STDERR_LINES = 10  # the last lines of stderr a ``fatal`` event carries


class Outcomes:
    """The reactions of a JobRunner (see the module docstring)."""

    # -- a process ended --------------------------------------------------------------------
    def _on_exit(self, proc: Process, exit_status: int, term_signal: int) -> None:
        listed = self._table.exited(proc)
        if listed:
            self._remove(proc)
        self._exiting.discard(proc.pid)
        self._checks.forget(proc.pid)
        msg = {
            **describe(proc),
            "exit_status": exit_status,
            "term_signal": term_signal,
            "once": proc.once,
        }
        self._publish("exit", msg)
        self._publish(f"job.{self.name}.exit", dict(msg))
        self._publish(f"proc.{proc.pid}.exit", dict(msg))
        if proc.once:
            self._update_state()
            return
        self.last_exit = {
            "pid": proc.pid,
            "os_pid": proc.os_pid,
            "exit_status": exit_status,
            "term_signal": term_signal,
            "time": time.time(),
        }
        if listed and proc.slot is not None:  # it died on its own: its successor is told
            self._slot_history[proc.slot] = (proc.restarts + 1, self.last_exit)
        if proc.pid in self._respawn_on_exit:  # stopall: its replacement comes now
            self._respawn_on_exit.discard(proc.pid)
            self.manage()
            return
        if not listed or self.stopped or not self._host_active() or self.paused_by_flapping:
            self._update_state()
            return
        on_exit = self.config.on_exit
        if on_exit != "restart":  # ignore: left ended; shutdown: gafferd ends with it
            self.finished += 1
            self.manage()
            if on_exit == "shutdown":
                self._request_shutdown(self.name, exit_status, term_signal)
            return
        decision = self.job.history.on_exit(
            self.job.policy,
            exit_status,
            term_signal,
            started=proc.up_since is not None,
            now=self.loop.time(),
        )
        if decision.action is Action.RESTART:
            self.restarts += 1
        self._act(decision)

    def _spawn_failed(self, exc: SpawnError) -> None:
        self.spawn_failures += 1
        self.error = str(exc)
        more = self._table.warnings.say((self.name, "spawn"))  # one a minute, not one per attempt
        if more is not None:
            logger.warning(
                "cannot spawn %s: %s%s", self.name, exc, more, extra={"event": "spawn_error"}
            )
        self._publish_job("spawn_error", self._spawn_error_msg(exc))
        # a job that cannot start at all is in a crash loop; one that has healthy processes
        # and cannot add one more (cwd gone, no descriptors...) only waits for the backoff
        self._failed_start()

    def _failed_start(self) -> None:
        """A process that could not be spawned, or was not ready in time."""
        decision = self.job.history.on_exit(
            self.job.policy,
            0,
            0,
            started=False,
            now=self.loop.time(),
            spawned=False,
            count_flapping=not self.running,
        )
        self._act(decision)

    # -- what the restart policy decided ------------------------------------------------------
    def _act(self, decision: Decision) -> None:
        """Carry out what the restart policy decided for an exit or a failed start."""
        action = decision.action
        if action is Action.RESTART and decision.delay <= 0:
            self.manage()
        elif action is Action.RESTART:
            self._restart_after(decision.delay, self._backoff_done)
        elif action is Action.DONE:
            self.finished += 1
            self.manage()
        else:
            self._halt(decision)

    def _restart_after(self, delay: float, callback: Callable[[], None]) -> None:
        if self._restart_timer is not None:
            self._restart_timer.cancel()
        self._restart_timer = self.loop.call_later(delay, callback)
        self.next_restart_at = time.time() + delay
        self._update_state()

    def _backoff_done(self) -> None:
        self._restart_timer = None
        self.next_restart_at = None
        self.manage()

    def _halt(self, decision: Decision) -> None:
        """A crash loop (pause, retried later) or a give-up (fatal): every process stops."""
        flapping = self.job.flapping
        pause = decision.action is Action.PAUSE
        more = self._table.warnings.say((self.name, "pause")) if pause else ""  # fatal: always said
        if more is not None:
            logger.warning(
                "%s: %s: %s%s",
                self.name,
                decision.reason,
                f"retried in {decision.delay:g}s" if pause else "given up (fatal)",
                more,
                extra={"event": "flap" if pause else "fatal"},
            )
        self._cancel_timers()
        self.paused_by_flapping, self.gave_up = pause, not pause
        for proc in list(self.running):
            self._stop_process(proc)
        self._stop_orphans()
        if flapping is not None and (pause or "flapping" in decision.reason):
            retry_in = decision.delay if pause else None
            self._publish_job(
                "flap", {"name": self.name, "retry_in": retry_in, "retries": flapping.retries}
            )
        if pause:
            self._restart_after(decision.delay, self._flap_retry)
            return
        self._publish_job("fatal", self._fatal_msg(decision.reason))
        self._update_state()

    def _fatal_msg(self, reason: str) -> dict[str, Any]:
        last = self.last_exit or {}
        signum = last.get("term_signal") or 0
        return {
            "name": self.name,
            "reason": reason,
            "exit_status": last.get("exit_status"),
            "term_signal": signum,
            "signal": signal_name(signum) if signum else None,
            "error": self.error,
            "stderr": [line.text for line in self.job.output.lines(FATAL_STDERR_LINES, "stderr")],
        }

    def _flap_retry(self) -> None:
        self._restart_timer = None
        self.next_restart_at = None
        self.paused_by_flapping = False
        self.restarts += 1
        self.manage()

    # -- started, ready, not ready, unhealthy ---------------------------------------------
    def _on_up(self, proc: Process, state: State) -> None:
        """The process lived ``start_secs`` (running) or said it is ready (ready)."""
        if proc.state is not State.STARTING:
            return
        proc.set_state(state)
        if not proc.once:
            self.job.history.started()
            self._checks.watch_health(proc, self.config)

    def _on_not_ready(self, proc: Process, reason: str) -> None:
        """Not ready within ``ready_timeout``: stopped, and a failed start."""
        self.error = reason
        logger.warning("%s pid=%d: %s", self.name, proc.pid, reason, extra={"event": "not_ready"})
        self._publish_job("not_ready", {**describe(proc), "reason": reason})
        if proc.once:
            return
        self._stop_process(proc)
        self._failed_start()

    def _on_notify(self, proc: Process, fields: dict[str, str]) -> None:
        """An ``sd_notify`` message of one of the job's processes (``fd:N``: READY=1)."""
        self._checks.notified(proc, fields)
        if fields.get("STOPPING") == "1" and proc.state in (State.STARTING, *_UP):
            proc.set_state(State.STOPPING)  # it says it is going: no longer counted up
            self._update_state()

    def _on_health(self, proc: Process, health: Health) -> None:
        was_failing = proc.pid in self._unhealthy
        if health.ok:
            self._unhealthy.discard(proc.pid)
        else:
            self._unhealthy.add(proc.pid)
        if health.ok and not was_failing:
            return  # only failures and recoveries are events
        self._publish_job("health", {**describe(proc), **health.to_dict()})
        config = self.config
        if health.ok or health.failures < config.health_failures:
            return
        action = config.health_action
        logger.warning(
            "%s pid=%d: %d failed health checks (%s): %s",
            self.name,
            proc.pid,
            health.failures,
            health.reason,
            {"restart": "restarted", "stop": "the job is stopped", "event": "left running"}[action],
            extra={"event": "health"},
        )
        if action == "restart":
            self._unhealthy.discard(proc.pid)
            self.restarts += 1
            self._stop_process(proc)
            self.manage()
        elif action == "stop":
            self.stop()


_UP = (State.RUNNING, State.READY)
