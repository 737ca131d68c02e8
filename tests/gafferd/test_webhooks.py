"""WebHooks against real local HTTP receivers and a real Manager with real processes."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import pytest
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from gaffer import Manager, ProcessConfig
from gafferd.webhooks import WebHooks, encode_event
from tests.helpers import EventRecorder, child_cmd, wait_until

LOGGER = "gafferd.webhooks"


def sleeper(name: str = "dummy") -> ProcessConfig:
    return ProcessConfig(name, child_cmd("sleep"))


class Receiver:
    """A tornado HTTP server on 127.0.0.1 recording every POST, per path.

    ``statuses[path]`` lists the status codes of the next answers (then 200);
    ``hold(path)`` makes requests to ``path`` wait until ``release(path)``."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: dict[str, list[int]] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.active: dict[str, int] = {}
        self.max_active: dict[str, int] = {}

    async def __aenter__(self) -> Receiver:
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        app = tornado.web.Application([(r"(/.*)", _Handler, {"receiver": self})])
        self.server = HTTPServer(app)
        self.server.add_sockets(sockets)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for gate in self.gates.values():
            gate.set()
        self.server.stop()
        await self.server.close_all_connections()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hold(self, path: str) -> None:
        self.gates[path] = asyncio.Event()

    def release(self, path: str) -> None:
        self.gates[path].set()

    def at(self, path: str) -> list[dict]:
        return [request for request in self.requests if request["path"] == path]

    def bodies(self, path: str) -> list[dict]:
        return [request["body"] for request in self.at(path)]

    def events(self, path: str) -> list[str]:
        return [body["event"] for body in self.bodies(path)]

    async def wait_count(self, path: str, count: int, timeout: float = 5.0) -> list[dict]:
        await wait_until(
            lambda: len(self.at(path)) >= count,
            timeout,
            f"{count} POSTs to {path} (got {self.events(path)})",
        )
        return self.bodies(path)


class _Handler(tornado.web.RequestHandler):
    def initialize(self, receiver: Receiver) -> None:
        self.receiver = receiver

    async def post(self, path: str) -> None:
        receiver = self.receiver
        receiver.requests.append(
            {
                "path": path,
                "body": json.loads(self.request.body),
                "content_type": self.request.headers.get("Content-Type"),
                "time": time.monotonic(),
            }
        )
        receiver.active[path] = receiver.active.get(path, 0) + 1
        receiver.max_active[path] = max(receiver.max_active.get(path, 0), receiver.active[path])
        try:
            gate = receiver.gates.get(path)
            if gate is not None:
                await gate.wait()
            statuses = receiver.statuses.get(path)
            self.set_status(statuses.pop(0) if statuses else 200)
        finally:
            receiver.active[path] -= 1


class Blackhole:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.connections: list[asyncio.StreamWriter] = []
        self.handlers: set[asyncio.Task] = set()

    async def __aenter__(self) -> Blackhole:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            await reader.read()  # until the client gives up and closes
        except ConnectionError:
            pass
        finally:
            writer.close()
            self.handlers.discard(task)

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.close()
        for writer in self.connections:
            writer.close()
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=2)
        await self.server.wait_closed()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class LagMeter:
    """Measures how late a 10 ms loop timer fires: the loop's responsiveness."""

    def __init__(self, interval: float = 0.01) -> None:
        self.loop = asyncio.get_running_loop()
        self.interval = interval
        self.max_lag = 0.0
        self.ticks = 0
        self._schedule()

    def _schedule(self) -> None:
        self._due = self.loop.time() + self.interval
        self._handle = self.loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        self.max_lag = max(self.max_lag, self.loop.time() - self._due)
        self.ticks += 1
        self._schedule()

    def stop(self) -> None:
        self._handle.cancel()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once closed


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and record.levelno == logging.WARNING
    ]


async def wait_warnings(caplog: pytest.LogCaptureFixture, count: int = 1) -> list[str]:
    await wait_until(lambda: len(warnings_of(caplog)) >= count, 5, f"{count} warning(s)")
    return warnings_of(caplog)


