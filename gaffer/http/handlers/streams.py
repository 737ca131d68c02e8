"""Live feeds for curl and browsers: events, stats and process output, and stdin.

``?feed=`` picks the format:

* ``longpoll`` (the default): the next item, then the response ends;
* ``continuous``: one item after another as they come (JSON lines; raw bytes for output);
* ``eventsource``: Server-Sent Events (``event: <type>`` / ``data: <json>``).

``?heartbeat=N`` writes a keep-alive every N seconds of silence (``\\n``, or an SSE
comment). Each connection has a bounded queue: a reader that does not keep up loses the
newer items, and the stream says so where the gap is (a ``gaffer.dropped`` event with a
``count``; for raw output, a ``[gaffer: N bytes dropped]`` line). Nothing a slow reader
does can hold up the loop or the other readers.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import tornado.iostream

from gaffer.core.events import EventStream
from gaffer.http.commands import may_see_event
from gaffer.http.handlers.base import BaseHandler, Op, RequestError, as_pid
from gaffer.http.handlers.jobs import job_id

FEEDS = ("longpoll", "continuous", "eventsource")
QUEUE_ITEMS = 1000
QUEUE_BYTES = 1024 * 1024
FEED_PARAMS = {
    "feed": "longpoll (default), continuous or eventsource",
    "heartbeat": "seconds of silence before a keep-alive (default: none; raw output gets none)",
}


class FeedHandler(BaseHandler):
    """Writes a feed from a bounded queue filled by listeners on the loop."""

    default_feed = "longpoll"

    def initialize(self, **kwargs: Any) -> None:
        super().initialize(**kwargs)
        self._closed = asyncio.Event()

    def on_connection_close(self) -> None:
        self._closed.set()

    async def pump_events(
        self, source: QueueSource, feed: str, heartbeat: float | None, evtype: str
    ) -> None:
        """Send each item of ``source`` as an ``evtype`` event (a ``dropped`` event for
        what the queue lost) until it ends or the client goes; heartbeats meanwhile."""
        async for item in self.items(source, feed, heartbeat):
            if isinstance(item, tuple) and item[0] == "dropped":
                frame = event_frame(
                    feed, EventStream.DROPPED, {"event": EventStream.DROPPED, "count": item[1][0]}
                )
            else:
                frame = event_frame(feed, evtype, item)
            if not await self.send(frame) or feed == "longpoll":
                break
        if not self._closed.is_set():
            self.finish()

    def feed(self) -> tuple[str, float | None]:
        feed = self.get_query_argument("feed", self.default_feed)
        if feed not in FEEDS:
            raise RequestError(
                400, "bad_request", f"feed must be one of {', '.join(FEEDS)}, got {feed!r}"
            )
        heartbeat = self.get_query_argument("heartbeat", None)
        if heartbeat is None or heartbeat.lower() in ("", "false", "0"):
            return feed, None
        if heartbeat.lower() == "true":
            return feed, 30.0
        try:
            seconds = float(heartbeat)
        except ValueError:
            raise RequestError(
                400, "bad_request", f"heartbeat must be seconds, got {heartbeat!r}"
            ) from None
        if not 0 < seconds <= 3600:
            raise RequestError(400, "bad_request", "heartbeat must be from 0 to 3600 seconds")
        return feed, seconds

    async def start_feed(self, feed: str, raw: bool = False) -> None:
        """Send the headers now: a client knows the feed runs before the first item."""
        if feed == "eventsource":
            content_type = "text/event-stream"
        elif raw:
            content_type = "application/octet-stream"
        else:
            content_type = "application/json" if feed == "longpoll" else "application/x-ndjson"
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        self.settings["handler"].connections.feeding(self.request.connection.stream)
        try:
            await self.flush()
        except tornado.iostream.StreamClosedError:
            self._closed.set()

    async def items(
        self, source: Any, feed: str, heartbeat: float | None, keepalive: bool = True
    ) -> AsyncIterator[Any]:
        """Each item of ``source`` until it ends (a ``QueueSource``'s ``ended``) or the
        client goes (``self._closed`` is set then); a keep-alive after ``heartbeat``
        seconds of silence, unless ``keepalive`` is off."""
        while True:
            item = await self.next_item(source, heartbeat)
            if self._closed.is_set():
                return
            if item is None:
                if getattr(source, "ended", False):
                    return
                if keepalive and not await self.heartbeat(feed):
                    return  # the client is gone: send set self._closed
                continue
            yield item

    async def next_item(self, source: Any, heartbeat: float | None) -> Any:
        """The next item of ``source`` (an async iterator), None on a heartbeat or when
        the client went away (check ``self._closed``)."""
        getter = asyncio.ensure_future(source.__anext__())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait(
                {getter, closed}, timeout=heartbeat, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closed.cancel()
        if getter in done:
            return getter.result()
        getter.cancel()
        return None

    async def send(self, data: bytes | str) -> bool:
        """Write and flush; False once the client is gone."""
        if self._closed.is_set():
            return False
        try:
            self.write(data)
            await self.flush()
        except tornado.iostream.StreamClosedError:
            self._closed.set()
            return False
        return True

    async def heartbeat(self, feed: str) -> bool:
        return await self.send(": heartbeat\n\n" if feed == "eventsource" else "\n")


def event_frame(feed: str, evtype: str, msg: Any) -> str:
    data = json.dumps(msg, default=_jsonable)
    if feed == "eventsource":
        return f"event: {evtype}\ndata: {data}\n\n"
    return data + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


class WatchHandler(FeedHandler):
    ops = {
        "get": Op(
            "Manager events matching the path as a dotted pattern (/watch/job/"
            "default/web = job.default.web.*)",
            params=FEED_PARAMS,
            permission="read on the event's job",
            statuses=(200, 400),
            response="application/x-ndjson",
        )
    }

    async def get(self, a: str | None = None, b: str | None = None, c: str | None = None) -> None:
        feed, heartbeat = self.feed()
        pattern = ".".join(part for part in (a, b, c) if part) or "."
        await self.start_feed(feed)
        async with self.manager.events.stream(pattern, QUEUE_ITEMS) as events:
            async for evtype, msg in self.items(events, feed, heartbeat):
                if evtype != EventStream.DROPPED and not may_see_event(self.permissions, msg):
                    continue
                if not await self.send(event_frame(feed, evtype, msg)) or feed == "longpoll":
                    break
        if not self._closed.is_set():
            self.finish()


class QueueSource:
    """A bounded async queue of items, for listeners that push (stats, output)."""

    def __init__(self, max_items: int = QUEUE_ITEMS, max_bytes: int = QUEUE_BYTES) -> None:
        self._items: deque[Any] = deque()
        self._bytes = 0
        self._max_items, self._max_bytes = max_items, max_bytes
        self.dropped_items = 0
        self.dropped_bytes = 0
        self.ended = False
        self._waiter: asyncio.Future[None] | None = None

    def push(self, item: Any, size: int = 0) -> None:
        if len(self._items) >= self._max_items or self._bytes + size > self._max_bytes:
            self.dropped_items += 1
            self.dropped_bytes += size
        else:
            self._items.append((item, size))
            self._bytes += size
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> QueueSource:
        return self

    async def __anext__(self) -> Any:
        """The next item; ("dropped", (items, bytes)) when some were lost before it."""
        while not self._items and not self.dropped_items:
            if self.ended:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.dropped_items:
            lost = ("dropped", (self.dropped_items, self.dropped_bytes))
            self.dropped_items = self.dropped_bytes = 0
            return lost
        item, size = self._items.popleft()
        self._bytes -= size
        return item


class StatsStreamHandler(FeedHandler):
    ops = {
        "get": Op(
            "The job's stats: once (no feed) or every 0.1 s as stat events",
            params={
                "feed": "none (the stats now), longpoll, continuous or eventsource",
                "heartbeat": FEED_PARAMS["heartbeat"],
            },
            permission="read",
            statuses=(200, 400, 404),
            response="application/x-ndjson",
        )
    }

    async def get(self, sid: str, name: str) -> None:
        job = self.authorize("stats", name=job_id(sid, name)).job
        if self.get_query_argument("feed", None) is None:
            self.write_json(await self.manager.astats(job))
            return
        feed, heartbeat = self.feed()
        self.manager.get(job)  # 404 before the feed starts
        source = QueueSource()

        def on_stat(evtype: str, msg: dict[str, Any]) -> None:
            source.push(msg)

        await self.start_feed(feed)
        self.manager.monitor(on_stat, job)
        try:
            await self.pump_events(source, feed, heartbeat, "stat")
        finally:
            self.manager.unmonitor(on_stat, job)


class OutputStreamHandler(FeedHandler):
    ops = {
        "get": Op(
            "A process's output of one label ('.' for all) as it comes: raw "
            "bytes (continuous), lines (eventsource) or the next chunk (longpoll)",
            params=FEED_PARAMS,
            permission="read on its job",
            statuses=(200, 400, 404),
            response="application/octet-stream",
        )
    }

    async def get(self, pid: str, label: str) -> None:
        feed, heartbeat = self.feed()
        proc = self.authorize("read_output", pid=as_pid(pid)).proc
        source = QueueSource()

        def on_output(event_label: str, msg: dict[str, Any]) -> None:
            source.push((event_label, msg["data"]), len(msg["data"]))

        def on_exit(evtype: str, msg: dict[str, Any]) -> None:
            source.end()

        proc.monitor_io(label, on_output)  # 404 for a label the process does not have
        self.manager.events.subscribe(f"proc.{proc.pid}.exit", on_exit)
        await self.start_feed(feed, raw=feed != "eventsource")
        try:
            await self._pump(source, feed, heartbeat)
        finally:
            proc.unmonitor_io(label, on_output)
            self.manager.events.unsubscribe(f"proc.{proc.pid}.exit", on_exit)

    async def _pump(self, source: QueueSource, feed: str, heartbeat: float | None) -> None:
        partial, last_label = b"", "output"
        # raw output has no room for a keep-alive: only eventsource gets one
        async for item in self.items(source, feed, heartbeat, feed == "eventsource"):
            if item[0] == "dropped":
                count, size = item[1]
                frame: bytes | str = (
                    f"event: dropped\ndata: {json.dumps({'bytes': size, 'chunks': count})}\n\n"
                    if feed == "eventsource"
                    else f"\n[gaffer: {size} bytes dropped]\n"
                )
            elif feed == "eventsource":
                label, data = item
                last_label = label
                lines = (partial + data).split(b"\n")
                partial = lines.pop()
                if not lines:
                    continue
                text = "\n".join(f"data: {line.decode(errors='replace')}" for line in lines)
                frame = f"event: {label}\n{text}\n\n"
            else:
                frame = item[1]
            if not await self.send(frame) or feed == "longpoll":
                break
        if partial and feed == "eventsource" and not self._closed.is_set():
            await self.send(f"event: {last_label}\ndata: {partial.decode(errors='replace')}\n\n")
        if not self._closed.is_set():
            self.finish()


class StdinHandler(BaseHandler):
    body_types = ("application/octet-stream", "application/json")
    ops = {
        "post": Op(
            "Write the raw body to the process's stdin",
            body="text",
            permission="write on its job",
            statuses=(200, 404, 409),
        )
    }

    def post(self, pid: str) -> None:
        call = self.authorize("send", pid=as_pid(pid))
        data = self.body
        self.execute("send", call, data=data)
        self.write_json({"ok": True, "pid": call.proc.pid, "bytes": len(data)})
