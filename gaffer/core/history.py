"""A job's recent output, kept in memory: the last lines of each process's stdout and stderr.

Capture runs at gigabytes a second, so nothing is split into lines on the way in: each
chunk read from a pipe is kept as it came, with the time and who wrote it, and the oldest
chunks are dropped beyond the job's memory budget. Lines are made only when someone reads
the history (``lines()``), joining the pieces of a line that came in several chunks.

The budget counts what a chunk really costs in memory (its bytes and about 150 bytes of
Python objects around them), so 1,000 lines of a process printing one line per write
take the same memory as 1,000 lines read in 64 KiB chunks: ``budget(lines)``, at most
``MAX_BYTES`` per job.

Followers (``LineFollower``, behind ``gaffer logs -f``) get each chunk as it is kept, cut
it into lines with a ``Splitter`` of their own, and are told when a process exits (its
unfinished line is then finished).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

MIN_BYTES = 16 * 1024
MAX_BYTES = 4 * 1024 * 1024  # the memory cap of one job's history
BYTES_PER_LINE = 256  # the budget of a job keeping N lines: N x this, within the bounds
# a chunk's tuple (80), its time (24), its bytes object's header (33) and its deque slot:
# measured with tracemalloc (tests/core/test_history.py)
CHUNK_OVERHEAD = 150
MAX_LINE = 64 * 1024  # a line never ended is cut here (for followers; the budget bounds history)

Chunk = tuple[float, int, int | None, str, bytes]  # (time, pid, os_pid, stream, data)
Deliver = Callable[[dict[str, object]], object]  # a line, as Line.to_dict() gives it


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
    """The recent output of one job, bounded by lines kept and by memory."""

    __slots__ = ("_chunks", "_size", "followers", "hub", "max_bytes", "max_lines", "name")

    def __init__(self, max_lines: int, name: str = "") -> None:
        self.name = name  # the job's id (set by the process table at the first spawn)
        self.max_lines = max_lines
        self.max_bytes = budget(max_lines)
        self._chunks: deque[Chunk] = deque()
        self._size = 0
        self.followers: list[LineFollower] = []  # of this job
        self.hub: list[LineFollower] = []  # of every job: a list shared by the manager's jobs

    def add(self, pid: int, os_pid: int | None, stream: str, data: bytes) -> None:
        now = time.time()
        if self.max_bytes:
            if len(data) + CHUNK_OVERHEAD > self.max_bytes:
                data = data[-(self.max_bytes - CHUNK_OVERHEAD) :]
            self._chunks.append((now, pid, os_pid, stream, data))
            self._size += len(data) + CHUNK_OVERHEAD
            while self._size > self.max_bytes:
                self._size -= len(self._chunks.popleft()[4]) + CHUNK_OVERHEAD
        if self.followers or self.hub:
            for follower in [*self.followers, *self.hub]:
                follower.chunk(self.name, now, pid, os_pid, stream, data)

    def end(self, pid: int) -> None:
        """Process ``pid`` exited, after its last output was added."""
        for follower in [*self.followers, *self.hub]:
            follower.ended(self.name, pid)

    def lines(self, count: int | None = None, stream: str | None = None) -> list[Line]:
        """The last ``count`` lines (all kept, at most ``max_lines``), oldest first, of one
        stream or both; a line still being written is included as it is so far."""
        limit = self._limit(count)
        if limit <= 0:
            return []
        splitter = Splitter()
        out = splitter.split(self._of(stream)) + splitter.pending()
        out.sort(key=lambda line: line.time)  # an unfinished line where it was last written
        return out[-limit:]

    def snapshot(self, count: int | None, stream: str | None) -> tuple[list[Line], Splitter]:
        """The last ``count`` finished lines, and a splitter holding the lines still being
        written, to go on with the chunks that come next (a follower's start)."""
        splitter = Splitter()
        out = splitter.split(self._of(stream))
        limit = self._limit(count)
        return (out[-limit:] if limit > 0 else []), splitter

    def _of(self, stream: str | None) -> Iterable[Chunk]:
        return (chunk for chunk in self._chunks if stream is None or chunk[3] == stream)

    def _limit(self, count: int | None) -> int:
        return self.max_lines if count is None else min(count, self.max_lines)

    def resize(self, max_lines: int) -> None:
        self.max_lines = max_lines
        self.max_bytes = budget(max_lines)
        while self._size > self.max_bytes:
            self._size -= len(self._chunks.popleft()[4]) + CHUNK_OVERHEAD

    @property
    def size(self) -> int:
        """The memory the kept chunks are counted for (bytes)."""
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
            self._size += len(data) + CHUNK_OVERHEAD
        while self._size > self.max_bytes:
            self._size -= len(self._chunks.popleft()[4]) + CHUNK_OVERHEAD


class Splitter:
    """Cuts chunks into lines, each process's stdout and stderr apart, keeping the lines
    not finished yet for the chunks to come."""

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        # (pid, stream) -> (time, os_pid, bytes so far)
        self._partial: dict[tuple[int, str], tuple[float, int | None, bytes]] = {}

    def split(self, chunks: Iterable[Chunk]) -> list[Line]:
        """The lines ``chunks`` finish, in the order they finish."""
        out: list[Line] = []
        for chunk in chunks:
            self.feed(out, *chunk)
        return out

    def feed(
        self, out: list[Line], when: float, pid: int, os_pid: int | None, stream: str, data: bytes
    ) -> None:
        key = (pid, stream)
        pieces = data.split(b"\n")
        begun = self._partial.pop(key, None)
        if begun is not None:
            pieces[0] = begun[2] + pieces[0]
        rest = pieces.pop()
        for piece in pieces:
            out.append(Line(when, pid, os_pid, stream, _text(piece)))
        if len(rest) > MAX_LINE:  # never ended: cut, so that nothing grows without bound
            out.append(Line(when, pid, os_pid, stream, _text(rest)))
        elif rest:
            self._partial[key] = (when, os_pid, rest)

    def adopt(self, other: Splitter) -> None:
        """Take over the unfinished lines of another splitter (of another job)."""
        self._partial.update(other._partial)

    def pending(self, pid: int | None = None) -> list[Line]:
        """The lines being written (of one process, or all), as they are so far, and
        forgotten here: a process that exited will not finish them."""
        keys = [key for key in self._partial if pid is None or key[0] == pid]
        out = []
        for key in keys:
            when, os_pid, data = self._partial.pop(key)
            out.append(Line(when, key[0], os_pid, key[1], _text(data)))
        out.sort(key=lambda line: line.time)
        return out


class LineFollower:
    """Delivers a job's output (or every job's) line by line as it comes, from one
    stream or both: ``deliver(line_dict)`` for each finished line."""

    __slots__ = ("_deliver", "_select", "_splitter", "stream")

    def __init__(
        self,
        deliver: Deliver,
        stream: str | None = None,
        splitter: Splitter | None = None,
        select: Callable[[str], bool] | None = None,
    ) -> None:
        self._deliver = deliver
        self.stream = stream
        self._splitter = splitter or Splitter()
        self._select = select  # the jobs it follows (of a follower of every job)

    def chunk(
        self, job: str, when: float, pid: int, os_pid: int | None, stream: str, data: bytes
    ) -> None:
        if self.stream is not None and stream != self.stream:
            return
        if self._select is not None and not self._select(job):
            return
        out: list[Line] = []
        self._splitter.feed(out, when, pid, os_pid, stream, data)
        self._send(job, out)

    def ended(self, job: str, pid: int) -> None:
        self._send(job, self._splitter.pending(pid))

    def _send(self, job: str, lines: list[Line]) -> None:
        for line in lines:
            try:
                self._deliver(line.to_dict(job))
            except Exception:  # a follower's failure must not cost the output its log
                logger.exception("output follower %r failed", self._deliver)


def _text(data: bytes) -> str:
    return data.rstrip(b"\r").decode("utf-8", "replace")


def merge(
    histories: Iterable[tuple[str, OutputHistory]], count: int | None, stream: str | None
) -> list[dict[str, object]]:
    """The last ``count`` lines of several jobs' histories (``(job, history)`` pairs),
    interleaved by time, as dicts."""
    lines = []
    for name, history in histories:
        lines.extend((line.time, name, line) for line in history.lines(count, stream))
    lines.sort(key=lambda item: item[0])
    if count is not None:
        lines = lines[-count:] if count > 0 else []
    return [line.to_dict(name) for _, name, line in lines]
