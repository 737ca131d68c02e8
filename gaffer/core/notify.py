"""systemd's notification protocol: programs that call ``sd_notify`` work unchanged.

A job with ``ready = notify`` gets ``NOTIFY_SOCKET`` in its environment: the address of
one datagram socket of the manager, in the abstract namespace (no file to clean up, a
short address). A program sends ``READY=1``, ``STATUS=...``, ``STOPPING=1``,
``WATCHDOG=1`` (newline-separated ``KEY=VALUE`` fields, several in one datagram). The
kernel tells who sent each datagram (``SO_PASSCRED``): the sender's pid is looked up
among the manager's processes, directly or through its process group (each process leads
its own, so ``sh -c 'app'`` wrappers and a program's children are known too).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import Callable

logger = logging.getLogger(__name__)

MAX_DATAGRAM = 4096  # systemd's own limit on a notification
UCRED = struct.Struct("3i")  # pid, uid, gid
MAX_FIELDS = 32

Handler = Callable[[int, dict[str, str]], None]  # (sender's pid, fields)


def parse(data: bytes) -> dict[str, str]:
    """``READY=1\\nSTATUS=Serving`` as a dict; lines that are no ``KEY=VALUE`` are left out."""
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n")[:MAX_FIELDS]:
        key, sep, value = line.partition("=")
        if sep and key and key.isascii() and key.replace("_", "").isalnum():
            fields[key] = value
    return fields


class NotifySocket:
    """The manager's notification socket; ``handler(pid, fields)`` gets each message."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        handler: Handler,
        adopt: tuple[int, str] | None = None,
    ) -> None:
        """``adopt``: the descriptor and address of the socket a previous life of the
        manager made (the running processes know that address)."""
        self._loop = loop
        self._handler = handler
        if adopt is not None:
            self._sock = socket.socket(fileno=adopt[0])
            self._sock.set_inheritable(False)
            self.address = adopt[1]
        else:
            # os.urandom, not secrets: secrets loads hashlib and hmac (about 1 MiB) for this
            name = f"gaffer/{os.getpid()}/{os.urandom(6).hex()}"
            self.address = "@" + name  # what NOTIFY_SOCKET says (systemd's abstract form)
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
                self._sock.bind("\0" + name)
            except OSError:
                self._sock.close()
                raise
        self._sock.setblocking(False)
        loop.add_reader(self._sock.fileno(), self._read)

    @property
    def fileno(self) -> int:
        return self._sock.fileno()

    def _read(self) -> None:
        for _ in range(64):  # a burst is read in one wake-up, a flood cannot starve the loop
            try:
                data, ancillary, _flags, _address = self._sock.recvmsg(
                    MAX_DATAGRAM, socket.CMSG_SPACE(UCRED.size)
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("notification socket: %s", exc)
                return
            pid = _sender(ancillary)
            if pid is None:
                continue
            try:
                self._handler(pid, parse(data))
            except Exception:
                logger.exception("notification from pid %d failed", pid)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()


def _sender(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            return UCRED.unpack(data[: UCRED.size])[0]
    return None


def send(address: str, message: str) -> None:
    """``sd_notify`` itself (for tests and for programs written in Python)."""
    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), target)
