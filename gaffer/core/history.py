"""A job's recent output, kept in memory: the last lines of each process's stdout and stderr.

Capture runs at gigabytes a second, so nothing is split into lines on the way in: each
chunk read from a pipe is kept as it came, with the time and who wrote it, and the oldest
chunks are dropped beyond the job's byte budget. Lines are made only when someone reads
the history (``lines()``), joining the pieces of a line that came in several chunks.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

MIN_BYTES = 16 * 1024
MAX_BYTES = 4 * 1024 * 1024
BYTES_PER_LINE = 128  # the budget of a job keeping N lines: N x this, within the bounds


def budget(lines: int) -> int:
    """The memory a job keeping ``lines`` lines may use for them."""
    return 0 if lines <= 0 else min(max(lines * BYTES_PER_LINE, MIN_BYTES), MAX_BYTES)


@dataclass(frozen=True, slots=True)
class Line:
    time: float  # when its last piece was read (a Unix time)
    pid: int
    os_pid: int | None
    stream: str  # "stdout" or "stderr"
    text: str

    def to_dict(self, job: str) -> dict[str, object]:
        return {
            "job": job,
            "pid": self.pid,
            "os_pid": self.os_pid,
            "stream": self.stream,
            "time": self.time,
            "line": self.text,
        }


class OutputHistory:
    """The recent output of one job, bounded by lines kept and by bytes."""

    __slots__ = ("_chunks", "_size", "max_bytes", "max_lines")

    def __init__(self, max_lines: int) -> None:
        self.max_lines = max_lines
        self.max_bytes = budget(max_lines)
        self._chunks: deque[tuple[float, int, int | None, str, bytes]] = deque()
        self._size = 0

    def add(self, pid: int, os_pid: int | None, stream: str, data: bytes) -> None:
        if not self.max_bytes:
            return
        if len(data) > self.max_bytes:
            data = data[-self.max_bytes :]
        self._chunks.append((time.time(), pid, os_pid, stream, data))
        self._size += len(data)
        while self._size > self.max_bytes:
            self._size -= len(self._chunks.popleft()[4])

    def lines(self, count: int | None = None, stream: str | None = None) -> list[Line]:
        """The last ``count`` lines (all kept, at most ``max_lines``), oldest first, of one
        stream or both; a line still being written is included as it is so far."""
        limit = self.max_lines if count is None else min(count, self.max_lines)
        if limit <= 0:
            return []
        return _split(chunk for chunk in self._chunks if stream is None or chunk[3] == stream)[
            -limit:
        ]

    def resize(self, max_lines: int) -> None:
        self.max_lines = max_lines
        self.max_bytes = budget(max_lines)
        while self._size > self.max_bytes:
            self._size -= len(self._chunks.popleft()[4])

    @property
    def size(self) -> int:
        return self._size

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0

    def export(self) -> list[tuple[float, int, int | None, str, bytes]]:
        """Every chunk kept, oldest first (for a hand-over to the next gafferd)."""
        return list(self._chunks)

    def restore(self, chunks: Iterable[tuple[float, int, int | None, str, bytes]]) -> None:
        """Put back what ``export`` gave (after the chunks kept now)."""
        for when, pid, os_pid, stream, data in chunks:
            self._chunks.append((when, pid, os_pid, stream, data))
            self._size += len(data)
        while self._size > self.max_bytes:
            self._size -= len(self._chunks.popleft()[4])


def _split(chunks: Iterable[tuple[float, int, int | None, str, bytes]]) -> list[Line]:
    out: list[Line] = []
    partial: dict[tuple[int, str], tuple[int, bytes]] = {}  # (pid, stream): (index, bytes)
    for when, pid, os_pid, stream, data in chunks:
        key = (pid, stream)
        pieces = data.split(b"\n")
        if key in partial:  # the first piece ends a line begun in an earlier chunk
            index, begun = partial.pop(key)
            out[index] = Line(when, pid, os_pid, stream, _text(begun + pieces[0]))
            if len(pieces) == 1:
                partial[key] = (index, begun + pieces[0])
                continue
            pieces = pieces[1:]
        for piece in pieces[:-1]:
            out.append(Line(when, pid, os_pid, stream, _text(piece)))
        if pieces[-1]:  # no newline yet: a line being written
            partial[key] = (len(out), pieces[-1])
            out.append(Line(when, pid, os_pid, stream, _text(pieces[-1])))
    return out


def _text(data: bytes) -> str:
    return data.rstrip(b"\r").decode("utf-8", "replace")
