"""EventEmitter and EventStream on a real event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from gaffer.core.events import EventEmitter, EventStream

TIMEOUT = 5.0


class Recorder:
    """A listener recording its events; ``wait(n)`` resolves once it has ``n`` of them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._waiters: list[tuple[int, asyncio.Future]] = []

    def __call__(self, evtype: str, msg: Any) -> None:
        self.events.append((evtype, msg))
        for waiter in list(self._waiters):
            count, future = waiter
            if len(self.events) >= count and not future.done():
                future.set_result(None)
                self._waiters.remove(waiter)

    def on_event(self, evtype: str, msg: Any) -> None:
        self(evtype, msg)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    async def wait(self, count: int = 1) -> None:
        if len(self.events) >= count:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((count, future))
        await asyncio.wait_for(future, TIMEOUT)


async def settle() -> None:
    """Give the loop a few turns, to show that nothing more arrives."""
    for _ in range(3):
        await asyncio.sleep(0)


async def flush(emitter: EventEmitter) -> None:
    """Publish a marker and wait for it: every event published before it is delivered."""
    marker = Recorder()
    emitter.subscribe("test-flush", marker)
    emitter.publish("test-flush")
    await marker.wait()
    emitter.unsubscribe("test-flush", marker)


def new_emitter() -> EventEmitter:
    return EventEmitter(asyncio.get_running_loop())


# -- delivery -------------------------------------------------------------------------------
async def test_emitter_delivers_full_event_name_and_message():
    emitter = new_emitter()
    rec = Recorder()
    emitter.subscribe("job", rec)
    emitter.publish("job.default.web.exit", {"pid": 12})
    await rec.wait()
    assert rec.events == [("job.default.web.exit", {"pid": 12})]


async def test_emitter_delivers_after_publish_returns():
    emitter = new_emitter()
    rec = Recorder()
    emitter.subscribe("a", rec)
    emitter.publish("a", 1)
    assert rec.events == []
    await rec.wait()
    assert rec.events == [("a", 1)]


async def test_emitter_without_loop_delivers_on_the_running_loop():
    emitter = EventEmitter()
    rec = Recorder()
    emitter.subscribe(".", rec)
    emitter.publish("a", 1)
    await rec.wait()
    assert rec.events == [("a", 1)]


def test_emitter_without_loop_publish_outside_a_loop_raises():
    emitter = EventEmitter()
    emitter.subscribe(".", Recorder())
    with pytest.raises(RuntimeError, match="no loop"):
        emitter.publish("a", 1)


async def test_emitter_prefix_of_first_segment_matches_deeper_events():
    emitter = new_emitter()
    rec = Recorder()
    emitter.subscribe("a", rec)
    emitter.publish("a.b.c", 1)
    emitter.publish("ab.c", 2)
    emitter.publish("a", 3)
    await flush(emitter)
    assert rec.events == [("a.b.c", 1), ("a", 3)]


async def test_emitter_dotted_prefix_matches_only_its_subtree():
    emitter = new_emitter()
    rec = Recorder()
    emitter.subscribe("a.b", rec)
    for name in ("a.b.c", "a", "ab.c", "a.bc", "a.b"):
        emitter.publish(name)
    await flush(emitter)
    assert rec.names == ["a.b.c", "a.b"]


async def test_emitter_wildcard_receives_everything():
    emitter = new_emitter()
    rec = Recorder()
    emitter.subscribe(".", rec)
    for name in ("a", "b.c", "x.y.z"):
        emitter.publish(name)
    await rec.wait(3)
    assert rec.names == ["a", "b.c", "x.y.z"]


async def test_emitter_trailing_dot_pattern_equals_plain_pattern():
    emitter = new_emitter()
    rec = Recorder()
    emitter.subscribe("a.b.", rec)
    assert emitter.has_subscribers("a.b")
    emitter.publish("a.b.c")
    emitter.publish("a.bc")
    await flush(emitter)
    assert rec.names == ["a.b.c"]
    emitter.unsubscribe("a.b", rec)
    assert not emitter.has_subscribers("a.b.")


