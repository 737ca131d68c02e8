"""Reading the process table from /proc (Linux), the few ways the engine needs it.

Everything here reads files only: cheap for one process and its descendants, a full scan
of /proc for the table (callers run those in a worker thread, never on the loop).
"""

from __future__ import annotations

import os
import signal
from typing import NamedTuple

HAS_PROC = os.path.exists("/proc/self/stat")
# /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN, in every mainstream kernel) lists
# a process's children without a scan of the whole table
HAS_CHILDREN_FILES = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


class ProcStat(NamedTuple):
    state: str  # R, S, D, T, Z (zombie), X (dead)...
    ppid: int
    pgid: int
    sid: int

    @property
    def exited(self) -> bool:
        return self.state in ("Z", "X")


def stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and
    parentheses, hence the split at the last ")"); None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()


def proc_stat(pid: int) -> ProcStat | None:
    fields = stat_fields(pid)
    if not fields or len(fields) < 4:
        return None
    return ProcStat(fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]))


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (field 22 of its stat): with
    its pid, what names one process for the life of the system. None when it is gone."""
    fields = stat_fields(pid)
    if not fields or len(fields) < 20:
        return None
    return int(fields[19])


def all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def children_of(pid: int) -> list[int] | None:
    """The children of ``pid`` (those of each of its threads); None when the kernel has no
    children files or the process is gone."""
    if not HAS_CHILDREN_FILES:
        return None
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    children: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                children.extend(int(child) for child in handle.read().split())
        except OSError:
            continue  # the thread ended meanwhile
    return children


def descendants_of(pid: int) -> list[int]:
    """Every live descendant of ``pid``, walking children files (empty without them)."""
    found: list[int] = []
    stack = children_of(pid) or []
    seen = set(stack)
    while stack:
        child = stack.pop()
        found.append(child)
        for grandchild in children_of(child) or ():
            if grandchild not in seen:
                seen.add(grandchild)
                stack.append(grandchild)
    return found


def send_signal(pid: int, pidfd: int | None, sig: int) -> None:
    """Signal a process through its pidfd when there is one (it cannot reach a reused
    pid), else by pid; a process already gone is not an error."""
    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
    except OSError:
        pass


def pidfd_or_none(pid: int) -> int | None:
    """A pidfd for ``pid`` (signals through it never reach a reused pid), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
