"""The log sinks of a manager: shared by target, counted by users, and the null sink of
output captured for the history only."""

from __future__ import annotations

import asyncio
import logging
import time

from gaffer.core.logfile import DropReport, LogSink, Writer
from gaffer.core.logtarget import LogTarget

logger = logging.getLogger(__name__)


class NullWriter:
    """A writer that keeps nothing: the stream is captured for the job's history only."""

    __slots__ = ("reader",)
    raw = True

    def __init__(self) -> None:
        self.reader = None

    def write(self, data: bytes) -> None:
        pass

    def marker(self, text: str) -> None:
        pass


class NullSink:
    """Where a stream goes that is captured for the history only (a manager whose
    ``output`` is ``capture``): no file, no thread, nothing written."""

    target = LogTarget("null")

    def __init__(self) -> None:
        self.users = 0
        self.jobs: set[str] = set()

    def writer(self, *args: object, **kwargs: object) -> Writer:
        return NullWriter()  # type: ignore[return-value]


NULL_SINK = NullSink()


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
        rotate: str | None = None,
        max_total: int = 0,
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
                rotate=rotate,
                max_total=max_total,
                on_drop=self._on_drop,
            )
            sink.open()  # a path that cannot be written is an error at load, not later
            self._sinks[target.key] = sink
        elif target.kind == "file" and (
            sink.max_bytes,
            sink.backups,
            sink.rotate,
            sink.max_total,
        ) != (
            max_bytes,
            backups,
            rotate,
            max_total,
        ):
            if sink.jobs <= {job}:  # its own job, updated (SIGHUP): the new settings apply
                sink.configure(max_bytes, backups, rotate, max_total)
            else:  # rotation settings mean nothing to the other kinds
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
