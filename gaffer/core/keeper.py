"""The manager's side of the keeper (keeper_main.py): gafferd with ``on_daemon_crash =
keep``.

In place of the guard (guard.py), gafferd's parent keeps what a crash must not lose: the
process groups to stop if everything fails (``+PGID``/``-PGID``, as the guard), and for
every process spawned its pidfd and gafferd's ends of its pipes, sent over a unix socket
(``SCM_RIGHTS``) in batches, once per turn of the loop (a burst of 1,000 spawns is a
few dozen messages). When gafferd dies the keeper, their subreaper, reaps them, tells
their exit statuses, starts gafferd again and hands everything back (``receive_held``);
the new gafferd adopts the processes as after a hand-over in place, except that they
are the keeper's children now: their exits come from the keeper (``exit``), not from
``waitpid``. Nothing of this runs with the default ``on_daemon_crash = stop``.

If the keeper itself dies (an operator's ``kill -9``), gafferd goes on under a guard
(``on_lost``): the processes still die with gafferd, and those adopted from the keeper
are watched through their pidfds (exit statuses unknown).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gaffer.core.childwatch import ChildWatcher
from gaffer.core.guard import GroupRegistry

if TYPE_CHECKING:
    from gaffer.core.process import Process

logger = logging.getLogger(__name__)

ENV = "GAFFER_KEEPER_FD"
BATCH = 50  # processes per message: at most 253 descriptors ride on one
MAX_MESSAGE = 256 * 1024
RECEIVE_TIMEOUT = 10.0  # seconds the keeper may take to hand its processes back


class Keeper(GroupRegistry):
    """Used on the loop thread only, like Guard (whose interface it has)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        watcher: ChildWatcher,
        fd: int,
        on_lost: Callable[[Keeper], None] | None = None,
        groups: list[list[int]] | None = None,
    ) -> None:
        self._loop = loop
        self._watcher = watcher
        self._sock = socket.socket(fileno=fd)
        self._sock.set_inheritable(False)
        self._on_lost = on_lost
        self._groups: Counter[int] = Counter({pgid: count for pgid, count in groups or ()})
        self._lines: list[bytes] = []
        self._holds: list[Process] = []
        self._drops: list[int] = []
        self._queue: deque[tuple[bytes, list[int]]] = deque()  # (message, its fds' dups)
        self._flush_handle: asyncio.Handle | None = None
        self._writing = False
        self._reading = False
        self.lost = False
        self.pid = os.getppid()

    def start(self) -> None:
        """Read what the keeper says (exit statuses) from now on."""
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock.fileno(), self._readable)
        self._reading = True

    # -- what the keeper holds -------------------------------------------------------------
    def receive_held(self, timeout: float = RECEIVE_TIMEOUT) -> tuple[list[dict], dict]:
        """At a start: the processes the keeper holds (each record with its descriptors
        by role, and ``status`` when it exited meanwhile) and its ``end`` message
        (``next_pid``, ``lives``). Blocking: before the loop runs."""
        self._sock.settimeout(timeout)
        records: list[dict[str, Any]] = []
        try:
            while True:
                data, fds, _, _ = socket.recv_fds(self._sock, MAX_MESSAGE, 253)
                kind, _, body = data.partition(b" ")
                if kind == b"end":
                    end = json.loads(body)
                    self._groups.update({pgid: count for pgid, count in end.get("groups", ())})
                    return records, end
                if kind != b"held":
                    _close(fds)
                    continue
                for record in json.loads(body):
                    count = len(record["fds"])
                    record["fds"], fds = (
                        dict(zip(record["fds"], fds[:count], strict=True)),
                        fds[count:],
                    )
                    records.append(record)
                _close(fds)
        except (OSError, ValueError) as exc:
            logger.error("the keeper did not hand its processes back: %s", exc)
            return records, {}
        finally:
            self._sock.settimeout(None)
            self._sock.setblocking(False)

    def hold(self, proc: Process) -> None:
        """A process was spawned: the keeper is to hold its pidfd and pipes."""
        self._holds.append(proc)
        self._schedule()

    def drop(self, os_pid: int) -> None:
        """A process is gone (or left running on its own): the keeper lets go of it."""
        self._drops.append(os_pid)
        self._schedule()

    def ready(self) -> None:
        self._send_now(b"ready")

    def bye(self) -> None:
        """gafferd stops on purpose: do not start it again."""
        self._send_now(b"bye")

    def listen(self, sockets: list[socket.socket]) -> None:
        """The listening sockets gafferd serves now (after a SIGHUP changed them)."""
        self._send(b"listen", [sock.fileno() for sock in sockets])

    # -- sending -------------------------------------------------------------------------
    def _tell(self, line: bytes) -> None:
        self._lines.append(line)
        self._schedule()

    def _schedule(self) -> None:
        if self._flush_handle is None and not self.lost:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self.lost:
            return
        if self._lines:
            lines, self._lines = self._lines, []
            self._send(b"\n".join(lines))
        holds, self._holds = self._holds, []
        records, fds = [], []
        for proc in holds:
            if not proc.active:  # exited meanwhile: its descriptors may be closed
                continue
            record, more = _describe(proc)
            records.append(record)
            fds += more
            if len(records) == BATCH:
                self._send(b"hold " + json.dumps(records).encode(), fds)
                records, fds = [], []
        if records:
            self._send(b"hold " + json.dumps(records).encode(), fds)
        if self._drops:
            drops, self._drops = self._drops, []
            self._send(b"drop " + b",".join(b"%d" % pid for pid in drops))

    def _send(self, data: bytes, fds: list[int] | None = None) -> None:
        if self.lost:
            return
        if not self._queue:
            try:
                socket.send_fds(self._sock, [data], fds) if fds else self._sock.send(data)
                return
            except BlockingIOError:
                pass
            except OSError as exc:
                self._gone(exc)
                return
        # the keeper is slow: keep the message, with copies of its descriptors (ours
        # may be closed before it goes)
        self._queue.append((data, [os.dup(fd) for fd in fds or ()]))
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._sock.fileno(), self._writable)

    def _writable(self) -> None:
        while self._queue:
            data, fds = self._queue[0]
            try:
                socket.send_fds(self._sock, [data], fds) if fds else self._sock.send(data)
            except BlockingIOError:
                return
            except OSError as exc:
                self._gone(exc)
                return
            self._queue.popleft()
            _close(fds)
        self._loop.remove_writer(self._sock.fileno())
        self._writing = False

    def _send_now(self, data: bytes) -> None:
        """Flush what waits, then ``data``, waiting if the socket is full."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._flush()
        self._drain_blocking()
        if not self.lost:
            try:
                self._sock.setblocking(True)
                self._sock.send(data)
            except OSError as exc:
                self._gone(exc)
            finally:
                if not self.lost:
                    self._sock.setblocking(False)

    def _drain_blocking(self) -> None:
        if not self._queue or self.lost:
            return
        self._sock.setblocking(True)
        try:
            while self._queue:
                data, fds = self._queue.popleft()
                socket.send_fds(self._sock, [data], fds) if fds else self._sock.send(data)
                _close(fds)
        except OSError as exc:
            self._gone(exc)
        finally:
            if not self.lost:
                self._sock.setblocking(False)
            if self._writing:
                self._loop.remove_writer(self._sock.fileno())
                self._writing = False

    # -- receiving -------------------------------------------------------------------------
    def _readable(self) -> None:
        for _ in range(64):
            try:
                data, fds, _, _ = socket.recv_fds(self._sock, MAX_MESSAGE, 253)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._gone(exc)
                return
            _close(fds)
            if not data:
                self._gone(None)
                return
            kind, _, body = data.partition(b" ")
            if kind == b"exit":
                os_pid, status = (int(word) for word in body.split())
                if not self._watcher.report_exit(os_pid, status):
                    self.drop(os_pid)  # one no job claimed, stopped at the start

    def _gone(self, exc: OSError | None) -> None:
        if self.lost:
            return
        self.lost = True
        logger.error(
            "the keeper (pid %d) is gone%s: a crash of gafferd would now stop the processes "
            "(a guard takes over); restart gafferd to have a keeper again",
            self.pid,
            f" ({exc})" if exc else "",
        )
        if self._reading:
            self._loop.remove_reader(self._sock.fileno())
        if self._writing:
            self._loop.remove_writer(self._sock.fileno())
        for _, fds in self._queue:
            _close(fds)
        self._queue.clear()
        self._sock.close()
        if self._on_lost is not None:
            self._on_lost(self)

    @property
    def groups(self) -> Counter[int]:
        return self._groups

    # -- across an exec of gafferd, and at its stop ----------------------------------------
    def export(self) -> tuple[dict[str, Any], list[int]]:
        if self._flush_handle is not None:  # everything pending sent first
            self._flush_handle.cancel()
            self._flush_handle = None
        self._flush()
        self._drain_blocking()
        state = {
            "kind": "keeper",
            "fd": self._sock.fileno(),
            "groups": [[pgid, count] for pgid, count in self._groups.items()],
        }
        return state, [self._sock.fileno()]

    async def close(self) -> None:
        """gafferd stopped: the keeper gets what is pending and ``bye``; it exits with
        gafferd."""
        if not self.lost:
            self.bye()


def _describe(proc: Process) -> tuple[dict[str, Any], list[int]]:
    """A process as the keeper holds it: a record, and its descriptors (by role)."""
    from gaffer.core.handover import output_streams

    roles: list[str] = []
    fds: list[int] = []
    handle = proc._handle
    if handle is not None and handle.pidfd >= 0:
        roles.append("pidfd")
        fds.append(handle.pidfd)
    for (label, stream, _), reader in zip(output_streams(proc), proc._readers, strict=False):
        if reader.fd >= 0:
            roles.append(f"out:{stream}:{label}")
            fds.append(reader.fd)
    if proc._stdin is not None and not proc._stdin.closed:
        roles.append("stdin")
        fds.append(proc._stdin.fd)
    for label, stream in proc.streams.items():
        if stream._sock.fileno() >= 0:
            roles.append(f"stream:{stream.id}:{label}")
            fds.append(stream._sock.fileno())
    record = {
        "pid": proc.pid,
        "os_pid": proc.os_pid,
        "job": proc.name,
        "slot": proc.slot,
        "once": proc.once,
        "restarts": proc.restarts,
        "create_time": proc.create_time,
        "fds": roles,
    }
    return record, fds


def adoption_record(record: dict[str, Any]) -> dict[str, Any]:
    """A record the keeper handed back, as ``Manager.adopt`` takes it."""
    fds: dict[str, int] = record["fds"]
    outputs = []
    streams = []
    for role, fd in fds.items():
        kind, _, rest = role.partition(":")
        if kind == "out":
            stream, _, label = rest.partition(":")
            outputs.append([label, fd, stream])
        elif kind == "stream":
            child_fd, _, label = rest.partition(":")
            streams.append([label, int(child_fd), fd])
    return {
        "pid": record["pid"],
        "os_pid": record["os_pid"],
        "slot": record["slot"],
        "once": record["once"],
        "restarts": record.get("restarts", 0),
        "create_time": record["create_time"],
        "pidfd": fds.get("pidfd", -1),
        "foreign": "reported",
        "outputs": outputs,
        "stdin": fds.get("stdin", -1),
        "streams": streams,
    }


def _close(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
