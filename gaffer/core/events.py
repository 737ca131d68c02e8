"""Publish/subscribe of manager events, delivered on the event loop.

Event names are dotted (``job.default.web.exit``). A subscription to a pattern receives
every event whose name is the pattern or starts with ``pattern + "."``; ``"."`` receives
everything. Listeners are called as ``listener(evtype, msg)`` with the full event name.

Guarantees:

* each event reaches each listener at most once, however many of its patterns match
  (the original delivered twice to first-segment subscribers);
* delivery happens on the loop, in publish order, after ``publish`` returns;
* ``publish``, ``subscribe`` and ``unsubscribe`` are safe from any thread;
* subscribers are resolved when the event is delivered, as in the original: a listener
  subscribed right after a call that published events (before the loop delivers them)
  still gets them, one unsubscribed before delivery does not; a ``subscribe_once``
  listener gets exactly one event;
* a listener that raises is logged and does not stop the delivery to the others.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

logger = logging.getLogger(__name__)

WILDCARD = "."
Listener = Callable[[str, Any], object]


class _Subscription:
    __slots__ = ("active", "listener", "once", "pattern")

    def __init__(self, pattern: str, listener: Listener, once: bool) -> None:
        self.pattern = pattern
        self.listener = listener
        self.once = once
        self.active = True


def _normalize(pattern: str) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"event pattern must be a non-empty string, got {pattern!r}")
    if pattern == WILDCARD:
        return pattern
    return pattern.rstrip(".") or WILDCARD


class EventEmitter:
    """Thread-safe event bus bound to one asyncio loop (uvloop or stdlib)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._subs: dict[str, list[_Subscription]] = {}
        self._pending: deque[tuple[str, Any]] = deque()
        self._scheduled = False
        self._closed = False
        self.published = 0  # events published since the start (gaffer_events_published_total)

    # -- subscriptions -------------------------------------------------------------------
    def subscribe(self, pattern: str, listener: Listener, once: bool = False) -> None:
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {listener!r}")
        pattern = _normalize(pattern)
        with self._lock:
            subs = self._subs.setdefault(pattern, [])
            for sub in subs:
                if sub.listener == listener and sub.once == once:
                    return  # already subscribed: subscribing is idempotent
            subs.append(_Subscription(pattern, listener, once))

    def subscribe_once(self, pattern: str, listener: Listener) -> None:
        self.subscribe(pattern, listener, once=True)

    def unsubscribe(self, pattern: str, listener: Listener, once: bool | None = None) -> None:
        """Remove ``listener`` from ``pattern`` (both plain and once subscriptions unless
        ``once`` says which). Unknown listeners are ignored."""
        pattern = _normalize(pattern)
        with self._lock:
            subs = self._subs.get(pattern)
            if not subs:
                return
            keep = []
            for sub in subs:
                if sub.listener == listener and (once is None or sub.once == once):
                    sub.active = False
                else:
                    keep.append(sub)
            if keep:
                self._subs[pattern] = keep
            else:
                del self._subs[pattern]

    def unsubscribe_once(self, pattern: str, listener: Listener) -> None:
        self.unsubscribe(pattern, listener, once=True)

    def unsubscribe_all(self, patterns: list[str] | None = None) -> None:
        with self._lock:
            names = list(self._subs) if patterns is None else [_normalize(p) for p in patterns]
            for name in names:
                for sub in self._subs.pop(name, ()):
                    sub.active = False

    def has_subscribers(self, pattern: str) -> bool:
        with self._lock:
            return bool(self._subs.get(_normalize(pattern)))

    # -- publishing ----------------------------------------------------------------------
    def publish(self, evtype: str, msg: Any = None) -> None:
        """Queue ``evtype`` for delivery on the loop; returns at once, from any thread."""
        if self._closed:
            return
        with self._lock:
            self.published += 1
            self._pending.append((evtype, msg))
            if self._scheduled:
                return
            self._scheduled = True
        loop = self._get_loop()
        try:
            if _running_loop() is loop:
                loop.call_soon(self._drain)
            else:
                loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody is left to deliver to
            with self._lock:
                self._pending.clear()
                self._scheduled = False

    def _resolve(self, evtype: str) -> tuple[_Subscription, ...]:
        subs = self._subs
        found: list[_Subscription] = list(subs.get(WILDCARD, ()))
        end = -1
        while True:
            end = evtype.find(".", end + 1)
            prefix = evtype if end < 0 else evtype[:end]
            found.extend(subs.get(prefix, ()))
            if end < 0:
                break
        if len(found) < 2:
            return tuple(found)
        seen: set[object] = set()
        unique = []
        for sub in found:
            key = _identity(sub.listener)
            if key not in seen:
                seen.add(key)
                unique.append(sub)
        return tuple(unique)

    def _drain(self) -> None:
        with self._lock:
            batch = self._pending
            self._pending = deque()
            self._scheduled = False
        for evtype, msg in batch:
            with self._lock:
                targets = self._resolve(evtype)
            for sub in targets:
                if not sub.active:
                    continue
                if sub.once:
                    sub.active = False
                    self._discard(sub)
                try:
                    sub.listener(evtype, msg)
                except Exception:
                    logger.exception("event listener %r failed on %s", sub.listener, evtype)

    def _discard(self, sub: _Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.pattern)
            if subs and sub in subs:
                subs.remove(sub)
                if not subs:
                    del self._subs[sub.pattern]

    # -- streams -------------------------------------------------------------------------
    @asynccontextmanager
    async def stream(
        self, pattern: str = WILDCARD, maxsize: int = 1000
    ) -> AsyncIterator[EventStream]:
        """Events matching ``pattern`` as an async iterator with a bounded queue.

        When the consumer is ``maxsize`` events behind, newer events are dropped and the
        next item yielded is ``("gaffer.dropped", {"event": "gaffer.dropped", "count": n})``.
        """
        stream = EventStream(maxsize)
        self.subscribe(pattern, stream.push)
        try:
            yield stream
        finally:
            self.unsubscribe(pattern, stream.push)

    # -- lifecycle -----------------------------------------------------------------------
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "this EventEmitter has no loop: pass one to "
                    "EventEmitter(loop) or publish from a running loop"
                ) from None
        return self._loop

    def close(self) -> None:
        """Drop every subscriber and every undelivered event; later publishes are ignored."""
        with self._lock:
            self._closed = True
            for subs in self._subs.values():
                for sub in subs:
                    sub.active = False
            self._subs.clear()
            self._pending.clear()

    @property
    def closed(self) -> bool:
        return self._closed


class EventStream:
    """Bounded async iterator of ``(evtype, msg)``, filled by an EventEmitter.

    A consumer that falls ``maxsize`` events behind loses the newer ones; where the gap is,
    it reads one ``("gaffer.dropped", {"event": "gaffer.dropped", "count": n})``.
    """

    DROPPED = "gaffer.dropped"

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._queue: deque[tuple[str, Any]] = deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None

    def push(self, evtype: str, msg: Any) -> None:
        queue = self._queue
        if len(queue) < self._maxsize:
            queue.append((evtype, msg))
        elif queue[-1][0] == self.DROPPED:
            queue[-1][1]["count"] += 1
        else:
            queue.append((self.DROPPED, {"event": self.DROPPED, "count": 1}))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        while not self._queue:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    def get_nowait(self) -> tuple[str, Any] | None:
        return self._queue.popleft() if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)


def _identity(listener: Listener) -> object:
    """Equal listeners (the same bound method fetched twice) share one identity."""
    try:
        hash(listener)
    except TypeError:
        return id(listener)
    return listener


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
