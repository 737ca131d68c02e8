"""An HTTP API that loads its server when the first client connects.

The HTTP server is the largest part of gafferd: tornado's web framework, its HTTP server
and the API's handlers are about 6 MiB of memory and 60 ms of start-up (docs/design.md#memory),
and a gafferd nobody talks to needs none of it. ``DeferredHttpHandler`` holds the bound
listening sockets and watches them on the loop; when one turns readable (a connection
waits to be accepted), it stops watching, builds the real ``HttpHandler`` on the same
sockets and starts it, and tornado accepts the waiting connection on the next turn of
the loop. Until then a client's connection waits in the socket's backlog, so nothing is
refused; the first request only takes the import time longer.

Imports nothing of tornado: ``build`` does, when it is called.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

from gaffer.http import binding

logger = logging.getLogger("gaffer.http")

RETRY = 1.0  # seconds before watching again after a handler could not be built


class DeferredHttpHandler:
    """An application of the Manager, like ``HttpHandler``, serving ``sockets`` with the
    handler ``build(sockets)`` returns, built at the first connection. A handler that
    cannot be built (its TLS files gone since gafferd checked them...) is logged, and each
    waiting connection is closed, so that the socket does not stay readable; the next
    connection tries again."""

    def __init__(
        self,
        sockets: Iterable[socket.socket],
        build: Callable[[list[socket.socket]], Any],
        telemetry: Any = None,
    ) -> None:
        self._sockets = list(sockets)
        self._build = build
        # the Telemetry the built handler counts in (telemetry.py): attached from the
        # start, so /metrics reports the loop's lag since gafferd started, not since the
        # first client came
        self._telemetry = telemetry
        self._attached = False
        self._handed_over: set[int] = set()  # sockets now served by a successor
        self._watched: list[socket.socket] = []
        self._retry: asyncio.TimerHandle | None = None
        self.handler: Any = None  # the HttpHandler, once built
        self.loop: asyncio.AbstractEventLoop | None = None
        self.manager: Any = None

    @property
    def addresses(self) -> list[str]:
        if self.handler is not None:
            return list(self.handler.addresses)
        return [binding.bound_address(sock) for sock in self._sockets]

    def start(self, loop: asyncio.AbstractEventLoop, manager: Any) -> None:
        self.loop, self.manager = loop, manager
        if self._telemetry is not None and not self._attached:
            self._telemetry.attach(loop)
            self._attached = True
        self._watch()
        logger.info("HTTP API on %s", ", ".join(self.addresses))

    def _watch(self) -> None:
        assert self.loop is not None
        self._retry = None
        for sock in self._sockets:
            self.loop.add_reader(sock.fileno(), self._connected)
            self._watched.append(sock)

    def _unwatch(self) -> None:
        assert self.loop is not None
        for sock in self._watched:
            self.loop.remove_reader(sock.fileno())
        self._watched = []

    def _stop_watching(self) -> None:
        """No more waiting for the first connection (a retry pending included)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._watched:
            self._unwatch()

    def _connected(self) -> None:
        """A connection waits on one of the sockets: serve it with the real handler."""
        self._unwatch()
        try:
            handler = self._build(self._sockets)
            handler.announce = False  # said at start()
            handler.release_sockets(s for s in self._sockets if s.fileno() in self._handed_over)
            handler.start(self.loop, self.manager)
        except Exception:
            logger.exception(
                "the HTTP API could not be started: closing the waiting connections, "
                "trying again at the next one in %.0f s",
                RETRY,
            )
            self._refuse_waiting()
            self._retry = self.loop.call_later(RETRY, self._watch)
            return
        self.handler = handler

    def _refuse_waiting(self) -> None:
        for sock in self._sockets:
            while True:
                try:
                    connection, _ = sock.accept()
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                        logger.warning("accepting on %s: %s", binding.bound_address(sock), exc)
                    break
                connection.close()

    def release_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """These sockets were duplicated for a successor: at stop, close our descriptor but
        leave the unix socket file in place (as ``HttpHandler.release_sockets``)."""
        sockets = list(sockets)
        self._handed_over.update(sock.fileno() for sock in sockets)
        if self.handler is not None:
            self.handler.release_sockets(sockets)

    async def hand_over(self, drain: float) -> None:
        """A new gafferd takes over (as ``HttpHandler.hand_over``): before the server is
        built there is no connection to drain; the sockets are no longer watched, and a
        client connecting meanwhile waits in their backlog for the next gafferd."""
        if self.handler is not None:
            await self.handler.hand_over(drain)
            return
        self._stop_watching()

    def resume(self) -> None:
        """The hand-over failed: serve again."""
        if self.handler is not None:
            self.handler.resume()
        elif not self._watched and self._sockets:
            self._watch()

    async def stop(self) -> None:
        if self._attached:
            self._telemetry.detach()
            self._attached = False
        if self.handler is not None:
            await self.handler.stop()
            return
        self._stop_watching()
        sockets, self._sockets = self._sockets, []
        paths = [binding.unix_path(s) for s in sockets if s.fileno() not in self._handed_over]
        for sock in sockets:
            sock.close()
        for path in paths:
            binding.remove_unix_file(path)

    def restart(self) -> None:
        if self.handler is not None:
            self.handler.restart()
