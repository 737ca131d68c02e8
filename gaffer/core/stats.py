"""Process statistics as plain numbers.

A stat dict is ``{"os_pid", "cpu", "mem", "mem_info1", "mem_info2", "ctime", "username",
"nice", "cmdline", "create_time", "children"}``: cpu and mem in percent, mem_info1/2 (RSS, VMS)
in bytes, ctime in CPU seconds (user + system), cmdline the program's name, create_time
when it started (a Unix time). A value that cannot be
read is ``None``, never a string. ``children`` holds the same dicts for every descendant.

CPU percent is the CPU time used between two readings of a process over the time between
them (the first reading gives 0.0), as psutil's ``cpu_percent()``; ``Sampler`` keeps the
previous reading of each process for that.

On Linux a reading is one read of ``/proc/<pid>/stat`` (it holds the CPU times, RSS, VMS
and nice value); the user name and the command line are read once per process and kept.
That is what lets one worker thread follow 1,000 processes ten times a second. Elsewhere
psutil does the reading.
"""

from __future__ import annotations

import os
import pwd
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from gaffer.core.procfs import HAS_PROC, all_pids, stat_fields
from gaffer.core.usage import Usage, UsageReader

STAT_KEYS = (
    "cpu",
    "mem",
    "mem_info1",
    "mem_info2",
    "ctime",
    "username",
    "nice",
    "cmdline",
    "create_time",
)


STATIC_REFRESH = 10.0  # seconds between re-reads of user name and command line
MAX_AGE = 60.0  # a pid not read for that long has its CPU reading forgotten