async def test_emitter_delivers_once_to_listener_matching_several_patterns():
    emitter = new_emitter()
    rec = Recorder()
    for pattern in ("a", "a.b", "."):
        emitter.subscribe(pattern, rec)
    emitter.publish("a.b.c", 1)
    emitter.publish("a.x", 2)
    emitter.publish("z", 3)
    await rec.wait(3)
    await settle()
    assert rec.events == [("a.b.c", 1), ("a.x", 2), ("z", 3)]


async def test_emitter_same_bound_method_subscribed_twice_counts_once():
    emitter = new_emitter()
    rec = Recorder()
    emitter.subscribe("a", rec.on_event)
    emitter.subscribe("a", rec.on_event)  # a new bound-method object, equal to the first
    emitter.publish("a")
    await flush(emitter)
    assert rec.names == ["a"]
    emitter.unsubscribe("a", rec.on_event)
    assert not emitter.has_subscribers("a")


async def test_emitter_publish_order_is_delivery_order():
    emitter = new_emitter()
    rec = Recorder()
    emitter.subscribe("a", rec)
    emitter.subscribe(".", rec.on_event)  # another listener identity: gets its own copy
    for i in range(50):
        emitter.publish(f"a.{i % 3}", i)
    await rec.wait(100)
    assert [msg for _, msg in rec.events] == [i for i in range(50) for _ in range(2)]


# -- subscribe_once / unsubscribe -----------------------------------------------------------
async def test_emitter_subscribe_once_gets_exactly_one_event_when_two_are_queued():
    emitter = new_emitter()
    once = Recorder()
    emitter.subscribe_once("a", once)
    emitter.publish("a", 1)
    emitter.publish("a", 2)
    await flush(emitter)
    emitter.publish("a", 3)
    await flush(emitter)
    assert once.events == [("a", 1)]
    assert not emitter.has_subscribers("a")


async def test_emitter_plain_subscription_survives_once_subscription_of_same_listener():
    # A listener with a once subscription (on ".") and a plain one (on "a") gets the first
    # event through either; the plain subscription must still deliver the second event.
    emitter = new_emitter()
    rec = Recorder()
    emitter.subscribe_once(".", rec)
    emitter.subscribe("a", rec)
    emitter.publish("a.1")
    emitter.publish("a.2")
    await flush(emitter)
    assert rec.names == ["a.1", "a.2"]


async def test_emitter_unsubscribe_before_delivery_skips_pending_event():
    emitter = new_emitter()
    gone, stays = Recorder(), Recorder()
    emitter.subscribe("a", gone)
    emitter.subscribe("a", stays)
    emitter.publish("a", 1)
    emitter.unsubscribe("a", gone)
    await stays.wait()
    await settle()
    assert gone.events == []
    assert stays.events == [("a", 1)]


async def test_emitter_subscribe_after_publish_before_delivery_receives_event():
    emitter = new_emitter()
    early, late = Recorder(), Recorder()
    emitter.subscribe("a", early)
    emitter.publish("a", 1)
    emitter.publish("b", 2)  # no subscriber yet when published
    emitter.subscribe(".", late)
    await late.wait(2)
    assert early.events == [("a", 1)]
    assert late.events == [("a", 1), ("b", 2)]


async def test_emitter_unsubscribe_unknown_listener_is_a_noop():
    emitter = new_emitter()
    rec = Recorder()
    emitter.subscribe("a", rec)
    emitter.unsubscribe("a", Recorder())
    emitter.unsubscribe("never.subscribed", rec)
    emitter.publish("a")
    await rec.wait()
    assert rec.names == ["a"]


async def test_emitter_unsubscribe_all():
    emitter = new_emitter()
    rec = Recorder()
    emitter.subscribe("a", rec)
    emitter.subscribe("b", rec.on_event)
    emitter.publish("a")
    emitter.unsubscribe_all()
    assert not emitter.has_subscribers("a")
    assert not emitter.has_subscribers("b")
    emitter.publish("b")
    await settle()
    assert rec.events == []


async def test_emitter_unsubscribe_all_of_some_patterns():
    emitter = new_emitter()
    a, b = Recorder(), Recorder()
    emitter.subscribe("a", a)
    emitter.subscribe("b", b)
    emitter.unsubscribe_all(["a."])
    emitter.publish("a")
    emitter.publish("b")
    await b.wait()
    await settle()
    assert a.events == []
    assert b.names == ["b"]


