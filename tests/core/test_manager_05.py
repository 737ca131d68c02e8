"""gaffer 0.5's Manager where the contract is silent, from the scenarios of its test suite:
a job loaded unstarted is not stopped, ``stopall`` leaves no pid listed, and 0.5's names
``list``, ``manage``, ``subscribe`` and ``unsubscribe``."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from gaffer import Manager, ProcessConfig
from gaffer.core.channels import Channel
from gaffer.core.process import Process
from gaffer.core.topics import TopicError
from tests.helpers import EventRecorder, child_cmd, wait_until


def sleeper(name: str = "dummy", **settings) -> ProcessConfig:
    return ProcessConfig(name, child_cmd("sleep"), **settings)


async def test_a_job_loaded_unstarted_commits_then_scales_as_in_0_5():
    async with Manager() as manager:
        manager.load(sleeper(numprocesses=0), start=False)
        assert manager.commit("dummy") == 1
        assert manager.scale("dummy", 1) == 1
        assert manager.pids() == [1, 2]
        assert len(manager.running) == 2
        assert manager.info("dummy")["state"] in ("starting", "running")


async def test_a_stopped_job_stays_stopped_when_scaled():
    async with Manager() as manager:
        manager.load(sleeper())
        manager.stop_job("dummy")
        manager.scale("dummy", 2)  # the target changes; nothing runs until a start
        assert manager.pids("dummy") == []
        manager.start_job("dummy")
        assert len(manager.pids("dummy")) == 1  # start_job: the config's target


async def test_manage_reconciles_now_and_starts_an_unstarted_job():
    async with Manager() as manager:
        manager.load(sleeper(numprocesses=2), start=False)
        assert manager.pids("dummy") == []
        manager.manage("dummy")
        assert manager.pids("dummy") == [1, 2]


async def test_stopall_lists_no_pid_right_after_and_replaces_them_as_they_exit():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(sleeper(numprocesses=2))
        assert manager.pids("dummy") == [1, 2]
        manager.stopall("dummy")
        assert manager.pids("dummy") == []
        await events.wait_count("spawn", 4)
        assert manager.pids("dummy") == [3, 4]
        assert manager.info("dummy")["stopped"] is False


async def test_list_returns_process_objects_and_says_it_is_0_5_s():
    async with Manager() as manager:
        manager.load(sleeper(numprocesses=2))
        manager.commit("dummy")
        with pytest.warns(DeprecationWarning, match=r"pids\(\) and get_process\(\)"):
            everything = manager.list()
        with pytest.warns(DeprecationWarning, match="gaffer 0.5's"):
            kept = manager.list("dummy")
        assert all(isinstance(proc, Process) for proc in everything)
        assert [proc.pid for proc in everything] == [1, 2, 3]
        assert [proc.pid for proc in kept] == [1, 2]
        assert list(range(3)) == [0, 1, 2]  # the builtin is not shadowed in the class body


async def test_subscribe_to_a_job_s_events_with_the_prefix_stripped():
    async with Manager() as manager:
        got: list[tuple[str, dict]] = []
        channel = manager.subscribe("JOB:default.dummy")
        assert isinstance(channel, Channel)
        channel.bind("exit", lambda evtype, msg: got.append((evtype, msg)))
        everything: list[str] = []
        channel.bind_all(lambda evtype, msg: everything.append(evtype))
        manager.load(sleeper())
        os.kill(manager.get_process(1).os_pid, signal.SIGKILL)
        await wait_until(lambda: got, what="the exit")
        assert got[0][0] == "exit" and got[0][1]["pid"] == 1
        assert {"start", "spawn", "exit"} <= set(everything)
        manager.unsubscribe("JOB:default.dummy", channel)
        count = len(everything)
        manager.stop_job("dummy")
        await asyncio.sleep(0)  # deliveries are on the next loop iteration
        assert len(everything) == count  # unsubscribed: nothing more


async def test_subscribe_to_events_process_stats_and_stream():
    async with Manager() as manager:
        spawned: list[str] = []
        manager.subscribe("EVENTS:spawn").bind_all(lambda evtype, msg: spawned.append(evtype))
        config = ProcessConfig("talker", child_cmd("chatty", 20), redirect_output=["out"])
        manager.load(config)
        stats: list[dict] = []
        manager.subscribe("STATS:default.talker").bind("stat", lambda e, msg: stats.append(msg))
        output: list[bytes] = []
        manager.subscribe("STREAM:1").bind_all(lambda label, msg: output.append(msg["data"]))
        kills: list[str] = []
        manager.subscribe("PROCESS:1").bind("kill", lambda e, msg: kills.append(e))
        manager.kill(1, "CONT")  # harmless: only the kill event matters
        await wait_until(lambda: spawned and stats and output and kills, what="every channel")
        assert spawned[0] == "spawn" and stats[0]["pid"] == 1 and kills == ["kill"]
        assert b"x" in b"".join(output)


async def test_subscribe_refuses_what_is_no_topic():
    async with Manager() as manager:
        with pytest.raises(TopicError, match="unknown topic source 'NEWS'"):
            manager.subscribe("NEWS:today")
        channel = manager.subscribe("EVENTS")
        with pytest.raises(ValueError, match=r"subscribed to EVENTS, not JOB:default\.x"):
            manager.unsubscribe("JOB:default.x", channel)
