"""Log files of process output: rotation, timestamps, reopen, stdout, syslog, full disks,
slow logs."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from gaffer import InvalidArgument, Manager, ProcessConfig
from gaffer.core.logfile import FLUSH_NOW_BYTES, LogSink, LogTarget
from tests.helpers import CHILD, EventRecorder, child_cmd, wait_until


async def run_once(manager: Manager, name: str, config: ProcessConfig) -> dict:
    """Load ``config`` with no kept-alive process, run it once, wait for its exit."""
    events = EventRecorder(manager)
    manager.load(config.replace(numprocesses=0))
    pid = manager.commit(name)
    msg = await events.wait("exit", pid=pid, timeout=30)
    assert await manager.flush_logs()
    return msg


async def test_stdout_and_stderr_go_to_their_log_files(tmp_path):
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    async with Manager() as manager:
        await run_once(
            manager,
            "dummy",
            ProcessConfig(
                "dummy",
                child_cmd("print", "to", "stdout"),
                stdout_logfile=str(out),
                log_markers=False,
                stderr_logfile=str(err),
            ),
        )
        await run_once(
            manager,
            "e",
            ProcessConfig(
                "e",
                child_cmd("write-err", "to stderr\n"),
                stdout_logfile=str(out),
                log_markers=False,
                stderr_logfile=str(err),
            ),
        )
    assert out.read_text() == "to stdout\n"
    assert err.read_text() == "to stderr\n"


async def test_the_same_file_for_both_streams_is_one_log(tmp_path):
    log = tmp_path / "all.log"
    async with Manager() as manager:
        await run_once(
            manager,
            "both",
            ProcessConfig(
                "both",
                child_cmd("outerr", "out\n", "err\n"),
                stdout_logfile=str(log),
                log_markers=False,
                stderr_logfile=str(log),
            ),
        )
    assert log.read_text() == "out\nerr\n"


async def test_log_rotates_by_size_and_keeps_the_backups(tmp_path):
    log = tmp_path / "out.log"
    async with Manager() as manager:
        for _ in range(5):
            await run_once(
                manager,
                f"w{_}",
                ProcessConfig(
                    f"w{_}",
                    child_cmd("write", 3000, 3000),
                    stdout_logfile=str(log),
                    log_markers=False,
                    logfile_max_bytes=4000,
                    logfile_backups=2,
                ),
            )
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["out.log", "out.log.1", "out.log.2"]
    assert all(os.path.getsize(tmp_path / name) == 3000 for name in files)


async def test_log_lines_get_timestamps_across_chunks(tmp_path):
    log = tmp_path / "out.log"
    async with Manager() as manager:
        await run_once(
            manager,
            "p",
            ProcessConfig(
                "p",
                child_cmd("bytes", b"one\ntw".hex()),
                stdout_logfile=str(log),
                log_markers=False,
                log_timestamps=True,
            ),
        )
        await run_once(
            manager,
            "q",
            ProcessConfig(
                "q",
                child_cmd("bytes", b"o\nthree\n".hex()),
                stdout_logfile=str(log),
                log_markers=False,
                log_timestamps=True,
            ),
        )
    lines = log.read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} "
    # q's line does not continue the line p left unfinished: it starts a line of its own
    assert [re.sub(stamp, "<t>", line) for line in lines] == ["<t>one", "<t>tw", "<t>o", "<t>three"]


async def test_reopen_logs_after_logrotate_moved_the_file(tmp_path):
    log = tmp_path / "out.log"
    async with Manager() as manager:
        output = []
        manager.monitor_io(lambda label, msg: output.append(msg["data"]), "echo")
        manager.load(
            ProcessConfig(
                "echo",
                child_cmd("echo"),
                redirect_input=True,
                stdout_logfile=str(log),
                log_markers=False,
            )
        )
        manager.send(1, "first\n")
        await wait_until(lambda: b"".join(output) == b"first\n")
        assert await manager.flush_logs()
        os.rename(log, tmp_path / "out.log.old")
        manager.reopen_logs()
        manager.send(1, "second\n")
        await wait_until(lambda: b"".join(output) == b"first\nsecond\n")
        assert await manager.flush_logs()
        assert (tmp_path / "out.log.old").read_text() == "first\n"
        assert log.read_text() == "second\n"


async def test_a_full_disk_drops_output_warns_once_and_never_stops_the_child(caplog):
    caplog.set_level(logging.WARNING, logger="gaffer.core.logfile")
    async with Manager() as manager:
        events = EventRecorder(manager)
        msg = await run_once(
            manager,
            "big",
            ProcessConfig(
                "big",
                child_cmd("write", 4 * 1024 * 1024),
                stdout_logfile="/dev/full",
                log_markers=False,
            ),
        )
        assert msg["exit_status"] == 0
        dropped = await events.wait("log_dropped", name="default.big")
        assert dropped["target"] == "/dev/full"
        await events.wait("job.default.big.log_dropped")
        await wait_until(
            lambda: sum(m["dropped_bytes"] for m in events.of("log_dropped")) == 4 * 1024 * 1024,
            what="every byte counted",
        )
    warnings = [r for r in caplog.records if "disk full" in r.getMessage()]
    assert len(warnings) == 1


async def test_a_stalled_log_holds_the_child_back_one_second_then_drops(tmp_path):
    fifo = tmp_path / "slow.fifo"
    os.mkfifo(fifo)
    reader_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    stop = threading.Event()

    def slow_reader():
        while not stop.is_set():
            try:
                os.read(reader_fd, 1024)
            except BlockingIOError:
                pass
            time.sleep(0.01)

    thread = threading.Thread(target=slow_reader)
    thread.start()
    try:
        async with Manager() as manager:
            events = EventRecorder(manager)
            lags = []

            def tick(expected):  # a 20 ms timer: how late does the loop run it?
                lags.append(time.monotonic() - expected)
                if len(lags) < 100:
                    manager.loop.call_later(0.02, tick, time.monotonic() + 0.02)

            manager.loop.call_later(0.02, tick, time.monotonic() + 0.02)
            started = time.monotonic()
            manager.load(
                ProcessConfig(
                    "fast",
                    child_cmd("write", 32 * 1024 * 1024),
                    stdout_logfile=str(fifo),
                    log_markers=False,
                    numprocesses=0,
                    logfile_buffer_bytes=1024 * 1024,
                )
            )
            manager.commit("fast")
            exit_msg = await events.wait("exit", timeout=30)
            elapsed = time.monotonic() - started
            assert exit_msg["exit_status"] == 0
            # 32 MiB through a log read at ~100 KiB/s would take minutes if it blocked
            # for good; the child is held back one second (STALL_TIMEOUT), then runs free
            assert elapsed < 20
            dropped = await events.wait("log_dropped")
            assert dropped["dropped_bytes"] > 0
            await wait_until(lambda: len(lags) == 100, what="100 ticks")
            assert max(lags) < 0.5, "the loop was blocked"
            manager.stop_job("fast")
            manager.unload("fast")
            stop.set()
    finally:
        stop.set()
        thread.join()
        os.close(reader_fd)


async def test_a_log_path_that_cannot_be_opened_is_refused_at_load(tmp_path):
    fifo = tmp_path / "nobody-reads.fifo"
    os.mkfifo(fifo)
    not_a_dir = tmp_path / "file"
    not_a_dir.touch()
    async with Manager() as manager:
        with pytest.raises(InvalidArgument, match="cannot open log file"):
            manager.load(
                ProcessConfig("a", child_cmd("sleep"), stdout_logfile=str(not_a_dir / "x.log"))
            )
        with pytest.raises(InvalidArgument, match=str(fifo)):
            manager.load(ProcessConfig("b", child_cmd("sleep"), stdout_logfile=str(fifo)))
        assert manager.jobs() == []


def test_logfile_values_are_parsed_or_refused():
    assert LogTarget.parse("-").kind == "fd"
    syslog = LogTarget.parse("syslog:local3@/run/log.sock")
    assert (syslog.kind, syslog.facility, syslog.path) == ("syslog", 19, "/run/log.sock")
    udp = LogTarget.parse("syslog@logs.example:514")
    assert udp.host == ("logs.example", 514)
    assert LogTarget.parse("syslog").path == "/dev/log"
    for bad in ("", "syslog:nofacility", "syslog@host:port"):
        with pytest.raises(ValueError, match=r"syslog|expected"):
            LogTarget.parse(bad)
    with pytest.raises(ValueError, match="stdout_logfile"):
        ProcessConfig("a", "b", stdout_logfile=5)


async def test_syslog_target_sends_one_datagram_per_line(tmp_path):
    address = str(tmp_path / "log.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(address)
    server.setblocking(False)
    try:
        async with Manager() as manager:
            await run_once(
                manager,
                "s",
                ProcessConfig(
                    "s",
                    child_cmd("bytes", b"first\nsecond\n".hex()),
                    stdout_logfile=f"syslog:local0@{address}",
                    log_markers=False,
                ),
            )
            datagrams = []
            while len(datagrams) < 2:
                datagrams.append(await manager.loop.sock_recv(server, 4096))
    finally:
        server.close()
    pattern = rb"<134>\w{3} [ \d]\d \d\d:\d\d:\d\d default\.s\[1\]: "
    assert [re.sub(pattern, b"", d) for d in datagrams] == [b"first", b"second"]


def test_dash_sends_the_output_to_gaffers_stdout(tmp_path):
    script = tmp_path / "dash.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(CHILD.parent.parent.parent)!r})
        from gaffer import Manager, ProcessConfig
        from tests.helpers import child_cmd

        manager = Manager()
        manager.start()
        manager.events.subscribe("exit", lambda evtype, msg: manager.stop())
        manager.load(ProcessConfig("p", child_cmd("print", "via", "dash"),
                                   stdout_logfile="-", redirect_output=["out"],
                                   log_markers=False,
                                   numprocesses=0))
        manager.commit("p")
        manager.run()
    """)
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "via dash\n"


