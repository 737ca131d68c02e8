"""Warnings that repeat, said once per interval: a job in a crash loop must not fill
gaffer's log with one line per attempt (the events still say each one).

Each manager has one (``ProcessTable.warnings``). ``say((job, kind))`` lets the first
warning of that kind for that job through, then one per ``interval``; the one let
through says how many were held back since the last (None: hold this one back).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

INTERVAL = 60.0
MAX_KEYS = 10_000  # beyond, keys idle for an interval are forgotten


class RateLimiter:
    def __init__(
        self, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    def allow(self, key: Hashable) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        if len(self._last) >= MAX_KEYS:
            self._forget(now)
        self._last[key] = now
        return True

    def say(self, key: Hashable) -> str | None:
        """None to hold the warning back; else what to add to it: "", or " (3 more like
        it held back)"."""
        held = self._held.get(key, 0)
        if not self.allow(key):
            return None
        self._held.pop(key, None)
        return f" ({held} more like it held back)" if held else ""

    def _forget(self, now: float) -> None:
        for key in [key for key, last in self._last.items() if now - last >= self.interval]:
            del self._last[key]
            self._held.pop(key, None)
