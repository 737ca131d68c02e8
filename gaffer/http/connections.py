"""The HTTP server's connections: a cap, timeouts, and accepting without a storm.

A client that opens connections and says nothing must not starve the others, nor take
every descriptor gafferd needs for its processes. So:

* **A cap** (``max_connections``, at most half the descriptor limit): an HTTP connection
  beyond it makes room by closing the connection that has been idle the longest (waiting
  for a request: a feed or a WebSocket is never idle); when none is idle, the new one is
  closed at once. 20,000 silent connections leave ``/ping`` answering for the others.
* **A header timeout**: a new connection has ``header_timeout`` seconds to send the head
  of its first request. **An idle timeout**: a kept-alive connection waits at most
  ``idle_timeout`` seconds for its next request (tornado's own timer).
* **Accepting** when the process is out of descriptors (EMFILE, ENFILE) or memory: the
  listening socket stays readable, so a plain accept loop would spin and log each turn.
  Here accepting pauses for 0.1 s (the idle connection of longest standing is closed to
  make room) and the warning is logged at most once a second.
"""

from __future__ import annotations

import errno
import logging
import resource
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.iostream
from tornado.ioloop import IOLoop

logger = logging.getLogger("gaffer.http")

ACCEPT_BURST = 128  # connections accepted per wake-up, so that others get the loop too
PAUSE = 0.1  # seconds without accepting after EMFILE
WARN_EVERY = 1.0  # seconds between two warnings of the same kind
_SHORT_OF = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    header_timeout: float = 10.0
    idle_timeout: float = 60.0

    def cap(self) -> int:
        """``max_connections``, but never more than half the descriptors (the rest are
        for processes, pipes and files)."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft // 2))


class Connections:
    """The connections of the servers of one HttpHandler. Used on the loop only."""

    def __init__(self, limits: ConnectionLimits, websockets: set[Any]) -> None:
        self.limits = limits
        self.cap = limits.cap()
        self._websockets = websockets  # open WebSockets count too
        self._open: set[Any] = set()  # streams of the HTTP connections
        self._idle: OrderedDict[Any, float] = OrderedDict()  # waiting for a request, oldest first
        self._fresh: OrderedDict[Any, float] = OrderedDict()  # no request head yet, by accept
        self._feeds: set[Any] = set()  # answering with a feed that lasts (never finishes)
        self._sweeper: Any = None
        self._warned: dict[str, float] = {}
        self.refused = 0  # connections closed at once, the cap reached with none idle
        self.evicted = 0  # idle connections closed to make room

    @property
    def count(self) -> int:
        return len(self._open) + len(self._websockets)

    # -- events of the server -----------------------------------------------------------------
    def admit(self, stream: Any) -> bool:
        """A new connection: room is made for it (False: there is none, it is closed)."""
        while self.count >= self.cap:
            if not self._evict_one():
                self.refused += 1
                self._warn("cap", f"{self.count} connections open (max_connections): refusing")
                stream.close()
                return False
        now = time.monotonic()
        self._open.add(stream)
        self._idle[stream] = now
        self._fresh[stream] = now
        if self._sweeper is None:
            self._sweeper = IOLoop.current().call_later(self._sweep_interval(), self._sweep)
        return True

    def waiting(self, stream: Any) -> None:
        """The connection waits for its next request (it is idle until its head comes)."""
        if stream in self._open:
            self._idle[stream] = time.monotonic()
            self._idle.move_to_end(stream)

    def busy(self, stream: Any) -> None:
        """A request head came: the connection is not idle until its answer is done."""
        self._idle.pop(stream, None)
        self._fresh.pop(stream, None)

    def closed(self, stream: Any) -> None:
        """The server let go of the connection (closed, or now a WebSocket's)."""
        self._open.discard(stream)
        self._idle.pop(stream, None)
        self._fresh.pop(stream, None)
        self._feeds.discard(stream)

    def feeding(self, stream: Any) -> None:
        """The connection answers with a feed (events, output, stats): it never finishes,
        and nothing waits for it to (a hand-over to a new gafferd closes it)."""
        if stream in self._open:
            self._feeds.add(stream)

    def in_progress(self) -> int:
        """Requests that may still finish: begun (or connected and about to send a head),
        answers not all sent, feeds excepted."""
        busy = sum(1 for s in self._open if s not in self._idle and s not in self._feeds)
        return busy + len(self._fresh)

    def close_all(self) -> None:
        """Close every connection now (WebSockets are the server's to close)."""
        for stream in list(self._open):
            self.closed(stream)
            if not stream.closed():
                stream.close()

    def stop(self) -> None:
        if self._sweeper is not None:
            IOLoop.current().remove_timeout(self._sweeper)
            self._sweeper = None

    # -- making room ------------------------------------------------------------------------
    def _evict_one(self) -> bool:
        while self._idle:
            stream, _ = self._idle.popitem(last=False)
            self._fresh.pop(stream, None)
            self._open.discard(stream)
            if not stream.closed():
                self.evicted += 1
                stream.close()
                return True
        return False

    def _sweep_interval(self) -> float:
        return max(0.05, min(1.0, self.limits.header_timeout / 4))

    def _sweep(self) -> None:
        """Close the connections that did not send a request head in time."""
        self._sweeper = None
        deadline = time.monotonic() - self.limits.header_timeout
        while self._fresh:
            stream, since = next(iter(self._fresh.items()))
            if since > deadline:
                break
            self.closed(stream)
            stream.close()
        if self._open:
            self._sweeper = IOLoop.current().call_later(self._sweep_interval(), self._sweep)

    # -- accepting --------------------------------------------------------------------------
    def accept_on(
        self, sock: socket.socket, callback: Callable[[socket.socket, Any], None]
    ) -> Callable[[], None]:
        """Accept connections on ``sock`` (``callback(connection, address)``); returns the
        function that stops it."""
        io_loop = IOLoop.current()
        state = {"removed": False, "paused": None}

        def on_readable(fd: Any, events: int) -> None:
            for _ in range(ACCEPT_BURST):
                if state["removed"]:
                    return
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno not in _SHORT_OF:
                        raise
                    pause(exc)
                    return
                callback(connection, address)

        def pause(exc: OSError) -> None:
            self._warn("accept", f"cannot accept connections: {exc.strerror}; pausing {PAUSE} s")
            self._evict_one()  # gives a descriptor back
            io_loop.remove_handler(sock)
            state["paused"] = io_loop.call_later(PAUSE, resume)

        def resume() -> None:
            state["paused"] = None
            if not state["removed"]:
                io_loop.add_handler(sock, on_readable, IOLoop.READ)

        def remove() -> None:
            if state["paused"] is not None:
                io_loop.remove_timeout(state["paused"])
            elif not state["removed"]:
                io_loop.remove_handler(sock)
            state["removed"] = True

        io_loop.add_handler(sock, on_readable, IOLoop.READ)
        return remove

    def _warn(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self._warned.get(kind, -WARN_EVERY) >= WARN_EVERY:
            self._warned[kind] = now
            logger.warning("%s", message)


class Server(tornado.httpserver.HTTPServer):
    """tornado's HTTP server, its connections kept by a :class:`Connections`."""

    def initialize(self, *args: Any, connections: Connections, **kwargs: Any) -> None:
        kwargs["idle_connection_timeout"] = connections.limits.idle_timeout
        super().initialize(*args, **kwargs)
        self.connections = connections

    def add_sockets(self, sockets: Any) -> None:
        # tornado's accept loop raises (and so spins) on EMFILE: ours pauses
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self.connections.accept_on(
                sock, self._handle_connection
            )

    def handle_stream(self, stream: tornado.iostream.IOStream, address: Any) -> None:
        if self.connections.admit(stream):
            super().handle_stream(stream, address)

    def start_request(
        self, server_conn: Any, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        stream = server_conn.stream
        self.connections.waiting(stream)
        delegate = super().start_request(server_conn, request_conn)
        return _Watched(delegate, self.connections, stream)

    def on_close(self, server_conn: Any) -> None:
        self.connections.closed(server_conn.stream)
        super().on_close(server_conn)


class _Watched(tornado.httputil.HTTPMessageDelegate):
    """A request's delegate that tells the connections when its head came."""

    __slots__ = ("_connections", "_delegate", "_stream")

    def __init__(self, delegate: Any, connections: Connections, stream: Any) -> None:
        self._delegate, self._connections, self._stream = delegate, connections, stream

    def headers_received(self, start_line: Any, headers: Any) -> Any:
        self._connections.busy(self._stream)
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self._delegate.data_received(chunk)

    def finish(self) -> None:
        self._delegate.finish()

    def on_connection_close(self) -> None:
        self._delegate.on_connection_close()