async def test_emitter_failing_listener_is_logged_and_others_still_receive(caplog):
    emitter = new_emitter()
    rec = Recorder()

    def broken(evtype: str, msg: Any) -> None:
        raise RuntimeError("listener is broken")

    emitter.subscribe("a", broken)
    emitter.subscribe("a", rec)
    with caplog.at_level(logging.ERROR, logger="gaffer.core.events"):
        emitter.publish("a.b", 1)
        await rec.wait()
    assert rec.events == [("a.b", 1)]
    failures = [r for r in caplog.records if r.name == "gaffer.core.events"]
    assert len(failures) == 1
    assert "a.b" in failures[0].getMessage()
    assert failures[0].exc_info[0] is RuntimeError


async def test_emitter_publish_from_threads_delivers_each_event_once_in_order():
    emitter = new_emitter()
    rec = Recorder()
    emitter.subscribe("t", rec)
    threads_n, per_thread = 8, 500
    start = threading.Barrier(threads_n)

    def worker(index: int) -> None:
        start.wait()
        for seq in range(per_thread):
            emitter.publish(f"t.{index}", seq)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for thread in threads:
        thread.start()
    await rec.wait(threads_n * per_thread)
    for thread in threads:
        await asyncio.to_thread(thread.join)
    await settle()
    assert len(rec.events) == threads_n * per_thread
    for index in range(threads_n):
        seqs = [msg for name, msg in rec.events if name == f"t.{index}"]
        assert seqs == list(range(per_thread))


async def test_emitter_close_drops_pending_and_later_events():
    emitter = new_emitter()
    rec = Recorder()
    emitter.subscribe("a", rec)
    emitter.publish("a", 1)
    emitter.close()
    assert emitter.closed
    emitter.publish("a", 2)
    await settle()
    assert rec.events == []
    assert not emitter.has_subscribers("a")


async def test_emitter_has_subscribers():
    emitter = new_emitter()
    rec = Recorder()
    assert not emitter.has_subscribers("a")
    emitter.subscribe("a", rec)
    assert emitter.has_subscribers("a")
    assert not emitter.has_subscribers("a.b")  # exact pattern, not a match
    emitter.unsubscribe("a", rec)
    assert not emitter.has_subscribers("a")


@pytest.mark.parametrize("pattern", ["", None, 3, b"a"])
def test_emitter_bad_pattern_raises_value_error(pattern):
    emitter = EventEmitter()
    with pytest.raises(ValueError, match="pattern"):
        emitter.subscribe(pattern, lambda evtype, msg: None)
    with pytest.raises(ValueError, match="pattern"):
        emitter.has_subscribers(pattern)


def test_emitter_non_callable_listener_raises_type_error():
    emitter = EventEmitter()
    with pytest.raises(TypeError, match="callable"):
        emitter.subscribe("a", "not a function")


# -- streams --------------------------------------------------------------------------------
async def test_stream_yields_events_matching_pattern():
    emitter = new_emitter()
    async with emitter.stream("job") as stream:
        emitter.publish("job.a.start", {"n": 1})
        emitter.publish("other", {"n": 2})
        emitter.publish("job.a.stop", {"n": 3})
        received = []
        async for item in stream:
            received.append(item)
            if len(received) == 2:
                break
    assert received == [("job.a.start", {"n": 1}), ("job.a.stop", {"n": 3})]
    assert not emitter.has_subscribers("job")


async def test_stream_slow_consumer_gets_one_dropped_marker():
    emitter = new_emitter()
    async with emitter.stream("e", maxsize=3) as stream:
        for i in range(10):
            emitter.publish("e", i)
        await flush(emitter)
        assert len(stream) == 4
        first = [await anext(stream) for _ in range(4)]
        assert first == [
            ("e", 0),
            ("e", 1),
            ("e", 2),
            (EventStream.DROPPED, {"event": "gaffer.dropped", "count": 7}),
        ]
        emitter.publish("e", 10)
        emitter.publish("e", 11)
        after = [await anext(stream) for _ in range(2)]
        assert after == [("e", 10), ("e", 11)]
        assert stream.get_nowait() is None


def test_stream_rejects_maxsize_below_one():
    with pytest.raises(ValueError, match="maxsize"):
        EventStream(0)
