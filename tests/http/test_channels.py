"""The WebSocket channels against a real server and real processes: ``/channel`` (pub/sub
+ RPC, reference scenarios 23 and 24) and ``/<pid>/channel[/<stream>]`` (scenario 22)."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from gaffer import Manager, ProcessConfig
from gaffer.http import HttpHandler
from gaffer.http.auth import Permissions
from gaffer.http.identity import Identity
from gaffer.http.keystore import KeyStore
from gaffer.http.outbox import Outbox
from gaffer.wire import DROPPED_ID, Frame, FrameError, decode_frame, encode_frame
from tests.helpers import EventRecorder, child_cmd, wait_until

TIMEOUT = 10.0


# -- harness ---------------------------------------------------------------------------------


class Server:
    """A manager serving the API on 127.0.0.1, and the clients a test opened."""

    def __init__(self, manager: Manager, address: str) -> None:
        self.manager, self.address = manager, address
        self.clients: list[Client | PidClient] = []

    async def _connect(self, path: str, headers: dict[str, str] | None) -> Any:
        url = f"ws://{self.address}{path}"
        request = tornado.httpclient.HTTPRequest(url, headers=headers or {})
        return await asyncio.wait_for(tornado.websocket.websocket_connect(request), TIMEOUT)

    async def channel(self, headers: dict[str, str] | None = None) -> Client:
        client = Client(await self._connect("/channel", headers))
        self.clients.append(client)
        return client

    async def pid_channel(self, path: str, headers: dict[str, str] | None = None) -> PidClient:
        client = PidClient(await self._connect(path, headers))
        self.clients.append(client)
        return client


@asynccontextmanager
async def served(settings: dict[str, Any] | None = None):
    async with Manager() as manager:
        handler = HttpHandler(bind=["127.0.0.1:0"], settings=settings)
        handler.start(manager.loop, manager)
        server = Server(manager, handler.addresses[0])
        try:
            yield server
        finally:
            for client in server.clients:
                client.close()
            await handler.stop()


@asynccontextmanager
async def served_with_keys(tmp_path: Path, **keys: dict[str, Any]):
    """A server requiring keys, and ``{name: key}`` for each permission dict given."""
    store = KeyStore(str(tmp_path / "auth.db"))
    made = {name: store.create_key(Permissions.from_dict(perms))[0] for name, perms in keys.items()}
    try:
        async with served({"auth": Identity(store, require_key=True)}) as server:
            yield server, made
    finally:
        store.close()


def with_key(key: str) -> dict[str, str]:
    return {"X-Api-Key": key}


class Client:
    """A /channel client: JSON messages, read with deadlines."""

    _ids = itertools.count(1)

    def __init__(self, conn: tornado.websocket.WebSocketClientConnection) -> None:
        self.conn = conn
        self.seen: list[dict[str, Any]] = []  # every message read

    def close(self) -> None:
        self.conn.close()

    async def send(self, message: Any) -> None:
        if isinstance(message, dict | list):
            message = json.dumps(message)
        await self.conn.write_message(message, binary=isinstance(message, bytes))

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any] | None:
        """The next message (None once the server closed the connection)."""
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        if raw is None:
            return None
        message = json.loads(raw)
        self.seen.append(message)
        return message

    async def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT, what: str = ""
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The first message matching, and the messages read before it."""
        before: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what or 'matching message'}; got {before[-10:]}")
            try:
                message = await self.recv(left)
            except TimeoutError:
                message = None
                left = 0
            if left <= 0 or message is None:
                state = "nothing more" if left <= 0 else "closed"
                raise AssertionError(f"{state} before {what or 'a match'}: {before[-10:]}")
            if match(message):
                return message, before
            before.append(message)

    async def event(
        self, what: str = "", timeout: float = TIMEOUT, **fields: Any
    ) -> dict[str, Any]:
        """The data of the next gaffer:event whose data has ``fields``."""

        def match(message: dict[str, Any]) -> bool:
            data = message.get("data") or {}
            return message["event"] == "gaffer:event" and all(
                data.get(key) == value for key, value in fields.items()
            )

        message, _ = await self.wait_for(match, timeout, what or f"event {fields}")
        return message["data"]

    async def call(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Run a command; the data of its command_success or command_error message."""
        identity = f"c{next(self._ids)}"
        await self.send(
            {
                "event": "CMD",
                "data": {"identity": identity, "name": name, "args": list(args), "kwargs": kwargs},
            }
        )
        message, _ = await self.wait_for(
            lambda m: (
                m["event"] in ("gaffer:command_success", "gaffer:command_error")
                and m["data"]["id"] == identity
            ),
            what=f"answer to {name}",
        )
        return message["data"]

    async def ok(self, name: str, *args: Any, **kwargs: Any) -> Any:
        data = await self.call(name, *args, **kwargs)
        assert "result" in data, data
        return data["result"]

    async def fails(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        data = await self.call(name, *args, **kwargs)
        assert "error" in data, data
        return data["error"]

    async def sub(self, topic: str, action: str = "SUB") -> dict[str, Any]:
        """SUB (or UNSUB) and the message answering it."""
        await self.send({"event": action, "data": {"topic": topic}})
        message, _ = await self.wait_for(
            lambda m: m["event"].startswith("gaffer:subscription_"), what=f"answer to {action}"
        )
        return message

    async def error(self) -> dict[str, Any]:
        message, _ = await self.wait_for(lambda m: m["event"] == "gaffer:error", what="an error")
        return message["data"]


class PidClient:
    """A /<pid>/channel client: binary frames."""

    def __init__(self, conn: tornado.websocket.WebSocketClientConnection) -> None:
        self.conn = conn

    def close(self) -> None:
        self.conn.close()

    async def write(self, body: bytes, frame_id: str) -> None:
        await self.conn.write_message(encode_frame("message", frame_id, body), binary=True)

    async def recv(self, timeout: float = TIMEOUT) -> Frame | None:
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        return None if raw is None else decode_frame(raw)

    async def frames_until(
        self, match: Callable[[Frame], bool], timeout: float = TIMEOUT
    ) -> list[Frame]:
        """Frames read until one matches (included)."""
        frames: list[Frame] = []
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(deadline - time.monotonic(), 0.001))
            if frame is None:
                raise AssertionError(f"closed; frames so far {frames[-10:]}")
            frames.append(frame)
            if match(frame):
                return frames

    async def collect(
        self, done: Callable[[list[Frame]], bool], timeout: float = TIMEOUT
    ) -> list[Frame]:
        """Frames read until ``done(frames so far)``."""
        frames: list[Frame] = []
        while not done(frames):
            frames += await self.frames_until(lambda f: True, timeout)
        return frames

    async def closed(self, timeout: float = TIMEOUT) -> list[Frame]:
        """The frames left, until the server closes the connection."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(deadline - time.monotonic(), 0.001))
            if frame is None:
                return frames
            frames.append(frame)


def answered_and_output(frames: list[Frame]) -> bool:
    """A response and an output message were read (in either order)."""
    return {"response", "message"} <= {f.type for f in frames}


def error_body(frame: Frame) -> dict[str, Any]:
    assert frame.type == "error", frame
    return json.loads(frame.body)


def echo_job(name: str = "echo", **settings: Any) -> ProcessConfig:
    settings.setdefault("redirect_output", ["out"])
    settings.setdefault("redirect_input", True)
    return ProcessConfig(name, child_cmd("echo"), **settings)


def sleeper(name: str, **settings: Any) -> ProcessConfig:
    return ProcessConfig(name, child_cmd("sleep"), **settings)


# -- frames ----------------------------------------------------------------------------------


def test_frames_encode_and_decode():
    assert encode_frame("message", "someid", b"test") == b"V1 message someid\0test"
    assert encode_frame("response", "someid", "test") == b"V1 response someid\0test"
    frame = decode_frame(b"V1 error x1\0{}\0more")
    assert frame == Frame("error", "x1", b"{}\0more")  # the body may hold NULs
    assert decode_frame("V1 message a\0b") == Frame("message", "a", b"b")  # text frames too
    for bad in (b"V1 message id", b"V2 message id\0", b"V1 nope id\0", b"V1 message\0", b"\0"):
        with pytest.raises(FrameError):
            decode_frame(bad)


async def test_outbox_drops_newer_items_and_marks_the_gap():
    sent: list[str] = []
    gate = asyncio.Event()

    async def send(payload: Any) -> None:
        await gate.wait()
        sent.append(payload)

    outbox = Outbox(send, lambda count, size: f"gap {count} {size}", max_items=3)
    writer = asyncio.ensure_future(outbox.run())
    for index in range(10):
        outbox.put(f"m{index}")
    assert outbox.put("answer", urgent=True)  # answers get more room
    outbox.put("m10")
    gate.set()
    outbox.end()
    await asyncio.wait_for(writer, TIMEOUT)
    # the writer has not run yet: m0..m2 fill the queue, m3..m9 are dropped where they
    # would have been, the answer still fits, m10 is dropped after it
    assert sent == ["m0", "m1", "m2", "gap 7 14", "answer", "gap 1 3"]
    assert outbox.dropped_items == 8


# -- /<pid>/channel (scenario 22) ------------------------------------------------------------


async def test_pid_channel_echo_reads_once_and_answers_ok():
    async with served() as server:
        manager = server.manager
        manager.load(echo_job())
        pid = manager.pids("echo")[0]
        client = await server.pid_channel(f"/{pid}/channel")
        await client.write(b"ECHO\n", "req1")
        frames = await client.collect(answered_and_output)
        responses = [f for f in frames if f.type == "response"]
        assert responses == [Frame("response", "req1", b"OK")]
        # once: the next output is the next write's, nothing in between
        await client.write(b"NEXT\n", "req2")
        more = await client.frames_until(lambda f: f.type == "message")
        messages = [f.body for f in frames + more if f.type == "message"]
        assert messages == [b"ECHO\n", b"NEXT\n"]
        assert len({f.id for f in frames + more if f.type == "message"}) == 2  # new ids


async def test_pid_channel_readable_only_rejects_writes():
    async with served() as server:
        manager = server.manager
        manager.load(echo_job())
        pid = manager.pids("echo")[0]
        client = await server.pid_channel(f"/{pid}/channel?mode=1")
        await client.write(b"ECHO\n", "w1")
        frames = await client.frames_until(lambda f: f.id == "w1")
        assert error_body(frames[-1])["error"] == "EPERM"
        assert error_body(frames[-1])["errno"] == 403
        manager.send(pid, "FROM ELSEWHERE\n")  # it still reads
        frames = await client.frames_until(lambda f: f.type == "message")
        assert frames[-1].body == b"FROM ELSEWHERE\n"


async def test_pid_channel_writable_only_gets_no_output():
    async with served() as server:
        manager = server.manager
        manager.load(echo_job())
        pid = manager.pids("echo")[0]
        writer = await server.pid_channel(f"/{pid}/channel?mode=2")
        reader = await server.pid_channel(f"/{pid}/channel?mode=1")
        await writer.write(b"ECHO\n", "w1")
        assert (await writer.frames_until(lambda f: f.id == "w1"))[-1] == Frame(
            "response", "w1", b"OK"
        )
        assert (await reader.frames_until(lambda f: f.type == "message"))[-1].body == b"ECHO\n"
        # had the writer been reading, the output would be queued before this answer
        await writer.write(b"AGAIN\n", "w2")
        frames = await writer.frames_until(lambda f: f.id == "w2")
        assert [f.type for f in frames] == ["response"]


async def test_pid_channel_custom_stream_echo():
    async with served() as server:
        manager = server.manager
        manager.load(ProcessConfig("ctl", child_cmd("echo-fd3"), custom_streams=["ctrl"]))
        pid = manager.pids("ctl")[0]
        client = await server.pid_channel(f"/{pid}/channel/ctrl")
        await client.write(b"ECHO\n", "c1")
        frames = await client.collect(answered_and_output)
        assert [f.body for f in frames if f.type == "message"] == [b"ECHO\n"]
        assert Frame("response", "c1", b"OK") in frames


async def test_pid_channel_output_label_and_unknown_streams():
    async with served() as server:
        manager = server.manager
        script = 'while read l; do echo "o:$l"; echo "e:$l" >&2; done'
        manager.load(
            ProcessConfig(
                "two", script, shell=True, redirect_output=["out", "err"], redirect_input=True
            )
        )
        pid = manager.pids("two")[0]
        client = await server.pid_channel(f"/{pid}/channel/err")
        await client.write(b"x\n", "w")  # an output label: writes go to stdin
        frames = await client.frames_until(lambda f: f.type == "message")
        assert frames[-1].body == b"e:x\n"
        unknown = await server.pid_channel(f"/{pid}/channel/nope")
        body = error_body((await unknown.closed())[0])
        assert (body["error"], body["errno"]) == ("ENOENT", 404)
        assert "out, err" in body["reason"]  # what it has
        assert unknown.conn.close_code == 1008
        gone = await server.pid_channel("/999/channel")
        assert error_body((await gone.closed())[0])["error"] == "ENOENT"
        bad_mode = await server.pid_channel(f"/{pid}/channel?mode=7")
        assert error_body((await bad_mode.closed())[0])["error"] == "EINVAL"


async def test_pid_channel_without_output_or_stdin_says_eperm():
    async with served() as server:
        manager = server.manager
        manager.load(sleeper("quiet"))
        pid = manager.pids("quiet")[0]
        client = await server.pid_channel(f"/{pid}/channel")
        body = error_body((await client.closed())[0])
        assert (body["error"], body["errno"]) == ("EPERM", 403)
        # the default mode degrades to what the process offers: output only here
        manager.load(ProcessConfig("talk", child_cmd("chatty", 50), redirect_output=["out"]))
        talk = manager.pids("talk")[0]
        reader = await server.pid_channel(f"/{talk}/channel")
        frames = await reader.frames_until(lambda f: f.type == "message")
        assert frames[-1].body.startswith(b"x")
        await reader.write(b"hi\n", "w")
        frames = await reader.frames_until(lambda f: f.id == "w")
        assert error_body(frames[-1])["error"] == "EPERM"
        writer = await server.pid_channel(f"/{talk}/channel?mode=2")
        body = error_body((await writer.closed())[0])
        assert (body["error"], body["errno"]) == ("EPERM", 403)


async def test_pid_channel_closes_when_the_process_exits():
    async with served() as server:
        manager = server.manager
        manager.load(echo_job())
        pid = manager.pids("echo")[0]
        client = await server.pid_channel(f"/{pid}/channel")
        await client.write(b"BYE\n", "b")
        await client.frames_until(lambda f: f.type == "message")
        manager.stop_process(pid)
        await client.closed()
        assert client.conn.close_code == 1000
        assert client.conn.close_reason == "process exited"
        # a one-off process that writes and exits: its output comes first, then the close
        manager.load(echo_job("once", numprocesses=0))
        one = manager.commit("once")
        late = await server.pid_channel(f"/{one}/channel")
        await late.write(b"last words\n", "x")
        frames = await late.frames_until(lambda f: f.type == "message")
        assert frames[-1].body == b"last words\n"
        manager.stop_process(one)
        await late.closed()
        assert late.conn.close_code == 1000


async def test_pid_channel_bad_frames_keep_the_channel_usable():
    async with served() as server:
        manager = server.manager
        manager.load(echo_job())
        pid = manager.pids("echo")[0]
        client = await server.pid_channel(f"/{pid}/channel")
        for garbage in (b"garbage", b"V1 message\0x", "text without nul"):
            await client.conn.write_message(garbage, binary=isinstance(garbage, bytes))
            body = error_body(await client.recv())
            assert (body["error"], body["errno"]) == ("EINVAL", 400)
        await client.conn.write_message(encode_frame("response", "r", b"x"), binary=True)
        assert error_body(await client.recv())["error"] == "EINVAL"
        await client.write(b"still here\n", "ok")
        frames = await client.frames_until(lambda f: f.type == "message")
        assert frames[-1].body == b"still here\n"


async def test_pid_channel_auth(tmp_path: Path):
    keys = {"reader": {"read": ["default.echo"]}, "writer": {"write": ["default"]}}
    async with served_with_keys(tmp_path, **keys) as (server, key):
        manager = server.manager
        manager.load(echo_job())
        pid = manager.pids("echo")[0]
        # no key: the first frame must be AUTH
        anon = await server.pid_channel(f"/{pid}/channel")
        await anon.write(b"hi\n", "h")
        body = error_body((await anon.closed())[0])
        assert (body["error"], body["errno"]) == ("AUTH_REQUIRED", 401)
        # a wrong key
        wrong = await server.pid_channel(f"/{pid}/channel")
        await wrong.conn.write_message(b"AUTH:not-a-key", binary=True)
        assert error_body((await wrong.closed())[0])["error"] == "FORBIDDEN"
        # a read-only key may not open a read-write channel...
        rw = await server.pid_channel(f"/{pid}/channel")
        await rw.conn.write_message(f"AUTH:{key['reader']}")
        body = error_body((await rw.closed())[0])
        assert (body["error"], body["errno"]) == ("FORBIDDEN", 403)
        assert "write" in body["reason"]
        # ...but a read-only one
        ro = await server.pid_channel(f"/{pid}/channel?mode=1")
        await ro.conn.write_message(f"AUTH:{key['reader']}")
        manager.send(pid, "seen\n")
        assert (await ro.frames_until(lambda f: f.type == "message"))[-1].body == b"seen\n"
        # the header works as well
        headers = {"X-Api-Key": key["writer"]}
        writer = await server.pid_channel(f"/{pid}/channel", headers)
        await writer.write(b"hello\n", "w")
        frames = await writer.collect(answered_and_output)
        assert Frame("response", "w", b"OK") in frames
        assert [f.body for f in frames if f.type == "message"] == [b"hello\n"]


async def test_pid_channel_takes_a_first_auth_frame_it_does_not_need():
    async with served() as server:
        manager = server.manager
        manager.load(echo_job())
        pid = manager.pids("echo")[0]
        client = await server.pid_channel(f"/{pid}/channel")
        await client.conn.write_message(b"AUTH:whatever", binary=True)  # keys are off
        await client.write(b"ECHO\n", "e")
        frames = await client.collect(answered_and_output)
        assert [f.type for f in frames if f.type == "error"] == []
        assert [f.body for f in frames if f.type == "message"] == [b"ECHO\n"]


async def test_pid_channel_slow_reader_gets_a_drop_notice():
    async with served() as server:
        manager = server.manager
        manager.load(flood_job())
        pid = manager.pids("flood")[0]
        client = await server.pid_channel(f"/{pid}/channel?mode=1")
        exits = EventRecorder(manager, f"proc.{pid}.exit")
        manager.send(pid, "go\n")
        await exits.wait(f"proc.{pid}.exit", timeout=30)
        frames = await client.closed(timeout=30)  # closes once written, or after a while
        drops = [error_body(f) for f in frames if f.id == DROPPED_ID]
        assert drops, [f.type for f in frames[:20]]
        assert all(drop["error"] == "dropped" and drop["bytes"] > 0 for drop in drops)
        received = sum(len(f.body) for f in frames if f.type == "message")
        assert received + sum(drop["bytes"] for drop in drops) <= FLOOD_BYTES
        assert received < FLOOD_BYTES


# -- /channel RPC (scenarios 23, 24) ---------------------------------------------------------


async def test_rpc_load_jobs_info_commit():
    async with served() as server:
        manager = server.manager
        client = await server.channel()
        config = {"name": "dummy", "cmd": child_cmd("sleep"), "numprocesses": 0}
        assert await client.ok("load", config, start=False) == {"ok": True}
        assert (await client.ok("jobs"))["jobs"][0] == "default.dummy"
        error = await client.fails("info", "unknown")
        assert (error["errno"], error["reason"]) == (404, "not_found")
        result = await client.ok("commit", "dummy")
        assert result == {"ok": True, "pid": 1}
        assert manager.pids() == [1]


async def test_rpc_controller_specifics():
    async with served() as server:
        manager = server.manager
        client = await server.channel()
        config = ProcessConfig("dummy", child_cmd("sleep"), env={"API_TOKEN": "s3cret"})
        manager.load(config)
        info = (await client.ok("info", "dummy"))["info"]
        assert (info["name"], info["active"], info["running"], info["max_processes"]) == (
            "default.dummy",
            True,
            1,
            1,
        )
        expected = json.loads(json.dumps(config.to_dict()))  # 0.5: config == to_dict()
        expected["env"] = {"API_TOKEN": "<redacted>"}  # a LOCAL key is no admin
        assert info["config"] == expected
        stats = (await client.ok("stats", "dummy"))["stats"]
        assert len(stats["stats"]) == 1 and stats["stats"][0]["pid"] == 1
        assert await client.ok("scale", "dummy", "+2") == {"numprocesses": 3}
        assert (await client.ok("info", "dummy"))["info"]["running"] == 3
        stats = (await client.ok("stats", "dummy"))["stats"]
        assert len(stats["stats"]) == 3 and stats["stats"][0]["pid"] == 1
        # stopall: every process is replaced, the job stays loaded
        assert await client.ok("stopall", "dummy") == {"ok": True}
        assert "default.dummy" in (await client.ok("jobs"))["jobs"]
        assert set((await client.ok("pids", "dummy"))["pids"]).isdisjoint({1, 2, 3})
        # ... as they exit (0.5): wait for the three replacements
        deadline = time.monotonic() + 10
        while len(replaced := (await client.ok("pids", "dummy"))["pids"]) < 3:
            assert time.monotonic() < deadline, f"the replacements of stopall: {replaced}"
            await asyncio.sleep(0.02)
        # stop_process: a new process replaces the one stopped
        first = replaced[0]
        assert await client.ok("stop_process", first) == {"ok": True}
        pids = (await client.ok("pids", "dummy"))["pids"]
        assert first not in pids and len(pids) == 3
        error = await client.fails("nope")
        assert (error["errno"], error["reason"]) == (404, "command_not_found")
        error = await client.fails("load")
        assert (error["errno"], error["reason"]) == (400, "bad_command")
        # update with numprocesses 2: new processes of the new config
        await client.ok("scale", "dummy", "=1")
        before = manager.pids("dummy")
        assert await client.ok("update", {"name": "dummy", "cmd": child_cmd("sleep")}) == {
            "ok": True
        }
        await client.ok("update", {"name": "dummy", "cmd": child_cmd("sleep"), "numprocesses": 2})
        after = (await client.ok("pids", "dummy"))["pids"]
        assert len(after) == 2 and set(after).isdisjoint(before)


async def test_rpc_every_command():
    async with served() as server:
        manager = server.manager
        client = await server.channel()
        await client.ok("load", echo_job("e").to_dict(), sessionid="s")
        assert await client.ok("sessions") == {"sessions": ["s"]}
        assert await client.ok("jobs", "s") == {"sessionid": "s", "jobs": ["s.e"]}
        pid = (await client.ok("pids", "s.e"))["pids"][0]
        assert await client.ok("pids") == {"pids": [pid]}
        info = (await client.ok("process_info", pid))["info"]
        assert (info["pid"], info["name"]) == (pid, "s.e")
        stats = (await client.ok("process_stats", pid))["stats"]
        assert stats["pid"] == pid and "cpu" in stats
        recorder = EventRecorder(manager, "proc")
        assert await client.ok("kill", pid, "CONT") == {"ok": True}
        await recorder.wait(f"proc.{pid}.kill", signum=18)
        assert await client.ok("killall", "s.e", 18) == {"ok": True}
        assert await client.ok("send", pid, "hello\n") == {"ok": True}
        assert await client.ok("stop_job", "s.e") == {"ok": True}
        assert manager.pids("s.e") == []
        assert await client.ok("start_job", "s.e") == {"ok": True}
        assert len(manager.pids("s.e")) == 1
        before = manager.pids("s.e")
        assert await client.ok("reload", "e", sessionid="s") == {"ok": True}
        assert manager.pids("s.e") != before
        assert await client.ok("unload", "s.e") == {"ok": True}
        assert manager.jobs() == []
        # wrong arguments are 400 bad_command, with a message
        for name, args, kwargs in (
            ("scale", ["s.e"], {}),
            ("scale", ["s.e", 1, 2], {}),
            ("kill", ["one", 9], {}),
            ("load", ["not a dict"], {}),
            ("load", [{"name": "x"}], {}),
            ("load", [{"name": "x", "cmd": "y", "numprocesses": "two"}], {}),
            ("jobs", [], {"bogus": 1}),
            ("send", [1, 42], {}),
        ):
            data = await client.call(name, *args, **kwargs)
            assert data["error"]["errno"] == 400, (name, data)
            assert data["error"]["reason"] == "bad_command", (name, data)
            assert data["error"]["message"]
        data = await client.call("scale", "dummy", 1)  # unknown job: the manager's 404
        assert (data["error"]["errno"], data["error"]["reason"]) == (404, "not_found")


# -- authorization ---------------------------------------------------------------------------


async def test_denied_commands_change_nothing(tmp_path: Path):
    keys = {
        "reader": {"read": ["default"]},
        "web": {"manage": ["default.web"]},
        "session": {"manage": ["default"]},
        "admin": {"admin": True},
    }
    async with served_with_keys(tmp_path, **keys) as (server, key):
        manager = server.manager
        manager.load(sleeper("web", env={"SECRET_KEY": "k"}))
        manager.load(sleeper("other"))
        pids = manager.pids()
        reader = await server.channel(with_key(key["reader"]))
        for command, args in (
            ("stop_job", ["web"]),
            ("stopall", ["web"]),
            ("scale", ["web", 3]),
            ("killall", ["web", "TERM"]),
            ("commit", ["web"]),
            ("unload", ["web"]),
            ("reload", ["web"]),
            ("load", [{"name": "new", "cmd": child_cmd("sleep")}]),
            ("stop_process", [pids[0]]),
            ("kill", [pids[0], "TERM"]),
            ("send", [pids[0], "x"]),
        ):
            error = await reader.fails(command, *args)
            assert (error["errno"], error["reason"]) == (403, "forbidden"), command
        # reading is what a read key may do, as over REST
        assert (await reader.ok("info", "web"))["info"]["name"] == "default.web"
        assert manager.pids() == pids
        assert manager.jobs() == ["default.web", "default.other"]
        assert all(manager.get_process(pid).active for pid in pids)
        # a key managing one job manages it, and nothing else
        web = await server.channel(with_key(key["web"]))
        assert (await web.fails("stop_job", "other"))["errno"] == 403
        # one table behind REST and the channel: manage on a job unloads it, as DELETE
        assert (await web.fails("unload", "other"))["errno"] == 403
        assert (await web.fails("update", {"name": "other", "cmd": "true"}))["errno"] == 403
        info = (await web.ok("info", "web"))["info"]
        assert info["config"]["env"] == {"SECRET_KEY": "<redacted>"}
        assert await web.ok("scale", "web", 1) == {"numprocesses": 2}
        # loading with uid needs an admin key, even with manage on the session
        session = await server.channel(with_key(key["session"]))
        config = {"name": "root", "cmd": child_cmd("sleep"), "uid": 0}
        error = await session.fails("load", config)
        assert (error["errno"], error["reason"]) == (403, "forbidden")
        assert "default.root" not in manager.jobs()
        admin = await server.channel(with_key(key["admin"]))
        info = (await admin.ok("process_info", pids[0]))["info"]
        assert info["env"]["SECRET_KEY"] == "k"


async def test_lists_show_what_the_key_may_read(tmp_path: Path):
    keys = {"a": {"read": ["default.a"]}, "nothing": {"read": ["other"]}}
    async with served_with_keys(tmp_path, **keys) as (server, key):
        manager = server.manager
        manager.load(sleeper("a"))
        manager.load(sleeper("b"))
        manager.load(sleeper("c"), sessionid="s2")
        client = await server.channel(with_key(key["a"]))
        assert await client.ok("sessions") == {"sessions": ["default"]}
        assert await client.ok("jobs") == {"jobs": ["default.a"]}
        assert await client.ok("jobs", "default") == {"sessionid": "default", "jobs": ["default.a"]}
        assert await client.ok("pids") == {"pids": manager.pids("a")}
        assert (await client.fails("pids", "b"))["errno"] == 403
        assert (await client.fails("jobs", "s2"))["errno"] == 403
        blind = await server.channel(with_key(key["nothing"]))
        assert await blind.ok("jobs") == {"jobs": []}
        assert await blind.ok("pids") == {"pids": []}


async def test_auth_flow(tmp_path: Path):
    async with served_with_keys(tmp_path, ops={"manage": ["*"]}) as (server, key):
        # no key: the first message is refused and the socket closes
        anon = await server.channel()
        await anon.send({"event": "SUB", "data": {"topic": "EVENTS"}})
        message = await anon.recv()
        assert message["event"] == "gaffer:error"
        assert (message["data"]["error"], message["data"]["errno"]) == ("AUTH_REQUIRED", 401)
        assert await anon.recv() is None
        # a wrong key
        wrong = await server.channel()
        await wrong.send("AUTH:nope")
        message = await wrong.recv()
        assert (message["data"]["error"], message["data"]["reason"]) == (
            "AUTH_REQUIRED",
            "forbidden",
        )
        assert await wrong.recv() is None
        # the right key
        right = await server.channel()
        await right.send(f"AUTH:{key['ops']}")
        assert (await right.recv())["event"] == "gaffer:auth_success"
        assert await right.ok("jobs") == {"jobs": []}
        assert (await right.sub("EVENTS"))["event"] == "gaffer:subscription_success"
        await right.send(f"AUTH:{key['ops']}")  # only first
        assert (await right.error())["reason"] == "auth_not_first"
        # the header
        header = await server.channel(with_key(key["ops"]))
        assert await header.ok("sessions") == {"sessions": []}
        # a wrong key in the header: no upgrade at all
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await server.channel({"X-Api-Key": "nope"})
        assert refused.value.code == 403


async def test_origins():
    async with served({"cors_origins": ["http://ui.example"]}) as server:
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await server.channel({"Origin": "http://evil.example"})
        assert refused.value.code == 403
        ui = await server.channel({"Origin": "http://ui.example"})
        same = await server.channel({"Origin": f"http://{server.address}"})
        for client in (ui, same):
            assert await client.ok("jobs") == {"jobs": []}


async def test_openapi_lists_the_websocket_routes():
    async with served() as server:
        http = tornado.httpclient.AsyncHTTPClient()
        response = await http.fetch(f"http://{server.address}/openapi.json")
        paths = json.loads(response.body)["paths"]
        for template in ("/channel", "/{pid}/channel", "/{pid}/channel/{stream}"):
            operation = paths[template]["get"]
            assert "WebSocket" in operation["description"], template
            assert "101" in operation["responses"]
        assert paths["/{pid}/channel"]["get"]["parameters"][1]["name"] == "mode"
        # and a plain GET (no upgrade) is refused, with the API's JSON error
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await http.fetch(f"http://{server.address}/channel")
        assert refused.value.code == 426
        assert refused.value.response.headers["Upgrade"] == "websocket"
        assert json.loads(refused.value.response.body)["error"] == "upgrade_required"


# -- /channel topics -------------------------------------------------------------------------


async def test_events_topic_and_pattern():
    async with served() as server:
        manager = server.manager
        everything = await server.channel()
        pattern = await server.channel()
        answer = await everything.sub("events")
        assert answer["data"] == {"topic": "EVENTS", "action": "SUB", "count": 1}
        assert answer["topic"] == "EVENTS"
        assert (await pattern.sub("EVENTS:job.default.b"))["data"]["topic"] == (
            "EVENTS:job.default.b"
        )
        manager.load(sleeper("a"))
        manager.load(sleeper("b"))
        load = await everything.event(event="load", name="default.a")
        assert load["topic"] == "EVENTS"
        spawn = await everything.event(event="spawn", name="default.a")
        assert spawn["pid"] == manager.pids("a")[0] and spawn["os_pid"] > 0
        data = await pattern.event(event="job.default.b.spawn")
        assert data["topic"] == "EVENTS:job.default.b"
        assert all(
            m["data"]["name"] == "default.b" for m in pattern.seen if m["event"] == "gaffer:event"
        )


async def test_events_are_filtered_by_permission(tmp_path: Path):
    async with served_with_keys(tmp_path, a={"read": ["default.a"]}) as (server, key):
        manager = server.manager
        client = await server.channel(with_key(key["a"]))
        await client.sub("EVENTS")
        manager.load(sleeper("b"))
        manager.load(sleeper("a"))
        await client.event(event="load", name="default.a")
        names = {m["data"]["name"] for m in client.seen if m["event"] == "gaffer:event"}
        assert names == {"default.a"}


async def test_job_topic_keeps_the_case_and_strips_the_prefix():
    async with served() as server:
        manager = server.manager
        client = await server.channel()
        answer = await client.sub("job:default.Web")  # before the job exists
        assert answer["data"]["topic"] == "JOB:default.Web"
        manager.load(sleeper("Web"))
        manager.load(sleeper("Web.x"))  # job.default.Web.x.* events: not of this topic
        start = await client.event(event="start")
        assert (start["name"], start["topic"]) == ("default.Web", "JOB:default.Web")
        spawn = await client.event(event="spawn", topic="JOB:default.Web")
        pid = spawn["pid"]
        manager.stop_job("Web")
        await client.event(event="stop", topic="JOB:default.Web")
        exit_ = await client.event(event="exit", topic="JOB:default.Web")
        assert exit_["pid"] == pid and exit_["once"] is False
        seen = [m["data"] for m in client.seen if m["event"] == "gaffer:event"]
        assert all(d["name"] == "default.Web" for d in seen if d["topic"] == "JOB:default.Web")


async def test_process_topic():
    async with served() as server:
        manager = server.manager
        manager.load(sleeper("p"))
        pid = manager.pids("p")[0]
        client = await server.channel()
        assert (await client.sub(f"PROCESS:{pid}"))["data"]["topic"] == f"PROCESS:{pid}"
        manager.kill(pid, "CONT")
        kill = await client.event(event="kill")
        assert (kill["pid"], kill["signum"], kill["topic"]) == (pid, 18, f"PROCESS:{pid}")
        manager.stop_process(pid)
        exit_ = await client.event(event="exit")
        assert exit_["pid"] == pid and exit_["term_signal"] == 15


async def test_stats_topics():
    async with served() as server:
        manager = server.manager
        manager.load(sleeper("s", numprocesses=2))
        first, second = manager.pids("s")
        by_pid = await server.channel()
        by_job = await server.channel()
        assert (await by_pid.sub(f"STATS:{first}"))["data"]["topic"] == f"STATS:{first}"
        assert (await by_job.sub("STATS:s"))["data"]["topic"] == "STATS:default.s"
        stat = await by_pid.event(event="stat")
        assert stat["pid"] == first and stat["topic"] == f"STATS:{first}"
        assert {"cpu", "mem", "os_pid", "children"} <= set(stat)
        assert isinstance(stat["mem_info1"], int)
        await by_job.event(event="stat", pid=first)
        await by_job.event(event="stat", pid=second)
        # the pid exits: the job's topic goes on with its replacement, the pid's ends quietly
        manager.stop_process(first)
        message, _ = await by_job.wait_for(
            lambda m: m["event"] == "gaffer:event" and m["data"]["pid"] not in (first, second),
            what="stats of the replacement",
        )
        assert message["data"]["pid"] in manager.pids("s")
        answer = await by_pid.sub(f"STATS:{first}", "UNSUB")
        assert answer["event"] == "gaffer:subscription_success"


async def test_stream_topics():
    async with served() as server:
        manager = server.manager
        script = 'while read l; do echo "o:$l"; echo "e:$l" >&2; done'
        manager.load(
            ProcessConfig(
                "io", script, shell=True, redirect_output=["out", "err"], redirect_input=True
            )
        )
        pid = manager.pids("io")[0]
        every = await server.channel()
        err = await server.channel()
        assert (await every.sub(f"STREAM:{pid}"))["data"]["topic"] == f"STREAM:{pid}"
        assert (await err.sub(f"stream:{pid}.err"))["data"]["topic"] == f"STREAM:{pid}.err"
        manager.send(pid, "héllo\n")
        out = await every.event(label="out")
        assert (out["data"], out["event"], out["name"], out["pid"]) == (
            "o:héllo\n",
            "out",
            "default.io",
            pid,
        )
        assert (await every.event(label="err"))["data"] == "e:héllo\n"
        got = await err.event()
        assert (got["label"], got["data"]) == ("err", "e:héllo\n")
        assert got["topic"] == f"STREAM:{pid}.err"
        # invalid UTF-8 is replaced, not fatal
        manager.load(
            ProcessConfig(
                "raw",
                "read l; printf 'A\\377B\\n'; exec sleep 60",
                shell=True,
                redirect_output=["out"],
                redirect_input=True,
            )
        )
        raw = manager.pids("raw")[0]
        await every.sub(f"STREAM:{raw}.out")
        manager.send(raw, "go\n")
        assert (await every.event(pid=raw))["data"] == "A\ufffdB\n"


async def test_unsub_stops_delivery_and_subscriptions_are_counted():
    async with served() as server:
        manager = server.manager
        manager.load(echo_job())
        pid = manager.pids("echo")[0]
        client = await server.channel()
        witness = await server.channel()
        await witness.sub(f"STREAM:{pid}")
        assert (await client.sub(f"STREAM:{pid}"))["data"]["count"] == 1
        assert (await client.sub(f"STREAM:{pid}"))["data"]["count"] == 2
        answer = await client.sub(f"STREAM:{pid}", "UNSUB")
        assert answer["data"] == {"topic": f"STREAM:{pid}", "action": "UNSUB", "count": 1}
        manager.send(pid, "one\n")
        assert (await client.event())["data"] == "one\n"  # once, though subscribed twice
        await client.sub(f"STREAM:{pid}", "UNSUB")
        manager.send(pid, "two\n")
        await witness.event(data="two\n")
        # an event queued for it would come before the answer to this command
        await client.ok("jobs")
        events = [m for m in client.seen if m["event"] == "gaffer:event"]
        assert [e["data"]["data"] for e in events] == ["one\n"]
        error = await client.sub(f"STREAM:{pid}", "UNSUB")
        assert error["event"] == "gaffer:subscription_error"
        assert error["data"]["reason"] == "not_subscribed"


async def test_subscription_errors(tmp_path: Path):
    async with served_with_keys(tmp_path, a={"read": ["default.a"]}) as (server, key):
        manager = server.manager
        manager.load(sleeper("a"))
        manager.load(sleeper("b"))
        a_pid, b_pid = manager.pids("a")[0], manager.pids("b")[0]
        client = await server.channel(with_key(key["a"]))
        cases = {
            "NOPE:x": (400, "bad_topic"),
            "JOB": (400, "bad_topic"),
            "PROCESS:abc": (400, "bad_topic"),
            "STREAM:1.": (400, "bad_topic"),
            "PROCESS:999": (404, "not_found"),
            f"STREAM:{a_pid}.nope": (404, "stream_not_found"),
            f"STREAM:{a_pid}": (409, "not_redirected"),
            "JOB:b": (403, "forbidden"),
            f"PROCESS:{b_pid}": (403, "forbidden"),
            f"STATS:{b_pid}": (403, "forbidden"),
            "STATS:default.b": (403, "forbidden"),
            "STATS:default.a": (None, None),
        }
        for topic, (errno, reason) in cases.items():
            answer = await client.sub(topic)
            if errno is None:
                assert answer["event"] == "gaffer:subscription_success", answer
                continue
            assert answer["event"] == "gaffer:subscription_error", (topic, answer)
            assert (answer["data"]["errno"], answer["data"]["reason"]) == (errno, reason), topic
            assert answer["data"]["topic"] and answer["topic"] == answer["data"]["topic"]
            assert answer["data"]["message"]


async def test_two_clients_get_the_same_events():
    async with served() as server:
        manager = server.manager
        clients = [await server.channel() for _ in range(2)]
        for client in clients:
            await client.sub("EVENTS")
        manager.load(sleeper("x"))
        manager.unload("x")
        for client in clients:
            await client.event(event="unload")
        seen = [
            [m["data"]["event"] for m in client.seen if m["event"] == "gaffer:event"]
            for client in clients
        ]
        assert seen[0] == seen[1]
        assert seen[0][:3] == ["load", "start", "job.default.x.start"]


async def test_garbage_messages_get_errors_and_the_channel_stays_usable():
    async with served() as server:
        client = await server.channel()
        cases = [
            ("not json", "invalid_json"),
            (["a", "list"], "not_an_object"),
            ("42", "not_an_object"),
            ({}, "event_missing"),
            ({"event": 3}, "event_missing"),
            ({"event": "DANCE", "data": {}}, "unknown_event"),
            ({"event": "SUB"}, "data_missing"),
            ({"event": "SUB", "data": "EVENTS"}, "data_missing"),
            ({"event": "SUB", "data": {}}, "topic_missing"),
            ({"event": "UNSUB", "data": {"topic": 3}}, "topic_missing"),
            ({"event": "CMD", "data": {"name": "jobs"}}, "cmd_identity_missing"),
            ({"event": "CMD", "data": {"identity": "x"}}, "cmd_name_missing"),
            (b"\x00\xffbinary", "binary_frame"),
        ]
        for message, reason in cases:
            await client.send(message)
            error = await client.error()
            assert (error["error"], error["reason"]) == ("invalid_msg", reason), message
        await client.send({"event": "NOP"})
        assert await client.ok("jobs") == {"jobs": []}
        # a command with garbage arguments is a command error, not a broken channel
        await client.send(
            {"event": "CMD", "data": {"identity": 7, "name": "jobs", "args": "x", "kwargs": 1}}
        )
        message, _ = await client.wait_for(lambda m: m["event"] == "gaffer:command_error")
        assert message["data"]["id"] == 7 and message["data"]["error"]["errno"] == 400
        # a message over 1 MiB closes that connection, and only that one
        other = await server.channel()
        await client.send("x" * (1024 * 1024 + 1))
        assert await client.recv() is None
        assert client.conn.close_code == 1009
        assert await other.ok("sessions") == {"sessions": []}


async def test_closing_unsubscribes_everything():
    async with served() as server:
        manager = server.manager
        manager.load(echo_job())
        pid = manager.pids("echo")[0]
        proc = manager.get_process(pid)
        client = await server.channel()
        for topic in ("EVENTS", "JOB:echo", f"PROCESS:{pid}", f"STATS:{pid}", f"STREAM:{pid}"):
            assert (await client.sub(topic))["event"] == "gaffer:subscription_success"
        assert manager.events.has_subscribers(".")
        assert proc._io_listeners.get("out")
        client.close()
        await wait_until(lambda: not manager.events.has_subscribers("."), what="unsubscribed")
        assert not manager.events.has_subscribers("job.default.echo")
        assert not manager.events.has_subscribers(f"proc.{pid}")
        assert not proc._io_listeners.get("out")
        await wait_until(lambda: not manager._monitor.watching, what="the monitor let go")


# -- slow consumers --------------------------------------------------------------------------

FLOOD_BYTES = 50_000_000
FLOOD_SCRIPT = """
import os, sys, time
sys.stdin.readline()  # the test subscribes first
chunk = (b"x" * 63 + b"\\n") * 256
for _ in range(int(sys.argv[1]) // len(chunk)):
    os.write(1, chunk)
    time.sleep(0.0001)  # a pace the reader keeps up with: thousands of chunks, not a few
"""


def flood_job() -> ProcessConfig:
    """Writes 50 MB to stdout in 16 KiB chunks once it reads a line."""
    return ProcessConfig(
        "flood",
        sys.executable,
        args=["-c", FLOOD_SCRIPT, str(FLOOD_BYTES)],
        redirect_output=["out"],
        redirect_input=True,
    )


class LoopProbe:
    """A timer every 10 ms, recording how late it fires."""

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float = 0.01) -> None:
        self.loop, self.period = loop, period
        self.worst = 0.0
        self.ticks = 0
        self.handle = loop.call_later(period, self._tick, loop.time() + period)

    def _tick(self, due: float) -> None:
        self.worst = max(self.worst, self.loop.time() - due)
        self.ticks += 1
        self.handle = self.loop.call_later(self.period, self._tick, self.loop.time() + self.period)

    def stop(self) -> None:
        self.handle.cancel()


