"""A job's recent output in memory: bounded, split into lines when read, followed live."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

from gaffer import InvalidArgument, Manager, ProcessConfig, ProcessNotFound
from gaffer.core.history import MAX_BYTES, MAX_LINE, OutputHistory, budget
from tests.helpers import CHILD, EventRecorder, child_cmd, wait_until


# -- the history itself (no process) -------------------------------------------------------
def test_lines_are_made_when_read_joining_the_pieces_of_a_line():
    history = OutputHistory(100)
    history.add(1, 101, "stdout", b"one\ntw")
    history.add(2, 102, "stdout", b"other\n")
    history.add(1, 101, "stderr", b"an error\n")
    history.add(1, 101, "stdout", b"o\nthree")
    texts = [(line.pid, line.stream, line.text) for line in history.lines()]
    assert texts == [
        (1, "stdout", "one"),
        (2, "stdout", "other"),
        (1, "stderr", "an error"),
        (1, "stdout", "two"),
        (1, "stdout", "three"),  # still being written: shown as it is so far
    ]
    assert [line.text for line in history.lines(2)] == ["two", "three"]
    assert [line.text for line in history.lines(stream="stderr")] == ["an error"]
    assert history.lines(0) == []
    line = history.lines(1)[0].to_dict("default.web")
    assert set(line) == {"job", "pid", "os_pid", "stream", "time", "line"}
    assert (line["job"], line["pid"], line["os_pid"]) == ("default.web", 1, 101)


def test_what_a_hand_over_restores_is_counted_as_what_was_added():
    history = OutputHistory(100)
    for n in range(50):
        history.add(1, 101, "stdout", f"line {n}\n".encode())
    again = OutputHistory(100)
    again.restore(history.export())
    assert again.size == history.size
    assert [line.text for line in again.lines()] == [line.text for line in history.lines()]
    # and the budget holds: restoring into a smaller history keeps the newest only
    small = OutputHistory(1)
    small.restore(history.export() * 200)
    assert small.size <= small.max_bytes


def test_the_last_lines_are_kept_within_the_memory_budget():
    history = OutputHistory(1000)
    assert history.max_bytes == budget(1000) == 256_000
    for index in range(10_000):
        history.add(1, 101, "stdout", f"line {index}\n".encode())
    lines = history.lines()
    assert len(lines) == 1000  # log_history lines, the newest
    assert lines[-1].text == "line 9999"
    assert history.size <= history.max_bytes
    # a process printing long lines keeps fewer of them, never more memory
    for _ in range(1000):
        history.add(1, 101, "stdout", b"x" * 2000 + b"\n")
    assert history.size <= history.max_bytes
    assert len(history.lines()) < 1000
    assert budget(0) == 0 and budget(10**9) == MAX_BYTES


def test_the_budget_is_the_real_memory_of_the_history():
    """What the budget counts is what the chunks cost (CHUNK_OVERHEAD measured here)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        history = OutputHistory(1000)
        for index in range(50_000):  # one short line per chunk: the worst case
            history.add(3, 123456, "stdout", f"log line number {index}\n".encode())
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(history.lines()) == 1000
    assert used <= 1.15 * history.max_bytes, (used, history.max_bytes)


def test_no_history_when_the_job_keeps_none():
    history = OutputHistory(0)
    history.add(1, 101, "stdout", b"lost\n")
    assert history.lines() == [] and history.size == 0


def test_a_line_never_ended_is_cut_for_followers():
    seen = []
    from gaffer.core.history import LineFollower

    follower = LineFollower(seen.append)
    follower.chunk("default.w", 1.0, 1, 101, "stdout", b"x" * (MAX_LINE + 1))
    assert len(seen) == 1 and len(seen[0]["line"]) == MAX_LINE + 1


def test_resize_keeps_the_newest():
    history = OutputHistory(1000)
    for index in range(500):
        history.add(1, 101, "stdout", f"{index}\n".encode())
    history.resize(100)
    assert history.size <= budget(100)
    assert history.lines()[-1].text == "499"
    assert len(history.lines()) == 100


# -- a manager's jobs ------------------------------------------------------------------------
async def test_logs_of_a_job_of_three_processes_interleaved():
    async with Manager() as manager:
        manager.load(
            ProcessConfig(
                "talk",
                child_cmd("lines", 20, 5, "both"),
                numprocesses=3,
                redirect_output=["o", "e"],
            )
        )
        await wait_until(lambda: len(manager.logs("talk")) == 60, what="60 lines")
        lines = manager.logs("talk")
        assert {line["pid"] for line in lines} == {1, 2, 3}
        assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)
        for line in lines:
            proc = manager.get_process(line["pid"])
            assert line["line"].endswith(f"of {proc.os_pid}")
            assert line["os_pid"] == proc.os_pid
            index = int(line["line"].split()[1])
            assert line["stream"] == ("stderr" if index % 2 else "stdout")
        assert manager.logs("talk", 5) == lines[-5:]
        assert len(manager.logs("talk", stream="stderr")) == 30
        assert manager.logs("default.talk", 100, "all") == lines
        assert manager.logs(lines=5) == lines[-5:]  # every job
        with pytest.raises(ProcessNotFound):
            manager.logs("nosuch")
        with pytest.raises(InvalidArgument, match="stream must be one of"):
            manager.logs("talk", stream="stdin")


