"""What the WebSocket channels put on the wire, and the bounded queue they write through.

The per-process IO channel (``/<pid>/channel``) speaks framed binary messages::

    V1 <type> <id>\\0<body>

``type`` is ``message`` (data), ``response`` (the answer to a client's ``message``, body
``OK``) or ``error`` (body ``{"error": CODE, "errno": N, "reason": TEXT}``); ``id`` is a
word (a uuid4 hex by default) tying a response or an error to its request.

Both channels send through an :class:`Outbox`: one bounded queue per connection, drained
by one writer coroutine that awaits each write. A client that does not read only fills its
own queue; once it is full, newer items are dropped and counted, and a notice takes their
place in the queue, so the client learns where the gap is. Nothing a slow client does can
hold up the loop or the other clients.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gaffer.errors import ProtocolError

VERSION = b"V1"
FRAME_TYPES = ("message", "response", "error")
MAX_ID_LENGTH = 128

#: ids of the frames the server sends on its own (not in answer to a request)
ERROR_ID = "gaffer_error"
DROPPED_ID = "gaffer_dropped"

QUEUE_ITEMS = 1000
QUEUE_BYTES = 4 * 1024 * 1024


class FrameError(ProtocolError):
    """Bytes that are not a ``V1 <type> <id>\\0<body>`` frame."""


@dataclass(frozen=True)
class Frame:
    type: str
    id: str
    body: bytes = b""

    def encode(self) -> bytes:
        return encode_frame(self.type, self.id, self.body)


def new_id() -> str:
    return secrets.token_hex(16)


def encode_frame(kind: str, frame_id: str, body: bytes | str = b"") -> bytes:
    """``V1 <kind> <frame_id>\\0<body>``; ``body`` may be text (sent as UTF-8)."""
    if kind not in FRAME_TYPES:
        raise FrameError(f"unknown frame type {kind!r}")
    _check_id(frame_id)
    if isinstance(body, str):
        body = body.encode()
    return b"%s %s %s\0%s" % (VERSION, kind.encode(), frame_id.encode(), body)


def decode_frame(data: bytes | str) -> Frame:
    """Parse a frame; raise FrameError saying what is wrong."""
    if isinstance(data, str):
        data = data.encode()
    head, sep, body = data.partition(b"\0")
    if not sep:
        raise FrameError("no NUL byte between the header and the body")
    if len(head) > 2 * MAX_ID_LENGTH:
        raise FrameError("the header is too long")
    try:
        parts = head.decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise FrameError("the header is not ASCII") from None
    if len(parts) != 3:
        raise FrameError("the header must be 'V1 <type> <id>'")
    version, kind, frame_id = parts
    if version != VERSION.decode():
        raise FrameError(f"unknown version {version!r} (expected V1)")
    if kind not in FRAME_TYPES:
        raise FrameError(f"unknown frame type {kind!r} (expected {', '.join(FRAME_TYPES)})")
    _check_id(frame_id)
    return Frame(kind, frame_id, body)


def _check_id(frame_id: str) -> None:
    if (
        not frame_id
        or len(frame_id) > MAX_ID_LENGTH
        or not frame_id.isascii()
        or not frame_id.isprintable()
        or " " in frame_id
    ):
        raise FrameError(f"bad frame id {frame_id[:MAX_ID_LENGTH]!r}: a word of printable ASCII")


# -- the outgoing queue ----------------------------------------------------------------------


class _Gap:
    """Where dropped items would have been: turned into a notice by the writer."""

    __slots__ = ("bytes", "items")

    def __init__(self) -> None:
        self.items = 0
        self.bytes = 0


Payload = str | bytes


class Outbox:
    """A bounded queue of messages for one connection and the coroutine writing them.

    Args:
        send: awaits the write of one message (``handler.write_message``); raising ends
            the writer (the connection is gone).
        gap: the notice replacing ``(items, bytes)`` dropped items.
        max_items, max_bytes: the bounds; an ``urgent`` item (an answer to the client)
            may use twice as much, so a flood of events does not drop the answers.
    """

    def __init__(
        self,
        send: Callable[[Payload], Awaitable[object]],
        gap: Callable[[int, int], Payload],
        max_items: int = QUEUE_ITEMS,
        max_bytes: int = QUEUE_BYTES,
    ) -> None:
        self._send = send
        self._gap = gap
        self._max_items, self._max_bytes = max_items, max_bytes
        self._queue: deque[tuple[Payload, int] | _Gap] = deque()
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._ending = False
        self._stopped = False
        self.sent = 0
        self.dropped_items = 0  # in total
        self.dropped_bytes = 0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._stopped or self._ending

    def has_room(self, urgent: bool = False) -> bool:
        factor = 2 if urgent else 1
        return (
            len(self._queue) < factor * self._max_items and self._bytes < factor * self._max_bytes
        )

    def offer(self, build: Callable[[], Payload], size: int = 0, urgent: bool = False) -> bool:
        """Queue ``build()`` if there is room (``build`` is not called otherwise), else
        count the item (of about ``size`` bytes) as dropped. True when queued."""
        if self._stopped or self._ending:
            return False
        if not self.has_room(urgent):
            self._drop(size)
            return False
        payload = build()
        length = len(payload)
        self._queue.append((payload, length))
        self._bytes += length
        self._wake()
        return True

    def put(self, payload: Payload, urgent: bool = False) -> bool:
        return self.offer(lambda: payload, len(payload), urgent)

    def _drop(self, size: int) -> None:
        last = self._queue[-1] if self._queue else None
        if not isinstance(last, _Gap):
            last = _Gap()
            self._queue.append(last)
        last.items += 1
        last.bytes += size
        self.dropped_items += 1
        self.dropped_bytes += size
        self._wake()

    def end(self) -> None:
        """Take no more items; the writer returns once the queue is written."""
        self._ending = True
        self._wake()

    def stop(self) -> None:
        """Forget what is queued; the writer returns at once (the connection is gone)."""
        self._stopped = True
        self._queue.clear()
        self._bytes = 0
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def run(self) -> None:
        """The writer: one write at a time, each awaited (the connection's pace)."""
        while not self._stopped:
            if not self._queue:
                if self._ending:
                    return
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
                continue
            entry = self._queue.popleft()
            if isinstance(entry, _Gap):
                payload = self._gap(entry.items, entry.bytes)
            else:
                payload, length = entry
                self._bytes -= length
            try:
                await self._send(payload)
            except Exception:  # closed under us: nobody is left to write to
                self._stopped = True
                self._queue.clear()
                return
            self.sent += 1
