"""The named states: the tables refuse every move they do not list, and every move they
list happens to a real job or process (the scenarios below record the ``state`` events)."""

from __future__ import annotations

import itertools
import os
import signal

import pytest

from gaffer import FlappingInfo, Manager, ProcessConfig
from gaffer.core.states import (
    JOB_TRANSITIONS,
    PROCESS_TRANSITIONS,
    State,
    check,
    summarize,
)
from gaffer.errors import GafferError, InvalidStateTransition
from tests.helpers import EventRecorder, child_cmd, pid_exists, wait_until

S = State
OBSERVED: dict[str, set[tuple[State, State]]] = {"job": set(), "process": set()}


# -- the tables -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "table"), [("job", JOB_TRANSITIONS), ("process", PROCESS_TRANSITIONS)]
)
def test_every_move_not_in_the_table_is_refused(kind, table):
    for old, new in itertools.product(table, State):
        if new in table[old] or new is old:
            check(table, old, new, kind) if new is not old else None
            continue
        with pytest.raises(InvalidStateTransition, match=f"no move from {old} to {new}") as err:
            check(table, old, new, kind)
        assert (err.value.old, err.value.new) == (old, new)
        assert isinstance(err.value, GafferError)


def test_the_words_are_the_contract_s():
    assert [str(state) for state in State] == [
        "stopped", "waiting", "starting", "running", "ready",
        "backoff", "stopping", "exited", "fatal",
    ]  # fmt: skip
    assert set(PROCESS_TRANSITIONS) <= set(State) and set(JOB_TRANSITIONS) == set(State)


def test_a_process_ends_exited_and_nothing_follows_it():
    assert PROCESS_TRANSITIONS[S.EXITED] == frozenset()
    for state, moves in PROCESS_TRANSITIONS.items():
        if state is not S.EXITED:
            assert S.EXITED in moves or state is S.STOPPED, state


@pytest.mark.parametrize(
    ("facts", "state"),
    [
        ({"started": False, "alive": 0}, S.STOPPED),
        ({"started": False, "alive": 2}, S.STOPPING),
        ({"started": True, "alive": 1, "fatal": True}, S.FATAL),
        ({"started": True, "alive": 0, "target": 2, "up": 0, "backoff": True}, S.BACKOFF),
        ({"started": True, "alive": 2, "target": 2, "up": 2, "backoff": True}, S.RUNNING),
        ({"started": True, "alive": 2, "target": 2, "up": 1}, S.STARTING),
        ({"started": True, "alive": 3, "target": 2, "up": 2}, S.RUNNING),
        ({"started": True, "alive": 0, "target": 0, "up": 0}, S.RUNNING),
        ({"started": True, "alive": 0, "target": 1, "up": 0, "finished": True}, S.EXITED),
        ({"started": True, "alive": 1, "target": 1, "up": 1, "ready_probe": True}, S.READY),
        ({"started": True, "alive": 1, "target": 1, "up": 0, "waiting": True}, S.WAITING),
    ],
)
def test_summarize(facts, state):
    args = {"target": 1, "up": 0, "ready_probe": False, **facts}
    assert summarize(**args) is state


# -- every listed move happens: scenarios with real processes --------------------------------


class Moves:
    """Records the moves of the ``state`` events of a manager: jobs and processes."""

    def __init__(self, manager: Manager) -> None:
        self.events = EventRecorder(manager, "state")

    def of_job(self, name: str) -> list[tuple[str, str]]:
        return [
            (msg["old"], msg["new"])
            for msg in self.events.of("state")
            if msg["name"] == name and "pid" not in msg
        ]

    async def wait_job(self, name: str, state: str, timeout: float = 10) -> None:
        """The job's next move to ``state`` (published from now on)."""
        after = len(self.events.events)
        await self.events.wait(
            "state", name=name, new=state, pid=None, timeout=timeout, after=after
        )

    def record(self) -> None:
        for _, msg in self.events.events:
            kind = "process" if "pid" in msg else "job"
            OBSERVED[kind].add((State(msg["old"]), State(msg["new"])))


