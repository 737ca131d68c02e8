"""Crash-loop ("flapping") policy: a pure function of a job's exit history and the time.

The algorithm is the original gaffer's (reference section 2.4), kept exactly:

* every exit of a kept-alive process of a running job appends ``now`` to a history of at
  most ``max(attempts, max_retry)`` entries (the original kept ``max_retry``, so that a job
  with ``attempts > max_retry`` could never flap; that is the one deliberate change);
* once the history holds ``attempts`` entries, if its span exceeds ``window`` the job is
  healthy (history and retries are reset); otherwise the job is flapping: it is stopped and
  retried ``retry_in`` seconds later, up to ``max_retry`` times, after which it stays
  stopped.

One fix: the original kept the exits from before a retry pause in the history, so with
``retry_in > window`` (the defaults) the first exit after each pause saw a span longer
than the window, called the job healthy and reset its retries: a job that could not start
was retried every 7 s for ever, ``retries`` stuck at 1. A pause now starts a new history,
so the retries count across pauses until the job really runs longer than ``window``
between crashes; and giving up keeps the count (the ``flap`` event reports it).

Nothing here touches a loop, a clock or a process: the manager feeds ``record_exit(now)``
and acts on the verdict, and tests drive it with plain numbers. The settings themselves
(``FlappingInfo``) are a plain value of ``gaffer.crashloop``, re-exported here.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from gaffer.crashloop import OFF, FlappingInfo

__all__ = ["OFF", "FlappingHistory", "FlappingInfo", "Verdict"]


class Verdict(enum.Enum):
    RESPAWN = "respawn"  # healthy enough: replace the process now
    RETRY_LATER = "retry_later"  # flapping: stop the job, start it again after retry_in
    GIVE_UP = "give_up"  # flapping too often: the job stays stopped


@dataclass(slots=True)
class FlappingHistory:
    """The exit history of one job under one ``FlappingInfo``."""

    info: FlappingInfo
    exits: deque[float] = field(init=False)
    retries: int = 0

    def __post_init__(self) -> None:
        self.exits = deque(maxlen=max(self.info.attempts, self.info.max_retry))

    def record_exit(self, now: float) -> Verdict:
        self.exits.append(now)
        if len(self.exits) < self.info.attempts:
            return Verdict.RESPAWN
        if self.exits[-1] - self.exits[0] > self.info.window:
            self.reset()
            return Verdict.RESPAWN
        self.exits.clear()  # after the pause, a new history: crashes then are new evidence
        if self.retries < self.info.max_retry:
            self.retries += 1
            return Verdict.RETRY_LATER
        return Verdict.GIVE_UP

    def reset(self) -> None:
        self.exits.clear()
        self.retries = 0

    def snapshot(self) -> dict[str, object]:
        return {**self.info.to_dict(), "retries": self.retries, "recent_exits": len(self.exits)}
