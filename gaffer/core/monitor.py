"""Live statistics: ``stat`` messages every ``interval`` seconds for monitored processes.

One timer serves every subscriber; it starts with the first and stops with the last.
Reading /proc for many processes is slow, so it happens in a worker thread and the results
are delivered on the loop: the loop only collects pids and calls listeners. A tick is
skipped while the previous one is still being read, so a slow machine gets fewer stats,
never a growing backlog. The process tree (for ``children``) comes from one scan of /proc,
refreshed at most once a second.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gaffer.core.stats import MAX_AGE, Sampler, descendants, descendants_map

if TYPE_CHECKING:
    from gaffer.core.process import Process

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.1
TREE_MAX_AGE = 1.0

Target = str | int  # a job id or an internal pid
StatListener = Callable[[str, dict], object]
Resolver = Callable[[Target], "list[Process]"]


class StatsMonitor:
    def __init__(
        self,
        owner: Any,
        sampler: Sampler,
        interval: float = DEFAULT_INTERVAL,
        resolver: Resolver | None = None,
    ) -> None:
        self._owner = owner
        self._resolve: Resolver = resolver or owner.processes_of
        self.interval = interval
        self._listeners: dict[Target, list[StatListener]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._sampler = sampler  # the manager's: shared with stats() and astats()
        self._tree: dict[int, list[int]] = {}
        self._tree_time = 0.0
        self._closed = False
        self._tick_started = 0.0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._owner.loop

    def add(self, target: Target, listener: StatListener) -> None:
        listeners = self._listeners.setdefault(target, [])
        if listener not in listeners:
            listeners.append(listener)
        self._closed = False
        if self._timer is None and not self._busy:
            # from any thread: Process.monitor() may be called off the loop
            self._timer = self.loop.call_soon_threadsafe(self._tick)

    def remove(self, target: Target, listener: StatListener) -> None:
        listeners = self._listeners.get(target)
        if listeners and listener in listeners:
            listeners.remove(listener)
            if not listeners:
                del self._listeners[target]
        if not self._listeners:
            self._cancel()

    def forget_job(self, target: Target) -> None:
        self._listeners.pop(target, None)
        if not self._listeners:
            self._cancel()

    @property
    def watching(self) -> bool:
        return bool(self._listeners)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        if not self._listeners or self._closed:
            return
        self._tick_started = self.loop.time()
        work: dict[int, tuple[int, str, int]] = {}
        for target in self._listeners:
            for proc in self._resolve(target):
                if proc.os_pid is not None and proc.active:
                    work[proc.pid] = (proc.pid, proc.name, proc.os_pid)
        if not work:
            self._schedule()
            return
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="gaffer-stats"
            )
        self._busy = True
        future = self._executor.submit(self._sample, list(work.values()))
        future.add_done_callback(self._sampled_threadsafe)

    def _sample(self, work: list[tuple[int, str, int]]) -> dict[int, dict[str, Any]]:
        """Runs in the worker thread."""
        now = time.monotonic()
        if now - self._tree_time > TREE_MAX_AGE:
            self._tree = descendants_map()
            self._tree_time = now
        out = {}
        for pid, name, os_pid in work:
            stat = self._sampler.sample(os_pid, descendants(os_pid, self._tree))
            out[pid] = {"event": "stat", "pid": pid, "name": name, **stat}
        self._sampler.prune(MAX_AGE)
        return out

    def _sampled_threadsafe(self, future: concurrent.futures.Future) -> None:
        try:
            self.loop.call_soon_threadsafe(self._deliver, future)
        except RuntimeError:  # loop closed while sampling
            pass

    def _deliver(self, future: concurrent.futures.Future) -> None:
        self._busy = False
        if future.cancelled() or self._closed:
            return
        exc = future.exception()
        if exc is not None:
            logger.error("stats sampling failed: %s", exc)
        else:
            stats: dict[int, dict[str, Any]] = future.result()
            for target, listeners in list(self._listeners.items()):
                procs = self._resolve(target)
                for proc in procs:
                    stat = stats.get(proc.pid)
                    if stat is None:
                        continue
                    for listener in list(listeners):
                        try:
                            listener("stat", stat)
                        except Exception:
                            logger.exception("stat listener %r failed", listener)
        self._schedule()

    def _schedule(self) -> None:
        """The next tick, ``interval`` after the start of this one (at once if late)."""
        if self._listeners and self._timer is None and not self._closed:
            delay = max(0.0, self._tick_started + self.interval - self.loop.time())
            self._timer = self.loop.call_later(delay, self._tick)

    def close(self) -> None:
        self._closed = True
        self._listeners.clear()
        self._cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
