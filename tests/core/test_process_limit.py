"""``Manager(process_limit=N)``: loads, updates, scales and commits that would take the
manager over N processes are refused with ProcessLimitReached and change nothing; what
stays within it, or lowers a total already over it, goes through. Real processes."""

from __future__ import annotations

import pytest

from gaffer import Manager, ProcessConfig, ProcessError, ProcessLimitReached
from tests.helpers import EventRecorder, child_cmd, wait_until


def sleeper(name: str, numprocesses: int = 1) -> ProcessConfig:
    return ProcessConfig(name, child_cmd("sleep"), numprocesses=numprocesses)


async def test_a_load_over_the_limit_is_refused_and_changes_nothing():
    async with Manager(process_limit=4) as manager:
        events = EventRecorder(manager)
        manager.load(sleeper("web", 3))
        with pytest.raises(ProcessLimitReached) as excinfo:
            manager.load(sleeper("worker", 2))
        error = excinfo.value
        assert isinstance(error, ProcessError)
        assert error.reason == "process_limit"
        assert "loading default.worker" in str(error)
        assert "up to 5 processes, over its limit of 4" in str(error)
        assert manager.jobs() == ["default.web"]
        assert events.count("load", name="default.worker") == 0
        manager.load(sleeper("worker", 1))  # exactly the limit is fine
        assert len(manager.pids()) == 4


async def test_a_job_loaded_stopped_still_holds_its_processes():
    """start_job would bring it back to its config's numprocesses."""
    async with Manager(process_limit=3) as manager:
        manager.load(sleeper("later", 2), start=False)
        with pytest.raises(ProcessLimitReached):
            manager.load(sleeper("now", 2))
        manager.start_job("later")
        assert len(manager.pids("later")) == 2


async def test_scale_within_the_limit_and_refused_beyond_it():
    async with Manager(process_limit=5) as manager:
        events = EventRecorder(manager)
        manager.load(sleeper("web", 2))
        manager.load(sleeper("worker", 1))
        assert manager.scale("web", "+2") == 4
        updates = len(events.of("update"))
        for scale in ("+1", "=10", 3, "=1000000000"):
            with pytest.raises(ProcessLimitReached, match=r"scaling default\.web to \d+"):
                manager.scale("web", scale)
        assert manager.info("web")["numprocesses"] == 4
        assert len(events.of("update")) == updates  # nothing published
        assert len(manager.pids()) == 5
        # scaling down frees room for another job
        assert manager.scale("web", "-3") == 1
        assert manager.scale("worker", "=2") == 2


async def test_a_stopped_job_keeps_its_config_s_share():
    """stop_job sets the target to 0 but start_job goes back to the config's: the
    config's numprocesses stay reserved, so starting it again never breaks the limit."""
    async with Manager(process_limit=3) as manager:
        manager.load(sleeper("web", 2))
        manager.stop_job("web")
        with pytest.raises(ProcessLimitReached):
            manager.load(sleeper("other", 2))
        manager.load(sleeper("other", 1))
        manager.start_job("web")
        assert len(manager.pids()) == 3


async def test_commit_counts_one_off_processes():
    async with Manager(process_limit=2) as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("task", child_cmd("sleep"), numprocesses=1))
        pid = manager.commit("task")
        with pytest.raises(ProcessLimitReached, match=r"committing default\.task"):
            manager.commit("task")
        assert len(manager.pids()) == 2
        manager.kill(pid, 9)
        await events.wait("exit", pid=pid)
        await wait_until(lambda: manager.info("task")["running_out"] == 0, what="one-off gone")
        manager.commit("task")  # its slot is free again


async def test_update_over_the_limit_keeps_the_old_config():
    async with Manager(process_limit=3) as manager:
        manager.load(sleeper("web", 2))
        before = set(manager.pids("web"))
        with pytest.raises(ProcessLimitReached, match=r"updating default\.web"):
            manager.update(sleeper("web", 4))
        assert manager.get("default.web").numprocesses == 2
        assert set(manager.pids("web")) == before  # not replaced
        manager.update(sleeper("web", 3))
        assert manager.get("default.web").numprocesses == 3


async def test_a_lowered_limit_lets_totals_go_down_not_up():
    async with Manager(process_limit=10) as manager:
        manager.load(sleeper("web", 4))
        manager.process_limit = 2
        with pytest.raises(ProcessLimitReached):
            manager.scale("web", 1)
        assert manager.scale("web", -1) == 3  # still over, but lower: allowed
        manager.reload("web")  # back to its config's 4, which it held all along
        assert manager.info("web")["numprocesses"] == 4
        manager.process_limit = None  # no limit
        assert manager.scale("web", "=12") == 12


@pytest.mark.parametrize("value", [0, -1, True, "5", 2.5])
def test_process_limit_must_be_a_positive_integer_or_none(value):
    with pytest.raises(ValueError, match="process_limit: expected an integer >= 1 or None"):
        Manager(loop_kind="asyncio", process_limit=value)
