"""Process output and input: labels, stdin, custom streams and channels."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from gaffer import Manager, ProcessConfig, StreamNotFound, StreamNotRedirected
from tests.helpers import CHILD, EventRecorder, child_cmd, wait_until


class Collector:
    """An io listener keeping every message it gets."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict]] = []

    def __call__(self, label: str, msg: dict) -> None:
        self.messages.append((label, msg))

    def data(self, label: str | None = None) -> bytes:
        return b"".join(m["data"] for lab, m in self.messages if label in (None, lab))


async def test_output_is_delivered_with_its_label_and_ids(tmp_path):
    async with Manager() as manager:
        output = Collector()
        manager.monitor_io(output, "dummy")
        manager.load(
            ProcessConfig(
                "dummy", child_cmd("dummy", tmp_path / "rec"), redirect_output=["stdout", "stderr"]
            )
        )
        os_pid = manager.get_process(1).os_pid
        await wait_until(lambda: output.data("stdout") and output.data("stderr"))
        stdout = [m for label, m in output.messages if label == "stdout"]
        assert stdout[0] == {
            "event": "stdout",
            "name": "default.dummy",
            "pid": 1,
            "os_pid": os_pid,
            "data": b"hello out",
        }
        assert output.data("stderr") == b"hello err"


async def test_the_same_label_twice_merges_stderr_into_stdout(tmp_path):
    async with Manager() as manager:
        output = Collector()
        manager.monitor_io(output, "dummy")
        manager.load(
            ProcessConfig(
                "dummy", child_cmd("dummy", tmp_path / "rec"), redirect_output=["all", "all"]
            )
        )
        await wait_until(lambda: len(output.data()) == len(b"hello outhello err"))
        assert {label for label, _ in output.messages} == {"all"}
        assert sorted([b"hello out", b"hello err"]) == sorted(
            [output.data()[:9], output.data()[9:]]
        )


async def test_monitor_io_on_a_process_and_every_label(tmp_path):
    async with Manager() as manager:
        manager.load(
            ProcessConfig(
                "dummy",
                child_cmd("dummy", tmp_path / "rec"),
                redirect_output=["out", "err"],
                redirect_input=True,
            )
        )
        proc = manager.get_process(1)
        everything, only_err = Collector(), Collector()
        proc.monitor_io(".", everything)
        proc.monitor_io("err", only_err)
        await wait_until(lambda: everything.data("out") and everything.data("err"))
        assert only_err.data() == b"hello err"
        with pytest.raises(StreamNotFound, match="nope"):
            proc.monitor_io("nope", everything)
        proc.unmonitor_io(".", everything)
        proc.unmonitor_io("err", only_err)


async def test_stdin_is_echoed_in_order_even_from_threads():
    async with Manager() as manager:
        output = Collector()
        manager.monitor_io(output, "echo")
        manager.load(
            ProcessConfig("echo", child_cmd("echo"), redirect_output=["out"], redirect_input=True)
        )
        proc = manager.get_process(1)
        proc.write(b"ECHO\n")
        await wait_until(lambda: output.data() == b"ECHO\n", what="echo")
        proc.writelines(["a\n", b"b\n"])
        manager.send(1, ["c\n", "d\n"])
        manager.send(1, "e\n", stream="stdin")

        def from_a_thread():
            for n in range(200):
                proc.write(f"t{n}\n")

        thread = threading.Thread(target=from_a_thread)
        thread.start()
        await wait_until(lambda: output.data().count(b"\n") == 206, what="every line")
        thread.join()
        lines = output.data().decode().splitlines()
        assert lines[:6] == ["ECHO", "a", "b", "c", "d", "e"]
        assert lines[6:] == [f"t{n}" for n in range(200)]


async def test_writing_to_a_stdin_that_is_not_redirected_is_a_clear_error():
    async with Manager() as manager:
        manager.load(ProcessConfig("web", child_cmd("sleep")))
        with pytest.raises(StreamNotRedirected, match="redirect_input") as excinfo:
            manager.send(1, b"data")
        assert isinstance(excinfo.value, OSError)
        with pytest.raises(StreamNotFound):
            manager.send(1, b"data", stream="ctrl")


