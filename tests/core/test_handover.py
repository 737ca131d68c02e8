"""A manager frozen (``freeze``) and rebuilt by another (``restore``), in one process.

What gafferd's exec does, without the exec: a first manager on its own loop is frozen,
its description goes through JSON, its Python objects are abandoned (that loop closed,
nothing of it closes a descriptor), and a second manager on a new loop restores it. The
children are this process's children all along, as they are gafferd's across its exec.
Real processes: stdin, custom streams, output, exits, restarts and crash-loop state go on.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from gaffer import Manager, ProcessConfig
from gaffer.core.loop import new_event_loop
from tests.helpers import child_cmd, pid_exists

pytestmark = pytest.mark.timeout(60)


def _run(loop, coro, timeout: float = 20):
    import asyncio

    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def _until(predicate, what: str, timeout: float = 10) -> None:
    from tests.helpers import wait_until

    await wait_until(predicate, timeout, what)


def _abandon(manager: Manager) -> None:
    """What an exec does to the first manager: its objects vanish, its descriptors stay.
    Sockets would close theirs when collected: they are detached instead."""
    for proc in [*manager._table.running.values(), *manager._table.stopping.values()]:
        for stream in proc.streams.values():
            stream._sock.detach()
    if manager._table._notify is not None:
        manager._table._notify._sock.detach()
    manager._monitor.close()
    for runner in manager._jobs.values():
        runner._cancel_timers()
        runner._checks.close()
    manager.loop.close()


def test_restore_goes_on_with_every_process(tmp_path, loop_kind):
    out_log = tmp_path / "echo.log"
    first = new_event_loop(loop_kind)
    old = Manager(loop=first, guard=True)
    old.start()
    old.load(
        ProcessConfig(
            "echo",
            child_cmd("echo"),
            redirect_input=True,
            stdout_logfile=str(out_log),
            start_secs=0.1,
        )
    )
    old.load(ProcessConfig("streams", child_cmd("echo-fd3"), custom_streams=["ctl"]))
    old.load(
        ProcessConfig(
            "crasher",
            child_cmd("crash", 50, 3),
            flapping={"attempts": 2, "window": 5, "retry_in": 30, "max_retry": 5},
            backoff=None,
        )
    )
    old.load(ProcessConfig("sleepers", child_cmd("sleep"), numprocesses=3))

    async def settle() -> None:
        await _until(lambda: old.info("crasher")["retry_pending"], "crasher paused")
        await _until(lambda: old.info("echo")["state"] == "running", "echo running")
        old.send(old.pids("echo")[0], b"before\n")
        await _until(lambda: out_log.exists() and b"before" in out_log.read_bytes(), "echoed")

    _run(first, settle())
    before = {pid: proc.os_pid for pid, proc in old.running.items()}
    crasher = old.info("crasher")
    guard_pid = old._table.guard.pid
    state, fds = old.freeze()
    state = json.loads(json.dumps(state))  # all of it crosses the exec as plain data
    assert set(fds) == set(state["fds"])
    _abandon(old)

    second = new_event_loop(loop_kind)
    new = Manager(loop=second, guard=True)
    counts = new.restore(state)
    assert counts == {"jobs": 4, "processes": len(before)}
    new.start()
    assert new._table.guard.pid == guard_pid  # the same guard goes on

    async def check() -> None:
        assert {pid: proc.os_pid for pid, proc in new.running.items()} == before
        # the crash loop's pause and count go on, not a new start
        paused = new.info("crasher")
        assert paused["retry_pending"] and paused["restarts"] == crasher["restarts"]
        assert paused["next_restart_at"] == crasher["next_restart_at"]
        assert paused["flapping"]["retries"] == crasher["flapping"]["retries"]
        assert paused["state"] == "backoff"
        # stdin and output: the same pipes
        (echo,) = new.pids("echo")
        new.send(echo, b"after\n")
        await _until(lambda: b"after" in out_log.read_bytes(), "echoed after")
        # each line once, gafferd's own markers (`... [gaffer] echo.1: spawned ...`) aside
        lines = [ln for ln in out_log.read_bytes().splitlines() if b" [gaffer] " not in ln]
        assert lines == [b"before", b"after"]
        # a custom stream: the same socket
        (pid,) = new.pids("streams")
        got = []
        new.get_process(pid).streams["ctl"].subscribe(lambda label, msg: got.append(msg["data"]))
        new.send(pid, b"ping\n", stream="ctl")
        await _until(lambda: b"".join(got) == b"ping\n", "the stream answers")
        # an exit after the hand-over: reaped, its status known, the process replaced
        victim = new.pids("sleepers")[0]
        os.kill(before[victim], signal.SIGKILL)
        await _until(lambda: victim not in new.running, "the victim reaped")
        await _until(lambda: len(new.pids("sleepers")) == 3, "replaced")
        assert new.info("sleepers")["last_exit"]["term_signal"] == signal.SIGKILL
        assert new.info("sleepers")["restarts"] == 1
        assert max(new.running) > max(before)  # internal pids are never reused
        new.stop()
        await new.wait_stopped()

    _run(second, check())
    second.close()
    assert not any(pid_exists(os_pid) for os_pid in before.values())
