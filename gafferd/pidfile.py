"""The pidfile: refused while a live gafferd holds it, replaced when stale.

A running gafferd holds an exclusive ``flock`` on its pidfile for its whole life, so
"live" does not depend on guessing from a pid that may have been reused: a file nobody
locks is stale, whatever pid it holds.
"""

from __future__ import annotations

import fcntl
import os

from gaffer.errors import GafferError


class AlreadyRunning(GafferError, RuntimeError):
    def __init__(self, path: str, pid: str) -> None:
        self.path, self.pid = path, pid
        super().__init__(
            f"gafferd is already running with pid {pid or '?'} (it holds the pidfile {path})"
        )


class Pidfile:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def check(self) -> None:
        """Raise AlreadyRunning if a live process holds the pidfile; leave it alone."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(self.path, _read(fd)) from None
        finally:
            os.close(fd)

    def acquire(self) -> None:
        """Lock the pidfile (replacing a stale one) and write our pid in it."""
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read(fd)
            os.close(fd)
            raise AlreadyRunning(self.path, pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            with open(self.path) as handle:
                mine = handle.read().strip() == str(os.getpid())
        except OSError:
            mine = False
        if mine:
            os.unlink(self.path)
        os.close(self._fd)  # releases the lock
        self._fd = -1


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