async def test_follow_gives_the_backlog_then_each_line_and_the_unfinished_one_at_exit():
    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.load(
            ProcessConfig("echo", child_cmd("echo"), redirect_input=True, redirect_output=["out"])
        )
        manager.send(1, "first\nsecond\n")
        await wait_until(lambda: len(manager.logs("echo")) == 2)
        seen: list[dict] = []
        follower = manager.follow_logs(seen.append, "echo", lines=1)
        assert [line["line"] for line in seen] == ["second"]
        manager.send(1, "thi")
        await asyncio.sleep(0.1)
        assert len(seen) == 1  # not a line yet
        manager.send(1, "rd\n")
        await wait_until(lambda: len(seen) == 2)
        assert seen[1]["line"] == "third" and seen[1]["job"] == "default.echo"
        manager.unfollow_logs(follower)
        manager.send(1, "after\n")
        await wait_until(lambda: manager.logs("echo", 1)[0]["line"] == "after")
        assert len(seen) == 2
        # a line left unfinished comes whole when its process exits
        manager.load(
            ProcessConfig(
                "part",
                child_cmd("bytes", b"a\nunfinished".hex()),
                redirect_output=["out"],
                numprocesses=0,
            )
        )
        ends: list[dict] = []
        manager.follow_logs(ends.append, "part")
        pid = manager.commit("part")
        await events.wait("exit", pid=pid)
        await wait_until(lambda: len(ends) == 2)
        assert [line["line"] for line in ends] == ["a", "unfinished"]


async def test_following_every_job_hears_of_jobs_loaded_later():
    async with Manager() as manager:
        seen: list[dict] = []
        follower = manager.follow_logs(seen.append, stream="stdout")
        manager.load(
            ProcessConfig("late", child_cmd("lines", 3, 0, "both"), redirect_output=["o", "e"])
        )
        await wait_until(lambda: len(seen) == 2, what="the stdout lines")
        assert [(line["job"], line["line"].split()[1]) for line in seen] == [
            ("default.late", "0"),
            ("default.late", "2"),
        ]
        manager.unfollow_logs(follower)


async def test_output_capture_keeps_the_history_of_jobs_that_redirect_nothing():
    async with Manager(output="capture") as manager:
        manager.load(ProcessConfig("plain", child_cmd("lines", 3, 0, "both")))
        await wait_until(lambda: len(manager.logs("plain")) == 3)
        assert manager.get_process(1).info["output_labels"] == ["stdout", "stderr"]
    async with Manager() as manager:  # inherited: nothing to keep
        manager.load(ProcessConfig("plain", child_cmd("lines", 3, 0, "err")))
        await asyncio.sleep(0.3)
        assert manager.logs("plain") == []
    with pytest.raises(ValueError, match="output must be one of"):
        Manager(output="files")


def test_output_console_prefixes_each_line_with_its_process(tmp_path):
    script = tmp_path / "console.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(CHILD.parent.parent.parent)!r})
        from gaffer import Manager, ProcessConfig
        from tests.helpers import child_cmd

        manager = Manager(output="console")
        manager.start()
        exits = []
        def on_exit(evtype, msg):
            exits.append(msg)
            if len(exits) == 2:
                manager.stop()
        manager.events.subscribe("exit", on_exit)
        manager.load(ProcessConfig("web", child_cmd("lines", 2, 0, "both", 0), numprocesses=0))
        manager.load(ProcessConfig("w", child_cmd("lines", 1, 0, "out", 0), numprocesses=0,
                                   log_markers=False), sessionid="app")
        manager.commit("web")
        manager.commit("app.w")
        manager.run()
    """)
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # stderr captured too
    lines = result.stdout.splitlines()
    web = [line for line in lines if line.startswith("web.1")]
    assert [line.split(" | ", 1)[1].rsplit(" ", 1)[0] for line in web] == [
        "[gaffer] spawned pid",
        "line 0 of",
        "line 1 of",
        "[gaffer] exited with",
    ]
    # another session keeps its prefix; no markers for a job that asks for none
    assert [line.split("|", 1)[1].rsplit(" ", 1)[0] for line in lines if "app.w.2" in line] == [
        " line 0 of"
    ]
