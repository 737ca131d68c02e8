"""Readiness (``ready``) and health (``health``) with real processes and real probes:
sd_notify, fd:N, tcp, http, exec; timeouts; health actions; probes that hang."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from gaffer import Manager, ProcessConfig
from tests.gafferd.harness import free_port, free_ports
from tests.helpers import EventRecorder, child_cmd, wait_until


async def job_state(events: EventRecorder, name: str, state: str, timeout: float = 10) -> dict:
    return await events.wait("state", name=f"default.{name}", new=state, pid=None, timeout=timeout)


async def test_notify_a_process_is_starting_until_it_says_ready():
    async with Manager() as manager:
        events = EventRecorder(manager)
        config = ProcessConfig("svc", child_cmd("notify", 300, "warming up"), ready="notify")
        manager.load(config)
        started = time.monotonic()
        await job_state(events, "svc", "ready")
        assert time.monotonic() - started >= 0.25  # not before it said so
        moves = [(m["old"], m["new"]) for m in events.of("state") if m.get("pid") == 1]
        assert moves == [("stopped", "starting"), ("starting", "ready")]
        [proc] = manager.info("svc")["process_info"]
        assert (proc["state"], proc["status"]) == ("ready", "warming up")
        assert manager.get_process(1).env["NOTIFY_SOCKET"].startswith("@gaffer/")


async def test_notify_from_a_wrapper_s_child_counts_for_the_process():
    async with Manager() as manager:
        events = EventRecorder(manager)
        cmd = f"sh -c '{child_cmd('notify', 50)}; true'"  # not exec'd: a child of the shell
        manager.load(ProcessConfig("wrapped", cmd, ready="notify"))
        await job_state(events, "wrapped", "ready")


async def test_fd_readiness_is_a_newline_on_fd_n():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("s6ish", child_cmd("ready-fd", 5, 200), ready="fd:5"))
        await job_state(events, "s6ish", "ready")
        assert manager.get_process(1).state == "ready"


async def test_tcp_readiness_follows_each_instance_s_port():
    port = free_ports(2)
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(
            ProcessConfig(
                "listener",
                child_cmd("listen", "$PORT", 300),
                port=port,
                numprocesses=2,
                ready="tcp:$PORT",
                ready_interval=0.05,
            )
        )
        await job_state(events, "listener", "ready")
        assert [p["state"] for p in manager.info("listener")["process_info"]] == ["ready"] * 2


async def test_http_and_exec_readiness(tmp_path: Path):
    port, flag = free_port(), tmp_path / "migrated"
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(
            ProcessConfig(
                "web",
                child_cmd("http", port, 200),
                ready=f"http:127.0.0.1:{port}/health",
                ready_interval=0.05,
            )
        )
        manager.load(
            ProcessConfig(
                "migrator", child_cmd("sleep"), ready=f"exec:test -e {flag}", ready_interval=0.05
            )
        )
        await job_state(events, "web", "ready")
        assert manager.info("migrator")["state"] == "starting"
        flag.touch()
        await job_state(events, "migrator", "ready")


async def test_not_ready_in_time_is_a_failed_start_then_fatal():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(
            ProcessConfig(
                "deaf",
                child_cmd("sleep"),
                ready=f"tcp:{free_port()}",
                ready_interval=0.05,
                ready_timeout=0.3,
                start_retries=1,
                backoff="0.01 1 0.01",
                flapping=None,
            )
        )
        not_ready = await events.wait("not_ready", name="default.deaf")
        assert "not ready within 0.3s (tcp:" in not_ready["reason"]
        fatal = await events.wait("fatal", name="default.deaf")
        assert fatal["reason"] == "2 failed starts in a row (start_retries = 1)"
        assert events.count("spawn") == 2
        assert "not ready within" in manager.info("deaf")["error"]


async def test_health_failures_restart_the_process(tmp_path: Path):
    port, sick = free_port(), tmp_path / "sick"
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(
            ProcessConfig(
                "api",
                child_cmd("http", port, 0, sick),
                ready=f"http:127.0.0.1:{port}/",
                ready_interval=0.05,
                health=f"http:127.0.0.1:{port}/",
                health_interval=0.05,
                health_failures=3,
            )
        )
        await job_state(events, "api", "ready")
        first = manager.pids("api")
        sick.touch()
        failed = await events.wait("health", name="default.api", ok=False)
        assert "answered 500" in failed["reason"] and failed["failures"] == 1
        await events.wait("health", name="default.api", failures=3)
        sick.unlink()
        await events.wait("spawn", name="default.api", pid=first[0] + 1)
        await job_state(events, "api", "ready")
        assert manager.info("api")["restarts"] == 1


async def test_health_event_only_and_recovery(tmp_path: Path):
    port, sick = free_port(), tmp_path / "sick"
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(
            ProcessConfig(
                "watched",
                child_cmd("http", port, 0, sick),
                start_secs=0.05,
                health=f"http:127.0.0.1:{port}/",
                health_interval=0.05,
                health_failures=2,
                health_action="event",
            )
        )
        sick.touch()
        await events.wait("health", name="default.watched", failures=2)
        await events.wait("health", name="default.watched", failures=3)  # left running
        [proc] = manager.info("watched")["process_info"]
        assert proc["health"]["ok"] is False and proc["pid"] == 1
        sick.unlink()
        recovered = await events.wait("health", name="default.watched", ok=True)
        assert recovered["failures"] == 0
        assert manager.pids("watched") == [1]


async def test_health_action_stop_stops_the_job():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(
            ProcessConfig(
                "gone",
                child_cmd("sleep"),
                start_secs=0.05,
                health=f"tcp:{free_port()}",
                health_interval=0.05,
                health_failures=2,
                health_action="stop",
            )
        )
        await job_state(events, "gone", "stopped")
        assert manager.info("gone")["stopped"] is True


async def test_a_probe_that_hangs_costs_only_its_timeout():
    async with Manager() as manager:
        events = EventRecorder(manager)
        ticks: list[float] = []

        def tick() -> None:
            ticks.append(time.monotonic())
            if len(ticks) < 40:
                manager.loop.call_later(0.02, tick)

        manager.load(
            ProcessConfig(
                "slowprobe",
                child_cmd("sleep"),
                start_secs=0.05,
                health="exec:sleep 30",
                health_interval=0.05,
                health_timeout=0.2,
                health_failures=100,
                health_action="event",
            )
        )
        tick()
        failed = await events.wait("health", name="default.slowprobe", ok=False)
        assert "still running after 0.2s" in failed["reason"]
        await wait_until(lambda: len(ticks) >= 40, what="the loop's ticks")
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert max(gaps) < 0.15, max(gaps)  # the loop never waited for the probe


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("ready", "socket", "expected notify | fd:N | tcp:PORT"),
        ("ready", "fd:1", "descriptor number >= 3"),
        ("ready", "tcp:99999", "port from 1 to 65535"),
        ("health", "notify", "expected tcp:PORT | http:URL | exec:COMMAND"),
        ("ready_timeout", 0, "seconds > 0"),
        ("health_failures", 0, "integer >= 1"),
        ("health_action", "reboot", "restart, stop, event"),
        ("on_exit", "panic", "restart, ignore, shutdown"),
        ("requires", ["a b"], "bad job name"),
    ],
)
def test_bad_readiness_options_say_what_and_where(option, value, message):
    with pytest.raises(ValueError, match=message) as err:
        ProcessConfig("job", "true", **{option: value})
    assert f"option {option!r} of job 'job'" in str(err.value)
