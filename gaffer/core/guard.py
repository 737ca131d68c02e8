"""The guard: no managed process outlives a manager that dies without stopping it.

A manager killed with SIGKILL (or by the OOM killer) cannot stop its children, and they
would run on, unsupervised, holding ports a new gafferd needs. So a manager started with
``guard=True`` starts a small guard process (``guard_main.py``), in a session of its own,
that holds the read end of a pipe. The manager writes ``+<pgid>`` when a process group of
its own starts and ``-<pgid>`` when it is gone. When the manager dies, the kernel closes
its end of the pipe: the guard stops every group still registered, and the processes
that escaped them, then exits. After a clean stop nothing is registered and the guard
exits quietly. Detached jobs are never registered: they are meant to outlive gafferd.

Why not ``prctl(PR_SET_PDEATHSIG)`` in each child: it needs a ``preexec_fn`` (a ``fork``
instead of a ``vfork`` per spawn), it fires when the spawning *thread* ends rather than
the process, it reaches the leader only, not its group, and exec of a set-uid program
clears it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections import Counter

from gaffer.core import guard_main
from gaffer.core.childwatch import ChildWatcher
from gaffer.core.pipes import PipeWriter

logger = logging.getLogger(__name__)

GRACE = 0.5  # seconds between the SIGTERM and the SIGKILL of a dead manager's processes
CLOSE_TIMEOUT = 5.0  # seconds the guard may take to exit after a clean stop


class Guard:
    """The manager's side of the guard process. Used on the loop thread only."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, watcher: ChildWatcher, grace: float = GRACE
    ) -> None:
        read_fd, write_fd = os.pipe()  # both ends non-inheritable: children never hold them
        try:
            popen = subprocess.Popen(
                [sys.executable, "-I", "-S", guard_main.__file__, str(grace)],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # out of reach of a Ctrl-C meant for the manager
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        popen.returncode = 0  # reaped by the watcher, never by Popen
        self.pid = popen.pid
        self._exited = loop.create_future()
        self._handle = watcher.watch(self.pid, self._on_exit)
        self._loop = loop
        self._writer = PipeWriter(loop, write_fd)
        self._groups: Counter[int] = Counter()
        self._broken = False
        # lines wait for the end of the loop's iteration: a burst of 1,000 spawns is a few
        # writes (and wake-ups of the guard), not 1,000
        self._pending: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None

    def __contains__(self, pgid: int) -> bool:
        return pgid in self._groups

    def add(self, pgid: int) -> None:
        """Register a group (counted: a group added twice must be removed twice)."""
        self._groups[pgid] += 1
        self._send(b"+%d\n" % pgid)

    def remove(self, pgid: int) -> None:
        if self._groups[pgid] <= 0:
            del self._groups[pgid]
            return
        self._groups[pgid] -= 1
        if not self._groups[pgid]:
            del self._groups[pgid]
        self._send(b"-%d\n" % pgid)

    def _send(self, line: bytes) -> None:
        if self._broken:
            return
        self._pending.append(line)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._broken or not self._pending:
            return
        data, self._pending = b"".join(self._pending), []
        try:
            self._writer.write(data)
        except BrokenPipeError:
            self._broken = True
            logger.error(
                "the guard process (pid %d) is gone: if this manager dies, its processes "
                "will run on unsupervised",
                self.pid,
            )

    def _on_exit(self, exit_status: int, term_signal: int) -> None:
        if not self._exited.done():
            self._exited.set_result(None)
        if not self._writer.closed:  # it died while the manager runs
            self._broken = True
            self._writer.close()
            logger.error(
                "the guard process (pid %d) exited (status %d, signal %d): if this manager "
                "dies, its processes will run on unsupervised",
                self.pid,
                exit_status,
                term_signal,
            )

    async def close(self) -> None:
        """After a clean stop: close the pipe and wait for the guard to exit (it is reaped
        by the watcher). Whatever is still registered then is stopped by the guard."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush()
        if not self._writer.closed:
            self._writer.close_when_flushed()
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), CLOSE_TIMEOUT)
        except TimeoutError:
            logger.warning("the guard process (pid %d) did not exit: SIGKILL", self.pid)
            self._handle.send_signal(signal.SIGKILL)
            await self._exited