async def stop_manager(manager: Manager) -> float:
    """Stop ``manager`` and return how long it took."""
    started = time.monotonic()
    manager.stop()
    await asyncio.wait_for(manager.wait_stopped(), 10)
    return time.monotonic() - started


async def stop_hooks(hooks: WebHooks) -> None:
    result = hooks.stop()
    if result is not None:
        await result


# -- the original scenario ---------------------------------------------------------------
async def test_original_scenario_posts_each_registered_event():
    """Reference 10.1 #28: load, scale, unload: each hooked event is POSTed as JSON."""
    names = ["load", "unload", "start", "update", "stop"]
    names += [f"job.default.dummy.{what}" for what in ("start", "spawn", "stop", "exit")]
    async with Receiver() as receiver:
        hooks = WebHooks([(name, receiver.url(f"/{name}")) for name in names], timeout=2)
        manager = Manager()
        manager.start(apps=[hooks])
        events = EventRecorder(manager)
        manager.load(sleeper())
        await events.wait("spawn", name="default.dummy")
        assert manager.scale("dummy", 1) == 2
        await events.wait_count("spawn", 2, name="default.dummy")
        manager.unload("dummy")
        await events.wait_count("job.default.dummy.exit", 2)
        for name in names:
            bodies = await receiver.wait_count(f"/{name}", 1)
            for body in bodies:
                assert body["event"] == name
                assert body["name"] == "default.dummy"
        assert {request["content_type"] for request in receiver.requests} == {"application/json"}
        # two processes: two spawns and two exits, each POSTed with its pid
        spawned = await receiver.wait_count("/job.default.dummy.spawn", 2)
        exited = await receiver.wait_count("/job.default.dummy.exit", 2)
        assert sorted(body["pid"] for body in spawned) == sorted(body["pid"] for body in exited)
        assert set(exited[0]) == {
            "event", "name", "pid", "os_pid", "exit_status", "term_signal", "once"
        }  # fmt: skip
        assert receiver.bodies("/update")[0]["numprocesses"] == 2
        await stop_manager(manager)
        assert hooks.pending == {}


async def test_wildcard_gets_every_event_in_order_once_per_url():
    async with Receiver() as receiver, Manager() as manager:
        everything, loads = receiver.url("/all"), receiver.url("/loads")
        # "/all" is registered for "." and for "load": still one POST per event
        hooks = WebHooks([(".", everything), ("load", everything), ("load", loads)])
        hooks.start(manager.loop, manager)
        events = EventRecorder(manager)
        manager.load(sleeper())
        await events.wait("spawn")
        manager.unload("dummy")
        await events.wait("exit")
        await wait_until(
            lambda: receiver.events("/all") == events.names(),
            5,
            f"all events at /all: {receiver.events('/all')} vs {events.names()}",
        )
        assert receiver.events("/all").count("load") == 1
        assert receiver.events("/loads") == ["load"]
        assert {"load", "spawn", "unload", "exit", "job.default.dummy.exit"} <= set(
            receiver.events("/all")
        )
        await stop_hooks(hooks)


async def test_deliveries_to_one_url_keep_their_order_one_at_a_time():
    async with Receiver() as receiver, Manager() as manager:
        receiver.hold("/ordered")
        hooks = WebHooks([(".", receiver.url("/ordered"))])
        hooks.start(manager.loop, manager)
        for n in range(30):
            manager.events.publish(f"test.n{n}", {"name": "test", "n": n})
        await receiver.wait_count("/ordered", 1)
        assert hooks.pending == {receiver.url("/ordered"): 30}
        receiver.release("/ordered")
        bodies = await receiver.wait_count("/ordered", 30)
        assert [body["n"] for body in bodies] == list(range(30))
        assert [body["event"] for body in bodies] == [f"test.n{n}" for n in range(30)]
        assert receiver.max_active["/ordered"] == 1
        await wait_until(lambda: hooks.pending == {}, 5, "no pending delivery")
        assert hooks.stop() is None  # nothing in flight: nothing to wait for


