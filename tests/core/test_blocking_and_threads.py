"""The blocking API (start / run / stop) and calls from other threads."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from gaffer import Manager, ProcessConfig, ProcessNotFound
from gaffer.core.childwatch import ChildWatcher
from gaffer.core.loop import new_event_loop
from gaffer.core.spawn import Command, spawn
from tests.helpers import child_argv, child_cmd, pid_exists, wait_until_sync


def test_run_returns_after_stop_from_another_thread(loop_kind):
    manager = Manager(loop_kind=loop_kind)
    stopped = []
    manager.start()
    manager.add_process("web", child_cmd("sleep"), numprocesses=2)
    os_pids = [manager.get_process(pid).os_pid for pid in manager.pids()]
    threading.Timer(0.2, manager.stop, args=(stopped.append,)).start()
    manager.run()
    assert stopped == [manager]
    assert not manager.active
    assert manager.loop.is_closed()
    assert not any(pid_exists(pid) for pid in os_pids)


def test_methods_called_from_another_thread_run_on_the_loop():
    manager = Manager()
    manager.start()
    results = {}

    def worker():
        try:
            manager.load(ProcessConfig("web", child_cmd("sleep")))
            results["scale"] = manager.scale("web", "+2")
            results["pids"] = manager.pids("web")
            results["thread"] = manager.get_process(1).loop is manager.loop
            try:
                manager.info("missing")
            except ProcessNotFound as exc:
                results["error"] = exc.reason
        finally:
            manager.stop()

    thread = threading.Thread(target=worker)
    manager.loop.call_soon(thread.start)
    manager.run()
    thread.join(5)
    assert results == {"scale": 3, "pids": [1, 2, 3], "thread": True, "error": "not_found"}


def test_restart_from_another_thread_replaces_processes():
    manager = Manager()
    manager.start()
    manager.load(ProcessConfig("web", child_cmd("sleep"), numprocesses=2))
    seen = {}

    def worker():
        seen["before"] = manager.pids("web")
        done = threading.Event()
        manager.restart(lambda mgr: done.set())
        done.wait(5)
        seen["after"] = manager.pids("web")
        manager.stop()

    manager.loop.call_soon(threading.Thread(target=worker).start)
    manager.run()
    assert seen["before"] == [1, 2]
    assert seen["after"] == [3, 4]


def test_events_published_from_threads_are_delivered_on_the_loop():
    manager = Manager()
    manager.start()
    received = []
    loop_thread = []

    def listener(evtype, msg):
        received.append((msg["n"], threading.get_ident()))
        if len(received) == 400:
            manager.stop()

    manager.events.subscribe("custom", listener)

    def publisher(offset):
        for n in range(100):
            manager.events.publish("custom.tick", {"n": offset + n})

    def start_publishers():
        loop_thread.append(threading.get_ident())
        for offset in range(0, 400, 100):
            threading.Thread(target=publisher, args=(offset,)).start()

    manager.loop.call_soon(start_publishers)
    manager.run()
    assert sorted(n for n, _ in received) == list(range(400))
    assert {tid for _, tid in received} == set(loop_thread)


def test_stop_before_run_is_honoured_by_run():
    manager = Manager()
    manager.start()
    manager.load(ProcessConfig("web", child_cmd("sleep")))
    manager.stop()
    started = time.monotonic()
    manager.run()
    assert time.monotonic() - started < 5
    assert manager.pids() == []


def test_run_before_start_is_refused():
    manager = Manager()
    with pytest.raises(RuntimeError, match="start"):
        manager.run()
    manager.loop.close()


def test_jobs_loaded_before_start_begin_at_start_in_priority_order():
    manager = Manager()
    order = []
    manager.events.subscribe("spawn", lambda evtype, msg: order.append(msg["name"]))
    manager.load(ProcessConfig("late", child_cmd("sleep"), priority=5))
    manager.load(ProcessConfig("early", child_cmd("sleep"), priority=1))
    assert manager.pids() == []
    manager.start()
    assert len(manager.pids()) == 2
    manager.loop.call_later(0.05, manager.stop)
    manager.run()
    assert order == ["default.early", "default.late"]


async def test_thread_waiter_fallback_reports_exits():
    loop = asyncio.get_running_loop()
    watcher = ChildWatcher(loop, use_pidfd=False)
    argv = tuple(child_argv("exit", 7))
    os_pid = spawn(
        Command(argv[0], argv, dict(os.environ), None, None, None, None),
        stdin=None,
        stdout=None,
        stderr=None,
    )
    done = loop.create_future()
    watcher.watch(os_pid, lambda status, sig: done.set_result((status, sig)))
    assert await asyncio.wait_for(done, 10) == (7, 0)
    assert len(watcher) == 0


def test_detached_child_left_at_stop_is_reaped_when_it_exits():
    loop = new_event_loop()
    manager = Manager(loop=loop)
    manager.start()
    manager.load(ProcessConfig("daemon", child_cmd("sleep"), detach=True))
    os_pid = manager.get_process(1).os_pid
    loop.call_soon(manager.stop)
    manager.run()
    loop.close()
    assert pid_exists(os_pid)
    os.kill(os_pid, 15)
    wait_until_sync(lambda: not pid_exists(os_pid), what="detached child reaped")
