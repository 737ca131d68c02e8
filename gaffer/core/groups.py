"""Waiting for process groups to empty after their leader exited.

When a process exits while members of its group are still alive (children it forked),
they are stopped too, and the manager waits until the group is really empty: zombies do
not count (init reaps them, sometimes a second later). Knowing who is in a group takes a
scan of /proc, so all groups being waited for share one scan per tick, done in a worker
thread: stopping 500 shell-wrapped processes costs a few scans, not 500, and the loop
never reads /proc.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Callable

from gaffer.core.procfs import all_pids, proc_stat

POLL_INTERVAL = 0.05


def live_groups(pgids: set[int]) -> set[int]:
    """Which of ``pgids`` still hold a live (non-zombie) process: one scan of /proc."""
    alive: set[int] = set()
    for pid in all_pids():
        stat = proc_stat(pid)
        if stat and not stat.exited and stat.pgid in pgids:
            alive.add(stat.pgid)
            if len(alive) == len(pgids):
                break
    return alive


def group_exists(pgid: int | None) -> bool:
    """Cheap first check: is anything (zombies included) left in the group?"""
    if pgid is None:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class GroupWatch:
    """Calls back once each watched group is empty."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: dict[int, Callable[[], None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, pgid: int, gone: Callable[[], None]) -> None:
        self._waiting[pgid] = gone
        if self._timer is None and not self._busy:
            self._timer = self._loop.call_soon(self._tick)

    def discard(self, pgid: int) -> None:
        self._waiting.pop(pgid, None)

    def _tick(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="gaffer-groups"
            )
        self._busy = True
        future = self._executor.submit(live_groups, set(self._waiting))
        future.add_done_callback(self._scanned_threadsafe)

    def _scanned_threadsafe(self, future: concurrent.futures.Future) -> None:
        try:
            self._loop.call_soon_threadsafe(self._scanned, future)
        except RuntimeError:  # the loop is closed
            pass

    def _scanned(self, future: concurrent.futures.Future) -> None:
        self._busy = False
        alive = (
            future.result()
            if not future.cancelled() and not future.exception()
            else set(self._waiting)
        )
        for pgid in [pgid for pgid in self._waiting if pgid not in alive]:
            self._waiting.pop(pgid)()
        if self._waiting and self._timer is None:
            self._timer = self._loop.call_later(POLL_INTERVAL, self._tick)

    def close(self) -> None:
        self._waiting.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
