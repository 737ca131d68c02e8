"""Processes from spawn to reap: stop escalation, process groups, spawn errors, identity."""

from __future__ import annotations

import errno
import os
import pwd
import signal

import pytest

from gaffer import (
    FlappingInfo,
    InvalidArgument,
    Manager,
    ProcessConfig,
    ProcessConflict,
    ProcessNotFound,
    SpawnError,
)
from tests.helpers import (
    UNCONTAINED,
    EventRecorder,
    child_cmd,
    exec_done,
    open_fds,
    pid_exists,
    read_file,
    wait_until,
    wait_until_sync,
)


class Output:
    """Collects what a process writes on its redirected output."""

    def __init__(self) -> None:
        self.data = b""

    def __call__(self, evtype: str, msg: dict) -> None:
        self.data += msg["data"]

    @property
    def text(self) -> str:
        return self.data.decode()


async def test_stop_kills_a_process_ignoring_sigterm_after_graceful_timeout(tmp_path):
    ready = tmp_path / "ready"
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(
            ProcessConfig("stubborn", child_cmd("ignore-term", ready), graceful_timeout=0.3)
        )
        await wait_until(ready.exists, what="SIGTERM ignored")
        os_pid = manager.get_process(1).os_pid
        started = manager.loop.time()
        manager.stop_job("stubborn")
        exit_msg = await events.wait("exit")
        assert exit_msg["term_signal"] == signal.SIGKILL
        assert manager.loop.time() - started >= 0.3
        assert not pid_exists(os_pid)


async def test_stop_takes_the_grandchildren_with_the_process(tmp_path):
    record = tmp_path / "grandchild"
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("forker", child_cmd("grandchild", record)))
        await wait_until(lambda: read_file(record), what="grandchild pid")
        grandchild = int(read_file(record))
        assert pid_exists(grandchild)
        manager.stop_job("forker")
        await events.wait("exit")
        await wait_until(lambda: not pid_exists(grandchild), what="grandchild gone")


async def test_stop_kills_grandchildren_ignoring_sigterm_after_graceful_timeout(tmp_path):
    record = tmp_path / "grandchild"
    async with Manager() as manager:
        manager.load(
            ProcessConfig("forker", child_cmd("grandchild", record, "ignore"), graceful_timeout=0.3)
        )
        await wait_until(lambda: read_file(record), what="grandchild pid")
        grandchild = int(read_file(record))
        manager.stop_job("forker")
        await wait_until(
            lambda: not pid_exists(grandchild), timeout=5, what="stubborn grandchild killed"
        )
    assert not pid_exists(grandchild)


async def test_a_crashed_process_leaves_no_orphans_behind(tmp_path):
    record = tmp_path / "grandchild"
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("forker", child_cmd("grandchild", record), graceful_timeout=1))
        await wait_until(lambda: read_file(record), what="grandchild pid")
        grandchild = int(read_file(record))
        manager.kill(1, signal.SIGKILL)  # the leader dies; its child would be orphaned
        await events.wait("exit", pid=1)
        await wait_until(lambda: not pid_exists(grandchild), what="orphan stopped")
        await events.wait("spawn", pid=2)  # and the job goes on


async def test_manager_stop_waits_for_every_process_then_stops_apps(tmp_path):
    ready = tmp_path / "ready"
    calls = []

    class App:
        def start(self, loop, manager):
            calls.append(("start", len(manager.running)))

        def stop(self):
            calls.append(("stop", len(manager.running), pid_exists(os_pid)))

        def restart(self):
            calls.append(("restart",))

    manager = Manager()
    manager.start(apps=[App()])
    manager.load(ProcessConfig("stubborn", child_cmd("ignore-term", ready), graceful_timeout=0.2))
    os_pid = manager.get_process(1).os_pid
    await wait_until(ready.exists, what="ready")
    manager.restart()
    manager.stop()
    await manager.wait_stopped()
    assert calls == [("start", 0), ("restart",), ("stop", 0, False)]
    assert not manager.active


