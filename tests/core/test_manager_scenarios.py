"""The original gaffer's acceptance scenarios (reference section 10.1, numbers 1 to 16),
with real child processes, synchronised on events."""

from __future__ import annotations

import signal
import sys

import pytest

from gaffer import FlappingInfo, Manager, ProcessConfig, ProcessNotFound
from tests.helpers import CHILD, UNCONTAINED, EventRecorder, child_cmd, read_file, wait_until


def sleeper(name: str = "dummy", **settings) -> ProcessConfig:
    return ProcessConfig(name, child_cmd("sleep"), **settings)


async def test_load_without_start_registers_the_job_only(tmp_path):
    async with Manager() as manager:
        config = ProcessConfig(
            "dummy", sys.executable, args=[str(CHILD), "sleep"], cwd=str(tmp_path)
        )
        manager.load(config, start=False)
        assert manager.jobs() == ["default.dummy"]
        stored = manager.get("default.dummy")
        assert stored.cmd == sys.executable
        assert stored.args == (str(CHILD), "sleep")
        assert stored.cwd == str(tmp_path)
        info = manager.info("dummy")
        assert (info["numprocesses"], info["running"], info["active"]) == (1, 0, False)
        assert manager.pids() == []
        manager.unload("dummy")
        with pytest.raises(ProcessNotFound) as excinfo:
            manager.get("default.dummy")
        assert excinfo.value.reason == "not_found"


async def test_start_job_runs_one_process_and_stop_job_removes_it_at_once():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(sleeper())
        assert len(manager.pids("dummy")) == 1
        manager.stop_job("dummy")
        assert manager.pids("dummy") == []
        assert manager.info("dummy")["running"] == 0
        await events.wait("exit", name="default.dummy")


async def test_numprocesses_two_gives_two_running_right_after_load():
    async with Manager() as manager:
        manager.load(sleeper(numprocesses=2))
        assert len(manager.pids("dummy")) == 2


async def test_scale_up_adds_processes():
    async with Manager() as manager:
        manager.load(sleeper())
        assert manager.scale("dummy", 1) == 2
        assert len(manager.pids("dummy")) == 2
        assert manager.scale("dummy", 1) == 3
        assert manager.scale("dummy", 3) == 6
        assert len(manager.pids("dummy")) == 6


async def test_scale_down_reaps_the_oldest_processes():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(sleeper(numprocesses=4))
        assert manager.pids("dummy") == [1, 2, 3, 4]
        assert manager.scale("dummy", -1) == 3
        assert manager.pids("dummy") == [2, 3, 4]
        assert manager.scale("dummy", -2) == 1
        assert manager.pids("dummy") == [4]
        reaped = await events.wait_count("reap", 3)
        assert [msg["pid"] for msg in reaped] == [1, 2, 3]
        await events.wait_count("exit", 3)


async def test_scale_accepts_the_controller_strings():
    async with Manager() as manager:
        manager.load(sleeper())
        steps = [(1, 2), ("-1", 1), ("+4", 5), ("-1", 4), ("=1", 1), ("3", 4), ("=0", 0)]
        for operation, expected in steps:
            assert manager.scale("dummy", operation) == expected
            assert len(manager.pids("dummy")) == expected


async def test_internal_pids_count_from_one_in_spawn_order():
    async with Manager() as manager:
        manager.load(sleeper(numprocesses=4))
        assert manager.pids() == [1, 2, 3, 4]
        walked = []
        manager.walk(lambda mgr, proc: walked.append(proc.pid))
        assert walked == [1, 2, 3, 4]
        manager.walk(lambda mgr, proc: walked.append(proc.pid), "dummy")
        assert walked[4:] == [1, 2, 3, 4]
        for pid in (1, 2, 3, 4):
            proc = manager.get_process(pid)
            assert proc.name == "default.dummy"
            assert proc.os_pid > 0 and proc.os_pid != pid


async def test_reload_replaces_every_process_with_new_pids():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(sleeper(numprocesses=2))
        before = manager.pids("dummy")
        manager.reload("dummy")
        after = manager.pids("dummy")
        assert len(after) == 2
        assert not set(before) & set(after)
        await events.wait_count("exit", 2)
        assert "job.default.dummy.reload" in events.names()


async def test_manager_restart_gives_new_pids_and_reaps_the_old():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(sleeper(numprocesses=2))
        before = manager.pids("dummy")
        restarted = []
        manager.restart(restarted.append)
        assert restarted == [manager]
        after = manager.pids("dummy")
        assert len(after) == 2 and not set(before) & set(after)
        reaped = await events.wait_count("reap", 2)
        assert sorted(msg["pid"] for msg in reaped) == before


