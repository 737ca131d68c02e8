"""Many descriptors behind one reader of the loop: an epoll set of gaffer's own.

Every process has two or three descriptors to watch (its output pipes, its pidfd). As
readers of uvloop they would cost about 650 bytes each (a poll handle, a callback handle,
a copy of the context), 2 MiB at 1,000 processes. In an epoll set that the loop watches
as one descriptor, each costs a dict entry. The set is level-triggered, like the loop's
own readers: a callback that leaves data unread is called again on the next turn.

The set of a loop is made when its first descriptor comes and closed when its last one
goes, so an idle loop holds nothing and a closed loop never keeps a reader.
"""

from __future__ import annotations

import asyncio
import logging
import select
import weakref
from collections.abc import Callable

logger = logging.getLogger(__name__)

_SETS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReadySet] = weakref.WeakKeyDictionary()


class ReadySet:
    """Calls back, on the loop, when a descriptor turns readable (or hung up)."""

    __slots__ = ("_callbacks", "_epoll", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll: select.epoll | None = None
        self._callbacks: dict[int, tuple[Callable[..., object], tuple]] = {}

    def __len__(self) -> int:
        return len(self._callbacks)

    def __contains__(self, fd: int) -> bool:
        return fd in self._callbacks

    def add(self, fd: int, callback: Callable[..., object], *args: object) -> None:
        """Watch ``fd``: ``callback(*args)`` runs on every turn of the loop where it is
        readable (as ``loop.add_reader``; adding it again replaces the callback)."""
        if self._epoll is None:
            self._epoll = select.epoll()
            self._loop.add_reader(self._epoll.fileno(), self._ready)
        if fd not in self._callbacks:
            self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = (callback, args)

    def remove(self, fd: int) -> None:
        """Stop watching ``fd`` (before it is closed: a closed one leaves the set alone)."""
        if self._callbacks.pop(fd, None) is None or self._epoll is None:
            return
        try:
            self._epoll.unregister(fd)
        except OSError:  # closed already: the kernel dropped it from the set
            pass
        if not self._callbacks:
            self.close()

    def _ready(self) -> None:
        if self._epoll is None:
            return
        for fd, _ in self._epoll.poll(0):
            found = self._callbacks.get(fd)  # None: removed by an earlier callback
            if found is None:
                continue
            try:
                found[0](*found[1])
            except Exception:
                logger.exception("callback for fd %d failed", fd)

    def close(self) -> None:
        """Forget every descriptor (their owners close them) and close the set."""
        self._callbacks.clear()
        if self._epoll is not None:
            if not self._loop.is_closed():
                self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None


def ready_set(loop: asyncio.AbstractEventLoop) -> ReadySet:
    """The set shared by everything that watches descriptors on ``loop``."""
    found = _SETS.get(loop)
    if found is None:
        found = _SETS[loop] = ReadySet(loop)
    return found
