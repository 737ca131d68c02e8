"""Noticing child exits at once, without a thread per child and without polling.

On Linux >= 5.3 each child gets a pidfd; the loop wakes up when a child exits, and we
reap exactly that pid. Nothing else in the program is disturbed (no SIGCHLD handler, no
``waitpid(-1)`` that would steal the children of an embedding program). Signals are sent
through the pidfd too, so a pid that was reaped and reused can never be hit.

The pidfds are not each a reader of the loop: they are in the loop's ready set
(readyset.py), one epoll set that the loop watches as one descriptor.

Where pidfds are missing (other kernels, other systems), a thread per child waits in
``waitpid`` instead, as asyncio's own ThreadedChildWatcher does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable

from gaffer.core.readyset import ready_set

logger = logging.getLogger(__name__)

ExitCallback = Callable[[int, int], None]  # (exit_status, term_signal)

HAS_PIDFD = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


def decode_status(status: int) -> tuple[int, int]:
    """A ``waitpid`` status as ``(exit_status, term_signal)``, as libuv reported them."""
    if os.WIFSIGNALED(status):
        return 0, os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), 0
    return 0, 0


class ChildHandle:
    """One watched child. ``send_signal`` is safe until the exit callback has run.

    ``foreign`` handles watch a process that is not this program's child (adopted after a
    crash of gafferd, or a detached process found again): it cannot be reaped here, and
    its exit status comes from whoever is its parent (``report_exit``), or is unknown.
    """

    __slots__ = ("_callback", "_pidfd", "exited", "foreign", "pid")

    def __init__(self, pid: int, callback: ExitCallback) -> None:
        self.pid = pid
        self._callback = callback
        self._pidfd = -1
        self.exited = False
        self.foreign = False

    @property
    def pidfd(self) -> int:
        """The pidfd watching it (-1: none; a thread waits instead)."""
        return self._pidfd

    def send_signal(self, sig: int) -> bool:
        """Signal the child; False when it is already gone."""
        if self.exited:
            return False
        try:
            if self._pidfd >= 0:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def _finish(self, status: int | None) -> None:
        if self.exited:
            return
        self.exited = True
        if status is None:
            exit_status, term_signal = 255, 0
        else:
            exit_status, term_signal = decode_status(status)
        # called once: dropped, so that the owner and its handle (a cycle) go with the
        # last reference, at once, not at the garbage collector's next full pass
        callback, self._callback = self._callback, _called
        try:
            callback(exit_status, term_signal)
        except Exception:
            logger.exception("exit callback failed for pid %d", self.pid)


def _called(exit_status: int, term_signal: int) -> None:
    """The exit callback of a handle whose callback has run."""


class ChildWatcher:
    """Watches children of this process and calls back, on the loop, when each exits."""

    def __init__(self, loop: asyncio.AbstractEventLoop, use_pidfd: bool | None = None) -> None:
        self._loop = loop
        self._use_pidfd = HAS_PIDFD if use_pidfd is None else use_pidfd
        self._handles: dict[int, ChildHandle] = {}
        self._forgotten: set[int] = set()  # reaped by a background thread
        self._by_pidfd: dict[int, ChildHandle] = {}

    def knows(self, pid: int) -> bool:
        """Is ``pid`` a child this watcher (or one of its threads) will reap?"""
        return pid in self._handles or pid in self._forgotten

    def __len__(self) -> int:
        return len(self._handles)

    def watch(self, pid: int, callback: ExitCallback) -> ChildHandle:
        handle = ChildHandle(pid, callback)
        self._handles[pid] = handle
        if self._use_pidfd:
            try:
                handle._pidfd = os.pidfd_open(pid)
            except OSError as exc:
                logger.warning("pidfd_open(%d) failed (%s); waiting in a thread", pid, exc)
            else:
                self._add_pidfd(handle)
                return handle
        threading.Thread(
            target=self._wait_in_thread, args=(handle,), name=f"gaffer-waitpid-{pid}", daemon=True
        ).start()
        return handle

    def _add_pidfd(self, handle: ChildHandle) -> None:
        if handle._pidfd in self._by_pidfd:  # watch_unknown again: watched already
            return
        ready_set(self._loop).add(handle._pidfd, self._on_ready, handle)
        self._by_pidfd[handle._pidfd] = handle

    def _remove_pidfd(self, handle: ChildHandle) -> None:
        pidfd, handle._pidfd = handle._pidfd, -1
        del self._by_pidfd[pidfd]
        ready_set(self._loop).remove(pidfd)
        os.close(pidfd)

    def _on_ready(self, handle: ChildHandle) -> None:
        if handle.foreign:
            self._foreign_gone(handle)
        else:
            self._on_pidfd(handle)

    def adopt(
        self, pid: int, pidfd: int, callback: ExitCallback, foreign: str | None = None
    ) -> ChildHandle:
        """Watch a process this program did not spawn in this life, through ``pidfd``
        (which pins it: no other process can be behind that descriptor; -1: none).

        ``foreign`` None: still our child (inherited across an ``exec`` of gafferd),
        reaped here as if spawned. ``"reported"``: the child of another process (the
        keeper) that reaps it and tells its exit status through ``report_exit``.
        ``"unknown"``: reaped by someone else (init): its exit is noticed through the
        pidfd, its status is unknown.
        """
        if foreign is None:
            if pidfd < 0:
                return self.watch(pid, callback)
            handle = ChildHandle(pid, callback)
            handle._pidfd = pidfd
            self._handles[pid] = handle
            self._add_pidfd(handle)
            return handle
        handle = ChildHandle(pid, callback)
        handle.foreign = True
        handle._pidfd = pidfd
        self._handles[pid] = handle
        if foreign == "unknown":
            self.watch_unknown(handle)
        return handle

    def watch_unknown(self, handle: ChildHandle) -> None:
        """From now on the exit of a foreign process is noticed through its pidfd (its
        reaper can no longer tell its status)."""
        if handle.exited:
            return
        if handle._pidfd < 0:
            self._foreign_gone(handle)  # no way to watch it: treat it as gone
        else:
            self._add_pidfd(handle)  # _on_ready: a foreign handle is gone, not reaped

    def _foreign_gone(self, handle: ChildHandle) -> None:
        self._close_pidfd(handle)
        self._handles.pop(handle.pid, None)
        logger.info("pid %d (not our child) exited; its exit status is unknown", handle.pid)
        handle._finish(None)

    def report_exit(self, pid: int, status: int) -> bool:
        """The reaper of a foreign process says it exited with ``status`` (a waitpid
        status); False when no foreign handle waits for it."""
        handle = self._handles.get(pid)
        if handle is None or not handle.foreign:
            return False
        self._close_pidfd(handle)
        del self._handles[pid]
        handle._finish(status)
        return True

    def watched(self) -> list[int]:
        """Every pid watched now."""
        return list(self._handles)

    def foreign_handles(self) -> list[ChildHandle]:
        return [handle for handle in self._handles.values() if handle.foreign]

    def _close_pidfd(self, handle: ChildHandle) -> None:
        if handle._pidfd < 0:
            return
        if handle._pidfd in self._by_pidfd:
            self._remove_pidfd(handle)
        else:  # a foreign handle whose reaper reports: never watched
            os.close(handle._pidfd)
            handle._pidfd = -1

    @property
    def forgotten(self) -> list[int]:
        """Detached children being reaped by background threads."""
        return list(self._forgotten)

    def _on_pidfd(self, handle: ChildHandle) -> None:
        try:
            pid, status = os.waitpid(handle.pid, os.WNOHANG)
        except ChildProcessError:
            pid = handle.pid
            logger.warning("pid %d was reaped by someone else; its exit status is lost", handle.pid)
            status = None
        if pid == 0:  # readable but not yet reapable: wait for the next wake-up
            return
        self._remove_pidfd(handle)
        self._handles.pop(handle.pid, None)
        handle._finish(status)

    def _wait_in_thread(self, handle: ChildHandle) -> None:
        # wait without reaping: the pid stays ours (a zombie) until the loop reaps it,
        # so a signal sent meanwhile can never reach a reused pid
        try:
            os.waitid(os.P_PID, handle.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        try:
            self._loop.call_soon_threadsafe(self._on_thread_exit, handle)
        except RuntimeError:  # the loop is closed: reap here, nobody listens
            _reap(handle.pid)

    def _on_thread_exit(self, handle: ChildHandle) -> None:
        self._handles.pop(handle.pid, None)
        if handle.exited:  # forgotten meanwhile: still reap it
            _reap(handle.pid)
            return
        handle._finish(_reap(handle.pid))

    def forget(self, pid: int) -> None:
        """Stop watching ``pid`` (a detached child outliving the manager): the reaping is
        handed to a background thread so that it never turns into a zombie."""
        handle = self._handles.pop(pid, None)
        if handle is None or handle.exited:
            return
        handle.exited = True
        if handle.foreign:  # not ours to reap
            self._close_pidfd(handle)
            return
        if handle._pidfd >= 0:
            self._remove_pidfd(handle)
            self._reap_in_thread(pid)

    def reap_later(self, pids: list[int]) -> None:
        """Reap these children in background threads (detached ones a previous life of
        this program was reaping when it exec'd)."""
        for pid in pids:
            self._reap_in_thread(pid)

    def _reap_in_thread(self, pid: int) -> None:
        self._forgotten.add(pid)

        def wait() -> None:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self._forgotten.discard(pid)

        threading.Thread(target=wait, name=f"gaffer-detached-{pid}", daemon=True).start()

    def close(self) -> None:
        for pid in list(self._handles):
            self.forget(pid)


def _reap(pid: int) -> int | None:
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None