async def test_a_slow_consumer_blocks_nothing_and_learns_what_it_lost():
    async with served() as server:
        manager = server.manager
        manager.load(flood_job())
        pid = manager.pids("flood")[0]
        chunks = []
        manager.get_process(pid).monitor_io("out", lambda label, msg: chunks.append(1))
        slow = await server.channel()
        fast = await server.channel()
        await slow.sub(f"STREAM:{pid}")
        await fast.sub("EVENTS:exit")
        probe = LoopProbe(manager.loop)
        manager.send(pid, "go\n")
        # the slow client reads nothing meanwhile; the other one gets its events
        exit_ = await fast.event(event="exit", pid=pid, what="the exit", timeout=60)
        probe.stop()
        assert exit_["exit_status"] == 0
        assert len(chunks) >= 300, f"only {len(chunks)} chunks of output"
        assert probe.ticks > 10
        assert probe.worst < 0.3, f"the loop was held {probe.worst:.3f}s"
        # now the slow one reads: what it got, and where the gap is (the answer to a
        # command is queued after everything else)
        await slow.send({"event": "CMD", "data": {"identity": "end", "name": "jobs"}})
        answer, before = await slow.wait_for(
            lambda m: m["event"] == "gaffer:command_success", timeout=30
        )
        assert answer["data"]["result"] == {"jobs": ["default.flood"]}
        kinds = [m["event"] for m in before]
        assert "gaffer:dropped" in kinds, kinds[:20]
        first_gap = kinds.index("gaffer:dropped")
        assert first_gap > 0 and set(kinds[:first_gap]) == {"gaffer:event"}
        dropped = sum(m["data"]["count"] for m in before if m["event"] == "gaffer:dropped")
        received = [m["data"]["data"] for m in before if m["event"] == "gaffer:event"]
        assert len(received) + dropped == len(chunks)  # every chunk: sent, or counted
        assert sum(map(len, received)) < FLOOD_BYTES
        assert all(set(text) == {"x", "\n"} for text in received)
