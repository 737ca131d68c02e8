"""Non-blocking pipe ends watched by the loop: a reader and a writer.

The reader takes big chunks (up to 1 MiB) and hands them on untouched: no line splitting,
no decoding, nothing per byte in Python. It reads into one buffer kept per thread and
copies out what came: ``os.read(fd, 1 MiB)`` would allocate a fresh 1 MiB buffer per
read, whose pages the kernel zeroes each time, a third of the time at full speed (a
``yes`` writing 8 KiB at a time: 700 MiB/s that way, 1,250 MiB/s this way). The writer
keeps what the pipe cannot take yet and sends it when the loop says the pipe is writable,
in order.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
from collections import deque
from collections.abc import Callable

from gaffer.core.readyset import ready_set

logger = logging.getLogger(__name__)

READ_SIZE = 1024 * 1024  # as big as a capture pipe: one read takes all it holds
READS_PER_WAKEUP = 8
CAPTURE_PIPE_SIZE = 1024 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_budget_lock = threading.Lock()
_budget_pages: int | None = None
_read_buffers = threading.local()


def read_chunk(fd: int) -> bytes:
    """Up to READ_SIZE bytes from ``fd`` (raises like ``os.read``; b"" at end of file)."""
    view = getattr(_read_buffers, "view", None)
    if view is None:
        import mmap  # here: a millisecond less at gafferd's start

        # anonymous memory, whose pages exist once a read fills them: a bytearray is
        # zeroed when made, 1 MiB resident from the first exit on, output or not
        view = _read_buffers.view = memoryview(mmap.mmap(-1, READ_SIZE))
    count = os.readv(fd, [view])
    return bytes(view[:count])


def capture_pipe() -> tuple[int, int, bool]:
    """A pipe for a child's output, enlarged to 1 MiB when allowed.

    A 64 KiB pipe caps what one reader can take at about 500 MiB/s here; 1 MiB lifts it
    to about 1.5 GiB/s (docs/performance.md). The kernel charges pipe sizes to the user
    (``fs.pipe-user-pages-soft``, 64 MiB by default, root exempt), and a user over that
    limit gets one-page pipes everywhere, children included: so a non-root gaffer enlarges
    pipes only within half of that limit.
    """
    read_fd, write_fd = os.pipe()
    if not _take_pipe_budget():
        return read_fd, write_fd, False
    try:
        fcntl.fcntl(write_fd, F_SETPIPE_SZ, CAPTURE_PIPE_SIZE)
    except OSError:
        release_capture_pipes(1)
        return read_fd, write_fd, False
    return read_fd, write_fd, True


def claim_capture_pipes(count: int) -> None:
    """Count ``count`` enlarged pipes made by a previous life of this program (handed over
    across an exec) against the budget."""
    for _ in range(count):
        _take_pipe_budget()


def release_capture_pipes(count: int) -> None:
    """Give back the budget of ``count`` enlarged pipes, once they are closed."""
    for _ in range(count):
        _return_pipe_budget()


def _take_pipe_budget() -> bool:
    global _budget_pages
    if os.geteuid() == 0:
        return True
    with _budget_lock:
        if _budget_pages is None:
            try:
                with open("/proc/sys/fs/pipe-user-pages-soft") as handle:
                    soft = int(handle.read())
            except (OSError, ValueError):
                soft = 0
            _budget_pages = soft // 2 if soft else 1 << 30
        pages = CAPTURE_PIPE_SIZE // 4096
        if _budget_pages < pages:
            return False
        _budget_pages -= pages
        return True


def _return_pipe_budget() -> None:
    global _budget_pages
    if os.geteuid() == 0:
        return
    with _budget_lock:
        if _budget_pages is not None:
            _budget_pages += CAPTURE_PIPE_SIZE // 4096


def _ignore(data: bytes) -> None:
    """What a closed reader does with data: nothing (it reads none)."""


class PipeReader:
    """Calls ``on_data(bytes)`` for every chunk read from ``fd``, ``on_close()`` at EOF."""

    __slots__ = ("_on_close", "_on_data", "_owns_fd", "_set", "fd", "paused")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        on_data: Callable[[bytes], None],
        on_close: Callable[[], None] | None = None,
        owns_fd: bool = True,
    ) -> None:
        self._set = ready_set(loop)  # one epoll set for every pipe: see readyset.py
        self.fd = fd
        self._on_data = on_data
        self._on_close = on_close
        self._owns_fd = owns_fd
        self.paused = False
        os.set_blocking(fd, False)
        self._set.add(fd, self._readable)

    def pause(self) -> None:
        """Stop reading (the writer of the pipe blocks once the pipe is full)."""
        if not self.paused and self.fd >= 0:
            self._set.remove(self.fd)
            self.paused = True

    def resume(self) -> None:
        if self.paused and self.fd >= 0:
            self._set.add(self.fd, self._readable)
        self.paused = False

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def _readable(self) -> None:
        for _ in range(READS_PER_WAKEUP):
            if self.fd < 0 or self.paused:
                return
            try:
                data = read_chunk(self.fd)
            except BlockingIOError:
                return
            except OSError as exc:
                logger.debug("read error on fd %d: %s", self.fd, exc)
                self.close()
                return
            if not data:
                self.close()
                return
            self._deliver(data)
            if len(data) < READ_SIZE:
                return

    def _deliver(self, data: bytes) -> None:
        try:
            self._on_data(data)
        except Exception:
            logger.exception("output consumer failed")

    def drain(self) -> None:
        """Read what is left now (the writer has exited), then close."""
        while self.fd >= 0:
            try:
                data = read_chunk(self.fd)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            self._deliver(data)
        self.close()

    def close(self) -> None:
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        if not self.paused:
            self._set.remove(fd)
        self.paused = False
        if self._owns_fd:
            os.close(fd)
        self._on_data = _ignore  # the consumer often holds this reader: no cycle left
        if self._on_close is not None:
            callback, self._on_close = self._on_close, None
            callback()


class PipeWriter:
    """Writes to ``fd`` without ever blocking the loop; keeps the order of writes."""

    __slots__ = ("_buffer", "_closing", "_loop", "_owns_fd", "_watching", "fd")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, owns_fd: bool = True) -> None:
        self._loop = loop
        self.fd = fd
        self._owns_fd = owns_fd
        self._buffer: deque[memoryview] = deque()
        self._watching = False
        self._closing = False
        os.set_blocking(fd, False)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    @property
    def pending(self) -> int:
        return sum(len(chunk) for chunk in self._buffer)

    def write(self, data: bytes) -> None:
        if self.fd < 0 or self._closing:
            raise BrokenPipeError(f"fd {self.fd} is closed")
        if not data:
            return
        view = memoryview(bytes(data))
        if not self._buffer:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                self.close()
                raise BrokenPipeError(str(exc)) from None
            view = view[written:]
            if not view:
                return
        self._buffer.append(view)
        if not self._watching:
            self._watching = True
            self._loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        while self._buffer:
            chunk = self._buffer[0]
            try:
                written = os.write(self.fd, chunk)
            except BlockingIOError:
                return
            except OSError as exc:
                logger.debug("write error on fd %d: %s", self.fd, exc)
                self._buffer.clear()
                self.close()
                return
            if written < len(chunk):
                self._buffer[0] = chunk[written:]
                return
            self._buffer.popleft()
        self._loop.remove_writer(self.fd)
        self._watching = False
        if self._closing:
            self.close()

    def close_when_flushed(self) -> None:
        if self._buffer:
            self._closing = True
        else:
            self.close()

    def close(self) -> None:
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        if self._watching:
            self._loop.remove_writer(fd)
            self._watching = False
        self._buffer.clear()
        if self._owns_fd:
            os.close(fd)
