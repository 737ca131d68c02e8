"""A log file on disk: appended to, rotated by size and by time, kept within a disk budget.

Used by a log sink's writer thread only (logfile.py), never on the loop.

* ``max_bytes``: a file that would grow past it is moved to ``path.1`` first (``path.1``
  to ``path.2``..., up to ``path.<backups>``; with no backups it is truncated instead);
  the bytes are written as they were read, so a line whose end came in another read may
  start in one file and end in the next, as with supervisor;
* ``rotate`` (``"daily"`` or ``"hourly"``): the first write after local midnight (or the
  hour) moves the file away the same way, if it holds anything. A file found at start is
  dated by its last change, so a gafferd stopped yesterday rotates yesterday's log at its
  first write today;
* ``max_total``: the file and its rotated copies never take more than this on disk. The
  file itself is rotated at a quarter of ``max_total`` at the latest, and at each
  rotation the oldest copies are removed until the copies and a full current file fit in
  the budget.

Only regular files are rotated (a FIFO, ``/dev/null``... are written as they are).
"""

from __future__ import annotations

import datetime
import os
import stat
import time

ROTATIONS = ("daily", "hourly")


def period_end(moment: float, rotate: str) -> float:
    """The end of the local day (or hour) holding ``moment``, a Unix time."""
    when = datetime.datetime.fromtimestamp(moment)
    if rotate == "hourly":
        start = when.replace(minute=0, second=0, microsecond=0)
        return (start + datetime.timedelta(hours=1)).timestamp()
    start = when.replace(hour=0, minute=0, second=0, microsecond=0)
    # a day is not always 24 hours (daylight saving): the next date's midnight
    following = datetime.datetime.combine(start.date() + datetime.timedelta(days=1), start.time())
    return following.timestamp()


class LogFile:
    def __init__(
        self,
        path: str,
        max_bytes: int = 0,
        backups: int = 0,
        rotate: str | None = None,
        max_total: int = 0,
    ) -> None:
        self.path = path
        self.fd = -1
        self.size = 0
        self.regular = True
        self._due = float("inf")  # when the time-based rotation is due
        self.configure(max_bytes, backups, rotate, max_total)

    def configure(self, max_bytes: int, backups: int, rotate: str | None, max_total: int) -> None:
        self.backups = backups
        self.max_total = max_total
        # within a budget, a file is a quarter of it at most: the budget then holds the
        # current file and three rotated ones at least (journald keeps files to an eighth)
        caps = [size for size in (max_bytes, max_total // 4 if max_total else 0) if size > 0]
        self.max_bytes = min(caps) if caps else 0
        if rotate != getattr(self, "rotate_every", None):
            self._due = period_end(time.time(), rotate) if rotate else float("inf")
        self.rotate_every = rotate

    def open(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        # O_NONBLOCK: a FIFO nobody reads fails here instead of hanging; writes then block
        # (in a writer thread) as on any file
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
        self.fd = os.open(self.path, flags, 0o644)
        os.set_blocking(self.fd, True)
        info = os.fstat(self.fd)
        self.size = info.st_size
        self.regular = stat.S_ISREG(info.st_mode)
        if self.rotate_every and self.regular:
            self._due = period_end(info.st_mtime if self.size else time.time(), self.rotate_every)
        if self.max_total and self.regular:
            self._prune()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- rotation --------------------------------------------------------------------------
    def full(self, extra: int) -> bool:
        """Writing ``extra`` more bytes would take the file past its size."""
        return bool(
            self.regular and self.max_bytes and self.size and self.size + extra > self.max_bytes
        )

    def due(self, now: float | None = None) -> bool:
        """The time-based rotation is due (checked once per batch of writes)."""
        if now is None:
            now = time.time()
        if now < self._due:
            return False
        if not self.size:  # nothing to move away: a new period begins in this file
            self._due = period_end(now, self.rotate_every or "daily")
            return False
        return True

    def rotate(self) -> None:
        """Move the file away (``path.1``...) and open a new one."""
        self.close()
        if self.backups > 0:
            for index in range(self.backups - 1, 0, -1):
                source = f"{self.path}.{index}"
                if os.path.exists(source):
                    os.replace(source, f"{self.path}.{index + 1}")
            os.replace(self.path, f"{self.path}.1")
        else:
            os.truncate(self.path, 0)
        self.open()

    def _prune(self) -> None:
        """Remove the oldest rotated copies until they and a full current file fit in
        ``max_total``."""
        room = self.max_total - max(self.max_bytes, self.size)
        kept = 0
        for index in range(1, self.backups + 1):
            path = f"{self.path}.{index}"
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                continue
            kept += size
            if kept > room:
                os.unlink(path)

    # -- writing ---------------------------------------------------------------------------
    def write(self, run: list[bytes], size: int) -> int:
        """Write every chunk of ``run`` (``size`` bytes in all); returns the bytes written."""
        self.size += write_all(self.fd, run, size)
        return size


def write_all(fd: int, run: list[bytes], size: int) -> int:
    """``writev`` the chunks, finishing a short write; returns ``size``."""
    written = os.writev(fd, run)
    if written == size:
        return size
    rest = memoryview(b"".join(run))[written:]  # a short write: finish it chunk-free
    while rest:
        rest = rest[os.write(fd, rest) :]
    return size