async def test_signals_reach_the_process_and_stop_sends_term(tmp_path):
    record = tmp_path / "dummy.txt"
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("dummy", child_cmd("dummy", record)))
        await wait_until(lambda: read_file(record) == "START", what="START")
        manager.killall("dummy", signal.SIGHUP)
        await wait_until(lambda: read_file(record) == "STARTHUP", what="HUP")
        manager.stop_job("dummy")
        await events.wait("exit", name="default.dummy")
        assert read_file(record) == "STARTHUPQUITSTOP"
        with pytest.raises(ProcessNotFound):
            manager.killall("nope", signal.SIGHUP)


async def test_kill_by_pid_accepts_signal_names(tmp_path):
    record = tmp_path / "dummy.txt"
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("dummy", child_cmd("dummy", record)))
        await wait_until(lambda: read_file(record) == "START", what="START")
        manager.kill(1, "HUP")
        # standard signals do not queue: send the second once the first has landed
        await wait_until(lambda: read_file(record) == "STARTHUP", what="first HUP")
        manager.send_signal(1, "sighup")
        await wait_until(lambda: read_file(record) == "STARTHUPHUP", what="second HUP")
        await wait_until(lambda: len(events.of("proc.1.kill")) == 2, what="kill events")
        kills = events.of("proc.1.kill")
        assert [msg["signum"] for msg in kills] == [signal.SIGHUP, signal.SIGHUP]


async def test_flapping_stops_the_flapping_job_and_not_its_twin():
    async with Manager() as manager:
        events = EventRecorder(manager)
        flapping = FlappingInfo(attempts=1, window=1, retry_in=0.1, max_retry=1)
        manager.load(ProcessConfig("a", child_cmd("crash", 100), flapping=flapping))
        manager.load(ProcessConfig("b", child_cmd("crash", 100), **UNCONTAINED))
        flaps = await events.wait_count("flap", 2, name="default.a")
        assert [msg["retry_in"] for msg in flaps] == [0.1, None]
        await events.wait_count("exit", 4, name="default.b")
        assert manager.info("a")["stopped"] is True
        assert manager.info("a")["running"] == 0
        assert manager.info("b")["stopped"] is False
        assert events.count("flap", name="default.b") == 0


async def test_stop_job_cancels_a_pending_flapping_retry():
    async with Manager() as manager:
        events = EventRecorder(manager)
        flapping = FlappingInfo(attempts=1, window=5, retry_in=0.3, max_retry=3)
        manager.load(ProcessConfig("a", child_cmd("exit", 1), flapping=flapping))
        await events.wait("flap", name="default.a")
        assert manager.info("a")["retry_pending"] is True
        manager.stop_job("a")
        assert manager.info("a")["retry_pending"] is False
        spawned = events.count("spawn")
        # the retry was due 0.3 s after the flap: wait past it on an event that must come
        # later than that (a timer on the same loop), then check nothing was spawned
        marker = manager.loop.create_future()
        manager.loop.call_later(0.6, marker.set_result, None)
        await marker
        assert events.count("spawn") == spawned
        assert manager.pids("a") == []


async def test_lifecycle_events_carry_the_job_id():
    async with Manager() as manager:
        events = EventRecorder(manager)
        job_events = EventRecorder(manager, "job.default.dummy")
        manager.load(sleeper(numprocesses=4))
        manager.scale("dummy", 1)
        manager.unload("dummy")
        await events.wait_count("exit", 5)
        for name in ("load", "start", "update", "stop", "unload"):
            assert events.of(name), name
            assert all(msg["name"] == "default.dummy" for msg in events.of(name))
        await job_events.wait("job.default.dummy.exit")
        seen = set(job_events.names())
        assert {
            "job.default.dummy.start",
            "job.default.dummy.spawn",
            "job.default.dummy.stop",
            "job.default.dummy.exit",
        } <= seen
        exit_msg = job_events.of("job.default.dummy.exit")[0]
        assert set(exit_msg) == {
            "event",
            "name",
            "pid",
            "os_pid",
            "exit_status",
            "term_signal",
            "once",
        }
        assert exit_msg["once"] is False
        assert exit_msg["term_signal"] == signal.SIGTERM


async def test_events_come_in_order_for_one_process():
    async with Manager() as manager:
        events = EventRecorder(manager, "proc.1")
        all_events = EventRecorder(manager)
        manager.load(sleeper())
        manager.scale("dummy", -1)
        await all_events.wait("exit")
        assert events.names() == ["proc.1.reap", "proc.1.exit"]
        names = [n for n in all_events.names() if not n.startswith(("job.", "proc."))]
        assert names == [
            "load",
            "start",
            "spawn",
            "state",  # the process: stopped -> starting
            "state",  # the job: stopped -> starting
            "update",
            "reap",
            "stop_process",
            "state",  # the process: starting -> stopping
            "state",  # the job: starting -> running (its target is 0, nothing to wait for)
            "state",  # the process: stopping -> exited
            "exit",
        ]
        moves = [(m.get("pid"), m["old"], m["new"]) for m in all_events.of("state")]
        assert moves == [
            (1, "stopped", "starting"),
            (None, "stopped", "starting"),
            (1, "starting", "stopping"),
            (None, "starting", "running"),
            (1, "stopping", "exited"),
        ]