async def test_a_thousand_crash_cycles_leave_no_zombie_and_no_open_descriptor():
    async with Manager() as manager:
        events = EventRecorder(manager, "exit")
        baseline = open_fds()
        manager.load(
            ProcessConfig(
                "crasher",
                "/bin/true",
                redirect_output=["out", "err"],
                redirect_input=True,
                **UNCONTAINED,
            )
        )
        await events.wait_count("exit", 1000, timeout=60)
        manager.stop_job("crasher")
        await wait_until(lambda: not manager._table.stopping, what="all reaped")
        assert open_fds() == baseline
        assert len(manager._table.watcher) == 0
        children = [
            line
            for line in os.listdir("/proc")
            if line.isdigit() and _ppid(int(line)) == os.getpid()
        ]
        assert children == []


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


async def test_a_missing_program_is_a_spawn_error_event_not_a_crash():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("ghost", "no-such-program-anywhere", flapping=None))
        error = await events.wait("spawn_error", name="default.ghost")
        assert "no-such-program-anywhere" in error["error"]
        assert error["errno"] == errno.ENOENT
        assert manager.pids() == []
        # it is retried with a growing delay, and the manager carries on meanwhile
        await events.wait_count("spawn_error", 3, timeout=5)
        manager.load(ProcessConfig("fine", child_cmd("sleep")))
        assert manager.pids("fine") == [1]
        job_events = [n for n in events.names() if n == "job.default.ghost.spawn_error"]
        assert job_events


async def test_flapping_applies_to_spawn_errors():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(
            ProcessConfig(
                "ghost",
                "no-such-program-anywhere",
                flapping=FlappingInfo(attempts=2, window=10, retry_in=0.1, max_retry=1),
            )
        )
        flaps = await events.wait_count("flap", 2, timeout=10)
        assert flaps[-1]["retry_in"] is None
        assert manager.info("ghost")["stopped"] is True


async def test_an_unset_variable_in_args_is_a_spawn_error():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("web", child_cmd("print"), args="$NOT_SET_ANYWHERE"))
        error = await events.wait("spawn_error")
        assert "$NOT_SET_ANYWHERE" in error["error"]


async def test_a_missing_cwd_is_a_spawn_error_naming_it(tmp_path):
    missing = tmp_path / "missing"
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("web", child_cmd("sleep"), cwd=str(missing)))
        error = await events.wait("spawn_error")
        assert "cwd" in error["error"] and str(missing) in error["error"]


async def test_commit_of_a_missing_program_raises_spawn_error():
    async with Manager() as manager:
        manager.load(ProcessConfig("ghost", "no-such-program-anywhere", numprocesses=0))
        with pytest.raises(SpawnError, match="no-such-program-anywhere"):
            manager.commit("ghost")
        assert manager.pids() == []


async def test_bad_input_is_refused_and_changes_nothing():
    async with Manager() as manager:
        manager.load(ProcessConfig("web", child_cmd("sleep"), numprocesses=2))
        before = manager.pids()
        with pytest.raises(ProcessNotFound):
            manager.info("nope")
        with pytest.raises(ProcessNotFound):
            manager.scale("nope", 1)
        with pytest.raises(ProcessConflict):
            manager.load(ProcessConfig("web", child_cmd("sleep"), numprocesses=5))
        with pytest.raises(InvalidArgument, match=r"\*3") as excinfo:
            manager.scale("web", "*3")
        assert isinstance(excinfo.value, ValueError)
        assert excinfo.value.reason == "bad_operation"
        with pytest.raises(InvalidArgument, match="SIGNOPE"):
            manager.killall("web", "SIGNOPE")
        with pytest.raises(InvalidArgument):
            manager.kill(1, "NOPE")
        with pytest.raises(ProcessNotFound):
            manager.kill(99, "HUP")
        with pytest.raises(ProcessNotFound):
            manager.get_process(99)
        with pytest.raises(ValueError, match="numprocesses"):
            manager.load(ProcessConfig("other", child_cmd("sleep"), numprocesses=-1))
        assert manager.pids() == before
        assert manager.info("web")["numprocesses"] == 2
        assert manager.jobs() == ["default.web"]