# -- failures ----------------------------------------------------------------------------
async def test_failed_delivery_is_retried_with_backoff_then_succeeds(caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    async with Receiver() as receiver, Manager() as manager:
        receiver.statuses["/flaky"] = [500, 500]
        hooks = WebHooks([("load", receiver.url("/flaky"))], retries=3, backoff=0.05)
        hooks.start(manager.loop, manager)
        manager.load(sleeper(), start=False)
        await receiver.wait_count("/flaky", 3)
        await wait_until(lambda: hooks.pending == {}, 5, "the delivery to end")
        attempts = receiver.at("/flaky")
        assert len(attempts) == 3
        assert all(a["body"] == {"event": "load", "name": "default.dummy"} for a in attempts)
        # exponential backoff: 0.05 s, then 0.1 s between attempts
        assert attempts[1]["time"] - attempts[0]["time"] >= 0.045
        assert attempts[2]["time"] - attempts[1]["time"] >= 0.095
        assert warnings_of(caplog) == []
        await stop_hooks(hooks)


async def test_http_errors_exhaust_the_retries_and_log_a_warning(caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    async with Receiver() as receiver, Manager() as manager:
        receiver.statuses["/broken"] = [503] * 10
        url = receiver.url("/broken")
        hooks = WebHooks([("load", url)], retries=2, backoff=0.02)
        hooks.start(manager.loop, manager)
        manager.load(sleeper(), start=False)
        (warning,) = await wait_warnings(caplog)
        assert len(receiver.at("/broken")) == 3  # the first attempt and two retries
        assert url in warning and "load" in warning and "503" in warning
        assert "3 attempt" in warning
        await stop_hooks(hooks)


async def test_connection_refused_is_retried_then_logged(caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    async with Manager() as manager:
        url = f"http://127.0.0.1:{closed_port()}/hook"
        hooks = WebHooks([("load", url)], retries=2, backoff=0.05)
        hooks.start(manager.loop, manager)
        started = time.monotonic()
        manager.load(sleeper(), start=False)
        (warning,) = await wait_warnings(caplog)
        assert time.monotonic() - started >= 0.05 + 0.1  # both backoff delays were waited
        assert url in warning and "event load" in warning
        assert "refused" in warning.lower() and "3 attempt" in warning
        await stop_hooks(hooks)


async def test_receiver_that_never_answers_times_out_without_blocking(caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    async with Blackhole() as blackhole:
        hooks = WebHooks(
            [("load", blackhole.url()), ("update", blackhole.url())],
            timeout=0.4,
            retries=1,
            backoff=0.05,
        )
        manager = Manager()
        manager.start(apps=[hooks])
        lag = LagMeter()
        try:
            started = time.monotonic()
            manager.load(sleeper())
            (warning,) = await wait_warnings(caplog)
            elapsed = time.monotonic() - started
        finally:
            lag.stop()
        assert len(blackhole.connections) == 2  # timed out, retried once, timed out again
        assert blackhole.url() in warning and "event load" in warning
        assert "Timeout" in warning and "2 attempt" in warning
        assert 0.4 + 0.05 + 0.4 <= elapsed < 3
        assert lag.ticks > 20 and lag.max_lag < 0.15, lag.max_lag  # the loop kept running

        # a request in flight when the manager stops: the stop waits at most `timeout`
        manager.scale("dummy", 1)
        await wait_until(lambda: len(blackhole.connections) == 3, 5, "the update request")
        assert hooks.pending == {blackhole.url(): 1}
        took = await stop_manager(manager)
        assert took < 0.4 + 1.0
        assert hooks.pending == {}
        warnings = warnings_of(caplog)
        assert len(warnings) == 2 and "event update" in warnings[1]
        assert "1 attempt" in warnings[1]  # no retry once stopping


async def test_stop_cancels_a_pending_retry_and_sends_what_is_queued_once(caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    async with Receiver() as receiver:
        receiver.statuses["/down"] = [500, 500]
        url = receiver.url("/down")
        hooks = WebHooks([(".", url)], retries=5, backoff=30)
        manager = Manager()
        manager.start(apps=[hooks])
        manager.events.publish("test.n0", {"name": "test", "n": 0})
        await receiver.wait_count("/down", 1)
        await wait_until(lambda: hooks.pending == {url: 1}, 5, "n0 to wait for its retry")
        manager.events.publish("test.n1", {"name": "test", "n": 1})
        manager.events.publish("test.n2", {"name": "test", "n": 2})
        await wait_until(lambda: hooks.pending == {url: 3}, 5, "n1 and n2 to be queued")
        took = await stop_manager(manager)
        assert took < 2  # not the 30 s backoff
        # n0 is given up; n1 and n2 get one attempt each (n1 fails, n2 goes through)
        assert [body["n"] for body in receiver.bodies("/down")] == [0, 1, 2]
        assert receiver.statuses["/down"] == []
        warnings = warnings_of(caplog)
        assert len(warnings) == 2
        assert "event test.n0 after 1 attempt" in warnings[0]
        assert "retry cancelled by stop" in warnings[0]
        assert "event test.n1 after 1 attempt" in warnings[1] and "HTTP 500" in warnings[1]


async def test_slow_url_does_not_delay_another_url():
    async with Receiver() as receiver, Manager() as manager:
        receiver.hold("/slow")
        slow, fast = receiver.url("/slow"), receiver.url("/fast")
        hooks = WebHooks([(".", slow), (".", fast)])
        hooks.start(manager.loop, manager)
        manager.load(sleeper(), start=False)
        manager.start_job("dummy")
        manager.stop_job("dummy")
        sent = ["load", "start", "job.default.dummy.start"]
        await wait_until(
            lambda: set(sent) <= set(receiver.events("/fast")) and receiver.at("/slow"),
            5,
            "the fast URL to get its events",
        )
        assert receiver.events("/slow") == ["load"]  # still held: the others wait behind it
        assert hooks.pending[slow] >= 3
        receiver.release("/slow")
        await wait_until(lambda: hooks.pending == {}, 5, "every delivery")
        assert receiver.events("/slow") == receiver.events("/fast")
        await stop_hooks(hooks)


async def test_overflow_drops_the_oldest_pending_events_with_a_warning(caplog):
    caplog.set_level(logging.WARNING, LOGGER)
    async with Receiver() as receiver, Manager() as manager:
        receiver.hold("/small")
        url = receiver.url("/small")
        hooks = WebHooks([(".", url)], max_pending=5)
        hooks.start(manager.loop, manager)
        manager.events.publish("test.n0", {"name": "test", "n": 0})
        await receiver.wait_count("/small", 1)  # in flight, held
        for n in range(1, 13):
            manager.events.publish(f"test.n{n}", {"name": "test", "n": n})
        (warning,) = await wait_warnings(caplog)
        assert url in warning and "dropped the 7 oldest" in warning
        assert hooks.pending == {url: 1 + 5}
        receiver.release("/small")
        bodies = await receiver.wait_count("/small", 6)
        await wait_until(lambda: hooks.pending == {}, 5, "every delivery")
        assert [body["n"] for body in receiver.bodies("/small")] == [0, 8, 9, 10, 11, 12]
        assert len(bodies) == 6
        assert len(warnings_of(caplog)) == 1
        await stop_hooks(hooks)


# -- configuration -----------------------------------------------------------------------
async def test_register_and_unregister_hooks_at_run_time():
    async with Receiver() as receiver, Manager() as manager:
        url = receiver.url("/dyn")
        hooks = WebHooks()
        hooks.start(manager.loop, manager)
        assert hooks.hooks == []
        hooks.register_hook("load", url)
        hooks.register_hook("unload", url)
        hooks.register_hook("load", url)  # twice: no-op
        assert hooks.hooks == [("load", url), ("unload", url)]
        manager.load(sleeper("one"), start=False)
        manager.unload("one")
        assert await receiver.wait_count("/dyn", 2) == [
            {"event": "load", "name": "default.one"},
            {"event": "unload", "name": "default.one"},
        ]
        assert hooks.unregister_hook("load", url) is True
        assert hooks.unregister_hook("load", url) is False  # not registered any more
        assert hooks.unregister_hook("exit", "http://nowhere/") is False
        assert hooks.hooks == [("unload", url)]
        manager.load(sleeper("two"), start=False)
        manager.unload("two")
        # one URL keeps the order: a POST of the second load would come before the unload
        await receiver.wait_count("/dyn", 3)
        assert receiver.events("/dyn") == ["load", "unload", "unload"]
        assert receiver.bodies("/dyn")[-1]["name"] == "default.two"

        hooks.unregister_hook("unload", url)
        assert not manager.events.has_subscribers(".")  # no hook left: not listening
        hooks.register_hook(".", url)
        assert manager.events.has_subscribers(".")
        await stop_hooks(hooks)
        assert not manager.events.has_subscribers(".")


async def test_restart_keeps_the_hooks_and_delivery_goes_on():
    async with Receiver() as receiver:
        url = receiver.url("/r")
        hooks = WebHooks([("load", url), ("unload", url)])
        manager = Manager()
        manager.start(apps=[hooks])
        manager.load(sleeper("one"), start=False)
        await receiver.wait_count("/r", 1)
        manager.restart()
        assert hooks.hooks == [("load", url), ("unload", url)]
        manager.unload("one")
        assert await receiver.wait_count("/r", 2) == [
            {"event": "load", "name": "default.one"},
            {"event": "unload", "name": "default.one"},
        ]
        await stop_manager(manager)
        assert not manager.events.has_subscribers(".")


async def test_bytes_values_are_posted_as_text():
    async with Receiver() as receiver, Manager() as manager:
        hooks = WebHooks([("custom", receiver.url("/bytes"))])
        hooks.start(manager.loop, manager)
        manager.events.publish(
            "custom", {"name": "x", "data": b"ok \xff\xfe", "pair": (1, b"a"), b"key": 1}
        )
        (body,) = await receiver.wait_count("/bytes", 1)
        assert body == {
            "event": "custom",
            "name": "x",
            "data": "ok \ufffd\ufffd",
            "pair": [1, "a"],
            "key": 1,
        }
        await stop_hooks(hooks)


def test_encode_event_adds_the_event_name_and_keeps_ascii():
    assert json.loads(encode_event("load", {"name": "a.b"})) == {"event": "load", "name": "a.b"}
    raw = encode_event("exit", {"event": "exit", "name": "a.b", "text": "é\udcff"})
    assert raw.isascii()
    assert json.loads(raw)["text"] == "é\udcff"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "127.0.0.1:8000/hook", "http://", "/relative", "http://h:x/"]
)
def test_bad_urls_are_rejected_with_the_url_in_the_message(url):
    with pytest.raises(ValueError, match="invalid webhook URL") as excinfo:
        WebHooks([("load", url)])
    assert repr(url) in str(excinfo.value)
    hooks = WebHooks()
    with pytest.raises(ValueError, match="invalid webhook URL"):
        hooks.register_hook("load", url)
    assert hooks.hooks == []


@pytest.mark.parametrize(
    ("hooks", "settings"),
    [
        ([("", "http://h/")], {}),
        ([(None, "http://h/")], {}),
        ([("load",)], {}),
        (["load"], {}),
        ([], {"timeout": 0}),
        ([], {"retries": -1}),
        ([], {"backoff": -0.1}),
        ([], {"max_pending": 0}),
    ],
)
def test_bad_settings_are_rejected(hooks, settings):
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        WebHooks(hooks, **settings)


def test_valid_urls_are_accepted():
    hooks = WebHooks([("load", "http://127.0.0.1:8080/x"), (".", "https://example.com")])
    assert hooks.hooks == [("load", "http://127.0.0.1:8080/x"), (".", "https://example.com")]