def sleeper(name: str, **settings) -> ProcessConfig:
    return ProcessConfig(name, child_cmd("sleep"), **{"start_secs": 0.1, **settings})


async def walk_start_run_crash_stop(tmp_path):
    async with Manager() as manager:
        moves = Moves(manager)
        manager.load(sleeper("a"))
        await moves.wait_job("default.a", "running")
        os.kill(manager.get_process(1).os_pid, signal.SIGKILL)  # running -> exited
        await moves.events.wait("state", pid=2, new="running")
        manager.stop_job("a")
        await moves.wait_job("default.a", "stopped")
        assert moves.of_job("default.a") == [
            ("stopped", "starting"),
            ("starting", "running"),
            ("running", "starting"),
            ("starting", "running"),
            ("running", "stopping"),
            ("stopping", "stopped"),
        ]
        moves.record()


async def walk_no_process_wanted(tmp_path):
    async with Manager() as manager:
        moves = Moves(manager)
        manager.load(sleeper("zero", numprocesses=0))
        manager.stop_job("zero")
        await moves.events.wait("state", name="default.zero", new="stopped", pid=None)
        assert moves.of_job("default.zero") == [("stopped", "running"), ("running", "stopped")]
        moves.record()


async def walk_stop_while_starting_and_start_while_stopping(tmp_path):
    ready = tmp_path / "ready"
    async with Manager() as manager:
        moves = Moves(manager)
        cmd = child_cmd("ignore-term", ready)
        manager.load(ProcessConfig("slow", cmd, start_secs=30, graceful_timeout=5))
        await wait_until(ready.exists, what="the handler set")
        manager.stop_job("slow")  # starting -> stopping; the child ignores SIGTERM
        manager.start_job("slow")  # stopping -> starting
        manager.stop_job("slow")
        manager.killall("slow", "KILL")
        await moves.wait_job("default.slow", "stopped")
        assert moves.of_job("default.slow") == [
            ("stopped", "starting"),
            ("starting", "stopping"),
            ("stopping", "starting"),
            ("starting", "stopping"),
            ("stopping", "stopped"),
        ]
        moves.record()


async def walk_flapping_backoff_then_fatal_then_start_and_stop(tmp_path):
    async with Manager() as manager:
        moves = Moves(manager)
        flapping = FlappingInfo(attempts=1, window=10, retry_in=0.05, max_retry=1)
        manager.load(ProcessConfig("crash", child_cmd("crash", 50), flapping=flapping))
        await moves.wait_job("default.crash", "fatal")
        assert moves.of_job("default.crash") == [
            ("stopped", "starting"),
            ("starting", "backoff"),  # flapped: retried 0.05 s later
            ("backoff", "starting"),
            ("starting", "fatal"),  # flapped again, max_retry reached: given up
        ]
        manager.start_job("crash")  # fatal -> starting
        await moves.wait_job("default.crash", "backoff")
        manager.stop_job("crash")  # backoff -> stopped
        manager.start_job("crash")
        await moves.wait_job("default.crash", "fatal", timeout=10)
        manager.stop_job("crash")  # fatal -> stopped
        await moves.wait_job("default.crash", "stopped")
        assert moves.of_job("default.crash")[4:] == [
            ("fatal", "starting"),
            ("starting", "backoff"),
            ("backoff", "stopped"),
            ("stopped", "starting"),
            ("starting", "backoff"),
            ("backoff", "starting"),
            ("starting", "fatal"),
            ("fatal", "stopped"),
        ]
        moves.record()


