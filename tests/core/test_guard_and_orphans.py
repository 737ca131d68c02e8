"""The last defences: the guard process, the escaped descendants found at stop, and the
orphans a subreaper manager adopts. Real processes throughout; the subreaper tests run in
a fresh Python, since becoming a subreaper changes the whole process for good."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from gaffer import Manager, ProcessConfig
from gaffer.core.childwatch import ChildWatcher
from gaffer.core.guard import Guard, guard_command
from gaffer.core.procfs import descendants_of, proc_stat
from tests.helpers import EventRecorder, child_cmd, pid_exists, run_script, wait_until

pytestmark = pytest.mark.timeout(60)


def _sleeper() -> subprocess.Popen:
    """A process in a group of its own, as the manager's processes are."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )


async def _wait_exit(popen: subprocess.Popen, timeout: float = 5) -> int:
    await wait_until(lambda: popen.poll() is not None, timeout, f"pid {popen.pid} to exit")
    return popen.returncode


@pytest.fixture(params=["awk", "python"])
def guard_kind(request, monkeypatch, tmp_path) -> str:
    """The guard as gafferd starts it (awk counts, Python stops), and where awk is not on
    the PATH (Python does both)."""
    if request.param == "python":
        monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no awk in it
    return request.param


def _guard_cmdline(guard: Guard) -> str:
    with open(f"/proc/{guard.pid}/cmdline", "rb") as handle:
        return handle.read().replace(b"\0", b" ").decode()


async def test_the_guard_stops_registered_groups_when_the_manager_vanishes(guard_kind):
    loop = asyncio.get_running_loop()
    watcher = ChildWatcher(loop)
    guard = Guard(loop, watcher, grace=0.2)
    registered, removed = _sleeper(), _sleeper()
    try:
        assert f"guard_main.{guard_kind[:2]}" in _guard_cmdline(guard)  # .aw(k) or .py
        guard.add(registered.pid)
        guard.add(removed.pid)
        guard.remove(removed.pid)
        await asyncio.sleep(0)  # registrations are written at the end of the loop's turn
        # what a SIGKILL does to the manager: its end of the pipe closes, nothing else
        guard._writer.close()
        assert await _wait_exit(registered) == -signal.SIGTERM
        await asyncio.wait_for(guard._exited, 5)
        assert removed.poll() is None, "a group removed from the guard is not its business"
    finally:
        for popen in (registered, removed):
            popen.kill()
            popen.wait()


async def test_the_guard_sigkills_what_ignores_sigterm_and_counts_registrations(guard_kind):
    loop = asyncio.get_running_loop()
    guard = Guard(loop, ChildWatcher(loop), grace=0.2)
    stubborn = subprocess.Popen(  # noqa: ASYNC220 - a fork, no wait
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)",
        ],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    try:
        await loop.run_in_executor(None, stubborn.stdout.readline)
        guard.add(stubborn.pid)
        guard.add(stubborn.pid)  # twice: one removal leaves it registered
        guard.remove(stubborn.pid)
        assert stubborn.pid in guard
        await asyncio.sleep(0)
        started = time.monotonic()
        guard._writer.close()
        assert await _wait_exit(stubborn) == -signal.SIGKILL
        assert time.monotonic() - started >= 0.2
        await asyncio.wait_for(guard._exited, 5)
    finally:
        stubborn.kill()
        stubborn.wait()
        stubborn.stdout.close()


@pytest.mark.parametrize("python", [sys.executable, "/nonexistent/python"], ids=["py", "gone"])
async def test_the_awk_guard_stops_groups_even_without_its_python(python):
    """The awk guard hands the groups to guard_main.py (SIGTERM first); if that Python is
    gone (its virtualenv removed while gafferd ran), the shell SIGKILLs the groups."""
    awk = shutil.which("awk")
    if awk is None:
        pytest.skip("no awk on this machine: gafferd's guard is guard_main.py alone")
    argv, env = guard_command(0.2, awk, python)
    sleeper = _sleeper()
    guard = subprocess.Popen(  # noqa: ASYNC220 - a fork, no wait
        argv, stdin=subprocess.PIPE, env=env, start_new_session=True, stderr=subprocess.DEVNULL
    )
    try:
        guard.stdin.write(b"+%d\n" % sleeper.pid)
        guard.stdin.close()  # what the death of gafferd does
        expected = -signal.SIGTERM if python == sys.executable else -signal.SIGKILL
        assert await _wait_exit(sleeper) == expected
        assert await _wait_exit(guard) == 0
    finally:
        for popen in (sleeper, guard):
            popen.kill()
            popen.wait()