class Sampler:
    """Reads stat dicts of pids, remembering what CPU percent needs. A manager has one, used
    from the loop and from worker threads (a lock keeps its readings whole), so that CPU
    percent is the same in ``stats()``, the async stats and the monitor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._previous: dict[int, tuple[int, float, float]] = {}  # pid: start, cpu s, when
        self._static: dict[tuple[int, int], tuple[float, str | None, str | None]] = {}
        self._handles: dict[int, Any] = {}  # psutil.Process, where there is no /proc
        self._users: dict[int, str | None] = {}
        self._ticks = os.sysconf("SC_CLK_TCK") if HAS_PROC else 100
        self._page = os.sysconf("SC_PAGE_SIZE") if HAS_PROC else 4096
        self._total_memory = _total_memory()
        self._boot_time = _boot_time()
        self._usage = UsageReader(self._ticks, self._page, self._boot_time)

    def sample(self, os_pid: int, children: Iterable[int] = ()) -> dict[str, Any]:
        """One stat dict for ``os_pid`` (its values None when it is gone)."""
        if not HAS_PROC:
            with self._lock:
                stat = self._read_psutil(os_pid)
                stat["children"] = [self._read_psutil(child) for child in children]
            return stat
        with self._lock:
            # descriptors are kept for the manager's own processes, not their children
            stat = self._read_proc(os_pid, hold=True)
            stat["children"] = [self._read_proc(child) for child in children]
        return stat

    def read_job(self, name: str, targets: list[tuple[int, str, int | None]]) -> dict[str, Any]:
        """Stats of a job's processes ``(pid, job, os_pid)`` with totals; one scan of /proc
        for the tree. Blocking: run it in a worker thread from the loop."""
        tree = descendants_map()
        stats = []
        for pid, proc_name, os_pid in targets:
            if os_pid is None:
                stats.append({"pid": pid, "name": proc_name, "os_pid": None, "children": []})
            else:
                stats.append(
                    {
                        "pid": pid,
                        "name": proc_name,
                        **self.sample(os_pid, descendants(os_pid, tree)),
                    }
                )
        self.prune(MAX_AGE)
        return summarize(name, stats)

    def retain(self, os_pids: set[int]) -> None:
        """Forget what was kept about pids not in ``os_pids`` (they exited)."""
        with self._lock:
            self._retain(os_pids)

    def _retain(self, os_pids: set[int]) -> None:
        for pid in [pid for pid in self._previous if pid not in os_pids]:
            del self._previous[pid]
        for key in [key for key in self._static if key[0] not in os_pids]:
            del self._static[key]
        for pid in [pid for pid in self._handles if pid not in os_pids]:
            del self._handles[pid]

    def discard(self, os_pid: int) -> None:
        """Forget one pid (it exited)."""
        self._usage.forget(os_pid)
        with self._lock:
            self._previous.pop(os_pid, None)
            self._handles.pop(os_pid, None)
            for key in [key for key in self._static if key[0] == os_pid]:
                del self._static[key]

    def open_fds(self, os_pid: int) -> int | None:
        """How many descriptors ``os_pid`` has open; None when that cannot be read."""
        if HAS_PROC:
            return self._usage.open_fds(os_pid)
        psutil = _psutil()
        try:
            return int(psutil.Process(os_pid).num_fds())
        except (psutil.Error, ProcessLookupError):
            return None

    def close(self) -> None:
        """Close the descriptors kept for reading (the manager stops)."""
        self._usage.close()

    def prune(self, max_age: float) -> None:
        """Forget pids not read for ``max_age`` seconds."""
        limit = time.monotonic() - max_age
        with self._lock:
            stale = {pid for pid, (_, _, when) in self._previous.items() if when < limit}
            self._retain(set(self._previous) - stale)

    def usage(self, os_pids: Iterable[int]) -> dict[int, Usage]:
        """``Usage`` (CPU seconds, RSS, start, open descriptors) of each pid, the gone left
        out: what /metrics needs and only that (usage.py). Blocking: call it from a worker
        thread. It keeps nothing for CPU percent, so the other readers are not disturbed."""
        if not HAS_PROC:
            return self._usage_psutil(os_pids)
        return self._usage.read(os_pids)

    def _usage_psutil(self, os_pids: Iterable[int]) -> dict[int, Usage]:
        psutil = _psutil()
        out: dict[int, Usage] = {}
        for pid in os_pids:
            try:
                handle = psutil.Process(pid)
                with handle.oneshot():
                    times = handle.cpu_times()
                    out[pid] = Usage(
                        times.user + times.system,
                        handle.memory_info().rss,
                        handle.create_time(),
                        self.open_fds(pid),
                    )
            except (psutil.Error, ProcessLookupError):
                continue
        return out

    # -- Linux -----------------------------------------------------------------------------
    def _read_proc(self, os_pid: int, hold: bool = False) -> dict[str, Any]:
        stat: dict[str, Any] = dict.fromkeys(STAT_KEYS)
        stat["os_pid"] = os_pid
        data = self._usage.stat_bytes(os_pid, hold)
        fields = data[data.rfind(b")") + 2 :].split() if data is not None else None
        if fields is None or len(fields) < 22:
            self._previous.pop(os_pid, None)
            return stat
        now = time.monotonic()
        start = int(fields[19])
        cpu_seconds = (int(fields[11]) + int(fields[12])) / self._ticks
        previous = self._previous.get(os_pid)
        if previous is not None and previous[0] == start and now > previous[2]:
            stat["cpu"] = round(100 * (cpu_seconds - previous[1]) / (now - previous[2]), 1)
        else:
            stat["cpu"] = 0.0
        self._previous[os_pid] = (start, cpu_seconds, now)
        rss = int(fields[21]) * self._page
        stat["mem_info1"] = rss
        stat["mem_info2"] = int(fields[20])
        stat["mem"] = round(100 * rss / self._total_memory, 2)
        stat["ctime"] = round(cpu_seconds, 2)
        stat["nice"] = int(fields[16])
        stat["create_time"] = round(self._boot_time + start / self._ticks, 2)
        stat["username"], stat["cmdline"] = self._static_of(os_pid, start, now)
        return stat

    def _static_of(self, os_pid: int, start: int, now: float) -> tuple[str | None, str | None]:
        key = (os_pid, start)
        cached = self._static.get(key)
        if cached is not None and now - cached[0] < STATIC_REFRESH:
            return cached[1], cached[2]
        try:
            uid = os.stat(f"/proc/{os_pid}").st_uid
        except OSError:
            username = None
        else:
            username = self._user(uid)
        try:
            with open(f"/proc/{os_pid}/cmdline", "rb") as handle:
                argv0 = handle.read().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            argv0 = ""
        program = os.path.basename(argv0) or None
        self._static[key] = (now, username, program)
        return username, program

    def _user(self, uid: int) -> str | None:
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = str(uid)
        return self._users[uid]

    # -- elsewhere ---------------------------------------------------------------------------
    def _read_psutil(self, os_pid: int) -> dict[str, Any]:
        psutil = _psutil()
        stat: dict[str, Any] = dict.fromkeys(STAT_KEYS)
        stat["os_pid"] = os_pid
        handle = self._handles.get(os_pid)
        try:
            if handle is None or not handle.is_running():
                handle = self._handles[os_pid] = psutil.Process(os_pid)
            with handle.oneshot():
                stat["cpu"] = _try(handle.cpu_percent)
                info = _try(handle.memory_info)
                if info is not None:
                    stat["mem_info1"], stat["mem_info2"] = info.rss, info.vms
                    stat["mem"] = round(100 * info.rss / self._total_memory, 2)
                times = _try(handle.cpu_times)
                if times is not None:
                    stat["ctime"] = round(times.user + times.system, 2)
                stat["username"] = _try(handle.username)
                stat["create_time"] = _try(handle.create_time)
                stat["nice"] = _try(handle.nice)
                cmdline = _try(handle.cmdline)
                stat["cmdline"] = os.path.basename(cmdline[0]) if cmdline else _try(handle.name)
        except (psutil.NoSuchProcess, ProcessLookupError):
            self._handles.pop(os_pid, None)
        return stat


def _try(method):
    psutil = _psutil()
    try:
        return method()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _psutil() -> Any:
    """psutil, imported where /proc is missing (or for totals it cannot read): reading
    /proc directly is faster, and gafferd is a megabyte lighter without it."""
    import psutil

    return psutil


def _total_memory() -> int:
    if HAS_PROC:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(_psutil().virtual_memory().total)


def _boot_time() -> float:
    if HAS_PROC:
        try:
            with open("/proc/stat", "rb") as handle:
                for line in handle:
                    if line.startswith(b"btime "):
                        return float(line.split()[1])
        except OSError:
            pass
    return float(_psutil().boot_time())


def descendants_map() -> dict[int, list[int]]:
    """``{ppid: [pids]}`` for every process of the system, from one scan of /proc."""
    children: dict[int, list[int]] = {}
    if not HAS_PROC:
        for proc in _psutil().process_iter(["ppid"]):
            ppid = proc.info.get("ppid")
            if ppid:
                children.setdefault(ppid, []).append(proc.pid)
        return children
    for pid in all_pids():
        fields = stat_fields(pid)
        if fields and len(fields) > 1:
            ppid = int(fields[1])
            if ppid:
                children.setdefault(ppid, []).append(pid)
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