async def walk_a_running_job_that_flaps(tmp_path):
    async with Manager() as manager:
        moves = Moves(manager)
        flapping = FlappingInfo(attempts=1, window=10, retry_in=0.05, max_retry=1)
        cmd = child_cmd("crash", 300)
        manager.load(ProcessConfig("late", cmd, flapping=flapping, start_secs=0.05))
        await moves.wait_job("default.late", "fatal")
        assert moves.of_job("default.late") == [
            ("stopped", "starting"),
            ("starting", "running"),
            ("running", "backoff"),
            ("backoff", "starting"),
            ("starting", "running"),
            ("running", "fatal"),
        ]
        moves.record()


async def walk_a_program_that_cannot_start(tmp_path):
    async with Manager() as manager:
        moves = Moves(manager)
        flapping = FlappingInfo(attempts=1, window=10, retry_in=0.05, max_retry=1)
        manager.load(ProcessConfig("missing", "/no/such/program", flapping=flapping))
        await moves.wait_job("default.missing", "fatal")
        manager.start_job("missing")
        await moves.wait_job("default.missing", "fatal")
        assert moves.of_job("default.missing") == [
            ("stopped", "backoff"),
            ("backoff", "fatal"),
            ("fatal", "backoff"),
            ("backoff", "fatal"),
        ]
        info = manager.info("missing")
        assert "/no/such/program" in info["error"] and info["state"] == "fatal"
        moves.record()


async def walk_scaled_to_nothing_during_a_backoff(tmp_path):
    async with Manager() as manager:
        moves = Moves(manager)
        manager.load(ProcessConfig("gone", "/no/such/program"))  # backoff after the failure
        await moves.wait_job("default.gone", "backoff")
        manager.scale("gone", "=0")
        await moves.events.wait("state", name="default.gone", new="running", pid=None)
        assert moves.of_job("default.gone") == [("stopped", "backoff"), ("backoff", "running")]
        moves.record()


