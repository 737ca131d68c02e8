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

* a path: appended to, rotated by size and time within a disk budget (logrotate.py);
* ``"-"``: gaffer's own standard output; the console (gafferd's stdout, each line
  prefixed with the process's name);
* ``"syslog"``, ``"syslog:FACILITY"``, ``"syslog:FACILITY@ADDRESS"``: one datagram per
  line to ``/dev/log`` (or ADDRESS: a unix socket path, or ``host:port`` for UDP),
  tagged with the job name.

What is written for each chunk (timestamps, JSON lines, prefixes, lifecycle markers) is
each process's ``Writer``'s (logformat.py), done in the writer thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import errno
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from gaffer.core.logformat import Writer
from gaffer.core.logrotate import LogFile, write_all
from gaffer.core.logtarget import SYSLOG_INFO, SYSLOG_MAX_LINE, LogTarget
from gaffer.core.options import DEFAULT_BACKUPS, DEFAULT_BUFFER_BYTES, DEFAULT_MAX_BYTES

__all__ = ["LogSink", "LogTarget", "Writer"]

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
        rotate: str | None = None,
        max_total: int = 0,
        on_drop: DropReport | None = None,
    ) -> None:
        self.loop = loop
        self.target = target
        self.tag = tag
        self.max_bytes = max_bytes
        self.backups = backups
        self.rotate = rotate
        self.max_total = max_total
        self.buffer_bytes = buffer_bytes
        self._on_drop = on_drop
        self._lock = threading.Lock()
        # (writer, output bytes or a marker's text, the time it was read)
        self._pending: deque[tuple[Writer, bytes | str, float]] = deque()
        self._buffered = 0
        self._scheduled = False
        self._delayed: asyncio.TimerHandle | None = None  # a flush waiting for FLUSH_DELAY
        self._reopen = False
        self._closed = False
        self._idle = threading.Event()
        self._idle.set()
        self._file = (
            LogFile(target.path, max_bytes, backups, rotate, max_total)
            if target.kind == "file" and target.path is not None
            else None
        )
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
        # writer thread only: the writer whose line is unfinished at the end of the target
        # (None: it ends with a newline), and the width of console names
        self.mid_line: Writer | None = None
        self.width = 0

    def open(self) -> None:
        """Open a file target now; raises ValueError naming the path when it cannot."""
        if self._file is None:
            return
        try:
            self._file.open()
        except OSError as exc:
            raise ValueError(
                f"cannot open log file {self.target.path!r}: {exc.strerror or exc}"
            ) from None

    def configure(self, max_bytes: int, backups: int, rotate: str | None, max_total: int) -> None:
        """New rotation settings (a job updated), for the next writes."""
        with self._lock:
            self.max_bytes, self.backups, self.rotate, self.max_total = (
                max_bytes,
                backups,
                rotate,
                max_total,
            )
            if self._file is not None:
                self._file.configure(max_bytes, backups, rotate, max_total)

    def writer(
        self,
        pid: int | None = None,
        job: str = "",
        stream: str = "stdout",
        fmt: str = "text",
        timestamps: bool = False,
    ) -> Writer:
        """A writer for one stream of one process: it keeps its own line state."""
        return Writer(self, pid, job, stream, fmt, timestamps)

    # -- called on the loop ----------------------------------------------------------------
    def _submit(self, writer: Writer, data: bytes | str, when: float) -> None:
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
                self._pending.append((writer, data, when))
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
                for writer, data, when in batch:
                    self._write_syslog_safely(writer, data, when)
            else:
                self._write_chunks(self._render(batch))
            with self._lock:
                self._buffered -= sum(len(item[1]) for item in batch)
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

    def _render(self, batch: list[tuple[Writer, bytes | str, float]]) -> list[bytes]:
        """The bytes to write for a batch: output as it came for the plain text format
        (nothing copied), the writer's rendering for the other formats and markers."""
        chunks = []
        for writer, data, when in batch:
            if writer.raw and data.__class__ is bytes:
                chunks.append(data)
                self.mid_line = None if data.endswith(b"\n") else writer
            else:
                chunk = writer.render(data, when)
                if chunk:
                    chunks.append(chunk)
        return chunks

    def _write_syslog_safely(self, writer: Writer, data: bytes | str, when: float) -> None:
        if not writer.raw or isinstance(data, str):
            data = writer.render(data, when)
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
        log = self._file
        if log is not None and log.fd >= 0 and log.rotate_every and log.due():
            self._rotate_safely()
        index = 0
        while index < len(chunks):
            run = [chunks[index]]
            size = len(run[0])
            index += 1
            while (
                index < len(chunks)
                and len(run) < WRITEV_MAX
                and not (log is not None and log.full(size + len(chunks[index])))
            ):
                run.append(chunks[index])
                size += len(chunks[index])
                index += 1
            try:
                if log is None:
                    self.written_bytes += write_all(self.target.fd, run, size)
                    continue
                if log.fd < 0:
                    log.open()
                if log.full(size):
                    log.rotate()
                self.written_bytes += log.write(run, size)
            except OSError as exc:
                self._failed(size, exc)

    def _rotate_safely(self) -> None:
        """The time-based rotation: a failure (permissions...) is warned about, and the
        output still written (to the file, or counted as dropped if it cannot be)."""
        try:
            self._file.rotate()  # type: ignore[union-attr]
        except OSError as exc:
            self._warn(exc)

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
        if self._file is not None:
            self._file.close()
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