async def test_stats_of_a_job_match_its_processes():
    async with Manager() as manager:
        manager.load(sleeper())
        stats = manager.stats("dummy")
        assert stats["name"] == "default.dummy"
        assert len(stats["stats"]) == 1
        entry = stats["stats"][0]
        assert entry["os_pid"] == manager.get_process(1).info["os_pid"]
        assert entry["pid"] == 1
        assert isinstance(entry["mem_info1"], int) and entry["mem_info1"] > 0
        assert isinstance(stats["cpu"], float)
        manager.load(sleeper("a"))
        manager.load(sleeper("b"))
        names = []
        manager.jobs_walk(lambda mgr, name: names.append(mgr.stats(name)["name"]))
        assert names == ["default.dummy", "default.a", "default.b"]


async def test_monitor_delivers_stat_messages_of_the_job():
    async with Manager() as manager:
        manager.load(sleeper("a"))
        got = manager.loop.create_future()

        def listener(evtype, msg):
            if not got.done():
                got.set_result((evtype, msg))

        manager.monitor(listener, "a")
        evtype, msg = await got
        manager.unmonitor(listener, "a")
        assert evtype == "stat"
        assert msg["os_pid"] == manager.get_process(1).os_pid
        assert "cpu" in msg and "mem" in msg and msg["name"] == "default.a"


async def test_jobs_start_in_walk_order():
    async with Manager() as manager:
        events = EventRecorder(manager, "start")
        for name in ("a", "b", "c"):
            manager.load(sleeper(name), start=False)
        manager.jobs_walk(lambda mgr, name: mgr.start_job(name))
        await events.wait_count("start", 3)
        assert [msg["name"] for msg in events.of("start")] == [
            "default.a",
            "default.b",
            "default.c",
        ]


async def test_sessions_group_jobs():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(sleeper("a"), sessionid="ga", start=False)
        manager.load(sleeper("b"), sessionid="ga", start=False)
        manager.load(sleeper("a"), sessionid="gb", start=False)
        assert manager.sessions == ["ga", "gb"]
        assert manager.jobs("ga") == ["ga.a", "ga.b"]
        assert manager.jobs("gb") == ["gb.a"]
        manager.jobs_walk(lambda mgr, name: mgr.start_job(name), "ga")
        manager.jobs_walk(lambda mgr, name: mgr.start_job(name), "gb")
        manager.jobs_walk(lambda mgr, name: mgr.stop_job(name), "gb")
        manager.unload("a", sessionid="ga")
        assert manager.jobs("ga") == ["ga.b"]
        await events.wait_count("stop", 2)
        assert [msg["name"] for msg in events.of("start")] == ["ga.a", "ga.b", "gb.a"]
        assert [msg["name"] for msg in events.of("stop")] == ["gb.a", "ga.a"]
        with pytest.raises(ProcessNotFound):
            manager.jobs("nope")
        manager.unload("b", sessionid="ga")
        assert manager.sessions == ["gb"]


async def test_commit_runs_a_one_off_process():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("dummy", child_cmd("crash", 300, 0), numprocesses=0))
        pid = manager.commit("dummy", env={"BLAH": "test"})
        assert pid == 1
        info = manager.info("dummy")
        assert (info["numprocesses"], info["running"], info["running_out"]) == (0, 1, 1)
        assert info["active"] is True
        assert manager.pids() == [1]
        assert manager.pids("dummy") == []
        proc = manager.get_process(1)
        assert proc.name == "default.dummy"
        assert proc.env["BLAH"] == "test" and proc.once
        assert (await events.wait("spawn"))["pid"] == 1
        assert "job.default.dummy.spawn" not in events.names()
        assert manager.scale("dummy", 1) == 1
        assert manager.pids() == [1, 2]
        exit_msg = await events.wait("exit", pid=1)
        assert exit_msg["once"] is True
        # never restarted, not counted: the kept-alive one is still the only one
        await events.wait("job.default.dummy.exit", pid=2)
        assert 1 not in manager.pids()


async def test_manager_restart_leaves_a_job_paused_by_flapping_alone():
    async with Manager() as manager:
        events = EventRecorder(manager)
        flapping = FlappingInfo(attempts=1, window=5, retry_in=30, max_retry=3)
        manager.load(ProcessConfig("a", child_cmd("exit", 1), flapping=flapping))
        await events.wait("flap", name="default.a")
        spawned = events.count("spawn")
        manager.restart()
        assert manager.pids("a") == []
        assert events.count("spawn") == spawned
        assert manager.info("a")["retry_pending"] is True
