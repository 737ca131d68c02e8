"""Giving freed memory back to the system, now and then.

gafferd starts by importing a few hundred modules and, when its jobs load, by spawning
their processes: both free much more than they keep, but glibc's allocator keeps freed
pages that are not at the top of its heap, so they stay in the daemon's RSS for good
(about 1.3 MiB of 36 at 1,000 processes). ``malloc_trim(0)`` hands them back. It is asked
for a few seconds after the start, once the first spawns are done, then every few minutes
while gafferd runs (it takes well under a millisecond on a heap this size). Elsewhere than
on glibc there is no such call and nothing is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

FIRST_TRIM = 5.0  # seconds after the start: imports done, the first jobs spawned
TRIM_EVERY = 300.0  # seconds between two trims after that


def malloc_trim() -> Callable[[], object] | None:
    """The C library's ``malloc_trim(0)`` as a function, or None where there is none."""
    import ctypes  # here: gafferd already holds it for prctl; the engine never needs it

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


M_MMAP_THRESHOLD = -3  # mallopt(3)
MAP_FROM = 1024 * 1024  # bytes: allocations this large get pages of their own


def map_large_allocations() -> bool:
    """Give allocations of 1 MiB or more pages of their own, returned to the system when
    freed. glibc does so from 128 KiB, but raises that threshold to the size of any such
    block freed: after one scrypt of a login (16 MiB), every later one stays in the heap
    of its thread for good. A fixed threshold keeps memory flat under password guessing.
    False where there is no ``mallopt``."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MAP_FROM))


class MemoryTrimmer:
    """Trims the heap ``first`` seconds after ``start()``, then every ``every`` seconds."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, first: float = FIRST_TRIM, every: float = TRIM_EVERY
    ) -> None:
        self._loop = loop
        self._first, self._every = first, every
        self._trim = malloc_trim()
        self._timer: asyncio.TimerHandle | None = None
        self.trims = 0

    def start(self) -> None:
        if self._trim is not None:
            self._timer = self._loop.call_later(self._first, self._run)

    def _run(self) -> None:
        self._trim()
        self.trims += 1
        self._timer = self._loop.call_later(self._every, self._run)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
