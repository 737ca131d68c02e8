"""The restart policy with real processes: crash loops contained by default, failures
visible, the restart modes, and the process options (stop_signal, umask, rlimits,
env_file)."""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path

import pytest

from gaffer import Manager, ProcessConfig
from tests.helpers import EventRecorder, child_cmd, read_file, wait_until


async def test_a_default_job_that_exits_at_once_is_held_back_and_says_why():
    """`true`, loaded with every default: respawned once after a short backoff, then
    paused by the crash-loop protection (7 s), not respawned a thousand times a second."""
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("storm", "true"))
        flap = await events.wait("flap", name="default.storm")
        assert flap["retry_in"] == 7.0 and flap["retries"] == 1
        info = manager.info("storm")
        assert info["state"] == "backoff"
        assert 6 < info["next_restart_at"] - time.time() <= 7
        assert info["last_exit"]["exit_status"] == 0
        assert info["restarts"] == 1
        # a later look: nothing more was spawned during the pause
        marker = manager.loop.create_future()
        manager.loop.call_later(0.5, marker.set_result, None)
        await marker
        assert events.count("spawn") == 2


async def test_failed_starts_in_a_row_make_the_job_fatal_with_the_reason_and_stderr():
    async with Manager() as manager:
        events = EventRecorder(manager)
        config = ProcessConfig(
            "doomed",
            child_cmd("fail-loud", 0, 3, "database is down"),
            redirect_output=["out", "err"],
            flapping=None,
            backoff="0.01, 1, 0.01",
            start_retries=2,
        )
        manager.load(config)
        fatal = await events.wait("fatal", name="default.doomed")
        assert events.count("spawn") == 3  # the first start and 2 retries
        assert fatal["reason"] == "3 failed starts in a row (start_retries = 2)"
        assert (fatal["exit_status"], fatal["term_signal"], fatal["signal"]) == (3, 0, None)
        assert fatal["stderr"][-1] == "database is down"
        info = manager.info("doomed")
        assert (info["state"], info["stopped"], manager.pids("doomed")) == ("fatal", True, [])
        # a start resets it
        manager.start_job("doomed")
        await events.wait("spawn", name="default.doomed", pid=4)
        assert manager.info("doomed")["state"] in ("starting", "backoff", "fatal")


async def test_give_up_on_an_exit_code_is_fatal_at_once():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("config-error", child_cmd("exit", 78), give_up_on="78 SEGV"))
        fatal = await events.wait("fatal", name="default.config-error")
        assert fatal["reason"] == "give_up_on: exit 78"
        assert events.count("spawn") == 1


async def test_restart_never_leaves_the_job_exited():
    async with Manager() as manager:
        events = EventRecorder(manager)
        config = ProcessConfig(
            "batch", child_cmd("crash", 100, 0), numprocesses=2, restart="never", start_secs=0
        )
        manager.load(config)
        await events.wait("state", name="default.batch", new="exited", pid=None)
        assert events.count("spawn") == 2
        info = manager.info("batch")
        assert (info["state"], info["numprocesses"], info["running"]) == ("exited", 2, 0)
        manager.start_job("batch")  # runs it again
        await events.wait_count("spawn", 4)


async def test_restart_on_failure_replaces_only_what_failed(tmp_path):
    record = tmp_path / "signals"
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(
            ProcessConfig("ok", child_cmd("crash", 50, 0), restart="on-failure", flapping=None)
        )
        manager.load(
            ProcessConfig("ko", child_cmd("crash", 50, 3), restart="on-failure", flapping=None)
        )
        await events.wait("state", name="default.ok", new="exited", pid=None)
        await events.wait_count("spawn", 3, name="default.ko")  # restarted after exit 3
        # killed by its own stop signal from outside: done; by another signal: restarted
        cmd = child_cmd("signals", record)
        manager.load(ProcessConfig("sig", cmd, restart="on-failure", stop_signal="INT"))
        await wait_until(lambda: record.exists(), what="the handlers set")
        os.kill(manager.get_process(manager.pids("sig")[0]).os_pid, signal.SIGKILL)
        await events.wait_count("spawn", 2, name="default.sig")
        await wait_until(lambda: read_file(record).count("ready") == 2, what="respawned")
        os.kill(manager.get_process(manager.pids("sig")[0]).os_pid, signal.SIGINT)
        await events.wait("state", name="default.sig", new="exited", pid=None)


