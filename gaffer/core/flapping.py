"""Crash-loop ("flapping") policy: a pure function of a job's exit history and the time.

The algorithm is the original gaffer's (reference section 2.4), kept exactly:

* every exit of a kept-alive process of a running job appends ``now`` to a history of at
  most ``max(attempts, max_retry)`` entries (the original kept ``max_retry``, so that a job
  with ``attempts > max_retry`` could never flap; that is the one deliberate change);
* once the history holds ``attempts`` entries, if its span exceeds ``window`` the job is
  healthy (history and retries are reset); otherwise the job is flapping: it is stopped and
  retried ``retry_in`` seconds later, up to ``max_retry`` times, after which it stays
  stopped.

Nothing here touches a loop, a clock or a process: the manager feeds ``record_exit(now)``
and acts on the verdict, and tests drive it with plain numbers.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gaffer.errors import ConfigError

OFF = frozenset(("off", "false", "no", "none"))  # words that turn crash-loop protection off


@dataclass(frozen=True, slots=True)
class FlappingInfo:
    """Crash-loop settings of a job: ``attempts`` exits within ``window`` seconds is a flap;
    a flapping job is retried ``retry_in`` seconds later, at most ``max_retry`` times."""

    attempts: int = 2
    window: float = 1.0
    retry_in: float = 7.0
    max_retry: int = 5

    def __post_init__(self) -> None:
        for key in ("attempts", "max_retry"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"flapping.{key}: expected an integer >= 1, got {value!r}")
        for key in ("window", "retry_in"):
            value = getattr(self, key)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ConfigError(f"flapping.{key}: expected a number >= 0, got {value!r}")
            object.__setattr__(self, key, float(value))

    @classmethod
    def coerce(cls, value: object) -> FlappingInfo | None:
        """Accept a FlappingInfo, a dict, a 4-sequence, a string ``"2, 1., 7., 5"`` or None
        (also written ``"off"``, as in an ini file or on a command line)."""
        if value is None or isinstance(value, FlappingInfo):
            return value
        if isinstance(value, str) and value.strip().lower() in OFF:
            return None
        if isinstance(value, Mapping):
            unknown = set(value) - {"attempts", "window", "retry_in", "max_retry"}
            if unknown:
                raise ConfigError(f"flapping: unknown key(s) {', '.join(sorted(unknown))}")
            return cls(**value)
        if isinstance(value, str):
            parts = value.replace(",", " ").split()
            return cls._from_parts(parts, value)
        if isinstance(value, Sequence):
            return cls._from_parts(list(value), value)
        raise ConfigError(
            f"flapping: expected a dict, a list or 'attempts window retry_in "
            f"max_retry', got {value!r}"
        )

    @classmethod
    def _from_parts(cls, parts: list, original: object) -> FlappingInfo:
        if len(parts) != 4:
            raise ConfigError(
                f"flapping: expected 4 values (attempts, window, retry_in, "
                f"max_retry), got {original!r}"
            )
        try:
            attempts, window, retry_in, max_retry = (
                _to_int(parts[0]),
                _to_float(parts[1]),
                _to_float(parts[2]),
                _to_int(parts[3]),
            )
        except (TypeError, ValueError):
            raise ConfigError(
                f"flapping: expected 'attempts window retry_in max_retry' as "
                f"numbers, got {original!r}"
            ) from None
        return cls(attempts, window, retry_in, max_retry)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "attempts": self.attempts,
            "window": self.window,
            "retry_in": self.retry_in,
            "max_retry": self.max_retry,
        }


def _to_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(value)
    return float(value)


def _to_int(value: object) -> int:
    if isinstance(value, str):
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(value)


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
        if self.retries < self.info.max_retry:
            self.retries += 1
            return Verdict.RETRY_LATER
        self.reset()
        return Verdict.GIVE_UP

    def reset(self) -> None:
        self.exits.clear()
        self.retries = 0

    def snapshot(self) -> dict[str, object]:
        return {**self.info.to_dict(), "retries": self.retries, "recent_exits": len(self.exits)}
