"""The restart policy: what happens when a kept-alive process exits on its own.

A pure function of the job's settings, its history and the exit (no loop, no clock, no
process), so every rule is tested with plain numbers. The runner feeds it and acts:

* ``give_up_on`` (exit codes and signals: s6's permanent failure): ``fatal`` at once;
* ``restart = never``, or ``on-failure`` after exit 0 or the job's own stop signal: the
  process is done, not replaced (the job is ``exited`` once all its processes are);
* a process that died before ``start_secs`` failed to start: the job's streak of failed
  starts grows, and the restart waits ``backoff`` (growing with the streak, with jitter);
  after ``start_retries`` failed starts in a row the job is ``fatal`` (supervisor's FATAL);
  a process that lives ``start_secs`` ends the streak;
* a process that had started is replaced at once;
* and the crash-loop protection (``flapping``, flapping.py) may pause or stop the job.
"""

from __future__ import annotations

import enum
import random
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from gaffer.core.flapping import FlappingHistory, Verdict
from gaffer.crashloop import (
    DEFAULT_RESTART,
    DEFAULT_START_RETRIES,
    DEFAULT_START_SECS,
    BackoffInfo,
)


@dataclass(frozen=True, slots=True)
class ExitMatch:
    """One ``give_up_on`` entry: an exit code, or a signal."""

    code: int | None = None
    signum: int | None = None

    @classmethod
    def parse(cls, value: object) -> ExitMatch:
        if isinstance(value, ExitMatch):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= 255:
                raise ValueError(f"give_up_on: exit codes go from 0 to 255, got {value}")
            return cls(code=value)
        if isinstance(value, str) and value.strip():
            text = value.strip()
            if text.isdigit():
                return cls.parse(int(text))
            return cls(signum=_signal_number(text))
        raise ValueError(f"give_up_on: expected an exit code or a signal name, got {value!r}")

    def matches(self, exit_status: int, term_signal: int) -> bool:
        if self.signum is not None:
            return term_signal == self.signum
        return not term_signal and exit_status == self.code

    def to_json(self) -> int | str:
        return self.code if self.code is not None else signal_name(self.signum or 0)


def give_up_on(value: object) -> tuple[ExitMatch, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise ValueError(f"give_up_on: expected exit codes and signal names, got {value!r}")
    return tuple(ExitMatch.parse(item) for item in value)


def signal_name(signum: int) -> str:
    """``TERM`` for 15, ``RTMIN+3`` for a real-time signal."""
    try:
        return signal.Signals(signum).name.removeprefix("SIG")
    except ValueError:
        if signal.SIGRTMIN <= signum <= signal.SIGRTMAX:
            return f"RTMIN+{signum - signal.SIGRTMIN}"
        return str(signum)


def _signal_number(text: str) -> int:
    from gaffer.core.names import parse_signal  # names imports errors only: no cycle

    return parse_signal(text)


DEFAULT_BACKOFF = BackoffInfo()


class Action(enum.Enum):
    RESTART = "restart"  # replace the process (after ``delay``)
    DONE = "done"  # the process is not replaced: it ended as the policy wants
    PAUSE = "pause"  # crash loop: every process stopped, the job retried after ``delay``
    FATAL = "fatal"  # give up: every process stopped, the job stays fatal


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    """A job's restart settings (from its ProcessConfig)."""

    restart: str = DEFAULT_RESTART
    backoff: BackoffInfo | None = DEFAULT_BACKOFF
    start_secs: float = DEFAULT_START_SECS
    start_retries: int = DEFAULT_START_RETRIES
    give_up_on: tuple[ExitMatch, ...] = ()
    stop_signal: int = signal.SIGTERM


class History:
    """One job's restart history: its streak of failed starts, and its flapping history."""

    __slots__ = ("flapping", "streak")

    def __init__(self, flapping: FlappingHistory | None) -> None:
        self.flapping = flapping
        self.streak = 0  # failed starts in a row

    def started(self) -> None:
        """A process lived ``start_secs``: the streak of failed starts ends."""
        self.streak = 0

    def reset(self) -> None:
        self.streak = 0
        if self.flapping is not None:
            self.flapping.reset()

    def on_exit(
        self,
        policy: Policy,
        exit_status: int,
        term_signal: int,
        started: bool,
        now: float,
        spawned: bool = True,
        count_flapping: bool = True,
        draw: Callable[[], float] = random.random,
    ) -> Decision:
        """Decide for a kept-alive process that exited on its own: ``started`` when it had
        lived ``start_secs`` (or said it was ready); ``spawned`` False when it could not
        be spawned at all (``count_flapping`` False when other processes of the job run:
        one that cannot be added is no crash loop)."""
        for match in policy.give_up_on:
            if spawned and match.matches(exit_status, term_signal):
                how = f"signal {signal_name(term_signal)}" if term_signal else f"exit {exit_status}"
                return Decision(Action.FATAL, reason=f"give_up_on: {how}")
        if spawned and policy.restart == "never":
            return Decision(Action.DONE, reason="restart = never")
        if spawned and policy.restart == "on-failure":
            if term_signal == 0 and exit_status == 0:
                return Decision(Action.DONE, reason="exit 0 (restart = on-failure)")
            if term_signal == policy.stop_signal:
                return Decision(Action.DONE, reason="its stop signal (restart = on-failure)")
        verdict = None
        if self.flapping is not None and count_flapping:
            verdict = self.flapping.record_exit(now)
        if not started:
            self.streak += 1
            if self.streak > policy.start_retries:
                return Decision(
                    Action.FATAL,
                    reason=f"{self.streak} failed starts in a row (start_retries = "
                    f"{policy.start_retries})",
                )
        if verdict is Verdict.GIVE_UP:
            return Decision(Action.FATAL, reason="crash loop (flapping: max_retry reached)")
        if verdict is Verdict.RETRY_LATER:
            assert self.flapping is not None
            return Decision(Action.PAUSE, self.flapping.info.retry_in, "crash loop (flapping)")
        if started:
            return Decision(Action.RESTART)
        if policy.backoff is not None:
            return Decision(Action.RESTART, policy.backoff.delay(self.streak, draw))
        if not spawned:  # without backoff a program that is not found must not spin
            return Decision(Action.RESTART, min(0.1 * 2 ** (self.streak - 1), 5.0))
        return Decision(Action.RESTART)