async def test_stop_signal_is_what_stop_sends(tmp_path):
    record = tmp_path / "signals"
    async with Manager() as manager:
        manager.load(ProcessConfig("nginxish", child_cmd("signals", record), stop_signal="QUIT"))
        await wait_until(lambda: read_file(record) == "ready\n", what="the handlers set")
        manager.stop_job("nginxish")
        await wait_until(lambda: read_file(record) == "ready\nQUIT\n", what="QUIT received")
        assert manager.info("nginxish")["config"]["stop_signal"] == "QUIT"


async def test_umask_and_rlimits_are_the_process_s():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    wanted = min(256, hard)
    async with Manager() as manager:
        events = EventRecorder(manager)
        lines: list[bytes] = []
        manager.monitor_io(lambda label, msg: lines.append(msg["data"]), "limited")
        manager.load(
            ProcessConfig(
                "limited",
                child_cmd("limits"),
                umask="027",
                rlimits={"nofile": wanted, "core": 0},
                redirect_output=["out"],
            )
        )
        await wait_until(lambda: b"\n" in b"".join(lines), what="the limits printed")
        assert b"".join(lines).decode().strip() == f"umask=027 nofile={wanted}:{wanted} core=0:0"
        assert events.count("spawn_error") == 0


def test_rlimits_over_the_hard_limit_are_refused_at_load():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if os.geteuid() == 0 or hard == resource.RLIM_INFINITY:
        pytest.skip("root (or no hard limit) may raise any limit")
    with pytest.raises(ValueError, match="over gafferd's hard limit"):
        ProcessConfig("x", "true", rlimits={"nofile": hard + 1})


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("umask", "0999", "octal umask"),
        ("umask", 0o1777, "umask from 000 to 777"),
        ("rlimits", {"files": 10}, "unknown limit 'files'"),
        ("rlimits", {"nofile": -1}, "nofile: expected a number >= 0"),
        ("rlimits", {"core": "lots"}, "core: expected a number or unlimited"),
        ("stop_signal", "NOPE", "signal"),
        ("restart", "sometimes", "always, on-failure, never"),
        ("start_retries", -1, "integer >= 0"),
        ("give_up_on", "300", "0 to 255"),
        ("env_file", 3, "expected a path"),
    ],
)
def test_bad_process_options_name_the_option(option, value, message):
    with pytest.raises(ValueError, match=message) as err:
        ProcessConfig("job", "true", **{option: value})
    assert f"option {option!r} of job 'job'" in str(err.value)


async def test_env_file_is_read_at_each_start_and_the_job_env_wins(tmp_path: Path):
    env_file = tmp_path / "app.env"
    env_file.write_text("GREETING=hello\nTARGET=world\n# a comment\nexport QUOTED='a b'\n")
    async with Manager() as manager:
        lines: list[bytes] = []
        manager.monitor_io(lambda label, msg: lines.append(msg["data"]), "envy")
        config = ProcessConfig(
            "envy",
            child_cmd("env", "GREETING", "TARGET", "QUOTED"),
            env_file=str(env_file),
            env={"TARGET": "you"},
            redirect_output=["out"],
        )
        manager.load(config)
        await wait_until(lambda: b"".join(lines).count(b"\n") >= 3, what="the env printed")
        assert b"".join(lines).decode().splitlines() == [
            "GREETING=hello",
            "TARGET=you",
            "QUOTED=a b",
        ]
        env_file.write_text("GREETING=bonjour\n")
        lines.clear()
        manager.reload("envy")  # read again
        await wait_until(lambda: b"".join(lines).count(b"\n") >= 3, what="printed again")
        assert b"".join(lines).decode().splitlines()[0] == "GREETING=bonjour"


async def test_a_missing_env_file_is_a_visible_spawn_error(tmp_path: Path):
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("noenv", "true", env_file=str(tmp_path / "nope.env")))
        error = await events.wait("spawn_error", name="default.noenv")
        assert "env_file" in error["error"] and "nope.env" in error["error"]
        assert manager.info("noenv")["error"] == error["error"]
