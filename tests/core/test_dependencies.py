"""``requires``: start order by readiness, stop order reversed, cycles refused, a fatal
requirement shown; ``on_exit``: ignore and shutdown. Real processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from gaffer import Manager, ProcessConfig
from gaffer.core import deps
from gaffer.errors import InvalidArgument
from tests.helpers import EventRecorder, child_cmd, read_file, wait_until


def test_resolve_names_in_the_job_s_own_session():
    assert deps.resolve("app.web", ["db", "infra.cache", "infra/queue"]) == (
        "app.db",
        "infra.cache",
        "infra/queue",
    )


def test_find_cycle():
    assert deps.find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert deps.find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert deps.find_cycle({"a": ["a"]}) == ["a", "a"]
    assert deps.find_cycle({"a": ["missing"]}) is None


def test_stop_waves_stop_a_job_before_what_it_requires():
    graph = {"web": ["db", "cache"], "worker": ["db"], "db": [], "cache": [], "lone": []}
    assert deps.stop_waves(graph) == [["lone", "web", "worker"], ["cache", "db"]]


async def test_a_job_waits_until_what_it_requires_is_ready(tmp_path: Path):
    flag = tmp_path / "db-ready"
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(
            ProcessConfig(
                "db", child_cmd("sleep"), ready=f"exec:test -e {flag}", ready_interval=0.02
            )
        )
        manager.load(ProcessConfig("web", child_cmd("sleep"), requires=["db"]))
        waiting = await events.wait("state", name="default.web", new="waiting", pid=None)
        assert waiting["waiting_for"] == ["default.db (starting)"]
        info = manager.info("web")
        assert (info["state"], info["waiting_for"], manager.pids("web")) == (
            "waiting",
            ["default.db (starting)"],
            [],
        )
        assert events.count("spawn", name="default.web") == 0
        flag.touch()
        await events.wait("state", name="default.db", new="ready", pid=None)
        spawned = await events.wait("spawn", name="default.web")
        ready_at = next(
            i
            for i, (name, msg) in enumerate(events.events)
            if name == "state" and msg.get("name") == "default.db" and msg["new"] == "ready"
        )
        spawn_at = events.events.index(("spawn", spawned))
        assert ready_at < spawn_at  # never before its requirement was ready
        assert manager.info("web")["waiting_for"] == []


async def test_a_required_job_not_loaded_or_fatal_keeps_its_dependants_waiting():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("api", child_cmd("sleep"), requires=["infra.queue"]))
        await events.wait("state", name="default.api", new="waiting", pid=None)
        assert manager.info("api")["waiting_for"] == ["infra.queue (not loaded)"]
        manager.load(
            ProcessConfig("queue", child_cmd("exit", 2), give_up_on=[2]), sessionid="infra"
        )
        await events.wait("fatal", name="infra.queue")
        await wait_until(
            lambda: manager.info("api")["waiting_for"] == ["infra.queue (fatal)"],
            what="the reason updated",
        )
        assert manager.info("api")["state"] == "waiting"  # not crashed, not started


async def test_a_cycle_is_refused_and_nothing_is_loaded():
    async with Manager() as manager:
        manager.load(ProcessConfig("a", "true", requires=["b"]), start=False)
        manager.load(ProcessConfig("b", "true", requires=["c"]), start=False)
        with pytest.raises(
            InvalidArgument, match=r"cycle: default\.a -> default\.b -> default\.c -> default\.a"
        ):
            manager.load(ProcessConfig("c", "true", requires=["a"]), start=False)
        assert manager.jobs() == ["default.a", "default.b"]
        with pytest.raises(InvalidArgument, match="dependency cycle") as err:
            manager.update(ProcessConfig("b", "true", requires=["a"]))
        assert err.value.reason == "dependency_cycle"
        assert manager.get("b").requires == ("c",)  # unchanged


async def test_shutdown_stops_a_job_before_what_it_requires(tmp_path: Path):
    db_log, web_log = tmp_path / "db", tmp_path / "web"
    manager = Manager()
    await manager.__aenter__()
    events = EventRecorder(manager)
    manager.load(ProcessConfig("db", child_cmd("hang-term", db_log), start_secs=0.05))
    manager.load(
        ProcessConfig("web", child_cmd("hang-term", web_log), requires=["db"], start_secs=0.05)
    )
    await events.wait("state", name="default.web", new="running", pid=None)
    await wait_until(lambda: db_log.exists() and web_log.exists(), what="the handlers set")
    await manager.__aexit__(None, None, None)
    web_term = float(read_file(web_log).split()[1])
    db_term = float(read_file(db_log).split()[1])
    web_exit = next(m for m in events.of("exit") if m["name"] == "default.web")
    assert web_term + 0.15 < db_term  # web took its 0.2 s to stop before db was asked
    assert events.events.index(("exit", web_exit)) < next(
        i
        for i, (name, msg) in enumerate(events.events)
        if name == "stop_process" and msg["name"] == "default.db"
    )


async def test_on_exit_ignore_leaves_the_process_ended():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("once", child_cmd("exit", 3), on_exit="ignore"))
        await events.wait("state", name="default.once", new="exited", pid=None)
        assert events.count("spawn") == 1 and manager.exit_code is None


@pytest.mark.parametrize(("mode", "code"), [(("exit", 3), 3), (("crash", 50, 0), 0)])
async def test_on_exit_shutdown_stops_the_manager_with_the_exit_code(mode, code):
    manager = Manager()
    await manager.__aenter__()
    manager.load(ProcessConfig("main", child_cmd(*mode), on_exit="shutdown"))
    manager.load(ProcessConfig("side", child_cmd("sleep")))
    await manager.wait_stopped()
    assert manager.exit_code == code
    assert not manager.started


async def test_on_exit_shutdown_after_a_signal_is_128_plus_n():
    manager = Manager()
    await manager.__aenter__()
    manager.load(ProcessConfig("main", child_cmd("sleep"), on_exit="shutdown", start_secs=0))
    manager.kill(1, "KILL")
    await manager.wait_stopped()
    assert manager.exit_code == 128 + 9
