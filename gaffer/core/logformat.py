"""How output is written into a log: a ``Writer`` per process and stream, its line format,
and the lifecycle markers gaffer writes among the lines.

Formats (``log_format``, ``log_timestamps``, and the console of gafferd):

* ``text``: the bytes as the process wrote them (the fast path: nothing is copied);
  with ``log_timestamps`` every line starts with the time (``2026-11-23T16:20:01.123 ``);
* ``json``: one JSON object a line, ``{"ts", "job", "pid", "stream", "line"}``; a line is
  written once it ends (or at the process's exit, or at 64 KiB);
* console (gafferd's stdout): every line starts with ``web.3 | `` (the job, without the
  ``default.`` session, and the process's pid), names padded to a common width.

Markers (``spawned pid 4242``, ``exited with 3``, ``killed by SIGKILL after 10 s``) are
written in the same order as the output around them, each on a line of its own, with the
time: ``2026-11-23T16:20:01.123 [gaffer] web.3: exited with 3`` (JSON: ``"stream":
"gaffer"``).

A ``Writer`` is called on the loop (``write``, ``marker``); ``render`` runs in the sink's
writer thread, one batch at a time, so the line state needs no lock.
"""

from __future__ import annotations

import datetime
import json
import signal
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gaffer.core.logfile import LogSink

FORMATS = ("text", "json")
MARKER = "gaffer"  # the stream of a marker in JSON logs
MAX_LINE = 64 * 1024  # a JSON line never ended is written at this size


def display_name(job: str) -> str:
    """``default.web`` shows as ``web``; other sessions keep their prefix."""
    return job[len("default.") :] if job.startswith("default.") else job


def stamp(when: float) -> str:
    """``2026-11-23T16:20:01.123``: local time, milliseconds (log_timestamps)."""
    return datetime.datetime.fromtimestamp(when).isoformat(timespec="milliseconds")


def json_stamp(when: float) -> str:
    """``2026-11-23T16:20:01.123+01:00``: local time with its offset (JSON logs)."""
    return datetime.datetime.fromtimestamp(when).astimezone().isoformat(timespec="milliseconds")


class Writer:
    """One process's stream into a sink: ``write(bytes)`` is what its pipe reader calls."""

    __slots__ = (
        "_at_line_start", "_partial", "_sink", "console", "fmt", "job", "pid", "raw",
        "reader", "stream", "timed", "timestamps",
    )  # fmt: skip

    def __init__(
        self,
        sink: LogSink,
        pid: int | None,
        job: str = "",
        stream: str = "stdout",
        fmt: str = "text",
        timestamps: bool = False,
    ) -> None:
        self._sink = sink
        self.pid = pid
        self.job = job
        self.stream = stream
        self.fmt = fmt
        self.timestamps = timestamps
        self.console = sink.target.kind == "console"
        self.raw = fmt == "text" and not timestamps and not self.console
        self.timed = not self.raw  # its lines need the time they were read
        self._at_line_start = True
        self._partial = b""  # json: the line being written
        self.reader: Any = None  # the PipeReader feeding it, paused when the sink is full

    def write(self, data: bytes) -> None:
        self._sink._submit(self, data, time.time() if self.timed else 0.0)

    def marker(self, text: str) -> None:
        """A lifecycle line, written after what the process wrote so far."""
        self._sink._submit(self, text, time.time())

    @property
    def who(self) -> str:
        return f"{display_name(self.job)}.{self.pid}"

    # -- in the sink's writer thread ---------------------------------------------------------
    def render(self, data: bytes | str, when: float) -> bytes:
        """What to write for ``data`` (output, or a marker when a str)."""
        sink = self._sink
        if isinstance(data, str):
            return self._marker(data, when)
        if self.fmt == "json":
            return self._json(data, when)
        mid = sink.mid_line
        out = []
        if mid is not None and mid is not self:  # another process left a line unfinished
            out.append(b"\n")
            mid._at_line_start = True
        prefix = self._prefix(when)
        lines = data.split(b"\n")
        last = len(lines) - 1
        for index, line in enumerate(lines):
            if index == last and not line:
                break  # data ended with a newline
            if self._at_line_start:
                out.append(prefix)
            out.append(line)
            if index < last:
                out.append(b"\n")
            self._at_line_start = index < last
        sink.mid_line = None if self._at_line_start else self
        return b"".join(out)

    def _prefix(self, when: float) -> bytes:
        parts = []
        if self.timestamps:
            parts.append(stamp(when) + " ")
        if self.console:
            sink = self._sink
            who = self.who
            sink.width = max(sink.width, len(who))
            parts.append(who.ljust(sink.width) + " | ")
        return "".join(parts).encode()

    def _json(self, data: bytes, when: float) -> bytes:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE:
            lines.append(self._partial)
            self._partial = b""
        if not lines:
            return b""
        ts = json_stamp(when)
        return b"".join(self._json_line(ts, self.stream, line) for line in lines)

    def _json_line(self, ts: str, stream: str, line: bytes | str) -> bytes:
        text = line if isinstance(line, str) else line.rstrip(b"\r").decode("utf-8", "replace")
        record = {"ts": ts, "job": self.job, "pid": self.pid, "stream": stream, "line": text}
        return json.dumps(record).encode() + b"\n"

    def _marker(self, text: str, when: float) -> bytes:
        """A marker on a line of its own: what is unfinished of this process's line is
        ended first."""
        sink = self._sink
        if self.fmt == "json":
            head = b""
            if self._partial:
                head = self._json_line(json_stamp(when), self.stream, self._partial)
                self._partial = b""
            return head + self._json_line(json_stamp(when), MARKER, text)
        head = b"\n" if sink.mid_line is not None else b""
        if sink.mid_line is not None:
            sink.mid_line._at_line_start = True
            sink.mid_line = None
        if sink.target.kind == "syslog":
            return head + f"[gaffer] {text}\n".encode()
        if self.console:
            self._at_line_start = True
            return head + self._prefix(when) + f"[gaffer] {text}\n".encode()
        return head + f"{stamp(when)} [gaffer] {self.who}: {text}\n".encode()


# -- what the markers say -----------------------------------------------------------------------
def spawned(os_pid: int | None) -> str:
    return f"spawned pid {os_pid}"


def exited(exit_status: int, term_signal: int, stopped_for: float | None) -> str:
    """``exited with 3``; ``killed by SIGSEGV``; once gaffer stopped it (``stopped_for``
    seconds ago): ``stopped by SIGTERM``, ``killed by SIGKILL after 10 s``."""
    if not term_signal:
        return f"exited with {exit_status}"
    name = _signal_name(term_signal)
    if stopped_for is None:
        return f"killed by {name}"
    if term_signal == signal.SIGKILL:
        return f"killed by {name} after {round(stopped_for, 1):g} s"
    return f"stopped by {name}"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