async def test_a_healthy_log_loses_nothing_even_with_a_tiny_buffer(tmp_path):
    log = tmp_path / "out.log"
    size = 20 * 1024 * 1024
    async with Manager() as manager:
        events = EventRecorder(manager)
        msg = await run_once(
            manager,
            "fast",
            ProcessConfig(
                "fast",
                child_cmd("write", size),
                stdout_logfile=str(log),
                log_markers=False,
                logfile_buffer_bytes=64 * 1024,
                logfile_max_bytes=0,
            ),
        )
        assert msg["exit_status"] == 0
        assert "log_dropped" not in events.names()
    assert log.stat().st_size == size


async def test_small_writes_are_batched_and_closing_does_not_wait_for_the_batch(tmp_path):
    """A few bytes wait FLUSH_DELAY for company before a writer thread is woken; closing
    the sink on the loop's own thread (ConsoleOutput does) must not wait for that timer,
    which could never fire while the loop is blocked."""
    loop = asyncio.get_running_loop()
    path = tmp_path / "small.log"
    sink = LogSink(loop, LogTarget("file", path=str(path)))
    writer = sink.writer(1)
    writer.write(b"one\n")
    writer.write(b"two\n")
    assert sink._delayed is not None  # one timer for both chunks
    started = time.monotonic()
    sink.close(wait=True)
    assert time.monotonic() - started < 5
    assert path.read_bytes() == b"one\ntwo\n"


async def test_a_big_chunk_is_written_at_once(tmp_path):
    loop = asyncio.get_running_loop()
    path = tmp_path / "big.log"
    sink = LogSink(loop, LogTarget("file", path=str(path)))
    writer = sink.writer(1)
    writer.write(b"small\n")
    writer.write(b"x" * FLUSH_NOW_BYTES)  # enough to wake a writer thread now
    assert sink._delayed is None
    assert await loop.run_in_executor(None, sink.flush, 5)
    assert path.stat().st_size == len(b"small\n") + FLUSH_NOW_BYTES
    sink.close()
