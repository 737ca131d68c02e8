"""Clients of gafferd's WebSockets: ``/channel`` (subscriptions and commands) and a
process's IO channel ``/<pid>/channel[/<stream>]``.

::

    channel = await server.socket()
    channel.subscribe("JOB:default.web", lambda evtype, msg: print(evtype, msg))
    print(await channel.command("scale", "default.web", "+1"))

    io = await server.process(1).channel(stream="ctrl")
    io.on_data(lambda data: print(data))
    await io.write(b"PING\\n")
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

from gaffer import wire
from gaffer.client.transport import Transport, to_json
from gaffer.errors import ApiError, ClientError

EventCallback = Callable[[str, dict[str, Any]], object]
READ, WRITE = 1, 2  # the bits of an IO channel's mode


class ChannelClosed(ClientError):
    """The WebSocket closed (gafferd stopped, or the process exited)."""


class ChannelModeError(ClientError, OSError):
    """An IO channel used the way its ``mode`` does not allow: read from one opened
    write-only (``mode=2``), or written to one opened read-only (``mode=1``). An
    ``OSError`` too, as the original client raised ``IOError`` there."""


class GafferSocket:
    """``/channel``: subscribe to topics (EVENTS[:pattern], JOB:<s.n>, PROCESS:<pid>,
    STATS:<pid|s.n>, STREAM:<pid>[.<label>]) and run commands."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._subscribers: dict[str, list[EventCallback]] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self.errors: list[dict[str, Any]] = []

    async def connect(self) -> None:
        self._ws = await self._transport.websocket("/channel")
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            raw = await self._ws.read_message()
            if raw is None:
                break
            try:
                message = json.loads(raw)
            except (TypeError, ValueError):
                continue
            self._dispatch(message)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChannelClosed("the channel closed"))
        self._pending.clear()

    def _dispatch(self, message: dict[str, Any]) -> None:
        event, data = message.get("event"), message.get("data") or {}
        if event == "gaffer:event":
            topic = data.get("topic", "")
            for callback in list(self._subscribers.get(topic, ())):
                callback(data.get("event", ""), data)
        elif event in ("gaffer:command_success", "gaffer:command_error"):
            future = self._pending.pop(str(data.get("id")), None)
            if future is not None and not future.done():
                if event == "gaffer:command_success":
                    future.set_result(data.get("result"))
                else:
                    future.set_exception(_api_error(data.get("error") or {}, 500))
        elif event in ("gaffer:subscription_success", "gaffer:subscription_error"):
            key = f"sub:{message.get('topic') or data.get('topic')}"
            future = self._pending.pop(key, None)
            if future is not None and not future.done():
                if event == "gaffer:subscription_success":
                    future.set_result(data)
                else:
                    future.set_exception(_api_error(data, 400))
        elif event in ("gaffer:error", "gaffer:dropped"):
            self.errors.append(message)

    def _send(self, message: Any) -> None:
        if self._ws is None or self._ws.protocol is None:
            raise ChannelClosed("the channel is closed")
        self._ws.write_message(message if isinstance(message, str) else to_json(message))

    async def subscribe(self, topic: str, callback: EventCallback) -> None:
        """Call ``callback(evtype, data)`` for every event of ``topic``. Raises ApiError
        when gafferd refuses the topic."""
        future = asyncio.get_running_loop().create_future()
        self._pending[f"sub:{topic}"] = future
        self._subscribers.setdefault(topic, []).append(callback)
        self._send({"event": "SUB", "data": {"topic": topic}})
        try:
            answer = await future
        except ApiError:
            self._subscribers[topic].remove(callback)
            raise
        canonical = answer.get("topic", topic) if isinstance(answer, dict) else topic
        if canonical != topic:  # gafferd names topics its way (JOB:default.web ...)
            self._subscribers.setdefault(canonical, []).append(callback)

    async def unsubscribe(self, topic: str) -> None:
        future = asyncio.get_running_loop().create_future()
        self._pending[f"sub:{topic}"] = future
        self._send({"event": "UNSUB", "data": {"topic": topic}})
        await future
        self._subscribers.pop(topic, None)

    async def command(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run a command (reference section 5.3) and return its result."""
        identity = str(next(self._ids))
        future = asyncio.get_running_loop().create_future()
        self._pending[identity] = future
        self._send(
            {
                "event": "CMD",
                "data": {"identity": identity, "name": name, "args": list(args), "kwargs": kwargs},
            }
        )
        return await future

    async def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
        if self._reader is not None:
            await asyncio.wait({self._reader}, timeout=5)
            self._reader.cancel()


class IOChannel:
    """A process's stdio over ``/<pid>/channel[/<stream>]?mode=`` (1 read, 2 write, 3 both)."""

    def __init__(
        self, transport: Transport, pid: int, mode: int = 3, stream: str | None = None
    ) -> None:
        self._transport = transport
        self.pid, self.mode, self.stream = pid, mode, stream
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[bytes], object]] = []
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._ids = itertools.count(1)
        self.closed = asyncio.Event()
        self.errors: list[dict[str, Any]] = []

    async def connect(self) -> None:
        path = f"/{self.pid}/channel" + (f"/{self.stream}" if self.stream else "")
        self._ws = await self._transport.websocket(f"{path}?mode={self.mode}")
        self._reader = asyncio.ensure_future(self._read())

    @property
    def readable(self) -> bool:
        return bool(self.mode & READ)

    @property
    def writable(self) -> bool:
        return bool(self.mode & WRITE)

    def on_data(self, listener: Callable[[bytes], object]) -> None:
        """Call ``listener(data)`` with every chunk of output. ChannelModeError on a
        channel opened without reading (``mode=2``): it would never be called."""
        if not self.readable:
            raise ChannelModeError(
                f"the IO channel of process {self.pid} was opened write-only "
                f"(mode={self.mode}): open it with mode=1 or 3 to read"
            )
        self._listeners.append(listener)

    async def _read(self) -> None:
        while True:
            raw = await self._ws.read_message()
            if raw is None:
                break
            if isinstance(raw, str):
                raw = raw.encode()
            try:
                frame = wire.decode_frame(raw)
            except wire.FrameError:
                continue
            kind, ident, body = frame.type, frame.id, frame.body
            if kind == "message":
                for listener in list(self._listeners):
                    listener(body)
            elif kind == "response":
                future = self._pending.pop(ident, None)
                if future is not None and not future.done():
                    future.set_result(None)
            else:
                try:
                    error = json.loads(body)
                except ValueError:
                    error = {"error": body.decode(errors="replace")}
                self.errors.append(error)
                future = self._pending.pop(ident, None)
                if future is not None and not future.done():
                    future.set_exception(
                        ApiError.of(
                            int(error.get("errno", 500)),
                            str(error.get("error", "error")),
                            str(error.get("reason") or error.get("error", "")),
                        )
                    )
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChannelClosed("the process channel closed"))
        self._pending.clear()
        self.closed.set()

    async def write(self, data: bytes | str) -> None:
        """Write ``data``; returns once gafferd has taken it (its OK response).
        ChannelModeError on a channel opened read-only (``mode=1``)."""
        if not self.writable:
            raise ChannelModeError(
                f"the IO channel of process {self.pid} was opened read-only "
                f"(mode={self.mode}): open it with mode=2 or 3 to write"
            )
        if self._ws is None or self._ws.protocol is None:
            raise ChannelClosed("the process channel is closed")
        ident = f"w{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        payload = data.encode() if isinstance(data, str) else data
        self._ws.write_message(wire.encode_frame("message", ident, payload), binary=True)
        await future

    async def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
        if self._reader is not None:
            await asyncio.wait({self._reader}, timeout=5)
            self._reader.cancel()


def _api_error(error: dict[str, Any], default_errno: int) -> ApiError:
    """The ApiError of a channel's ``{errno, reason, message}`` error."""
    return ApiError.of(
        int(error.get("errno", default_errno)),
        str(error.get("reason", "error")),
        str(error.get("message") or error.get("reason", "")),
    )
