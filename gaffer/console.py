"""``ConsoleOutput``: a foreman-style view of a manager, as an application.

::

    16:20:01 web.1   | Serving HTTP on 0.0.0.0 port 8000
    16:20:01 gaffer  | web.1 spawned (os pid 4242)
    16:20:03 worker.2| ...

One colour per job (on a terminal, unless ``NO_COLOR`` is set), every line timestamped and
prefixed by the job name and the process's pid. Lines are written through a log sink, so
a terminal that does not keep up (paused, slow) never blocks the loop: what does not fit
in its buffer is dropped and counted. With ``logs=True`` the engine's warnings show as
``gaffer`` lines too (for a program that has no logging of its own, like ``gaffer
dev:start``), except those that repeat an event the view already shows.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import sys
from typing import IO, Any

from gaffer.core.logfile import LogSink, LogTarget

COLORS = ("36", "33", "32", "35", "34", "31", "96", "93", "92", "95")  # ANSI foregrounds
SYSTEM_COLOR = "1"
DEFAULT_EVENTS = (
    "load", "unload", "start", "stop", "spawn", "spawn_error", "exit", "reap", "flap",
    "fatal", "update", "reload", "log_dropped",
)  # fmt: skip
BUFFER_BYTES = 4 * 1024 * 1024


def use_colors(stream: IO[Any], colors: bool | None) -> bool:
    if colors is not None:
        return colors
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def display_name(job: str) -> str:
    """``default.web`` shows as ``web``; other sessions keep their prefix."""
    return job[len("default.") :] if job.startswith("default.") else job


class ConsoleOutput:
    """Prints manager events and process output, one line each.

    Args:
        stream: where to write (default: gaffer's stdout).
        output: show process output.
        events: the events to show (default: lifecycle events; None: all).
        colors: force colours on or off (default: on a terminal, unless NO_COLOR).
        timestamps: start each line with the time.
        logs: show the warnings logged by gaffer (``gaffer`` logger) while it runs.
    """

    def __init__(
        self,
        stream: IO[Any] | None = None,
        output: bool = True,
        events: tuple[str, ...] | None = DEFAULT_EVENTS,
        colors: bool | None = None,
        timestamps: bool = True,
        logs: bool = False,
    ) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._output = output
        self._events = events
        self._colors = use_colors(self._stream, colors)
        self._timestamps = timestamps
        self._palette: dict[str, str] = {}
        self._partial: dict[tuple[int, str], bytes] = {}
        self._width = len("gaffer")
        self._manager: Any = None
        self._sink: LogSink | None = None
        self._log_handler = _LogLines(self) if logs else None

    # -- application -------------------------------------------------------------------------
    def start(self, loop: Any, manager: Any) -> None:
        self._manager = manager
        self._loop = loop
        self._stream.flush()
        self._sink = LogSink(
            loop,
            LogTarget("fd", fd=self._stream.fileno()),
            tag="console",
            buffer_bytes=BUFFER_BYTES,
        )
        self._writer = self._sink.writer()
        for event in self._events or (".",):
            manager.events.subscribe(event, self._on_event)
        if self._output:
            manager.monitor_io(self._on_output)
        if self._log_handler is not None:
            logging.getLogger("gaffer").addHandler(self._log_handler)

    def stop(self) -> None:
        manager = self._manager
        if manager is None:
            return
        if self._log_handler is not None:
            logging.getLogger("gaffer").removeHandler(self._log_handler)
        for event in self._events or (".",):
            manager.events.unsubscribe(event, self._on_event)
        if self._output:
            manager.unmonitor_io(self._on_output)
        for (pid, _label), rest in list(self._partial.items()):
            self._emit(self._job_of(pid), pid, rest)
        self._partial.clear()
        if self._sink is not None:
            self._sink.close(wait=True)
            self._sink = None
        self._manager = None

    def restart(self) -> None:
        """Nothing to do: the view follows the manager as it is."""

    # -- formatting --------------------------------------------------------------------------
    def _color(self, job: str) -> str:
        color = self._palette.get(job)
        if color is None:
            color = self._palette[job] = COLORS[len(self._palette) % len(COLORS)]
        return color

    def _line(self, who: str, color: str, text: str) -> bytes:
        self._width = max(self._width, len(who))
        prefix = who.ljust(self._width) + " |"
        if self._timestamps:
            prefix = datetime.datetime.now().strftime("%H:%M:%S ") + prefix
        if self._colors:
            prefix = f"\x1b[{color}m{prefix}\x1b[0m"
        return f"{prefix} {text}\n".encode(errors="replace")

    def _write(self, data: bytes) -> None:
        if self._sink is not None:
            self._writer.write(data)

    def _emit(self, job: str, pid: int, data: bytes) -> None:
        text = data.decode("utf-8", errors="replace").rstrip("\r")
        who = f"{display_name(job)}.{pid}"
        self._write(self._line(who, self._color(job), text))

    def _job_of(self, pid: int) -> str:
        proc = self._manager.running.get(pid) if self._manager else None
        return proc.name if proc is not None else "?"

    def _log_line(self, text: str) -> None:
        self._write(self._line("gaffer", SYSTEM_COLOR, text))

    # -- listeners ---------------------------------------------------------------------------
    def _on_output(self, label: str, msg: dict) -> None:
        key = (msg["pid"], label)
        data = self._partial.pop(key, b"") + msg["data"]
        lines = data.split(b"\n")
        for line in lines[:-1]:
            self._emit(msg["name"], msg["pid"], line)
        if lines[-1]:
            self._partial[key] = lines[-1]

    def _on_event(self, evtype: str, msg: dict) -> None:
        job = msg.get("name", "")
        name = display_name(job)
        pid = msg.get("pid")
        if evtype == "exit":
            for key in [key for key in self._partial if key[0] == pid]:
                self._emit(job, pid, self._partial.pop(key))
        text = describe_event(evtype, msg, name)
        if text is None:
            return
        self._write(self._line("gaffer", SYSTEM_COLOR if job == "" else self._color(job), text))


class _LogLines(logging.Handler):
    """Warnings of the ``gaffer`` logger as console lines, written on the loop whatever
    thread logged them; a record that repeats an event (``extra={"event": ...}``) the
    console shows is skipped."""

    def __init__(self, console: ConsoleOutput) -> None:
        super().__init__(logging.WARNING)
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        console = self._console
        event = getattr(record, "event", None)
        if event is not None and (console._events is None or event in console._events):
            return
        try:
            text = self.format(record).replace("\n", "\n    ")
        except Exception:
            self.handleError(record)
            return
        loop = console._loop
        if asyncio._get_running_loop() is loop or not loop.is_running():
            console._log_line(text)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(console._log_line, text)


def describe_event(evtype: str, msg: dict, name: str) -> str | None:
    """A console line for an event (None: nothing to show, another line says it)."""
    pid = msg.get("pid")
    who = f"{name}.{pid}" if pid is not None else name
    if evtype == "spawn":
        return f"{who} spawned (os pid {msg.get('os_pid')})"
    if evtype == "exit":
        if msg.get("term_signal"):
            return f"{who} killed by signal {msg['term_signal']}"
        return f"{who} exited with status {msg.get('exit_status')}"
    if evtype == "reap":
        return f"{who} reaped (scaled down)"
    if evtype == "flap":
        retry = msg.get("retry_in")
        return None if retry is None else f"{name} is flapping: retry in {retry}s"
    if evtype == "fatal":
        return f"{name} gave up (fatal): {msg.get('reason')}"
    if evtype == "spawn_error":
        return f"{name} cannot start: {msg.get('error')}"
    if evtype == "update":
        return f"{name} updated: {msg.get('numprocesses')} process(es)"
    if evtype == "log_dropped":
        return f"{name} log {msg.get('target')}: {msg.get('dropped_bytes')} bytes dropped"
    return f"{name} {evtype}"