async def test_load_accepts_a_config_dict():
    async with Manager() as manager:
        manager.load({"name": "web", "cmd": child_cmd("sleep"), "numprocesses": 2}, sessionid="app")
        assert manager.jobs() == ["app.web"]
        assert len(manager.pids("app.web")) == 2
        with pytest.raises(ValueError, match="cmd"):
            manager.load({"name": "broken"})


async def test_update_replaces_processes_with_the_new_config():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("web", child_cmd("sleep"), numprocesses=2))
        manager.update(ProcessConfig("web", child_cmd("sleep", 1000), numprocesses=1))
        # the target is the larger of the new config's and the current one
        assert manager.info("web")["numprocesses"] == 2
        assert manager.pids("web") == [3, 4]
        assert manager.get_process(3).args[-1] == "1000"
        await events.wait_count("exit", 2)
        assert "job.default.web.update" in events.names()


async def test_update_with_start_starts_a_stopped_job():
    async with Manager() as manager:
        manager.load(ProcessConfig("web", child_cmd("sleep")), start=False)
        manager.update(ProcessConfig("web", child_cmd("sleep")), start=True)
        assert manager.pids("web") == [1]


async def test_stopall_replaces_every_process():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("web", child_cmd("sleep"), numprocesses=2))
        manager.stopall("web")
        assert manager.pids("web") == []  # as in 0.5: replaced as they exit
        await events.wait_count("exit", 2)
        await events.wait_count("spawn", 4)
        assert manager.pids("web") == [3, 4]


async def test_stop_process_is_replaced_by_a_new_pid():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("web", child_cmd("sleep")))
        manager.stop_process(1)
        assert manager.pids("web") == [2]
        msg = await events.wait("stop_process")
        assert msg["pid"] == 1


async def test_detached_process_outlives_the_manager():
    manager = Manager()
    async with manager:
        manager.load(ProcessConfig("daemon", child_cmd("sleep"), detach=True))
        manager.load(ProcessConfig("attached", child_cmd("sleep")))
        detached = manager.get_process(1).os_pid
        attached = manager.get_process(2).os_pid
    assert not pid_exists(attached)
    assert pid_exists(detached)
    os.kill(detached, signal.SIGTERM)
    # reaped by gaffer's background waiter: no zombie left (checked after every test)
    await wait_until(lambda: not pid_exists(detached), what="detached process gone")


async def test_cwd_shell_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GAFFER_TEST_OUTER", "outer")
    async with Manager() as manager:
        outputs = {name: Output() for name in ("pwd", "shell", "env", "osenv")}
        manager.load(
            ProcessConfig("pwd", child_cmd("pwd"), cwd=str(tmp_path), redirect_output=["out"]),
            start=False,
        )
        manager.load(
            ProcessConfig(
                "shell",
                "echo $0 $1 $GREETING; sleep 60",
                shell=True,
                args=["first", "$GREETING"],
                env={"GREETING": "hi"},
                redirect_output=["out"],
            ),
            start=False,
        )
        manager.load(
            ProcessConfig(
                "env",
                child_cmd("env", "A", "GAFFER_TEST_OUTER"),
                env={"A": "1"},
                redirect_output=["out"],
            ),
            env={"A": "2"},
            start=False,
        )
        manager.load(
            ProcessConfig(
                "osenv", child_cmd("env", "GAFFER_TEST_OUTER"), os_env=True, redirect_output=["out"]
            ),
            start=False,
        )
        for name, output in outputs.items():
            manager.start_job(name)
            manager.get_process(manager.pids(name)[0]).monitor_io("out", output)
        await wait_until(
            lambda: all(o.data.endswith(b"\n") for o in outputs.values()), what="every output"
        )
        assert outputs["pwd"].text == f"{tmp_path}\n"
        assert outputs["shell"].text == "first hi hi\n"
        # the load env wins over the config env; without os_env nothing leaks in
        assert outputs["env"].text == "A=2\nGAFFER_TEST_OUTER=<unset>\n"
        assert outputs["osenv"].text == "GAFFER_TEST_OUTER=outer\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")