async def test_custom_stream_is_fd_3_both_ways():
    async with Manager() as manager:
        output = Collector()
        manager.load(ProcessConfig("ctrl", child_cmd("echo-fd3"), custom_streams=["ctrl"]))
        proc = manager.get_process(1)
        stream = proc.streams["ctrl"]
        assert stream.id == 3
        proc.monitor_io("ctrl", output)
        stream.write(b"ECHO\n")
        await wait_until(lambda: output.data() == b"ECHO\n", what="fd 3 echo")
        manager.send(1, b"AGAIN\n", stream="ctrl")
        await wait_until(lambda: output.data() == b"ECHO\nAGAIN\n", what="second echo")
        assert output.messages[0][1]["event"] == "ctrl"


async def test_custom_channel_is_passed_after_the_custom_streams():
    ours, theirs = socket.socketpair()
    try:
        async with Manager() as manager:
            events = EventRecorder(manager)
            manager.load(ProcessConfig("chan", child_cmd("echo-fd3"), custom_channels=[theirs]))
            ours.setblocking(False)
            loop = manager.loop
            await loop.sock_sendall(ours, b"PING\n")
            reply = b""
            while not reply.endswith(b"\n"):
                reply += await loop.sock_recv(ours, 100)
            assert reply == b"PING\n"
            manager.stop_job("chan")
            await events.wait("exit")
    finally:
        ours.close()
        theirs.close()


async def test_invalid_utf8_passes_through_unchanged():
    raw = bytes.fromhex("ff fe 80 41 c3 28 0a")
    async with Manager() as manager:
        output = Collector()
        manager.monitor_io(output, "bin")
        manager.load(
            ProcessConfig(
                "bin", child_cmd("bytes", raw.hex()), redirect_output=["out"], numprocesses=1
            )
        )
        events = EventRecorder(manager)
        await events.wait("exit", pid=1)
        assert output.data() == raw


async def test_hundred_megabytes_reach_the_listener_and_the_log_file_byte_for_byte(tmp_path):
    size = 100 * 1024 * 1024
    log = tmp_path / "out.log"
    expected = hashlib.sha256()
    pattern = bytes(range(256)) * 256  # the child writes this pattern, 64 KiB at a time
    for offset in range(0, size, len(pattern)):
        expected.update(pattern[: min(len(pattern), size - offset)])
    received = hashlib.sha256()
    count = 0

    def listener(label, msg):
        nonlocal count
        received.update(msg["data"])
        count += len(msg["data"])

    async with Manager() as manager:
        events = EventRecorder(manager)
        manager.monitor_io(listener, "big")
        manager.load(
            ProcessConfig(
                "big",
                child_cmd("write", size),
                redirect_output=["out"],
                stdout_logfile=str(log),
                log_markers=False,  # byte for byte
                logfile_max_bytes=0,
                numprocesses=0,
            )
        )
        manager.commit("big")
        exit_msg = await events.wait("exit", timeout=60)
        assert exit_msg["exit_status"] == 0
        assert await manager.flush_logs()
        assert "log_dropped" not in events.names()
    assert count == size
    assert received.hexdigest() == expected.hexdigest()
    assert log.stat().st_size == size
    with log.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
    assert digest.hexdigest() == expected.hexdigest()


def test_output_not_redirected_goes_to_gaffers_own_stdout_and_stderr(tmp_path):
    script = tmp_path / "embed.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(CHILD.parent.parent.parent)!r})
        from gaffer import Manager, ProcessConfig
        from tests.helpers import child_cmd

        manager = Manager()
        manager.start()
        manager.events.subscribe("exit", lambda evtype, msg: manager.stop())
        manager.load(ProcessConfig("plain", child_cmd("print", "inherited", "stdout"),
                                   numprocesses=0))
        manager.load(ProcessConfig("err", child_cmd("write-err", "inherited stderr"),
                                   numprocesses=0))
        manager.commit("plain")
        manager.run()
        manager2 = Manager()
        manager2.start()
        manager2.events.subscribe("exit", lambda evtype, msg: manager2.stop())
        manager2.load(ProcessConfig("err", child_cmd("write-err", "inherited stderr"),
                                    numprocesses=0))
        manager2.commit("err")
        manager2.run()
    """)
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "inherited stdout\n"
    assert result.stderr == "inherited stderr"
