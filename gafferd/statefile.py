"""The state file: what the operator asked through the API, kept across restarts.

The ini file says what runs when gafferd starts; the operator then loads jobs through the
API, scales them, stops them. Without a record of that, a restart of gafferd (or of the
machine) would come back to the ini file, and a job stopped on purpose would start again
(supervisor#591); pm2 answers with ``pm2 save`` / ``pm2 resurrect``, by hand. gafferd
records it by itself, in a JSON file (``state_file``, by default
``var/gafferd-state.json`` next to the ini file):

* ``jobs``: for each job of the ini file, only what differs from the file (``started``,
  ``numprocesses``, or a whole ``config`` and ``env`` given by an update); for each job
  loaded through the API, all of it;
* ``unloaded``: the jobs of the ini file unloaded through the API;
* ``detached``: the processes of detached jobs (pid and start time), which outlive
  gafferd: a gafferd starting again adopts those still running instead of starting a
  second copy.

What is recorded is read from the manager, not from the requests: after any change (the
events ``load``, ``unload``, ``start``, ``stop``, ``update``, ``reload``, and spawns and
exits of detached jobs) the record is made again and written when it differs, at most
every ``DEBOUNCE`` seconds, in a worker thread, atomically (a temporary file in the same
directory, fsync, rename): a reader, or a crash, sees the old file or the new one, never
half of one. Nothing is written while gafferd stops (its stop is not the operator
stopping each job). The file holds the jobs' environments: it is made 0600, in a 0700
directory. ``gafferd --fresh`` does not read it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from gaffer.core.procfs import start_ticks
from gafferd.config import JobSpec

logger = logging.getLogger("gafferd")

FORMAT = 1
DEBOUNCE = 0.2  # seconds: a burst of commands is one write
EVENTS = frozenset({"load", "unload", "start", "stop", "update", "reload"})
DETACHED_EVENTS = frozenset({"spawn", "exit"})


def default_path(directory: str) -> str:
    return os.path.join(directory, "var", "gafferd-state.json")


def is_empty(content: Mapping[str, Any]) -> bool:
    return not (content.get("jobs") or content.get("unloaded") or content.get("detached"))


class StateFile:
    """Reads and writes one state file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._written: bytes | None = None

    def read(self) -> dict[str, Any]:
        """The recorded state ({} when there is none). A file that cannot be used is
        moved aside (``.bad``) with an error logged: gafferd starts from its ini file."""
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            logger.error("state file %s not read: %s", self.path, exc.strerror or exc)
            return {}
        try:
            content = json.loads(data)
            if not isinstance(content, dict) or content.get("format") != FORMAT:
                raise ValueError(f"not a gafferd state file (format {FORMAT})")
        except ValueError as exc:
            logger.error(
                "state file %s ignored (%s): moved to %s.bad; gafferd starts from its ini file",
                self.path,
                exc,
                self.path,
            )
            try:
                os.replace(self.path, self.path + ".bad")
            except OSError:
                pass
            return {}
        self._written = data
        return content

    def write(self, content: dict[str, Any]) -> bool:
        """Write ``content`` if it differs from what the file holds (atomically). No file
        is made for an empty record. Returns whether the file was written."""
        content = {"format": FORMAT, **content}
        data = json.dumps(content, indent=1, sort_keys=True).encode() + b"\n"
        if data == self._written:
            return False
        if is_empty(content) and self._written is None and not os.path.exists(self.path):
            self._written = data
            return False
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        temp = os.path.join(directory, f".{os.path.basename(self.path)}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(temp)
            raise
        os.close(fd)
        os.replace(temp, self.path)
        try:  # the rename itself must survive a power cut
            dir_fd = os.open(directory, os.O_RDONLY)
        except OSError:
            pass
        else:
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._written = data
        return True


def record(manager: Any, file_jobs: Mapping[str, JobSpec]) -> dict[str, Any]:
    """What the operator asked since the ini file, read from the manager's jobs."""
    jobs: dict[str, dict[str, Any]] = {}
    detached = []
    for name, runner in list(manager._jobs.items()):
        spec = file_jobs.get(name)
        config = runner.config
        if spec is None:  # loaded through the API: all of it
            entry: dict[str, Any] = {
                "session": runner.job.session,
                "config": config.to_dict(with_channels=False),
                "env": dict(runner.job.env),
                "started": runner.wanted,
            }
        else:
            entry = {}
            loaded = spec.config
            if config != loaded or runner.job.env:
                if config.replace(numprocesses=loaded.numprocesses) == loaded and not (
                    runner.job.env
                ):
                    entry["numprocesses"] = config.numprocesses
                else:
                    entry["config"] = config.to_dict(with_channels=False)
                    entry["env"] = dict(runner.job.env)
            if runner.wanted != spec.start:
                entry["started"] = runner.wanted
        if runner.wanted and runner.numprocesses != config.numprocesses:
            entry["numprocesses"] = runner.numprocesses
        if entry:
            jobs[name] = entry
        if config.detach:
            for proc in runner.processes:
                if proc.os_pid is not None and proc.active:
                    detached.append(
                        {
                            "job": name,
                            "os_pid": proc.os_pid,
                            "start_ticks": start_ticks(proc.os_pid),
                            "slot": proc.slot,
                            "once": proc.once,
                            "create_time": proc.create_time,
                        }
                    )
    unloaded = sorted(name for name in file_jobs if name not in manager._jobs)
    return {"jobs": jobs, "unloaded": unloaded, "detached": detached}


class Recorder:
    """Keeps a state file up to date with a manager (see the module docstring)."""

    def __init__(
        self,
        manager: Any,
        state_file: StateFile,
        describe: Callable[[], dict[str, Any]],
    ) -> None:
        self._manager = manager
        self._file = state_file
        self._describe = describe
        self._timer: asyncio.TimerHandle | None = None
        self._writing = False
        self._again = False
        self._detached_jobs: set[str] = set()
        self.writes = 0
        manager.events.subscribe(".", self._on_event)

    def close(self) -> None:
        self._manager.events.unsubscribe(".", self._on_event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_event(self, evtype: str, msg: dict[str, Any]) -> None:
        if evtype in EVENTS or (evtype in DETACHED_EVENTS and self._is_detached(msg.get("name"))):
            self.changed()

    def _is_detached(self, name: Any) -> bool:
        runner = self._manager._jobs.get(name) if isinstance(name, str) else None
        return runner is not None and runner.config.detach

    def flush(self) -> None:
        """Write a change that waits for the debounce now (gafferd stops or execs)."""
        if self._timer is None or not self._manager.active:
            return
        self._timer.cancel()
        self._timer = None
        try:
            self._file.write(self._describe())
        except Exception:
            logger.exception("the state of gafferd could not be recorded")

    def changed(self) -> None:
        if self._timer is None:
            self._timer = self._manager.loop.call_later(DEBOUNCE, self._save)

    def _save(self) -> None:
        self._timer = None
        if not self._manager.active:  # gafferd stops: its stop is not the operator's
            return
        if self._writing:
            self._again = True
            return
        try:
            content = self._describe()
        except Exception:
            logger.exception("the state of gafferd could not be recorded")
            return
        self._writing = True
        future = self._manager.loop.run_in_executor(None, self._file.write, content)
        future.add_done_callback(self._written)

    def _written(self, future: asyncio.Future[bool]) -> None:
        self._writing = False
        exc = future.exception()
        if exc is not None:
            logger.error("state file %s not written: %s", self._file.path, exc)
        elif future.result():
            self.writes += 1
        if self._again:
            self._again = False
            self.changed()
