"""Orphans: processes that lost their parent and were handed to the manager.

A manager started with ``subreaper=True`` (gafferd does) asks Linux to make it the child
subreaper of everything it starts (``prctl(PR_SET_CHILD_SUBREAPER)``): a process whose
parent dies (the child of a crashed worker, a daemon that forked twice, a process that
left its group with ``setsid``) is handed to the manager instead of to init. So nothing a
job started runs out of reach: orphans are reaped when they exit (no zombies pile up),
registered with the guard (they die with a killed manager), and stopped with their job
(every process carries its job's id in ``GAFFER_JOB``, and what it starts inherits it)
or, at the latest, when the manager stops. As pid 1 of a container the manager gets
every orphan anyway; the same code handles them.

No event tells a subreaper that it was handed a child, so the manager lists its children
every ``SWEEP_INTERVAL`` seconds in a worker thread (one small file per thread of the
manager, not a scan of /proc) and looks closer only at those it does not know. Exits of
adopted orphans are noticed at once, through a pidfd. Only children in another session
than the manager's are taken: children the embedding program (or a plugin) started in
its own session are its business, and it reaps them itself. Orphans of detached jobs
(in a detached process's session, or carrying ``GAFFER_DETACHED`` in their environment,
which detached processes get) are reaped but never stopped: they are meant to outlive
gafferd.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gaffer.core.guard import Guard
from gaffer.core.procfs import all_pids, children_of, pidfd_or_none, proc_stat, send_signal

logger = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>
# in the environment of detached processes, inherited by what they start: an orphan that
# carries it (even from another session, after a daemon's setsid) is never stopped
DETACHED_MARK = "GAFFER_DETACHED"
# in the environment of every process, and so of what it starts: the job it belongs to
JOB_MARK = "GAFFER_JOB"
SWEEP_INTERVAL = 1.0  # seconds between two listings of the manager's children
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL of orphans, unless told otherwise
KILL_WAIT = 1.0  # seconds to wait for the SIGKILLed to be gone
NO_PIDFD_POLL = 0.02  # seconds between looks at an orphan that has no pidfd


def become_subreaper() -> bool:
    """Make this process the child subreaper of its descendants; False where the system
    cannot (not Linux, or a kernel older than 3.4)."""
    if os.getpid() == 1:
        return True  # init already receives every orphan
    import ctypes  # here: only gafferd asks, once

    try:
        # the program's own symbols include the C library's prctl (find_library would
        # run ldconfig in a subprocess to learn what is already loaded)
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def list_children(pid: int) -> list[int]:
    """The children of ``pid``: from its children files, or else a scan of /proc."""
    children = children_of(pid)
    if children is not None:
        return children
    found = []
    for candidate in all_pids():
        stat = proc_stat(candidate)
        if stat is not None and stat.ppid == pid:
            found.append(candidate)
    return found


def read_marks(pid: int) -> tuple[bool, str | None]:
    """Whether the process carries the detached mark, and the job id it carries (from
    the environment it was started with; unreadable: no mark, no job)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = handle.read()
    except OSError:
        return False, None
    detached_mark, job_mark = DETACHED_MARK.encode() + b"=", JOB_MARK.encode() + b"="
    detached, job = False, None
    for entry in environ.split(b"\0"):
        if entry.startswith(detached_mark):
            detached = True
        elif entry.startswith(job_mark):
            job = entry[len(job_mark) :].decode(errors="replace")
    return detached, job


@dataclass
class Orphan:
    pid: int
    pgid: int
    pidfd: int | None
    kept: bool  # of a detached job's session: reaped, never stopped
    job: str | None = None  # the job it came from, by its GAFFER_JOB


