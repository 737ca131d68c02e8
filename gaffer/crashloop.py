"""The crash-loop settings of a job: ``FlappingInfo`` (its ``flapping`` option),
``BackoffInfo`` (its ``backoff``) and the restart policy's defaults.

A plain value, imported by the engine (``gaffer.core.flapping`` applies it), the ini
reader, the HTTP API and the command line alike; it imports nothing of gaffer, so the
client side can read and write the settings without loading the engine.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from gaffer.errors import ConfigError

OFF = frozenset(("off", "false", "no", "none"))  # words that turn crash-loop protection off
RESTART_MODES = ("always", "on-failure", "never")
DEFAULT_RESTART = "always"
DEFAULT_START_SECS = 1.0  # a process that lives this long counts as started (supervisor's)
DEFAULT_START_RETRIES = 5
KEYS = ("attempts", "window", "retry_in", "max_retry")


@dataclass(frozen=True, slots=True)
class FlappingInfo:
    """Crash-loop settings of a job: ``attempts`` exits within ``window`` seconds is a flap;
    a flapping job is retried ``retry_in`` seconds later, at most ``max_retry`` times.

    The counts may be given as floats with nothing after the point (``attempts=2.``), as
    the original's callers wrote them; ``2.5`` is refused."""

    attempts: int = 2
    window: float = 1.0
    retry_in: float = 7.0
    max_retry: int = 5

    def __post_init__(self) -> None:
        for key in ("attempts", "max_retry"):
            object.__setattr__(self, key, _count(key, getattr(self, key)))
        for key in ("window", "retry_in"):
            object.__setattr__(self, key, _seconds(f"flapping.{key}", getattr(self, key)))

    @classmethod
    def coerce(cls, value: object) -> FlappingInfo | None:
        """Accept a FlappingInfo, a dict, a 4-sequence, a string ``"2, 1., 7., 5"`` or None
        (also written ``"off"``, as in an ini file or on a command line)."""
        if value is None or isinstance(value, FlappingInfo):
            return value
        if isinstance(value, str) and value.strip().lower() in OFF:
            return None
        if isinstance(value, Mapping):
            unknown = set(value) - set(KEYS)
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
            numbers = [_number(part) for part in parts]
        except (TypeError, ValueError):
            raise ConfigError(
                f"flapping: expected 'attempts window retry_in max_retry' as "
                f"numbers, got {original!r}"
            ) from None
        return cls(*numbers)

    def to_dict(self) -> dict[str, float | int]:
        return {key: getattr(self, key) for key in KEYS}


def _count(key: str, value: object) -> int:
    """A whole number >= 1; a float with nothing after the point counts as one."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"flapping.{key}: expected a whole number >= 1, got {value!r}")
    return value


def _seconds(name: str, value: object) -> float:
    """A finite number >= 0 (not a bool), as a float; ConfigError naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f"{name}: expected a number >= 0, got {value!r}")
    return float(value)


def _number(value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            return float(text)
    return value


@dataclass(frozen=True, slots=True)
class BackoffInfo:
    """The delay before restarting a process that failed to start: ``initial`` seconds
    after the first failure, times ``factor`` after each next one, at most ``max``; each
    delay is drawn in [d/2, d] (jitter, so that jobs failing together do not retry in step)."""

    initial: float = 0.1
    factor: float = 2.0
    max: float = 30.0

    def __post_init__(self) -> None:
        for key in ("initial", "factor", "max"):
            object.__setattr__(self, key, _seconds(f"backoff.{key}", getattr(self, key)))
        if self.factor < 1:
            raise ConfigError(f"backoff.factor: expected a number >= 1, got {self.factor!r}")
        if self.max < self.initial:
            raise ConfigError(f"backoff.max: {self.max} is below backoff.initial {self.initial}")

    @classmethod
    def coerce(cls, value: object) -> BackoffInfo | None:
        """A BackoffInfo, a dict, 3 numbers (a list, or ``"0.1, 2, 30"``), or None/``off``."""
        if value is None or isinstance(value, BackoffInfo):
            return value
        if isinstance(value, str):
            if value.strip().lower() in OFF:
                return None
            value = value.replace(",", " ").split()
        if isinstance(value, Mapping):
            unknown = set(value) - {"initial", "factor", "max"}
            if unknown:
                raise ConfigError(f"backoff: unknown key(s) {', '.join(sorted(unknown))}")
            return cls(**value)
        if isinstance(value, Sequence) and len(value) == 3:
            try:
                numbers = [float(part) if isinstance(part, str) else part for part in value]
            except ValueError:
                raise ConfigError(
                    f"backoff: expected 'initial factor max' as numbers, got {value!r}"
                ) from None
            return cls(*numbers)
        raise ConfigError(
            f"backoff: expected 'initial, factor, max' (e.g. 0.1, 2, 30) or off, got {value!r}"
        )

    def delay(self, failures: int, draw: Callable[[], float] = random.random) -> float:
        """The delay after the ``failures``-th failed start in a row (1, 2, ...)."""
        full = min(self.initial * self.factor ** max(failures - 1, 0), self.max)
        return full * (0.5 + draw() / 2)

    def to_dict(self) -> dict[str, float]:
        return {"initial": self.initial, "factor": self.factor, "max": self.max}