async def test_a_clean_stop_closes_the_guard_quietly():
    async with Manager(guard=True) as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("w", child_cmd("sleep"), numprocesses=2))
        await events.wait_count("spawn", 2)
        guard = manager._table.guard
        assert guard is not None and all(pid in guard for pid in manager.pids("w") if False)
        os_pids = [manager.get_process(pid).os_pid for pid in manager.pids("w")]
        assert all(os_pid in guard for os_pid in os_pids)
        manager.stop_job("w")
        await events.wait_count("exit", 2)
        await wait_until(lambda: not any(os_pid in guard for os_pid in os_pids), 5, "unregistered")
    assert guard._exited.done()
    assert not pid_exists(guard.pid)


async def test_detached_processes_are_never_given_to_the_guard(tmp_path):
    async with Manager(guard=True) as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("kept", child_cmd("sleep"), detach=True))
        spawned = await events.wait("spawn")
        assert spawned["os_pid"] not in manager._table.guard
    try:
        assert pid_exists(spawned["os_pid"])
    finally:
        os.kill(spawned["os_pid"], signal.SIGKILL)
    await wait_until(lambda: not pid_exists(spawned["os_pid"]), 5, "the detached process gone")


@pytest.mark.parametrize("ignore", [False, True], ids=["obeys", "ignores-term"])
async def test_stopping_a_process_stops_the_descendants_that_left_its_group(tmp_path, ignore):
    pid_file = tmp_path / "grandchild.pid"
    args = ["setsid-grandchild", pid_file] + (["ignore"] if ignore else [])
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(ProcessConfig("esc", child_cmd(*args), graceful_timeout=0.3))
        spawned = await events.wait("spawn")
        await wait_until(lambda: pid_file.exists() and pid_file.read_text(), 5, "the pid file")
        escaped = int(pid_file.read_text())
        stat = proc_stat(escaped)
        assert stat is not None and stat.pgid != spawned["os_pid"]  # out of the group
        assert escaped in descendants_of(spawned["os_pid"])
        proc = manager.get_process(spawned["pid"])
        manager.stop_job("esc")
        await asyncio.wait_for(proc.wait_gone(), 5)
        # gone means the escaped one too, not only the leader and its group
        assert not pid_exists(escaped)


def test_a_subreaper_adopts_reaps_and_stops_orphans(tmp_path):
    """In a fresh Python: a daemonizing job leaves an orphan that the manager adopts; one
    that exits at once is reaped (no zombie); the live one is stopped with the manager;
    the orphan of a detached job is left running."""
    result = run_script(f"""
        from gaffer.core.procfs import proc_stat

        async def pid_in(path):
            await wait_until(lambda: os.path.exists(path) and open(path).read(), 10, path)
            return int(open(path).read())

        async def main():
            manager = Manager(guard=True, subreaper=True)
            async with manager:
                tmp = {str(tmp_path)!r}
                manager.load(ProcessConfig("d", child_cmd("daemonize", tmp + "/live")))
                manager.load(ProcessConfig("q", child_cmd("daemonize", tmp + "/quick", "exit")))
                manager.load(ProcessConfig("k", child_cmd("daemonize", tmp + "/kept"),
                                           detach=True))
                live = await pid_in(tmp + "/live")
                quick = await pid_in(tmp + "/quick")
                kept = await pid_in(tmp + "/kept")
                reaper = manager._orphans
                await wait_until(lambda: live in reaper.orphans and kept in reaper.orphans, 10,
                                 "adoption")
                await wait_until(lambda: reaper.reaped >= 1 and quick not in zombie_children(), 10,
                                 "the quick orphan reaped")
                parent_of_live = proc_stat(live).ppid
                in_guard = proc_stat(live).pgid in manager._table.guard
                kept_in_guard = proc_stat(kept).pgid in manager._table.guard
                kept_is_kept = reaper.orphans[kept].kept
                detached_leader = manager.get_process(manager.pids("k")[0]).os_pid
            live_after = proc_stat(live)
            kept_after = proc_stat(kept)
            os.kill(kept, 9)
            os.kill(detached_leader, 9)
            print(json.dumps({{
                "parent_of_live": parent_of_live, "me": os.getpid(), "in_guard": in_guard,
                "kept_in_guard": kept_in_guard, "kept_is_kept": kept_is_kept,
                "live_after": live_after and live_after.state,
                "kept_after": kept_after and kept_after.state,
            }}))
        asyncio.run(main())
    """)
    assert result["parent_of_live"] == result["me"]
    assert result["in_guard"] and not result["kept_in_guard"] and result["kept_is_kept"]
    assert result["live_after"] in (None, "Z", "X"), "a live orphan outlived the stop"
    assert result["kept_after"] not in (None, "Z", "X"), "a detached job's orphan was stopped"