class OrphanReaper:
    """Finds, reaps and at the end stops the orphans handed to the manager."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        is_managed: Callable[[int], bool],
        is_kept_session: Callable[[int], bool],
        guard: Guard | None = None,
        interval: float = SWEEP_INTERVAL,
        is_job_stopped: Callable[[str], float | None] = lambda job: None,
    ) -> None:
        self._loop = loop
        self._is_managed = is_managed
        self._is_kept_session = is_kept_session
        self._is_job_stopped = is_job_stopped
        self._guard = guard
        self._interval = interval
        self._own_pid = os.getpid()
        self._own_sid = os.getsid(0)
        self.reap_all = False  # a container's PID 1: zombies of our own session are reaped too
        self.orphans: dict[int, Orphan] = {}
        self.reaped = 0  # orphans reaped since the start (for logs and tests)
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._closed = False
        self._changed = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="gaffer-orphans"
        )

    def start(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(self._interval, self._sweep)

    def pause(self) -> None:
        """No sweep until ``start()`` again (a hand-over is being made)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def export(self) -> tuple[list[list[Any]], list[int]]:
        """The orphans known, for the next life of the manager (handover.py): records and
        the pidfds to keep."""
        records = [
            [o.pid, o.pgid, -1 if o.pidfd is None else o.pidfd, o.kept, o.job]
            for o in self.orphans.values()
        ]
        return records, [o.pidfd for o in self.orphans.values() if o.pidfd is not None]

    def adopt(self, records: list[list[Any]]) -> None:
        """Take the orphans a previous life knew (already registered with the guard)."""
        for pid, pgid, pidfd, kept, job in records:
            orphan = Orphan(pid, pgid, None if pidfd < 0 else pidfd, kept, job)
            self.orphans[pid] = orphan
            if orphan.pidfd is not None:
                self._loop.add_reader(orphan.pidfd, self._exited, orphan)

    def _sweep(self) -> None:
        self._timer = None
        if self._closed or self._busy:
            return
        self._busy = True
        future = self._executor.submit(list_children, self._own_pid)
        future.add_done_callback(self._listed_threadsafe)

    def _listed_threadsafe(self, future: concurrent.futures.Future) -> None:
        try:
            self._loop.call_soon_threadsafe(self._listed, future)
        except RuntimeError:  # the loop is closed
            pass

    def _listed(self, future: concurrent.futures.Future) -> None:
        self._busy = False
        if not future.cancelled() and future.exception() is None:
            self.examine(future.result())
        if not self._closed and self._timer is None:
            self._timer = self._loop.call_later(self._interval, self._sweep)

    def examine(self, children: list[int]) -> None:
        """Take the children nobody else watches: reap the exited, adopt the living."""
        for pid in children:
            if pid in self.orphans or self._is_managed(pid):
                continue
            stat = proc_stat(pid)
            if stat is None or (stat.sid == self._own_sid and not (stat.exited and self.reap_all)):
                continue
            if stat.exited:
                self._reap(pid)
            else:
                self._adopt(pid, stat.pgid, stat.sid)

    def _adopt(self, pid: int, pgid: int, sid: int) -> None:
        detached, job = read_marks(pid)
        kept = detached or self._is_kept_session(sid)
        orphan = Orphan(pid, pgid, pidfd_or_none(pid), kept, job)
        self.orphans[pid] = orphan
        if orphan.pidfd is not None:
            self._loop.add_reader(orphan.pidfd, self._exited, orphan)
        if self._guard is not None and not kept:
            self._guard.add(pgid)
        logger.info(
            "adopted orphan pid %d (group %d%s%s)",
            pid,
            pgid,
            f", of {job}" if job else "",
            ", of a detached job" if kept else "",
        )
        grace = None if kept or job is None else self._is_job_stopped(job)
        if grace is not None:  # its job was stopped or unloaded before it was found
            self._stop([orphan], grace)

    def stop_job(self, job: str, grace: float) -> int:
        """Stop the orphans of ``job`` (SIGTERM, SIGKILL ``grace`` seconds later), those
        handed over since the last sweep included. Returns how many were signalled."""
        if self._closed:
            return 0
        self.examine(list_children(self._own_pid))  # one small file per thread: cheap
        doomed = [o for o in self.orphans.values() if o.job == job and not o.kept]
        if doomed:
            logger.info("stopping %d orphaned process(es) of %s", len(doomed), job)
            self._stop(doomed, grace)
        return len(doomed)

    def _stop(self, orphans: list[Orphan], grace: float) -> None:
        self._signal(orphans, signal.SIGTERM)

        def kill_the_living() -> None:
            self._signal(self._living(orphans), signal.SIGKILL)

        self._loop.call_later(grace, kill_the_living)

    def _exited(self, orphan: Orphan) -> None:
        if self.orphans.pop(orphan.pid, None) is None:
            return
        if orphan.pidfd is not None:
            self._loop.remove_reader(orphan.pidfd)
            os.close(orphan.pidfd)
            orphan.pidfd = None
        if self._guard is not None and not orphan.kept:
            self._guard.remove(orphan.pgid)
        self._reap(orphan.pid)
        self._changed.set()

    def _reap(self, pid: int) -> None:
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if reaped:
            self.reaped += 1
            logger.debug("reaped orphan pid %d", pid)

    def _still_zombies(self) -> None:
        """Without pidfds, exits are found by the sweeps: reap the orphans that exited."""
        for orphan in [o for o in self.orphans.values() if o.pidfd is None]:
            stat = proc_stat(orphan.pid)
            if stat is None or stat.exited:
                self._exited(orphan)

    async def close(self, grace: float | None = None) -> None:
        """At the manager's stop: take the last orphans, then stop every one not kept
        (SIGTERM, SIGKILL ``grace`` seconds later) and reap them."""
        self._closed = True
        grace = STOP_GRACE if grace is None else grace
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        children = await self._loop.run_in_executor(self._executor, list_children, self._own_pid)
        self.examine(children)
        doomed = [orphan for orphan in self.orphans.values() if not orphan.kept]
        if doomed:
            logger.info("stopping %d orphaned processes", len(doomed))
            self._signal(doomed, signal.SIGTERM)
            await self._wait_gone(doomed, grace)
            self._signal(self._living(doomed), signal.SIGKILL)
            await self._wait_gone(doomed, KILL_WAIT)
        for orphan in list(self.orphans.values()):  # the kept ones: init reaps them later
            if orphan.pidfd is not None:
                self._loop.remove_reader(orphan.pidfd)
                os.close(orphan.pidfd)
        self.orphans.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _living(self, orphans: list[Orphan]) -> list[Orphan]:
        self._still_zombies()
        return [orphan for orphan in orphans if orphan.pid in self.orphans]

    async def _wait_gone(self, orphans: list[Orphan], seconds: float) -> None:
        deadline = self._loop.time() + seconds
        while (living := self._living(orphans)) and self._loop.time() < deadline:
            self._changed.clear()
            # exits come through pidfds; an orphan without one is looked at now and then
            wait = deadline - self._loop.time()
            if any(orphan.pidfd is None for orphan in living):
                wait = min(wait, NO_PIDFD_POLL)
            try:
                await asyncio.wait_for(self._changed.wait(), max(wait, 0))
            except TimeoutError:
                pass

    @staticmethod
    def _signal(orphans: list[Orphan], sig: int) -> None:
        for orphan in orphans:
            send_signal(orphan.pid, orphan.pidfd, sig)
