"""Feeds over HTTP: /watch, /stats/<sid>/<name>, /streams/<pid>/<label>, stdin."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

from gaffer import Manager, ProcessConfig
from gaffer.http import HttpHandler
from tests.helpers import EventRecorder, child_cmd, wait_until


@asynccontextmanager
async def served():
    async with Manager() as manager:
        handler = HttpHandler(bind=["127.0.0.1:0"])
        handler.start(manager.loop, manager)
        host, port = handler.addresses[0].rsplit(":", 1)
        try:
            yield manager, host, int(port)
        finally:
            await handler.stop()


class RawClient:
    """An HTTP/1.1 client on a raw socket: it reads only when told to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.headers = b""

    @classmethod
    async def get(cls, host: str, port: int, path: str) -> RawClient:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        await writer.drain()
        client = cls(reader, writer)
        client.headers = await reader.readuntil(b"\r\n\r\n")
        return client

    @property
    def status(self) -> int:
        return int(self.headers.split(b" ", 2)[1])

    async def body_until(self, marker: bytes, timeout: float = 10) -> bytes:
        """The (de-chunked) body received until ``marker`` appears in it."""
        body = b""
        deadline = time.monotonic() + timeout
        while marker not in body:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{marker!r} not received; got {body[-300:]!r}")
            size_line = await asyncio.wait_for(self.reader.readline(), left)
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                await self.reader.readline()
                break
            body += await self.reader.readexactly(size)
            await self.reader.readexactly(2)
        return body

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


async def test_watch_continuous_gives_json_lines_of_matching_events():
    async with served() as (manager, host, port):
        client = await RawClient.get(host, port, "/watch/job/default/web?feed=continuous")
        assert client.status == 200
        manager.load(ProcessConfig("other", child_cmd("sleep")))
        manager.load(ProcessConfig("web", child_cmd("sleep")))
        body = await client.body_until(b"job.default.web.spawn")
        events = [json.loads(line) for line in body.decode().splitlines() if line]
        assert {event["event"] for event in events} <= {
            "job.default.web.start",
            "job.default.web.spawn",
        }
        assert all(event["name"] == "default.web" for event in events)
        await client.close()


async def test_watch_eventsource_and_heartbeats():
    async with served() as (manager, host, port):
        client = await RawClient.get(host, port, "/watch/load?feed=eventsource&heartbeat=0.05")
        assert b"text/event-stream" in client.headers
        body = await client.body_until(b": heartbeat")  # silence: a keep-alive comment
        manager.load(ProcessConfig("web", child_cmd("sleep")), start=False)
        body += await client.body_until(b"data:")
        assert "event: load\ndata: " in body.decode()
        payload = body.decode().split("data: ", 1)[1].split("\n", 1)[0]
        assert json.loads(payload) == {"name": "default.web", "event": "load"}
        await client.close()


async def test_watch_longpoll_answers_the_next_event_and_ends():
    async with served() as (manager, host, port):
        client = await RawClient.get(host, port, "/watch?feed=longpoll")
        manager.load(ProcessConfig("web", child_cmd("sleep")), start=False)
        body = await client.body_until(b"\n")
        assert json.loads(body) == {"name": "default.web", "event": "load"}
        # the answer ended: the last chunk follows (the connection itself stays open)
        assert await asyncio.wait_for(client.reader.readexactly(5), 5) == b"0\r\n\r\n"
        await client.close()


async def test_a_watcher_that_stops_reading_loses_events_and_is_told_where():
    async with served() as (manager, host, port):
        client = await RawClient.get(host, port, "/watch/flood?feed=continuous")
        lags = []
        started = time.monotonic()
        for batch in range(50):  # 50,000 events while the client reads nothing
            for n in range(1000):
                manager.events.publish("flood.tick", {"name": "default.x", "n": batch * 1000 + n})
            before = time.monotonic()
            await asyncio.sleep(0)
            lags.append(time.monotonic() - before)
        assert max(lags) < 0.5, "the loop was held up"
        body = await client.body_until(b"gaffer.dropped", timeout=20)
        dropped = [
            json.loads(line) for line in body.decode().splitlines() if "gaffer.dropped" in line
        ]
        assert dropped[0]["count"] > 0
        assert time.monotonic() - started < 20
        await client.close()


async def test_output_stream_continuous_is_byte_exact_and_ends_at_exit():
    raw = bytes.fromhex("ff fe 80 41 0a 42 43")  # not UTF-8, no final newline
    async with served() as (manager, host, port):
        events = EventRecorder(manager)
        manager.load(ProcessConfig("cat", "/bin/cat", redirect_input=True, redirect_output=["out"]))
        client = await RawClient.get(host, port, "/streams/1/out?feed=continuous")
        assert b"application/octet-stream" in client.headers
        manager.send(1, raw)
        body = await client.body_until(b"BC")
        manager.stop_job("cat")  # the process exits: the feed ends
        body += await client.body_until(b"\x00never")  # read to the end of the answer
        assert body == raw
        await events.wait("exit", pid=1)
        await client.close()


async def test_output_stream_eventsource_gives_lines():
    async with served() as (manager, host, port):
        manager.load(
            ProcessConfig("echo", child_cmd("echo"), redirect_output=["out"], redirect_input=True)
        )
        client = await RawClient.get(host, port, "/streams/1/out?feed=eventsource")
        manager.send(1, "first line\nsecond\n")
        body = await client.body_until(b"second")
        assert "event: out\n" in body.decode()
        assert "data: first line\n" in body.decode()
        await client.close()


async def test_output_stream_of_an_unknown_label_is_404_json():
    async with served() as (manager, host, port):
        manager.load(ProcessConfig("web", child_cmd("sleep"), redirect_output=["out"]))
        client = await RawClient.get(host, port, "/streams/1/nope?feed=continuous")
        assert client.status == 404
        length = int(client.headers.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        error = json.loads(await client.reader.readexactly(length))
        assert error["error"] == "stream_not_found"
        await client.close()


async def test_stats_feed_gives_stat_events_of_the_job():
    async with served() as (manager, host, port):
        manager.load(ProcessConfig("web", child_cmd("sleep"), numprocesses=2))
        client = await RawClient.get(host, port, "/stats/default/web?feed=continuous")
        body = await client.body_until(b"\n")
        stat = json.loads(body.decode().splitlines()[0])
        assert stat["event"] == "stat" and stat["name"] == "default.web"
        assert isinstance(stat["mem_info1"], int)
        await client.close()


async def test_stdin_post_reaches_the_process():
    async with served() as (manager, host, port):
        output = []
        manager.monitor_io(lambda label, msg: output.append(msg["data"]), "echo")
        manager.load(
            ProcessConfig("echo", child_cmd("echo"), redirect_output=["out"], redirect_input=True)
        )
        reader, writer = await asyncio.open_connection(host, port)
        body = b"ECHO\n"
        writer.write(
            b"POST /streams/1/stdin HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + body
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        await wait_until(lambda: b"".join(output) == b"ECHO\n", what="the echo")
        writer.close()
        await writer.wait_closed()
