"""The guard: no managed process outlives a manager that dies without stopping it.

A manager killed with SIGKILL (or by the OOM killer) cannot stop its children, and they
would run on, unsupervised, holding ports a new gafferd needs. So a manager started with
``guard=True`` starts a small guard process (``guard_main.awk``, else ``guard_main.py``),
in a session of its own, that holds the read end of a pipe. The manager writes
``+<pgid>`` when a process group of its own starts and ``-<pgid>`` when it is gone. When
the manager dies, the kernel closes its end of the pipe: the guard stops every group
still registered, and the processes that escaped them, then exits. After a clean stop
nothing is registered and the guard exits quietly. Detached jobs are never registered:
they are meant to outlive gafferd. A guard that dies while the manager runs is replaced
at once (see ``Guard``). The lines of a burst of spawns go out together on the loop's
next turn: a process spawned less than a turn before a SIGKILL is one the guard cannot know.

Why not ``prctl(PR_SET_PDEATHSIG)`` in each child: it needs a ``preexec_fn`` (a ``fork``
instead of a ``vfork`` per spawn), it fires when the spawning *thread* ends rather than
the process, it reaches the leader only, not its group, and exec of a set-uid program
clears it.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from gaffer.core import guard_main
from gaffer.core.childwatch import ChildWatcher
from gaffer.core.pipes import PipeWriter

logger = logging.getLogger(__name__)

GRACE = 0.5  # seconds between the SIGTERM and the SIGKILL of a dead manager's processes
CLOSE_TIMEOUT = 5.0  # seconds the guard may take to exit after a clean stop
RESTART_YOUNG = 1.0  # a guard that dies younger than this is restarted after a delay
RESTART_MAX_DELAY = 30.0
GUARD_AWK = os.path.splitext(guard_main.__file__)[0] + ".awk"  # (no pathlib: 2.5 ms at start)


def guard_command(
    grace: float, awk: str | None, python: str = sys.executable
) -> tuple[list[str], dict[str, str] | None]:
    """The guard's command line and environment (None: gafferd's own). Where there is an
    awk, the guard is ``guard_main.awk``: it only counts groups while the manager lives
    (0.5 MiB of PSS against 5 for a Python), and hands the ones left at the end to
    ``guard_main.py``, which stops them. Elsewhere ``guard_main.py`` does both."""
    stop = [python, "-I", "-S", guard_main.__file__, str(grace)]
    if awk is None:
        return stop, None
    # sh sets what the Python guard sets itself: only the end of the pipe stops the guard
    script = 'trap "" HUP INT TERM; exec "$0" -f "$1"'
    # a Python gone meanwhile (its virtualenv removed, an upgrade that moved the file)
    # must not spare the processes: the shell then SIGKILLs the groups itself
    fallback = 'while read -r line; do kill -KILL "-${line#+}"; done 2>/dev/null'
    env = {**os.environ, "GAFFER_GUARD_STOP": f"{shlex.join(stop)} || {fallback}"}
    return ["/bin/sh", "-c", script, awk, GUARD_AWK], env


class GroupRegistry(abc.ABC):
    """The process groups a helper process (the guard, the keeper) is told of, counted:
    a group added twice must be removed twice before the helper hears it is gone."""

    _groups: Counter[int]

    def __contains__(self, pgid: int) -> bool:
        return pgid in self._groups

    def add(self, pgid: int) -> None:
        self._groups[pgid] += 1
        self._tell(b"+%d" % pgid)

    def remove(self, pgid: int) -> None:
        if self._groups[pgid] <= 0:
            del self._groups[pgid]
            return
        self._groups[pgid] -= 1
        if not self._groups[pgid]:
            del self._groups[pgid]
        self._tell(b"-%d" % pgid)

    @abc.abstractmethod
    def _tell(self, line: bytes) -> None:
        """Send ``+PGID`` or ``-PGID`` (no newline) to the helper."""


class Guard(GroupRegistry):
    """The manager's side of the guard process. Used on the loop thread only.

    If the guard dies while the manager runs (killed by someone, by the OOM killer), a new
    one is started at once and told every group still registered, and ``on_restart`` is
    called with the event ``"guard_restarted"`` and ``{"name": "guard", "pid", "old_pid",
    "groups"}`` (the manager's publish). A guard that keeps dying young is started again after a
    delay (1 s, doubling, up to RESTART_MAX_DELAY), so that it cannot spin.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        watcher: ChildWatcher,
        grace: float = GRACE,
        on_restart: Callable[[str, dict[str, Any]], object] | None = None,
        adopt: dict[str, Any] | None = None,
    ) -> None:
        self._loop = loop
        self._watcher = watcher
        self._grace = grace
        self._on_restart = on_restart
        self._groups: Counter[int] = Counter()
        # lines wait for the end of the loop's iteration: a burst of 1,000 spawns is a few
        # writes (and wake-ups of the guard), not 1,000
        self._pending: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._closing = False
        self._restart_delay = 0.0
        self._young_deaths = 0  # guards in a row that died within RESTART_YOUNG
        self._restart_handle: asyncio.TimerHandle | None = None
        if adopt is None:
            self._spawn()
        else:
            self._adopt(adopt)

    def _spawn(self) -> None:
        """Start a guard process; the pipe to it is ``self._writer``."""
        read_fd, write_fd = os.pipe()  # both ends non-inheritable: children never hold them
        argv, env = guard_command(self._grace, shutil.which("awk"))
        try:
            popen = subprocess.Popen(
                argv,
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # out of reach of a Ctrl-C meant for the manager
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        popen.returncode = 0  # reaped by the watcher, never by Popen
        self.pid = pid = popen.pid
        self.started_at = time.monotonic()
        self._exited = self._loop.create_future()
        self._handle = self._watcher.watch(pid, lambda status, sig: self._on_exit(pid, status, sig))
        self._writer = PipeWriter(self._loop, write_fd)
        self._broken = False

    # -- across an exec of gafferd (handover.py): the same guard goes on guarding ---------
    def export(self) -> tuple[dict[str, Any], list[int]]:
        """What the next life of the manager needs to go on with this guard, and the
        descriptors that must survive the exec (the pipe, the guard's pidfd)."""
        self._flush_blocking()
        state = {
            "pid": self.pid,
            "fd": self._writer.fd,
            "pidfd": self._handle.pidfd,
            "started_at": self.started_at,
            "groups": [[pgid, count] for pgid, count in self._groups.items()],
        }
        return state, [fd for fd in (self._writer.fd, self._handle.pidfd) if fd >= 0]

    def _flush_blocking(self) -> None:
        """Send every line not sent yet, waiting if the pipe is full."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        data = b"".join([bytes(chunk) for chunk in self._writer._buffer] + self._pending)
        self._pending = []
        self._writer._buffer.clear()
        if self._broken or not data or self._writer.closed:
            return
        os.set_blocking(self._writer.fd, True)
        try:
            os.write(self._writer.fd, data)
        except OSError:
            self._broken = True
        finally:
            os.set_blocking(self._writer.fd, False)

    def _adopt(self, state: dict[str, Any]) -> None:
        self.pid = pid = state["pid"]
        self.started_at = state["started_at"]
        self._groups.update({pgid: count for pgid, count in state["groups"]})
        self._exited = self._loop.create_future()
        self._handle = self._watcher.adopt(
            pid, state["pidfd"], lambda status, sig: self._on_exit(pid, status, sig)
        )
        self._writer = PipeWriter(self._loop, state["fd"])
        self._broken = False

    def hold(self, proc: Any) -> None:
        """Only the keeper (keeper.py) holds processes; the guard knows groups."""

    def drop(self, os_pid: int) -> None:
        """See ``hold``."""

    def _tell(self, line: bytes) -> None:
        self._send(line + b"\n")

    def _send(self, line: bytes) -> None:
        if self._broken:
            return  # a new guard gets every registered group when it starts
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
            self._broken = True  # its exit, reported by the watcher, restarts it

    def _on_exit(self, pid: int, exit_status: int, term_signal: int) -> None:
        if pid != self.pid:
            return  # a guard replaced already
        if not self._exited.done():
            self._exited.set_result(None)
        if self._closing or self._writer.closed:
            return  # the clean stop: close() closed the pipe
        self._broken = True
        self._writer.close()
        # a new one at once; but one that dies young again waits: 1 s, doubling, up to 30 s
        young = time.monotonic() - self.started_at < RESTART_YOUNG
        self._young_deaths = self._young_deaths + 1 if young else 0
        self._restart_delay = (
            min(RESTART_MAX_DELAY, 2.0 ** (self._young_deaths - 2)) if self._young_deaths > 1 else 0
        )
        logger.error(
            "the guard process (pid %d) exited (status %d, signal %d): starting a new one%s",
            pid,
            exit_status,
            term_signal,
            f" in {self._restart_delay:.0f} s" if self._restart_delay else "",
        )
        if self._restart_delay:
            self._restart_handle = self._loop.call_later(self._restart_delay, self._restart, pid)
        else:
            self._restart(pid)

    def _restart(self, old_pid: int) -> None:
        self._restart_handle = None
        if self._closing:
            return
        try:
            self._spawn()
        except OSError as exc:
            self._restart_delay = min(RESTART_MAX_DELAY, self._restart_delay * 2 or 1.0)
            logger.error(
                "cannot start a guard process (%s): trying again in %.0f s",
                exc,
                self._restart_delay,
            )
            self._restart_handle = self._loop.call_later(
                self._restart_delay, self._restart, old_pid
            )
            return
        # the whole state supersedes the lines not yet sent to the dead one
        self._pending = []
        lines = [b"+%d\n" % pgid for pgid, count in self._groups.items() for _ in range(count)]
        if lines:
            self._writer.write(b"".join(lines))
        logger.warning(
            "new guard process (pid %d) guarding %d process group(s)", self.pid, len(self._groups)
        )
        if self._on_restart is not None:
            self._on_restart(
                "guard_restarted",
                {"name": "guard", "pid": self.pid, "old_pid": old_pid, "groups": len(self._groups)},
            )

    async def close(self) -> None:
        """After a clean stop: close the pipe and wait for the guard to exit (it is reaped
        by the watcher). Whatever is still registered then is stopped by the guard."""
        self._closing = True
        if self._restart_handle is not None:
            self._restart_handle.cancel()
            self._restart_handle = None
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