def test_orphans_go_with_their_job(tmp_path):
    """In a fresh Python: orphans carry their job's id (GAFFER_JOB) and are stopped with
    it (stop_job: SIGTERM; unload of one that ignores SIGTERM: SIGKILL after the job's
    graceful timeout), while the orphans of other jobs, and of a detached job, run on."""
    result = run_script(f"""
        import time
        from gaffer.core.procfs import proc_stat

        def alive(pid):
            stat = proc_stat(pid)
            return stat is not None and not stat.exited

        async def pid_in(path):
            await wait_until(lambda: os.path.exists(path) and open(path).read(), 10, path)
            return int(open(path).read())

        def kill_ours(pids, tmp):
            # the detached job's processes outlive the manager: gone at the end, even
            # when the test fails (only if still ours: a pid may be reused)
            for pid in pids:
                try:
                    if tmp.encode() in open(f"/proc/{{pid}}/cmdline", "rb").read():
                        os.kill(pid, 9)
                except OSError:
                    pass

        async def main():
            tmp = {str(tmp_path)!r}
            out = {{}}
            detached = []
            try:
                await body(tmp, out, detached)
            finally:
                kill_ours(detached, tmp)
            print(json.dumps(out))

        async def body(tmp, out, detached):
            async with Manager(subreaper=True) as manager:
                manager.load(ProcessConfig("a", child_cmd("daemonize", tmp + "/a")))
                manager.load(ProcessConfig("b", child_cmd("daemonize", tmp + "/b", "ignore"),
                                           graceful_timeout=0.3))
                manager.load(ProcessConfig("c", child_cmd("daemonize", tmp + "/c")))
                manager.load(ProcessConfig("k", child_cmd("daemonize", tmp + "/k"),
                                           detach=True))
                leader = manager.get_process(manager.pids("k")[0])
                detached.append(leader.os_pid)
                a, b, c, k = [await pid_in(tmp + "/" + n) for n in "abck"]
                detached.append(k)
                environ = open(f"/proc/{{a}}/environ", "rb").read().split(b"\\0")
                out["mark"] = [e.decode() for e in environ if e.startswith(b"GAFFER_JOB=")]
                reaper = manager._orphans
                # stop_job looks for orphans itself: no waiting for a sweep
                manager.stop_job("a")
                await wait_until(lambda: not alive(a) and a not in reaper.orphans, 5,
                                 "a's orphan gone and reaped")
                out["a_jobs"] = [o.job for o in reaper.orphans.values()]
                out["c_after_a"] = alive(c)
                started = time.monotonic()
                manager.unload("b")
                await wait_until(lambda: not alive(b) and b not in reaper.orphans, 5,
                                 "b's orphan gone and reaped")
                out["b_took"] = time.monotonic() - started
                manager.stop_job("k")
                await asyncio.wait_for(leader.wait_gone(), 5)
                await asyncio.sleep(0.2)  # a signal sent wrongly would have landed by now
                out["k_after_stop"] = alive(k)
                out["c_still"] = alive(c)
            out["c_after_manager"] = alive(c)
            out["k_after_manager"] = alive(k)
        asyncio.run(main())
    """)
    assert result["mark"] == ["GAFFER_JOB=default.a"]
    assert "default.a" not in result["a_jobs"]
    assert result["c_after_a"] and result["c_still"], "another job's orphan was stopped"
    assert 0.25 < result["b_took"] < 4, result  # SIGTERM ignored: SIGKILL after 0.3 s
    assert result["k_after_stop"] and result["k_after_manager"], "a detached orphan stopped"
    assert not result["c_after_manager"]  # the rest go with the manager, as before