async def walk_a_backoff_beside_healthy_processes_then_stopped(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    async with Manager() as manager:
        moves = Moves(manager)
        manager.load(sleeper("half", cwd=str(workdir), graceful_timeout=2))
        await moves.wait_job("default.half", "running")
        workdir.rmdir()  # the next spawn fails: cwd gone
        manager.scale("half", 1)
        await moves.wait_job("default.half", "backoff")
        manager.stop_job("half")
        await moves.wait_job("default.half", "stopped")
        assert moves.of_job("default.half") == [
            ("stopped", "starting"),
            ("starting", "running"),
            ("running", "backoff"),
            ("backoff", "stopping"),
            ("stopping", "stopped"),
        ]
        moves.record()


async def walk_a_one_off_process_of_a_stopped_job(tmp_path):
    async with Manager() as manager:
        moves = Moves(manager)
        manager.load(sleeper("once", numprocesses=0), start=False)
        pid = manager.commit("once")
        await moves.events.wait("state", pid=pid, new="running")
        manager.stop_job("once")
        await moves.wait_job("default.once", "stopped")
        assert moves.of_job("default.once") == [("stopped", "stopping"), ("stopping", "stopped")]
        moves.record()


async def walk_a_process_stopped_before_it_counts_as_started(tmp_path):
    async with Manager() as manager:
        moves = Moves(manager)
        manager.load(sleeper("brief", start_secs=30))
        await moves.events.wait("state", pid=1, new="starting")
        os.kill(manager.get_process(1).os_pid, signal.SIGKILL)  # starting -> exited
        await moves.events.wait("state", pid=1, new="exited")
        manager.stop_job("brief")  # the replacement: starting -> stopping -> exited
        await moves.wait_job("default.brief", "stopped")
        moves.record()


async def walk_started_again_while_stopping(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    ready = tmp_path / "ready"
    async with Manager() as manager:
        moves = Moves(manager)
        cmd = child_cmd("ignore-term", ready)
        manager.load(ProcessConfig("stubborn", cmd, cwd=str(workdir), graceful_timeout=5))
        await wait_until(ready.exists, what="the handler set")
        first = manager.get_process(1).os_pid
        manager.stop_job("stubborn")
        workdir.rmdir()  # its next spawn fails
        manager.start_job("stubborn")  # stopping -> backoff
        await moves.wait_job("default.stubborn", "backoff")
        manager.stop_job("stubborn")
        os.kill(first, signal.SIGKILL)
        await moves.wait_job("default.stubborn", "stopped")
        # a job that wants no process, started while its one-off process stops
        manager.load(ProcessConfig("none", child_cmd("ignore-term"), numprocesses=0))
        pid = manager.commit("none")
        await moves.events.wait("state", pid=pid, new="running")
        one_off = manager.get_process(pid).os_pid
        manager.stop_job("none")  # running -> stopping (the one-off process)
        manager.start_job("none")  # stopping -> running: nothing to wait for
        await moves.wait_job("default.none", "running")
        os.kill(one_off, signal.SIGKILL)
        assert moves.of_job("default.stubborn")[1:4] == [
            ("starting", "stopping"),
            ("stopping", "backoff"),
            ("backoff", "stopping"),
        ]
        assert moves.of_job("default.none") == [
            ("stopped", "running"),
            ("running", "stopping"),
            ("stopping", "running"),
        ]
        moves.record()


async def walk_a_fatal_job_given_no_process_to_run(tmp_path):
    async with Manager() as manager:
        moves = Moves(manager)
        flapping = FlappingInfo(attempts=1, window=10, retry_in=0.05, max_retry=1)
        config = ProcessConfig("doomed", child_cmd("exit", 1), flapping=flapping)
        manager.load(config)
        await moves.wait_job("default.doomed", "fatal")
        manager.update(config.replace(numprocesses=0), start=True)  # fatal -> running
        await moves.wait_job("default.doomed", "running")
        moves.record()


async def walk_a_detached_job_left_running(tmp_path):
    manager = Manager()
    await manager.__aenter__()
    moves = Moves(manager)
    manager.load(sleeper("daemon", detach=True, start_secs=30))
    os_pid = manager.get_process(1).os_pid
    await manager.__aexit__(None, None, None)  # starting -> stopped: left running
    assert moves.of_job("default.daemon") == [("stopped", "starting"), ("starting", "stopped")]
    os.kill(os_pid, signal.SIGKILL)
    await wait_until(lambda: not pid_exists(os_pid), what="the detached process reaped")
    moves.record()


async def walk_jobs_that_end_for_good(tmp_path):
    async with Manager() as manager:
        moves = Moves(manager)
        # dies young, not restarted: starting -> exited; started again, then stopped
        manager.load(ProcessConfig("young", child_cmd("exit", 0), restart="never"))
        await moves.wait_job("default.young", "exited")
        manager.start_job("young")  # exited -> starting
        await moves.wait_job("default.young", "exited")
        manager.stop_job("young")  # exited -> stopped
        await moves.wait_job("default.young", "stopped")
        # lives past start_secs, then ends: running -> exited
        cmd = child_cmd("crash", 200, 0)
        manager.load(ProcessConfig("old", cmd, restart="on-failure", start_secs=0.05))
        await moves.wait_job("default.old", "exited")
        assert moves.of_job("default.young") == [
            ("stopped", "starting"),
            ("starting", "exited"),
            ("exited", "starting"),
            ("starting", "exited"),
            ("exited", "stopped"),
        ]
        assert moves.of_job("default.old") == [
            ("stopped", "starting"),
            ("starting", "running"),
            ("running", "exited"),
        ]
        moves.record()


async def walk_waiting_for_a_requirement(tmp_path):
    flag = tmp_path / "db-ready"
    async with Manager() as manager:
        moves = Moves(manager)
        ready = f"exec:test -e {flag}"
        manager.load(ProcessConfig("db", child_cmd("sleep"), ready=ready, ready_interval=0.02))
        manager.load(sleeper("web", requires=["db"]))  # stopped -> waiting
        manager.load(sleeper("zero", requires=["db"], numprocesses=0))
        manager.stop_job("web")  # waiting -> stopped
        manager.start_job("web")  # stopped -> waiting
        await moves.wait_job("default.web", "waiting")
        flag.touch()  # db: starting -> ready; web: waiting -> starting; zero: -> running
        await moves.wait_job("default.web", "running")
        db_pid = manager.pids("db")[0]
        os.kill(manager.get_process(db_pid).os_pid, signal.SIGKILL)  # db: ready -> starting
        await moves.wait_job("default.db", "ready")
        manager.stop_job("db")  # ready -> stopping
        await moves.wait_job("default.db", "stopped")
        manager.stop_job("web")
        manager.start_job("web")  # stopping -> waiting: db is not up any more
        await moves.wait_job("default.web", "waiting")
        assert moves.of_job("default.zero") == [("stopped", "waiting"), ("waiting", "running")]
        assert ("ready", "starting") in moves.of_job("default.db")
        moves.record()


async def walk_ready_processes_that_end(tmp_path):
    async with Manager() as manager:
        moves = Moves(manager)
        flapping = FlappingInfo(attempts=1, window=10, retry_in=0.05, max_retry=1)
        cmd = child_cmd("ready-fd", 3, 0)
        manager.load(ProcessConfig("flaky", cmd, ready="fd:3", flapping=flapping))
        for _ in range(2):  # ready -> backoff (a pause), then ready -> fatal (given up)
            await moves.wait_job("default.flaky", "ready")
            os.kill(manager.get_process(manager.pids("flaky")[0]).os_pid, signal.SIGKILL)
        await moves.wait_job("default.flaky", "fatal")
        manager.load(ProcessConfig("batch", cmd, ready="fd:3", restart="never"))
        await moves.wait_job("default.batch", "ready")
        os.kill(manager.get_process(manager.pids("batch")[0]).os_pid, signal.SIGKILL)
        await moves.wait_job("default.batch", "exited")  # ready -> exited
        assert moves.of_job("default.flaky") == [
            ("stopped", "starting"),
            ("starting", "ready"),
            ("ready", "backoff"),
            ("backoff", "starting"),
            ("starting", "ready"),
            ("ready", "fatal"),
        ]
        moves.record()


WALKS = [
    walk_start_run_crash_stop,
    walk_no_process_wanted,
    walk_stop_while_starting_and_start_while_stopping,
    walk_flapping_backoff_then_fatal_then_start_and_stop,
    walk_a_running_job_that_flaps,
    walk_a_program_that_cannot_start,
    walk_scaled_to_nothing_during_a_backoff,
    walk_a_backoff_beside_healthy_processes_then_stopped,
    walk_a_one_off_process_of_a_stopped_job,
    walk_a_process_stopped_before_it_counts_as_started,
    walk_started_again_while_stopping,
    walk_a_fatal_job_given_no_process_to_run,
    walk_a_detached_job_left_running,
    walk_jobs_that_end_for_good,
    walk_waiting_for_a_requirement,
    walk_ready_processes_that_end,
]
WALKED: set[str] = set()


@pytest.mark.parametrize("walk", WALKS, ids=lambda walk: walk.__name__)
async def test_walk(walk, tmp_path):
    await walk(tmp_path)
    WALKED.add(walk.__name__)


async def test_every_listed_move_happens(tmp_path):
    """The walks above (those not run yet in this session are run here) together make
    every move of both tables, and no other."""
    for walk in WALKS:
        if walk.__name__ not in WALKED:
            directory = tmp_path / walk.__name__
            directory.mkdir()
            await walk(directory)
    for kind, table in (("job", JOB_TRANSITIONS), ("process", PROCESS_TRANSITIONS)):
        listed = {(old, new) for old, moves in table.items() for new in moves}
        assert OBSERVED[kind] <= listed, f"{kind}: seen but not listed"
        unseen = sorted(f"{old}->{new}" for old, new in listed - OBSERVED[kind])
        assert not unseen, f"{kind} moves never seen: {unseen}"
