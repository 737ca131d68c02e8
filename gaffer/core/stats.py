"""Process statistics read with psutil, as plain numbers.

A stat dict is ``{"os_pid", "cpu", "mem", "mem_info1", "mem_info2", "ctime", "username",
"nice", "cmdline", "children"}``: cpu and mem in percent, mem_info1/2 (RSS, VMS) in bytes,
ctime in CPU seconds (user + system). A value that cannot be read is ``None``, never a
string. ``children`` holds the same dicts for every descendant.

CPU percent needs two readings: the first reading of a process gives 0.0, later ones give
the use since the previous reading. ``Sampler`` keeps one psutil handle per pid for that.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import psutil

STAT_KEYS = ("cpu", "mem", "mem_info1", "mem_info2", "ctime", "username", "nice", "cmdline")


class Sampler:
    """Reads stat dicts of pids, keeping the psutil handles that CPU percent needs."""

    def __init__(self) -> None:
        self._handles: dict[int, psutil.Process] = {}

    def _handle(self, os_pid: int) -> psutil.Process | None:
        handle = self._handles.get(os_pid)
        if handle is not None and handle.is_running():
            return handle
        try:
            handle = psutil.Process(os_pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            self._handles.pop(os_pid, None)
            return None
        self._handles[os_pid] = handle
        return handle

    def sample(self, os_pid: int, children: Iterable[int] = ()) -> dict[str, Any]:
        """One stat dict for ``os_pid`` (all values None when it is gone)."""
        stat = self._read(os_pid)
        stat["children"] = [self._read(child) for child in children]
        return stat

    def _read(self, os_pid: int) -> dict[str, Any]:
        stat: dict[str, Any] = dict.fromkeys(STAT_KEYS)
        stat["os_pid"] = os_pid
        handle = self._handle(os_pid)
        if handle is None:
            return stat
        try:
            with handle.oneshot():
                stat["cpu"] = _try(handle.cpu_percent)
                stat["mem"] = _round(_try(handle.memory_percent), 2)
                info = _try(handle.memory_info)
                if info is not None:
                    stat["mem_info1"] = info.rss
                    stat["mem_info2"] = info.vms
                times = _try(handle.cpu_times)
                if times is not None:
                    stat["ctime"] = round(times.user + times.system, 2)
                stat["username"] = _try(handle.username)
                stat["nice"] = _try(handle.nice)
                stat["cmdline"] = _program_name(_try(handle.cmdline), _try(handle.name))
        except (psutil.NoSuchProcess, ProcessLookupError):
            self._handles.pop(os_pid, None)
        return stat

    def forget(self, os_pids: Iterable[int]) -> None:
        for os_pid in os_pids:
            self._handles.pop(os_pid, None)

    def retain(self, os_pids: set[int]) -> None:
        """Drop the handles of every pid not in ``os_pids`` (they exited)."""
        for os_pid in [pid for pid in self._handles if pid not in os_pids]:
            del self._handles[os_pid]


def _try(method):
    try:
        return method()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _program_name(cmdline: list[str] | None, name: str | None) -> str | None:
    if cmdline:
        return os.path.basename(cmdline[0])
    return name


def descendants_map() -> dict[int, list[int]]:
    """``{ppid: [pids]}`` for every process of the system, from one scan of /proc."""
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info.get("ppid")
        if ppid:
            children.setdefault(ppid, []).append(proc.pid)
    return children


def descendants(os_pid: int, tree: Mapping[int, list[int]]) -> list[int]:
    out: list[int] = []
    stack = list(tree.get(os_pid, ()))
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(tree.get(pid, ()))
    return out


def summarize(name: str, stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Job totals of per-process stats: sums, minimum and maximum of cpu and mem.

    Values that are None (unreadable) are left out; with nothing readable the totals are
    None too, and an empty job gives zeros.
    """
    out: dict[str, Any] = {"name": name, "stats": stats}
    for key in ("cpu", "mem"):
        values = [s[key] for s in stats if s.get(key) is not None]
        if not stats:
            total, low, high = 0.0, 0.0, 0.0
        elif not values:
            total = low = high = None
        else:
            total, low, high = round(sum(values), 2), min(values), max(values)
        out[key], out[f"min_{key}"], out[f"max_{key}"] = total, low, high
    return out
