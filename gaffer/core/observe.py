"""What the manager shows of its jobs: stats, live output, recent output, log files.

Mixed into ``Manager`` (manager.py), which provides the registry (``_get_job``,
``running``), the loop and the process table; kept here so the manager's own module is
the registry and the lifecycle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from gaffer.core.history import LineFollower, Splitter, merge
from gaffer.core.logfile import LogSink
from gaffer.core.names import job_id
from gaffer.core.onloop import on_loop
from gaffer.core.overview import read_overview, read_usage
from gaffer.core.process import Process
from gaffer.core.stats import descendants_map, summarize
from gaffer.errors import InvalidArgument

if TYPE_CHECKING:
    import asyncio

    from gaffer.core.monitor import StatsMonitor
    from gaffer.core.runner import JobRunner
    from gaffer.core.stats import Sampler
    from gaffer.core.table import ProcessTable

logger = logging.getLogger(__name__)

IOListener = Callable[[str, dict], object]
LineListener = Callable[[dict[str, Any]], object]
JobFilter = Callable[[str], bool]
STREAMS = ("stdout", "stderr", "all")


def _stream(stream: str | None) -> str | None:
    if stream is None or stream == "all":
        return None
    if stream not in STREAMS:
        raise InvalidArgument(f"stream must be one of {', '.join(STREAMS)}, got {stream!r}")
    return stream


class Observing:
    """Stats (``stats``, ``astats``, ``monitor``), output (``monitor_io``) and log files."""

    loop: asyncio.AbstractEventLoop
    running: dict[int, Process]
    _jobs: dict[str, JobRunner]
    _monitor: StatsMonitor
    _sampler: Sampler
    _table: ProcessTable
    # and from the manager: _get_job(name), get_process(pid), _publish, _publish_job

    @on_loop
    def stats(self, name: str) -> dict[str, Any]:
        """Per-process stats of the job and totals (sum, min, max of cpu and mem). Reads
        /proc now, on the caller's thread: ``await astats(name)`` reads it off the loop."""
        runner = self._get_job(name)
        tree = descendants_map()
        return summarize(runner.name, [proc.read_stats(tree) for proc in runner.processes])

    async def astats(self, name: str) -> dict[str, Any]:
        """``stats(name)``, reading /proc in a worker thread (for servers on the loop)."""
        runner = self._get_job(name)
        targets = [(proc.pid, proc.name, proc.os_pid) for proc in runner.processes]
        return await self.loop.run_in_executor(None, self._sampler.read_job, runner.name, targets)

    async def aprocess_stats(self, pid: int) -> dict[str, Any]:
        """The stats of one process, read in a worker thread."""
        proc = self.get_process(pid)
        stats = await self.loop.run_in_executor(
            None, self._sampler.read_job, proc.name, [(proc.pid, proc.name, proc.os_pid)]
        )
        return stats["stats"][0]

    async def ausage(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """The state of the jobs (all, or those named) and the CPU seconds, RSS, open
        descriptors and start time of each of their processes: what /metrics exports
        (overview.py). Reads /proc in a worker thread."""
        return await read_usage(self.loop, self._sampler, self._runners_of(names))

    async def aoverview(
        self, names: Iterable[str] | None = None, children: bool = False
    ) -> dict[str, Any]:
        """The jobs (all, or those named) with their state, totals and per-process stats,
        descriptors and uptime: what ``gaffer top`` and the dashboard show (overview.py).
        ``children``: also the stats of every descendant (a scan of /proc)."""
        runners = self._runners_of(names)
        return await read_overview(self.loop, self._sampler, runners, children)

    def _runners_of(self, names: Iterable[str] | None) -> list[JobRunner]:
        if names is None:
            return list(self._jobs.values())
        return [self._get_job(name) for name in names]

    @on_loop
    def monitor(self, listener: Callable[[str, dict], object], name: str | int) -> None:
        """Call ``listener("stat", msg)`` every ``monitor.interval`` seconds with the stats
        of each process of job ``name`` (or of one pid)."""
        self._monitor.add(self._monitor_target(name), listener)

    @on_loop
    def unmonitor(self, listener: Callable[[str, dict], object], name: str | int) -> None:
        self._monitor.remove(self._monitor_target(name), listener)

    @on_loop
    def monitor_io(self, listener: IOListener, name: str | None = None, label: str = ".") -> None:
        """Call ``listener(label, msg)`` with the output of every process of job ``name``
        (of every job when None), those running now and those spawned later, from their
        first byte. ``label`` selects one stream ("." for all)."""
        self._table.add_io_watcher(None if name is None else job_id(name), label, listener)

    @on_loop
    def unmonitor_io(self, listener: IOListener, name: str | None = None, label: str = ".") -> None:
        self._table.remove_io_watcher(None if name is None else job_id(name), label, listener)

    # -- recent output (each job's history) ----------------------------------------------
    @on_loop
    def logs(
        self,
        name: str | None = None,
        lines: int | None = None,
        stream: str | None = None,
        select: JobFilter | None = None,
    ) -> list[dict[str, Any]]:
        """The last ``lines`` lines (all those kept when None) of job ``name``'s output,
        or of every job's (those ``select(job_id)`` accepts) interleaved by time, oldest
        first; ``stream``: ``stdout``, ``stderr`` or both. Each line is ``{"job", "pid",
        "os_pid", "stream", "time", "line"}``. What is kept: ``log_history`` lines a job
        (docs/output.md)."""
        return merge(self._histories(name, select), lines, _stream(stream))

    @on_loop
    def follow_logs(
        self,
        listener: LineListener,
        name: str | None = None,
        lines: int | None = 0,
        stream: str | None = None,
        select: JobFilter | None = None,
    ) -> LineFollower:
        """Call ``listener(line)`` with the last ``lines`` lines of job ``name`` (of every
        job ``select`` accepts when None, those loaded later too), then with each new line
        as it is written, until ``unfollow_logs(follower)``. A line still being written
        when this is called comes whole, once it ends (or when its process exits)."""
        wanted = _stream(stream)
        histories = self._histories(name, select)
        backlog: list[tuple[float, str, Any]] = []
        splitter = Splitter()
        for job, history in histories:
            finished, partial = history.snapshot(lines, wanted)
            backlog.extend((line.time, job, line) for line in finished)
            splitter.adopt(partial)
        backlog.sort(key=lambda item: item[0])
        if lines is not None:
            backlog = backlog[-lines:] if lines > 0 else []
        for _, job, line in backlog:
            listener(line.to_dict(job))
        follower = LineFollower(listener, wanted, splitter, select)
        if name is None:
            self._table.followers.append(follower)
        else:
            histories[0][1].followers.append(follower)
        return follower

    @on_loop
    def unfollow_logs(self, follower: LineFollower) -> None:
        for where in [self._table.followers] + [
            r.job.output.followers for r in self._jobs.values()
        ]:
            if follower in where:
                where.remove(follower)

    def _histories(self, name: str | None, select: JobFilter | None) -> list[tuple[str, Any]]:
        if name is not None:
            runner = self._get_job(name)
            return [(runner.name, runner.job.output)]
        return [
            (runner.name, runner.job.output)
            for runner in self._jobs.values()
            if select is None or select(runner.name)
        ]

    @on_loop
    def reopen_logs(self) -> None:
        """Reopen every log file at its path (after logrotate moved the files away)."""
        self._table.sinks.reopen()

    async def flush_logs(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109 - waited in a thread
        """Wait until the output read so far is written to the log files."""
        return await self.loop.run_in_executor(None, self._table.sinks.flush, timeout)

    @property
    def monitor_interval(self) -> float:
        return self._monitor.interval

    @monitor_interval.setter
    def monitor_interval(self, seconds: float) -> None:
        self._monitor.interval = seconds

    def _monitor_target(self, name: str | int) -> str | int:
        if isinstance(name, int) and not isinstance(name, bool):
            return self.get_process(name).pid
        return self._get_job(name).name

    def processes_of(self, target: str | int) -> list[Process]:
        """The processes a monitor target stands for (used by the stats monitor)."""
        if isinstance(target, int):
            proc = self.running.get(target)
            return [proc] if proc is not None else []
        runner = self._jobs.get(target)
        return runner.processes if runner is not None else []

    def _on_log_drop(self, sink: LogSink, dropped_bytes: int, dropped_chunks: int) -> None:
        target = sink.target.path or sink.target.key
        logger.warning(
            "%d bytes of output of %s dropped: log %s could not take them",
            dropped_bytes,
            ", ".join(sorted(sink.jobs)),
            target,
        )
        for name in sorted(sink.jobs):
            msg = {
                "name": name,
                "target": target,
                "dropped_bytes": dropped_bytes,
                "dropped_chunks": dropped_chunks,
                "total_dropped_bytes": sink.dropped_bytes,
            }
            if name in self._jobs:
                self._publish_job(name, "log_dropped", msg)
            else:
                self._publish("log_dropped", msg)
