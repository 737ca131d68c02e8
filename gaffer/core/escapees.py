"""Descendants of a process that left its group, and so the reach of the group's signals.

A process is stopped through its process group (process.py). What forked and then called
``setsid()`` or ``setpgid()`` is no longer in it: at the stop such descendants are found
while they still descend from the leader (its subtree only, not all of /proc), get a
pidfd each, and are signalled one by one with the group and waited for. Mixed into
``Process``, which provides ``loop``, ``os_pid``, ``_escaped`` and ``_check_gone``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

from gaffer.core.procfs import descendants_of, pidfd_or_none, proc_stat, send_signal

logger = logging.getLogger("gaffer.core.process")


class Escapees:
    __slots__ = ()

    loop: asyncio.AbstractEventLoop
    name: str
    pid: int
    os_pid: int | None
    _escaped: Mapping[int, int | None]  # pid -> pidfd (None: no pidfds here)
    # and from Process: _check_gone()

    def _find_escaped(self) -> None:
        """Find the descendants that left the group, to signal them and wait for them."""
        for pid in descendants_of(self.os_pid):
            stat = proc_stat(pid)
            if stat is None or stat.exited or stat.pgid == self.os_pid or pid in self._escaped:
                continue
            pidfd = pidfd_or_none(pid)
            if not isinstance(self._escaped, dict):  # the shared empty mapping until now
                self._escaped = {}
            self._escaped[pid] = pidfd
            if pidfd is not None:
                self.loop.add_reader(pidfd, self._escaped_exited, pid)
        if self._escaped:
            logger.info(
                "%s pid=%s os_pid=%s: %d descendants left its group; they are stopped too",
                self.name,
                self.pid,
                self.os_pid,
                len(self._escaped),
            )

    def _signal_escaped(self, sig: int) -> None:
        for pid, pidfd in self._escaped.items():
            send_signal(pid, pidfd, sig)

    def _escaped_exited(self, pid: int) -> None:
        self._drop_escaped(pid)
        self._check_gone()

    def _drop_escaped(self, pid: int) -> None:
        pidfd = self._escaped.pop(pid, None)  # type: ignore[attr-defined]
        if pidfd is not None:
            self.loop.remove_reader(pidfd)
            os.close(pidfd)
