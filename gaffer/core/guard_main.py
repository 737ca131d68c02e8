"""The guard process: stops a dead manager's processes (see guard.py for the why).

Runs as ``python -I -S guard_main.py GRACE``: isolated, without site-packages, so it
imports nothing but the standard library and costs a few megabytes at most. It reads
``+<pgid>`` and ``-<pgid>`` lines on stdin until end of file. Then, if groups are still
registered, the manager died without stopping them: every process of those groups and
every descendant of theirs (also those that left the group with setsid) gets SIGTERM,
and SIGKILL ``GRACE`` seconds later if it is still there.
"""

import os
import select
import signal
import sys
import time

POLL = 0.02


def read_groups(fd):
    """The groups still registered when the manager closes the pipe (or dies)."""
    groups, pending = {}, b""
    while True:
        data = os.read(fd, 65536)
        if not data:
            return {pgid for pgid, count in groups.items() if count > 0}
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line[:1] in (b"+", b"-") and line[1:].isdigit():
                pgid = int(line[1:])
                groups[pgid] = groups.get(pgid, 0) + (1 if line[:1] == b"+" else -1)
                if groups[pgid] <= 0:
                    del groups[pgid]


def process_table():
    """``{pid: (ppid, pgid)}`` of every live process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if fields and fields[0] not in (b"Z", b"X"):
            table[int(entry)] = (int(fields[1]), int(fields[2]))
    return table


def targets_of(groups):
    """Every process in ``groups`` and every descendant of theirs."""
    table = process_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found = set()
    stack = [pid for pid, (_, pgid) in table.items() if pgid in groups]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, ()))
    found.discard(os.getpid())
    return found


def open_handles(pids):
    """A pidfd per target where the system has them, so a reused pid is never hit."""
    handles = {}
    for pid in pids:
        try:
            handles[pid] = os.pidfd_open(pid)
        except (AttributeError, OSError):
            handles[pid] = None
    return handles


def send(handles, groups, sig):
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass
    for pid, pidfd in handles.items():
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, sig)
            else:
                os.kill(pid, sig)
        except OSError:
            pass


def alive(handles):
    poller = select.poll()
    for pidfd in handles.values():
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
    exited = {fd for fd, _ in poller.poll(0)}  # a pidfd turns readable when its process exits
    return [
        pid
        for pid, pidfd in handles.items()
        if (pidfd not in exited if pidfd is not None else os.path.exists(f"/proc/{pid}"))
    ]


def main():
    grace = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # only the end of the pipe stops the guard
    groups = read_groups(0)
    if not groups:
        return 0
    handles = open_handles(targets_of(groups))
    print(
        f"gaffer guard: the manager died; stopping {len(handles)} processes "
        f"in {len(groups)} groups",
        file=sys.stderr,
        flush=True,
    )
    send(handles, groups, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(handles) and time.monotonic() < deadline:
        time.sleep(POLL)
    send({pid: handles[pid] for pid in alive(handles)}, groups, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
