"""Helpers shared by the tests: the fixture child program, event recording, waiting."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHILD = Path(__file__).parent / "fixtures" / "child.py"
ROOT = CHILD.parents[2]
DEFAULT_TIMEOUT = 10.0


def child_argv(*args: object) -> list[str]:
    return [sys.executable, "-u", str(CHILD), *map(str, args)]


# a job the restart policy never holds back: no crash-loop pause, no backoff, no fatal
UNCONTAINED: dict[str, Any] = {"flapping": None, "backoff": None, "start_retries": 10**9}


def child_cmd(*args: object) -> str:
    """A ``cmd`` string running the fixture program in mode ``args[0]``."""
    return shlex.join(child_argv(*args))


class EventRecorder:
    """Records every event matching ``pattern`` and lets a test wait for one."""

    def __init__(self, manager: Any, pattern: str = ".") -> None:
        self.events: list[tuple[str, dict]] = []
        self._waiters: list[tuple[Callable[[str, dict], bool], asyncio.Future]] = []
        manager.events.subscribe(pattern, self._on_event)

    def _on_event(self, evtype: str, msg: dict) -> None:
        self.events.append((evtype, msg))
        for waiter in list(self._waiters):
            match, future = waiter
            if not future.done() and match(evtype, msg):
                future.set_result((evtype, msg))
                self._waiters.remove(waiter)

    def names(self, prefix: str | None = None) -> list[str]:
        return [name for name, _ in self.events if prefix is None or name.startswith(prefix)]

    def of(self, evtype: str) -> list[dict]:
        return [msg for name, msg in self.events if name == evtype]

    def count(self, evtype: str, **fields: Any) -> int:
        return sum(1 for msg in self.of(evtype) if _matches(msg, fields))

    async def wait(
        self, evtype: str, timeout: float = DEFAULT_TIMEOUT, after: int = 0, **fields: Any
    ) -> dict:
        """The first ``evtype`` event (with those fields) among the recorded events from
        index ``after`` on, or the next one to come."""
        for name, msg in self.events[after:]:
            if name == evtype and _matches(msg, fields):
                return msg
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((lambda name, msg: name == evtype and _matches(msg, fields), future))
        try:
            _, msg = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise AssertionError(
                f"no {evtype} event {fields or ''} within {timeout}s; seen: {self.names()[-30:]}"
            ) from None
        return msg

    async def wait_count(
        self, evtype: str, count: int, timeout: float = DEFAULT_TIMEOUT, **fields: Any
    ) -> list[dict]:
        await wait_until(
            lambda: self.count(evtype, **fields) >= count,
            timeout,
            f"{count} {evtype} events {fields or ''}",
        )
        return [msg for msg in self.of(evtype) if _matches(msg, fields)]


def _matches(msg: dict, fields: dict) -> bool:
    return all(msg.get(key) == value for key, value in fields.items())


async def wait_until(
    predicate: Callable[[], object],
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "condition",
    interval: float = 0.01,
) -> None:
    """Poll ``predicate`` on the loop until it is true, failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def wait_until_sync(
    predicate: Callable[[], object],
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "condition",
    interval: float = 0.01,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def exec_done(os_pid: int) -> bool:
    """True once the process ``os_pid`` runs its own program. Right after a spawn it may not:
    a forked child shows its parent's command line and environment until its exec, and
    during the exec (the spawner already resumed after a vfork) it shows empty ones."""
    try:
        with open(f"/proc/{os_pid}/cmdline", "rb") as handle:
            own = handle.read()
        with open(f"/proc/{os_pid}/stat") as handle:
            parent = handle.read().rsplit(")", 1)[1].split()[1]  # state, ppid, ...
        with open(f"/proc/{parent}/cmdline", "rb") as handle:
            return bool(own) and own != handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return False


def pid_exists(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie counts as gone)."""
    return _state(pid) not in (None, "Z", "X")


def children_of(pid: int | str = "self") -> list[int]:
    """The children of ``pid`` from /proc; a process or thread that is gone meanwhile is
    skipped, not an error (a child may be reaped while the tests look at it)."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(child) for child in handle.read().split()]
        except FileNotFoundError:
            continue
    return found


def cmdline_of(pid: int) -> str:
    """``pid``'s command line, words joined by spaces; empty once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def zombie_children() -> list[int]:
    """This process's children that have exited and are not reaped yet."""
    return [pid for pid in children_of() if _state(pid) == "Z"]


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def read_file(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def run_script(body: str, timeout: float = 60) -> dict:
    """Run ``body`` in a fresh Python (it may change process-wide limits); it prints JSON."""
    script = textwrap.dedent(f"""
        import asyncio, json, os, resource, sys
        sys.path.insert(0, {str(ROOT)!r})
        from gaffer import Manager, ProcessConfig
        from tests.helpers import EventRecorder, child_cmd, wait_until, zombie_children
    """) + textwrap.dedent(body)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
