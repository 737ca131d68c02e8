"""The console output application: prefixed, timestamped, coloured lines."""

from __future__ import annotations

import logging
import re
import threading

from gaffer import Manager, ProcessConfig
from gaffer.console import ConsoleOutput, display_name, use_colors
from tests.helpers import EventRecorder, child_cmd

LINE = re.compile(r"^(\d\d:\d\d:\d\d) (\S+)\s*\| (.*)$")


async def run_console(tmp_path, colors=None, timestamps=True):
    path = tmp_path / "console.txt"
    with path.open("w") as stream:
        console = ConsoleOutput(stream=stream, colors=colors, timestamps=timestamps)
        manager = Manager()
        manager.start(apps=[console])
        events = EventRecorder(manager)
        manager.load(
            ProcessConfig(
                "web",
                child_cmd("outerr", "line one\nline two\npart", "oops\n"),
                redirect_output=["out", "err"],
                numprocesses=0,
            )
        )
        manager.load(
            ProcessConfig(
                "worker", child_cmd("print", "working"), numprocesses=0, redirect_output=["out"]
            ),
            sessionid="app",
        )
        manager.commit("web")
        manager.commit("app.worker")
        await events.wait_count("exit", 2)
        manager.stop()
        await manager.wait_stopped()
    return path.read_text()


async def test_console_prefixes_output_with_job_and_pid(tmp_path):
    text = await run_console(tmp_path, colors=False)
    lines = [LINE.match(line) for line in text.splitlines()]
    assert all(lines), text
    body = [(m.group(2), m.group(3)) for m in lines]
    assert ("web.1", "line one") in body
    assert ("web.1", "line two") in body
    assert ("web.1", "part") in body  # a last line without newline still shows
    assert ("web.1", "oops") in body
    assert ("app.worker.2", "working") in body
    assert any(
        who == "gaffer" and re.fullmatch(r"web\.1 spawned \(os pid \d+\)", what)
        for who, what in body
    )
    assert any(
        who == "gaffer" and what.startswith("web.1 exited with status 0") for who, what in body
    )
    assert "\x1b[" not in text


async def test_console_colours_each_job_when_asked(tmp_path):
    text = await run_console(tmp_path, colors=True)
    found = re.findall(r"\x1b\[(\d+)m\d\d:\d\d:\d\d (web|app\.worker)\.\d+ *\|", text)
    by_job = {job: {color for color, name in found if name == job} for _, job in found}
    assert set(by_job) == {"web", "app.worker"}
    assert all(len(colors) == 1 for colors in by_job.values())  # one colour per job
    assert by_job["web"] != by_job["app.worker"]


async def test_console_without_timestamps(tmp_path):
    text = await run_console(tmp_path, colors=False, timestamps=False)
    assert any(line.startswith("web.1 ") for line in text.splitlines())


def test_colours_only_on_a_terminal_and_never_with_no_color(monkeypatch, tmp_path):
    with (tmp_path / "f").open("w") as handle:
        assert use_colors(handle, None) is False
        assert use_colors(handle, True) is True

    class Tty:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colors(Tty(), None) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_colors(Tty(), None) is False


def test_display_name_hides_the_default_session():
    assert display_name("default.web") == "web"
    assert display_name("app.web") == "app.web"


async def test_console_shows_gaffer_warnings_when_asked(tmp_path):
    """logs=True: warnings of the ``gaffer`` loggers become ``gaffer`` lines, from the loop
    or from another thread; one that repeats an event the console shows is not said twice;
    nothing is added to logging once the console stops."""
    path = tmp_path / "console.txt"
    logger = logging.getLogger("gaffer.core.test")
    with path.open("w") as stream:
        console = ConsoleOutput(stream=stream, colors=False, logs=True)
        manager = Manager()
        manager.start(apps=[console])
        handlers = list(logging.getLogger("gaffer").handlers)
        logger.warning("disk %s is full", "/var/log")
        logger.info("not shown: below warning")
        logger.warning("web is flapping: retry in 7.0s", extra={"event": "flap"})
        logger.warning("shown: %s is not an event the console shows", "x", extra={"event": "x"})
        from_thread = threading.Thread(target=logger.error, args=("from a thread\nsecond line",))
        from_thread.start()
        from_thread.join()
        manager.stop()
        await manager.wait_stopped()
        assert len(logging.getLogger("gaffer").handlers) == len(handlers) - 1
        logger.warning("after the stop")
    lines = [LINE.match(line) for line in path.read_text().splitlines()]
    said = [m.group(3) for m in lines if m and m.group(2) == "gaffer"]
    assert said == [
        "disk /var/log is full",
        "shown: x is not an event the console shows",
        "from a thread",
    ], path.read_text()
    assert "    second line" in path.read_text().splitlines()


async def test_console_leaves_logging_alone_by_default(tmp_path):
    path = tmp_path / "console.txt"
    with path.open("w") as stream:
        manager = Manager()
        before = list(logging.getLogger("gaffer").handlers)
        manager.start(apps=[ConsoleOutput(stream=stream)])
        assert logging.getLogger("gaffer").handlers == before
        logging.getLogger("gaffer.core.test").warning("for the program's own logging")
        manager.stop()
        await manager.wait_stopped()
    assert "for the program's own logging" not in path.read_text()
