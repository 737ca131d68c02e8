"""Log sinks for process output: files with rotation, gaffer's own stdout, syslog.

A slow or full disk must never block the loop, nor the child for long. The loop only
appends chunks to a sink's buffer; a small pool of writer threads does the blocking
writes, each sink in order. Flow control, per sink:

* below ``buffer_bytes`` buffered, nothing happens;
* above it, the pipes feeding the sink are paused: the child writes at the speed of the
  disk, as it would writing to a file itself (a fast writer on a healthy disk loses
  nothing);
* if the sink stays above it for ``STALL_TIMEOUT`` (a slow or stuck disk), the pipes are
  read again and what does not fit is dropped, counted and reported (``on_drop``, at most
  once a second) until the backlog has been written;
* whatever happens, a sink never holds more than twice ``buffer_bytes`` (or one chunk,
  when a single read is bigger than that).

When a write fails (disk full, quota, I/O error) the data is dropped and counted too, and
one warning a minute goes to gaffer's own log.

Targets (the ``stdout_logfile`` / ``stderr_logfile`` options):

* a path: appended to, rotated at ``max_bytes`` into ``path.1`` ... ``path.<backups>``;
* ``"-"``: gaffer's own standard output;
* ``"syslog"``, ``"syslog:FACILITY"``, ``"syslog:FACILITY@ADDRESS"``: one datagram per
  line to ``/dev/log`` (or ADDRESS: a unix socket path, or ``host:port`` for UDP),
  tagged with the job name.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import errno
import logging
import os
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from gaffer.core.logtarget import SYSLOG_INFO, SYSLOG_MAX_LINE, LogTarget
from gaffer.core.options import DEFAULT_BACKUPS, DEFAULT_BUFFER_BYTES, DEFAULT_MAX_BYTES

logger = logging.getLogger(__name__)

WRITER_THREADS = 4
DROP_REPORT_INTERVAL = 1.0
STALL_TIMEOUT = 1.0
# a few small chunks into an idle buffer wake a writer thread this much later, so that
# 200 processes printing a line every 0.1 s each cost 100 wake-ups a second, not 2,000
# (gaffer's CPU: 11% -> 5%, docs/performance.md); FLUSH_NOW_BYTES buffered wake it at
# once, so that a fast writer never waits
FLUSH_DELAY = 0.01
FLUSH_NOW_BYTES = 64 * 1024
WRITEV_MAX = 256  # chunks per writev (IOV_MAX is 1024)
FAILURE_WARNING_INTERVAL = 60.0
DropReport = Callable[["LogSink", int, int], None]  # (sink, bytes, chunks) since last report


_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _writers() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=WRITER_THREADS, thread_name_prefix="gaffer-log"
            )
        return _executor


class LogSink:
    """Ordered, bounded, non-blocking writes to one target, done in writer threads."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        target: LogTarget,
        *,
        tag: str = "gaffer",
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        timestamps: bool = False,
        on_drop: DropReport | None = None,
    ) -> None:
        self.loop = loop
        self.target = target
        self.tag = tag
        self.max_bytes = max_bytes
        self.backups = backups
        self.buffer_bytes = buffer_bytes
        self.timestamps = timestamps
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self._pending: deque[tuple[Writer, bytes]] = deque()
        self._buffered = 0
        self._scheduled = False
        self._delayed: asyncio.TimerHandle | None = None  # a flush waiting for FLUSH_DELAY
        self._reopen = False
        self._closed = False
        self._idle = threading.Event()
        self._idle.set()
        self._fd = -1
        self._size = 0
        self._regular = True
        self._sock: socket.socket | None = None
        self.dropped_bytes = 0  # in total, since the sink was created
        self.dropped_chunks = 0
        self._unreported = [0, 0]  # bytes, chunks since the last report
        self._last_report = 0.0
        self._last_warning = -FAILURE_WARNING_INTERVAL
        self._report_timer: asyncio.TimerHandle | None = None
        self._paused: list[Writer] = []  # writers whose pipe is paused (loop side)
        self._stall_timer: asyncio.TimerHandle | None = None
        self._dropping = False  # stalled: drop beyond the buffer instead of pausing
        self._signal_drained = False  # the writer thread must tell the loop when drained
        self.written_bytes = 0
        self.users = 0
        self.jobs: set[str] = set()

    def open(self) -> None:
        """Open a file target now; raises ValueError naming the path when it cannot."""
        if self.target.kind != "file":
            return
        try:
            self._open_file()
        except OSError as exc:
            raise ValueError(
                f"cannot open log file {self.target.path!r}: {exc.strerror or exc}"
            ) from None

    def writer(self, pid: int | None = None) -> Writer:
        """A writer for one process: it keeps its own line state for timestamps."""
        return Writer(self, pid)

    # -- called on the loop ----------------------------------------------------------------
    def _submit(self, writer: Writer, data: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            size = self._buffered + len(data)
            over = size > self.buffer_bytes
            # the hard cap (twice the buffer) always admits one chunk into an empty buffer
            capped = size > 2 * self.buffer_bytes and self._buffered > 0
            dropped = capped or (over and (self._dropping or writer.reader is None))
            if dropped:
                self._count_drop(len(data))
            else:
                self._pending.append((writer, data))
                self._buffered = size
                if not self._scheduled:
                    self._scheduled = True
                    self._idle.clear()
                    if size < FLUSH_NOW_BYTES:
                        self._delayed = self.loop.call_later(FLUSH_DELAY, self._flush_now)
                    else:
                        _writers().submit(self._flush)
                elif self._delayed is not None and size >= FLUSH_NOW_BYTES:
                    self._flush_now()
            if over:
                self._signal_drained = True
        if dropped:
            self._schedule_report()
        elif over:
            self._pause(writer)

    def _flush_now(self) -> None:
        """Wake a writer thread for a flush that was waiting for FLUSH_DELAY (loop)."""
        if self._delayed is not None:
            self._delayed.cancel()
            self._delayed = None
            _writers().submit(self._flush)

    def _pause(self, writer: Writer) -> None:
        """The buffer is full: stop reading this writer's pipe until it drains (loop)."""
        if writer.reader is None or writer in self._paused:
            return
        writer.reader.pause()
        self._paused.append(writer)
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(STALL_TIMEOUT, self._stalled)

    def _stalled(self) -> None:
        """Still full after STALL_TIMEOUT: the target is slow; read again, drop (loop)."""
        self._stall_timer = None
        if not self._paused:
            return
        self._dropping = True
        logger.warning(
            "log %s of %s is not keeping up: output beyond %d bytes is dropped until it catches up",
            self.target.path or self.target.key,
            self.tag,
            self.buffer_bytes,
        )
        self._resume_all()

    def _drained(self) -> None:
        """The writer thread caught up (loop)."""
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._dropping = False
        self._resume_all()

    def _resume_all(self) -> None:
        paused, self._paused = self._paused, []
        for writer in paused:
            if writer.reader is not None:
                writer.reader.resume()

    def reopen(self) -> None:
        """Close and reopen the file at its path (after logrotate moved it)."""
        with self._lock:
            self._reopen = True
            if not self._scheduled and not self._closed:
                self._scheduled = True
                self._idle.clear()
                _writers().submit(self._flush)

    def close(self, wait: bool = False) -> None:
        """Stop accepting data; what is buffered is still written."""
        if self._report_timer is not None:
            self._report_timer.cancel()
            self._report()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._resume_all()
        self._flush_now()  # closing may wait for the flush: it must not wait for the loop
        with self._lock:
            self._closed = True
            if not self._scheduled:
                self._close_target()
                self._idle.set()
        if wait:
            self.flush(10)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait (in a thread, not on the loop) until the buffer is written."""
        return self._idle.wait(timeout)

    def _schedule_report(self) -> None:
        """Report drops now, or when a second has passed since the last report (loop)."""
        if self._report_timer is not None or self._on_drop is None:
            return
        delay = max(0.0, self._last_report + DROP_REPORT_INTERVAL - time.monotonic())
        self._report_timer = self.loop.call_later(delay, self._report)

    def _report(self) -> None:
        self._report_timer = None
        with self._lock:
            report = (self._unreported[0], self._unreported[1])
            self._unreported = [0, 0]
            self._last_report = time.monotonic()
        if report[1] and self._on_drop is not None:
            try:
                self._on_drop(self, *report)
            except Exception:
                logger.exception("drop report of %s failed", self.tag)

    def _count_drop(self, size: int) -> None:
        self.dropped_bytes += size
        self.dropped_chunks += 1
        self._unreported[0] += size
        self._unreported[1] += 1

    # -- in a writer thread ----------------------------------------------------------------
    def _flush(self) -> None:
        while True:
            with self._lock:
                reopen, self._reopen = self._reopen, False
                batch = list(self._pending)
                self._pending.clear()
                if not batch and not reopen:
                    self._scheduled = False
                    if self._closed:
                        self._close_target()
                    self._idle.set()
                    return
            if reopen:
                self._close_target()
            if self.target.kind == "syslog":
                for writer, data in batch:
                    self._write_syslog_safely(writer, data)
            else:
                chunks = [
                    writer._stamp(data) if self.timestamps else data for writer, data in batch
                ]
                self._write_chunks(chunks)
            with self._lock:
                self._buffered -= sum(len(data) for _, data in batch)
                drained = self._signal_drained and self._buffered <= self.buffer_bytes // 2
                if drained:
                    self._signal_drained = False
            if drained:
                self._notify_loop(self._drained)

    def _notify_loop(self, callback: Callable[[], None]) -> None:
        try:
            self.loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed: nobody to tell
            pass

    def _write_syslog_safely(self, writer: Writer, data: bytes) -> None:
        if self.timestamps:
            data = writer._stamp(data)
        try:
            self._write_syslog(writer, data)
        except OSError as exc:
            self._failed(len(data), exc)

    def _failed(self, size: int, exc: OSError) -> None:
        with self._lock:
            self._count_drop(size)
        self._warn(exc)
        self._notify_loop(self._schedule_report)

    def _write_chunks(self, chunks: list[bytes]) -> None:
        """Write ``chunks`` in order, several per ``writev`` (one system call, one wait for
        the GIL), never letting a run cross the rotation size."""
        index = 0
        while index < len(chunks):
            run = [chunks[index]]
            size = len(run[0])
            index += 1
            while (
                index < len(chunks)
                and len(run) < WRITEV_MAX
                and not self._must_rotate(size + len(chunks[index]))
            ):
                run.append(chunks[index])
                size += len(chunks[index])
                index += 1
            try:
                if self.target.kind == "fd":
                    fd = self.target.fd
                else:
                    if self._fd < 0:
                        self._open_file()
                    if self._must_rotate(size):
                        self._rotate()
                    fd = self._fd
                self._writev_all(fd, run, size)
            except OSError as exc:
                self._failed(size, exc)

    def _must_rotate(self, extra: int) -> bool:
        return bool(
            self.target.kind == "file"
            and self._regular
            and self.max_bytes
            and self._size
            and self._size + extra > self.max_bytes
        )

    def _writev_all(self, fd: int, run: list[bytes], size: int) -> None:
        written = os.writev(fd, run)
        self._size += written
        self.written_bytes += written
        if written == size:
            return
        rest = memoryview(b"".join(run))[written:]  # a short write: finish it chunk-free
        while rest:
            written = os.write(fd, rest)
            rest = rest[written:]
            self._size += written
            self.written_bytes += written

    def _open_file(self) -> None:
        path = self.target.path
        assert path is not None
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        # O_NONBLOCK: a FIFO nobody reads fails here instead of hanging; writes then block
        # (in a writer thread) as on any file
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
        self._fd = os.open(path, flags, 0o644)
        os.set_blocking(self._fd, True)
        info = os.fstat(self._fd)
        self._size = info.st_size
        self._regular = stat.S_ISREG(info.st_mode)  # only regular files are rotated

    def _rotate(self) -> None:
        path = self.target.path
        assert path is not None
        self._close_target()
        if self.backups > 0:
            for index in range(self.backups - 1, 0, -1):
                source = f"{path}.{index}"
                if os.path.exists(source):
                    os.replace(source, f"{path}.{index + 1}")
            os.replace(path, f"{path}.1")
        else:
            os.truncate(path, 0)
        self._open_file()

    def _write_syslog(self, writer: Writer, data: bytes) -> None:
        if self._sock is None:
            family = socket.AF_INET if self.target.host else socket.AF_UNIX
            if self.target.host and ":" in self.target.host[0]:
                family = socket.AF_INET6
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.connect(self.target.host or self.target.path)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        pri = self.target.facility * 8 + SYSLOG_INFO
        stamp = datetime.datetime.now().strftime("%b %d %H:%M:%S").encode()
        header = b"<%d>%s %s[%d]: " % (pri, stamp, self.tag.encode(), writer.pid or 0)
        for line in data.splitlines():
            if line:
                self._sock.send(header + line[:SYSLOG_MAX_LINE])
                self.written_bytes += len(line)

    def _close_target(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _warn(self, exc: OSError) -> None:
        now = time.monotonic()
        if now - self._last_warning < FAILURE_WARNING_INTERVAL:
            return
        self._last_warning = now
        where = self.target.path or self.target.host or self.target.kind
        reason = (
            "disk full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror or str(exc)
        )
        logger.warning(
            "cannot write the output of %s to %s: %s; dropping it (%d bytes so "
            "far), next warning in a minute",
            self.tag,
            where,
            reason,
            self.dropped_bytes,
        )

    @property
    def buffered(self) -> int:
        return self._buffered


class Writer:
    """One process's handle on a sink: ``write(bytes)`` is what a pipe reader calls."""

    __slots__ = ("_at_line_start", "_sink", "pid", "reader")

    def __init__(self, sink: LogSink, pid: int | None) -> None:
        self._sink = sink
        self.pid = pid
        self._at_line_start = True
        self.reader: Any = None  # the PipeReader feeding it, paused when the sink is full

    def write(self, data: bytes) -> None:
        self._sink._submit(self, data)

    def _stamp(self, data: bytes) -> bytes:
        """Prefix every line that starts in ``data`` with the time (writer thread only)."""
        prefix = datetime.datetime.now().isoformat(timespec="milliseconds").encode() + b" "
        lines = data.split(b"\n")
        out = []
        for index, line in enumerate(lines):
            last = index == len(lines) - 1
            if last and not line:
                break  # data ended with a newline
            if self._at_line_start:
                out.append(prefix)
            out.append(line)
            if not last:
                out.append(b"\n")
            self._at_line_start = not last
        if data.endswith(b"\n"):
            self._at_line_start = True
        return b"".join(out)


class SinkRegistry:
    """The log sinks of a manager, shared by target and counted by users (a job holds one
    reference while its config names the target, each process one while it runs)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_drop: DropReport) -> None:
        self._loop = loop
        self._on_drop = on_drop
        self._sinks: dict[str, LogSink] = {}

    def acquire(
        self,
        target: LogTarget,
        job: str,
        *,
        max_bytes: int,
        backups: int,
        buffer_bytes: int,
        timestamps: bool,
    ) -> LogSink:
        sink = self._sinks.get(target.key)
        if sink is None:
            sink = LogSink(
                self._loop,
                target,
                tag=job,
                max_bytes=max_bytes,
                backups=backups,
                buffer_bytes=buffer_bytes,
                timestamps=timestamps,
                on_drop=self._on_drop,
            )
            sink.open()  # a path that cannot be written is an error at load, not later
            self._sinks[target.key] = sink
        elif job not in sink.jobs and (sink.max_bytes, sink.backups, sink.timestamps) != (
            max_bytes,
            backups,
            timestamps,
        ):
            logger.warning(
                "%s shares %s with %s: the log settings of %s apply",
                job,
                target.path or target.key,
                ", ".join(sorted(sink.jobs)),
                sink.tag,
            )
        sink.users += 1
        sink.jobs.add(job)
        return sink

    def retain(self, sink: LogSink) -> None:
        sink.users += 1

    def release(self, sink: LogSink) -> None:
        sink.users -= 1
        if sink.users <= 0 and self._sinks.get(sink.target.key) is sink:
            del self._sinks[sink.target.key]
            sink.close()

    def reopen(self) -> None:
        for sink in self._sinks.values():
            sink.reopen()

    def close(self) -> None:
        for sink in list(self._sinks.values()):
            sink.close()
        self._sinks.clear()

    def flush_now(self, timeout: float) -> bool:
        """Write what waits for FLUSH_DELAY now, and wait until every sink is written
        (blocking the loop: for a manager about to exec, handover.py)."""
        for sink in list(self._sinks.values()):
            sink._flush_now()
        return self.flush(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every sink is written (blocking: call it off the loop)."""
        deadline = time.monotonic() + timeout
        return all(
            sink.flush(max(0.0, deadline - time.monotonic())) for sink in list(self._sinks.values())
        )

    def __iter__(self):
        return iter(list(self._sinks.values()))
