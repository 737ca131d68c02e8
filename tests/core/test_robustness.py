"""What the engine does when the system pushes back: no descriptors left, detached
processes, calls from other threads and loops, spawn failures beside healthy processes."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from gaffer import FlappingInfo, Manager, ProcessConfig
from gaffer.errors import ManagerStopped
from tests.helpers import (
    EventRecorder,
    child_cmd,
    pid_exists,
    run_script,
    wait_until,
    wait_until_sync,
)


def test_running_out_of_descriptors_is_a_spawn_error_and_the_job_recovers():
    result = run_script("""
        async def main():
            async with Manager() as manager:
                events = EventRecorder(manager)
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                in_use = len(os.listdir("/proc/self/fd"))
                # room for one process (stdin, stdout, stderr pipes and a pidfd), not two
                resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 10, hard))
                manager.load(ProcessConfig("web", child_cmd("sleep"), numprocesses=2,
                                           redirect_output=["out", "err"],
                                           redirect_input=True))
                error = await events.wait("spawn_error")
                running = len(manager.pids("web"))
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                await wait_until(lambda: len(manager.pids("web")) == 2, 10, "recovery")
            print(json.dumps({"errno": error["errno"], "error": error["error"],
                              "running_while_short": running}))
        asyncio.run(main())
    """)
    assert result["errno"] == 24  # EMFILE
    assert "Too many open files" in result["error"]
    assert result["running_while_short"] == 1


async def test_a_detached_process_keeps_writing_its_log_after_the_manager_stops(tmp_path):
    log = tmp_path / "detached.log"
    async with Manager() as manager:
        manager.load(
            ProcessConfig(
                "ticker",
                "/bin/sh",
                args=["-c", "while true; do echo tick; sleep 0.05; done"],
                detach=True,
                stdout_logfile=str(log),
            )
        )
        os_pid = manager.get_process(1).os_pid
    size = log.stat().st_size if log.exists() else 0
    await wait_until(
        lambda: log.exists() and log.stat().st_size > size + 10,
        what="the log growing after the stop",
    )
    assert pid_exists(os_pid)
    os.killpg(os_pid, 9)
    await wait_until(lambda: not pid_exists(os_pid), what="the detached process gone")


def test_monitor_from_another_thread_delivers_stats():
    manager = Manager()
    manager.start()
    manager.load(ProcessConfig("web", child_cmd("sleep")))
    got = threading.Event()

    def worker():
        manager.monitor(lambda evtype, msg: got.set(), "web")
        got.wait(10)
        walked = []
        manager.walk(lambda mgr, proc: walked.append(proc.pid))
        assert walked == [1]
        manager.stop()

    manager.loop.call_soon(threading.Thread(target=worker).start)
    manager.run()
    assert got.is_set()


async def test_repeated_calls_do_not_multiply_spawn_retries():
    async with Manager() as manager:
        events = EventRecorder(manager, "spawn_error")
        manager.load(ProcessConfig("ghost", "no-such-program-anywhere"))
        for _ in range(20):
            manager.scale("ghost", "=1")
        started = manager.loop.time()
        done = manager.loop.create_future()
        manager.loop.call_later(0.65, done.set_result, None)
        await done
        elapsed = manager.loop.time() - started
        # backoff 0.1 s, 0.2 s, 0.4 s: at most 4 attempts in 0.65 s, however many calls
        assert len(events.of("spawn_error")) <= 4, (len(events.of("spawn_error")), elapsed)


async def test_a_spawn_error_beside_healthy_processes_does_not_flap_them(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(
            ProcessConfig(
                "web",
                child_cmd("sleep"),
                cwd=str(workdir),
                numprocesses=3,
                flapping=FlappingInfo(attempts=2, window=5, retry_in=1, max_retry=2),
            )
        )
        healthy = manager.pids("web")
        workdir.rmdir()  # the next spawn cannot chdir
        manager.scale("web", 1)
        await events.wait_count("spawn_error", 2, timeout=5)
        assert "flap" not in events.names()
        assert manager.pids("web") == healthy


async def test_custom_stream_jobs_do_not_inherit_gaffers_descriptors():
    leak_r, leak_w = os.pipe()
    os.set_inheritable(leak_r, True)  # what a careless library might leave around
    os.set_inheritable(leak_w, True)
    try:
        async with Manager() as manager:
            output = []
            manager.monitor_io(lambda label, msg: output.append(msg["data"]), "fds")
            manager.load(
                ProcessConfig(
                    "fds", child_cmd("fds"), custom_streams=["ctl"], redirect_output=["out"]
                )
            )
            await wait_until(lambda: b"\n" in b"".join(output), what="the fd list")
        fds = {int(fd) for fd in b"".join(output).split()}
        assert {0, 1, 2, 3} <= fds
        assert leak_r not in fds and leak_w not in fds
    finally:
        os.close(leak_r)
        os.close(leak_w)


def test_a_manager_made_outside_a_loop_adopts_the_loop_of_async_with():
    manager = Manager()

    async def main():
        async with manager:
            manager.load(ProcessConfig("web", child_cmd("sleep")))
            return manager.pids("web"), manager.loop is asyncio.get_running_loop()

    assert asyncio.run(main()) == ([1], True)


def test_a_call_from_another_running_loop_is_refused():
    manager = Manager()
    manager.start()

    async def elsewhere():
        with pytest.raises(RuntimeError, match="another event loop"):
            manager.pids()

    def worker():
        asyncio.run(elsewhere())
        manager.stop()

    manager.loop.call_soon(threading.Thread(target=worker).start)
    manager.run()


def test_calls_waiting_when_the_loop_stops_never_hang(loop_kind):
    manager = Manager(loop_kind=loop_kind)
    manager.start()
    outcome = []

    def caller():
        try:
            outcome.append(manager.pids())  # served in the loop's last iteration, or
        except ManagerStopped as exc:  # failed when the loop stopped before it
            outcome.append(exc)

    thread = threading.Thread(target=caller)

    def stop_while_queued():
        thread.start()
        wait_until_sync(lambda: manager._pending_calls, timeout=5, what="the queued call")
        manager.loop.stop()  # the queued call will never run on this loop

    manager.loop.call_soon(stop_while_queued)
    manager.run()
    thread.join(5)
    assert len(outcome) == 1 and not thread.is_alive()
    manager.stop()
    manager.run()


async def test_a_rolling_restart_of_a_big_job_is_sliced_and_complete():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("big", "/bin/sleep 1000", numprocesses=60))
        await wait_until(lambda: len(manager.pids("big")) == 60, what="60 running")
        before = set(manager.pids("big"))
        started = time.monotonic()
        manager.restart()
        returned_after = time.monotonic() - started
        assert len(manager.pids("big")) < 120  # sliced: not all 60 new ones at once
        await wait_until(
            lambda: len(manager.pids("big")) == 60 and not set(manager.pids("big")) & before,
            what="all replaced",
        )
        await events.wait_count("reap", 60)
        assert returned_after < 1.0