async def test_uid_and_gid_by_name_work_on_uvloop():
    nobody = pwd.getpwnam("nobody")
    async with Manager() as manager:
        output = Output()
        # a system shell, not the test's Python: nobody may not read the virtualenv
        manager.load(
            ProcessConfig(
                "ids",
                "/bin/sh",
                args=["-c", 'echo "$(id -u) $(id -g)"; exec sleep 60'],
                uid="nobody",
                gid=nobody.pw_gid,
                redirect_output=["out"],
            )
        )
        proc = manager.get_process(1)
        proc.monitor_io("out", output)
        await wait_until(lambda: output.data.endswith(b"\n"), what="ids printed")
        assert output.text == f"{nobody.pw_uid} {nobody.pw_gid}\n"
        assert proc.env["USER"] == "nobody" and proc.env["HOME"] == nobody.pw_dir


async def test_engine_runs_on_both_loops(loop_kind):
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("crash", child_cmd("crash", 50), **UNCONTAINED))
        await events.wait_count("spawn", 3)
        manager.stop_job("crash")
        assert manager.pids() == []


async def test_port_gives_each_process_its_own_port_and_a_replacement_the_same():
    async with Manager() as manager:
        events = EventRecorder(manager)
        output = {}

        def listener(label, msg):
            output[msg["pid"]] = output.get(msg["pid"], b"") + msg["data"]

        manager.monitor_io(listener, "web")
        manager.load(
            ProcessConfig(
                "web",
                child_cmd("env", "PORT"),
                args=["--on", "$PORT"],
                port=7000,
                numprocesses=3,
                redirect_output=["out"],
            )
        )
        await wait_until(
            lambda: len(output) == 3 and all(v.count(b"\n") == 3 for v in output.values())
        )
        # the env mode prints one line per argument: PORT's comes first
        ports = {pid: data.decode().splitlines()[0] for pid, data in output.items()}
        assert sorted(ports.values()) == ["PORT=7000", "PORT=7001", "PORT=7002"]
        assert [manager.get_process(pid).args[-1] for pid in (1, 2, 3)] == ["7000", "7001", "7002"]
        manager.kill(2, signal.SIGKILL)
        await events.wait("spawn", pid=4)
        await wait_until(lambda: output.get(4, b"").count(b"\n") == 3, what="the replacement")
        assert output[4].decode().splitlines()[0] == ports[2]  # it took the freed slot
        assert manager.get_process(4).slot == 1


async def test_every_process_carries_its_job_id_in_gaffer_job(monkeypatch):
    """Kept-alive processes, one per port slot, one-off ones with their own env: all get
    GAFFER_JOB, stronger than any env given (an outer gaffer's included)."""
    monkeypatch.setenv("GAFFER_JOB", "outer.job")  # as if this program ran under gafferd

    def job_of(os_pid: int) -> list[bytes]:
        # until its exec is done a child shows its parent's environment, or none
        wait_until_sync(lambda: exec_done(os_pid), what=f"the exec of {os_pid}")
        with open(f"/proc/{os_pid}/environ", "rb") as handle:
            environ = handle.read().split(b"\0")
        return [entry for entry in environ if entry.startswith(b"GAFFER_JOB=")]

    async with Manager() as manager:
        manager.load(ProcessConfig("plain", child_cmd("sleep"), os_env=True))
        manager.load(
            ProcessConfig("ported", child_cmd("sleep"), port=7000, numprocesses=2),
            sessionid="app",
            env={"GAFFER_JOB": "forged"},
        )
        one_off = manager.commit("plain", env={"GAFFER_JOB": "forged", "X": "1"})
        found = {
            pid: job_of(manager.get_process(pid).os_pid)
            for pid in [*manager.pids("plain"), *manager.pids("app.ported"), one_off]
        }
    assert found == {
        1: [b"GAFFER_JOB=default.plain"],
        2: [b"GAFFER_JOB=app.ported"],
        3: [b"GAFFER_JOB=app.ported"],
        4: [b"GAFFER_JOB=default.plain"],
    }
