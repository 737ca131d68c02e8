"""The pidfile: refused while a live gafferd holds it, replaced when stale.

A running gafferd holds an exclusive ``flock`` on its pidfile for its whole life, so
"live" does not depend on guessing from a pid that may have been reused: a file nobody
locks is stale, whatever pid it holds.

The file is never opened through a symbolic link (``O_NOFOLLOW``: a link planted in a
shared directory would make gafferd, root maybe, write where it points) and never seen
half-written: the pid is written to a new file in the same directory, which then replaces
the old one (``rename``; ``link`` when there was none, so that two gafferds starting at
once cannot both win).
"""

from __future__ import annotations

import errno
import fcntl
import os

from gaffer.errors import GafferError


class AlreadyRunning(GafferError, RuntimeError):
    def __init__(self, path: str, pid: str) -> None:
        self.path, self.pid = path, pid
        super().__init__(
            f"gafferd is already running with pid {pid or '?'} (it holds the pidfile {path})"
        )


class PidfileError(GafferError, OSError):
    """The pidfile cannot be used: a symbolic link, or not writable."""


class Pidfile:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def check(self) -> None:
        """Raise AlreadyRunning if a live process holds the pidfile; leave it alone."""
        try:
            fd = _open(self.path, os.O_RDONLY)
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
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, exist_ok=True)
        content = f"{os.getpid()}\n".encode()
        while True:
            new, temp = _write_new(directory, content)  # locked, our pid in it
            try:
                if self._replace(temp):
                    self._fd = new
                    return
            except BaseException:
                os.close(new)
                raise
            os.close(new)  # another gafferd changed the file meanwhile: look again

    def _replace(self, temp: str) -> bool:
        """Put the file ``temp`` at ``self.path`` (``temp`` is gone after); False when the
        file there changed under us."""
        try:
            old = _open(self.path, os.O_RDWR)
        except FileNotFoundError:
            try:
                os.link(temp, self.path)  # fails if another one was faster
            except FileExistsError:
                return False
            finally:
                os.unlink(temp)
            return True
        try:
            try:
                fcntl.flock(old, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.unlink(temp)
                raise AlreadyRunning(self.path, _read(old)) from None
            if not _same_file(old, self.path):  # replaced between our open and our lock
                os.unlink(temp)
                return False
            os.rename(temp, self.path)  # atomic: readers see the old pid or ours
            return True
        finally:
            os.close(old)  # its lock goes with it: the file at the path is ours now

    @property
    def fd(self) -> int:
        """The descriptor holding the lock (-1: not acquired)."""
        return self._fd

    def adopt(self, fd: int) -> None:
        """Hold the lock a previous life of this gafferd took (an exec keeps it: the lock
        belongs to the open file, and the pid in the file is still ours)."""
        os.set_inheritable(fd, False)
        self._fd = fd

    def release(self) -> None:
        if self._fd < 0:
            return
        if _same_file(self._fd, self.path):
            os.unlink(self.path)
        os.close(self._fd)  # releases the lock
        self._fd = -1


def _open(path: str, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PidfileError(
                errno.ELOOP, f"the pidfile {path} is a symbolic link: refusing to follow it"
            ) from None
        raise


def _write_new(directory: str, content: bytes) -> tuple[int, str]:
    """A new file in ``directory``, locked, holding ``content``: its descriptor and its
    name (``.gafferd.pid.<pid>.<n>`` until it replaces the pidfile)."""
    for attempt in range(100):
        path = os.path.join(directory, f".gafferd.pid.{os.getpid()}.{attempt}")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, content)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        return fd, path
    raise PidfileError(errno.EEXIST, f"cannot create a temporary pidfile in {directory}")


def _same_file(fd: int, path: str) -> bool:
    try:
        found = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (found.st_dev, found.st_ino) == (mine.st_dev, mine.st_ino)


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
