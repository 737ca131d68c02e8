"""CPU seconds, RSS, start time and open descriptors of many processes, read again and
again (what /metrics exports), as cheaply as Linux allows.

Reading a process by path costs five system calls (open, read and close of
``/proc/<pid>/stat``, a ``stat`` of ``/proc/<pid>/fd``, more on kernels before 6.2). The
reader keeps two descriptors per process instead, one on its ``stat`` file and one
(``O_PATH``) on its ``fd`` directory, so that a read is one ``pread`` and one ``fstat``:
at 1,000 processes, 8 ms instead of 19 (docs/design.md). A descriptor names the process
it was opened for, never a later one given the same pid: once that process has exited,
reading fails with ESRCH and both are closed.

Descriptors are scarce in a supervisor (each child has its pipes and its pidfd): at most
a quarter of the soft limit is held; processes beyond it are read by path. Exits are
handed in with ``forget`` (the process table does, at each exit) and their descriptors
closed at once, or when the read running in another thread ends; ``close`` drops them
all (the manager's stop).
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterable
from typing import NamedTuple

O_PATH = getattr(os, "O_PATH", 0)


class Usage(NamedTuple):
    """What /metrics exports of a process: the least that /proc must be read for."""

    cpu_seconds: float  # user + system
    rss: int  # bytes
    start_time: float  # a Unix time
    fds: int | None  # open descriptors; None when they cannot be listed


class UsageReader:
    def __init__(self, ticks: int, page: int, boot_time: float) -> None:
        self._ticks, self._page, self._boot = ticks, page, boot_time
        self._lock = threading.Lock()
        self._held: dict[int, tuple[int, int]] = {}  # os pid: (stat fd, fd-directory fd)
        self._forgotten: list[int] = []  # exited while a read ran: closed when it ends

    @property
    def held(self) -> int:
        """Processes whose descriptors are kept."""
        return len(self._held)

    def read(self, os_pids: Iterable[int]) -> dict[int, Usage]:
        """``Usage`` of each pid that can be read (the gone are left out). Blocking: call
        it from a worker thread."""
        out: dict[int, Usage] = {}
        ticks, page, boot = self._ticks, self._page, self._boot
        pread, fstat, held = os.pread, os.fstat, self._held
        with self._lock:
            for pid in os_pids:  # the loop of a scrape: kept flat, it runs 1,000 times
                handles = held.get(pid)
                if handles is None:
                    usage = self._first_read(pid)
                    if usage is not None:
                        out[pid] = usage
                    continue
                try:
                    data = pread(handles[0], 4096, 0)
                    fds = fstat(handles[1]).st_size
                except OSError:  # exited (ESRCH): these descriptors are of no use any more
                    self._drop(pid)
                    usage = self._first_read(pid)  # the pid may be a new process's now
                    if usage is not None:
                        out[pid] = usage
                    continue
                fields = data[data.rfind(b")") + 2 :].split(None, 22)
                if len(fields) > 21:
                    out[pid] = Usage(
                        (int(fields[11]) + int(fields[12])) / ticks,
                        int(fields[21]) * page,
                        boot + int(fields[19]) / ticks,
                        # Linux >= 6.2 gives the count as the directory's size; 0 before
                        fds if fds > 0 else _listed(pid),
                    )
            self._close_forgotten()
        return out

    def stat_bytes(self, pid: int, hold: bool = False) -> bytes | None:
        """The content of /proc/<pid>/stat (None when gone), through the kept descriptor
        if there is one. ``hold``: keep descriptors for this pid from now on (a process
        of the manager's, whose exit will be handed to ``forget``)."""
        with self._lock:
            handles = self._held.get(pid)
            if handles is None and hold and self._room():
                handles = self._open(pid)
            if handles is not None:
                try:
                    return os.pread(handles[0], 4096, 0)
                except OSError:
                    self._drop(pid)
                finally:
                    self._close_forgotten()
        return _stat_by_path(pid)

    def open_fds(self, pid: int) -> int | None:
        """How many descriptors ``pid`` has open, through the kept descriptor if any."""
        with self._lock:
            handles = self._held.get(pid)
            if handles is not None:
                try:
                    size = os.fstat(handles[1]).st_size
                except OSError:
                    self._drop(pid)
                else:
                    return size if size > 0 else _listed(pid)
                finally:
                    self._close_forgotten()
        return count_fds(pid)

    def forget(self, os_pid: int) -> None:
        """``os_pid`` exited: its descriptors are closed now, or by the read running in
        another thread when it ends (never under it). Any thread; never waits."""
        if os_pid not in self._held:
            return
        if self._lock.acquire(blocking=False):
            try:
                self._drop(os_pid)
            finally:
                self._lock.release()
        else:
            self._forgotten.append(os_pid)

    def close(self) -> None:
        with self._lock:
            for pid in list(self._held):
                self._drop(pid)
            self._forgotten.clear()

    def _close_forgotten(self) -> None:
        while self._forgotten:
            self._drop(self._forgotten.pop())

    def _first_read(self, pid: int) -> Usage | None:
        """A pid without descriptors yet: they are opened (if there is room) and kept,
        and this first reading is done by path."""
        if self._room():
            self._open(pid)
        return self._read_by_path(pid)

    def _room(self) -> bool:
        """Two more descriptors keep within a quarter of the limit (read each time: a
        program embedding the manager may change it)."""
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
        return 2 * (len(self._held) + 1) <= limit // 4

    def _open(self, pid: int) -> tuple[int, int] | None:
        try:
            stat_fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fd_dir = os.open(f"/proc/{pid}/fd", O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:  # another user's process: its descriptors cannot be counted
            os.close(stat_fd)
            return None
        self._held[pid] = handles = (stat_fd, fd_dir)
        return handles

    def _drop(self, pid: int) -> None:
        handles = self._held.pop(pid, None)
        if handles is not None:
            for fd in handles:
                os.close(fd)

    def _read_by_path(self, pid: int) -> Usage | None:
        data = _stat_by_path(pid)
        if data is None:
            return None
        fields = data[data.rfind(b")") + 2 :].split(None, 22)
        if len(fields) < 22:
            return None
        return Usage(
            (int(fields[11]) + int(fields[12])) / self._ticks,
            int(fields[21]) * self._page,
            self._boot + int(fields[19]) / self._ticks,
            count_fds(pid),
        )


def _stat_by_path(pid: int) -> bytes | None:
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return None


def count_fds(os_pid: int) -> int | None:
    """How many descriptors ``os_pid`` has open (Linux); None when that cannot be read
    (gone, or another user's process)."""
    path = f"/proc/{os_pid}/fd"
    try:
        size = os.stat(path).st_size
    except OSError:
        return None
    return size if size > 0 else _listed(os_pid)


def _listed(os_pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{os_pid}/fd"))
    except OSError:
        return None
