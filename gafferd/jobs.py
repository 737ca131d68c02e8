"""gafferd's jobs: those of its ini file, what the operator changed since, what it adopts.

Mixed into ``Gafferd`` (server.py). At a start the jobs of the ini file are loaded, with
what the state file recorded (statefile.py: jobs stopped or scaled through the API stay
so, jobs loaded through the API come back), and processes a previous gafferd left
running are adopted instead of started again (detached jobs; after a crash with
``on_daemon_crash = keep``, everything the keeper held). After a hand-over in place
(handover.py) the jobs come from the previous gafferd itself. SIGHUP applies the
difference between the file and what runs.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gaffer.core.config import ProcessConfig
from gaffer.errors import ConfigError, ProcessError
from gafferd import handover, statefile
from gafferd.checks import check_jobs
from gafferd.config import DaemonConfig, JobSpec

if TYPE_CHECKING:
    from gaffer import Manager
    from gafferd.settings import Effective

logger = logging.getLogger("gafferd")


class StartupError(ConfigError):
    """A job of the file could not be loaded at start: a configuration error."""


def warn_problems(config: DaemonConfig, prefix: str) -> None:
    """What jobs of the file will meet (gafferd --check-config calls them errors)."""
    for problem in check_jobs(config):
        logger.warning("%s%s", prefix, problem)


class JobLoading:
    manager: Manager | None
    config: DaemonConfig
    effective: Effective
    file_jobs: dict[str, JobSpec]
    plugins: Any
    restarter: Any
    fresh: bool
    _failed: bool
    _handed: dict[str, Any] | None
    _adopted_counts: dict[str, int]
    _held: dict[str, list[dict[str, Any]]]  # processes the keeper held, by job (crash path)
    keeper: Any

    # -- the state file --------------------------------------------------------------------
    @property
    def state_path(self) -> str | None:
        path = self.effective.values.get("state_file")
        if path == "off":
            return None
        return path or statefile.default_path(self.config.directory)

    def _start_recording(self) -> None:
        path = self.state_path
        assert self.manager is not None
        self.state_file = statefile.StateFile(path) if path else None
        self.recorder = None
        if self.state_file is not None:
            self.recorder = statefile.Recorder(self.manager, self.state_file, self._record)

    def _record(self) -> dict[str, Any]:
        return statefile.record(self.manager, self.file_jobs)

    def recorded_state(self) -> dict[str, Any]:
        """What ``GET /daemon/state`` shows of the state file."""
        return {
            "state_file": self.state_path,
            "fresh": self.fresh,
            "state": self._record() if self.manager is not None else None,
        }

    # -- after a crash, under the keeper ------------------------------------------------------
    def _take_held(self, held: list[dict[str, Any]], end: dict[str, Any]) -> None:
        """What the keeper handed back: processes to adopt into their jobs at the load;
        those that exited while no gafferd ran are only logged."""
        from gaffer.core.keeper import adoption_record

        lives = end.get("lives", 1)
        if lives > 1:
            logger.warning(
                "gafferd started again by the keeper after a crash (life %d): %d process(es) "
                "to adopt",
                lives,
                sum(1 for record in held if record.get("status") is None),
            )
        for record in held:
            status = record.get("status")
            if status is not None:
                logger.warning(
                    "%s pid=%s os_pid=%s exited while gafferd was down (status %s)",
                    record["job"],
                    record["pid"],
                    record["os_pid"],
                    os.waitstatus_to_exitcode(status),
                )
                self.keeper.drop(record["os_pid"])
                self.keeper.remove(record["os_pid"])  # its group, led by it
                continue
            self._held.setdefault(record["job"], []).append(adoption_record(record))

    # -- a start ---------------------------------------------------------------------------
    def _load_jobs(self) -> None:
        assert self.manager is not None
        warn_problems(self.config, "")
        recorded: dict[str, Any] = {}
        if self.state_file is not None and not self.fresh:
            recorded = self.state_file.read()
        overrides = recorded.get("jobs", {})
        unloaded = set(recorded.get("unloaded", ()))
        held = {record["os_pid"] for records in self._held.values() for record in records}
        adoptable = _by_job(r for r in recorded.get("detached", ()) if r.get("os_pid") not in held)
        for job, records in self._held.items():
            adoptable.setdefault(job, []).extend(records)
        self._held = {}
        try:
            for spec in self.config.jobs_by_priority():
                if spec.id in unloaded:  # unloaded through the API: a SIGHUP loads it again
                    self.file_jobs[spec.id] = spec
                    logger.info("%s stays unloaded (state file %s)", spec.id, self.state_path)
                    continue
                self._load(spec, overrides.get(spec.id), adoptable.pop(spec.id, []))
        except StartupError as exc:
            logger.error("%s", exc)
            self._failed = True
            self.manager.stop()
            return
        api_jobs = [(job, e) for job, e in overrides.items() if job not in self.config.jobs]
        for job, entry in sorted(api_jobs, key=lambda item: _priority(item[1])):
            self._load_recorded(job, entry, adoptable.pop(job, []))
        self._release(adoptable)
        if self.keeper is not None:
            self.keeper.ready()  # a crash from now on is restarted
        self.plugins.on_start(self.manager)
        logger.info(
            "gafferd started (pid %d): %d job(s) from %s%s",
            os.getpid(),
            len(self.file_jobs),
            self.config.path or "no configuration file",
            f", {len(api_jobs)} from the state file" if api_jobs else "",
        )

    def _load(
        self, spec: JobSpec, override: dict[str, Any] | None = None, adopt: list | None = None
    ) -> None:
        config, env, start = spec.config, None, spec.start
        if override:
            try:
                config, env, start = _overridden(config, override, start)
            except (ConfigError, ProcessError, ValueError, TypeError) as exc:
                logger.error(
                    "state file %s: %s not applied (%s): loaded as the ini file says",
                    self.state_path,
                    spec.id,
                    exc,
                )
                config, env, start = spec.config, None, spec.start
        try:
            self._load_and_adopt(config, spec.session, env, start, adopt or [])
        except (ProcessError, ValueError) as exc:
            raise StartupError(f"{spec.origin}: [job:{spec.id}] cannot be loaded: {exc}") from None
        self.file_jobs[spec.id] = spec

    def _load_recorded(self, job: str, entry: dict[str, Any], adopt: list) -> None:
        """A job loaded through the API before the restart."""
        try:
            config = ProcessConfig.from_dict(entry["config"])
            config, env, start = _overridden(config, entry, True)
            self._load_and_adopt(config, entry["session"], env, start, adopt)
        except (ConfigError, ProcessError, ValueError, TypeError, KeyError) as exc:
            logger.error("state file %s: %s not loaded again: %s", self.state_path, job, exc)
            self._release({job: adopt})

    def _load_and_adopt(
        self,
        config: ProcessConfig,
        session: str,
        env: dict[str, str] | None,
        start: bool,
        adopt: list[dict[str, Any]],
    ) -> None:
        manager = self.manager
        assert manager is not None
        manager.load(config, sessionid=session, env=env, start=start and not adopt)
        if not adopt:
            return
        name = f"{session}.{config.name}"
        pids = manager.adopt(name, adopt)
        logger.info("%s: %d process(es) a previous gafferd started adopted", name, len(pids))
        (manager.start_job if start else manager.stop_job)(name)

    def _release(self, adoptable: dict[str, list[dict[str, Any]]]) -> None:
        """Processes the keeper held for jobs that are gone: stopped (the keeper reaps
        them); their descriptors closed."""
        for job, records in adoptable.items():
            for record in [r for r in records if r.get("foreign") == "reported"]:
                logger.warning(
                    "%s is no longer a job: its process os_pid=%s is stopped",
                    job,
                    record["os_pid"],
                )
                _stop_group(record["os_pid"])
                if self.keeper is not None:
                    self.keeper.remove(record["os_pid"])
                fds = [record["pidfd"], record["stdin"], *(out[1] for out in record["outputs"])]
                for fd in [*fds, *(stream[2] for stream in record["streams"])]:
                    if fd >= 0:
                        os.close(fd)

    # -- after a hand-over in place ----------------------------------------------------------
    def _adopt(self, manager: Manager, handed: dict[str, Any]) -> None:
        """Before the start: the jobs and processes of the previous gafferd."""
        previous = handed["gafferd"]
        self.restarter.handovers = previous["handovers"]
        self.restarter.started_at = previous["started_at"]
        self.file_jobs = handover.file_jobs(previous["file_jobs"])
        began = time.monotonic()
        self._adopted_counts = manager.restore(handed["manager"])
        handed.setdefault("timings", {})["restore"] = time.monotonic() - began

    def _adopted(self) -> None:
        """The first turn of the loop after a hand-over: everything is adopted and the
        API serves; the configuration file is applied as SIGHUP does."""
        assert self.manager is not None and self._handed is not None
        previous = self._handed["gafferd"]
        now = time.monotonic()
        timings = self._handed.get("timings", {})
        frozen = previous["frozen_at"]

        def since(moment: float | None) -> float | None:
            return None if moment is None else round((moment - frozen) * 1000, 1)

        last = self.restarter.last = {
            "time": time.time(),
            "duration_ms": round((now - previous["began"]) * 1000, 1),
            "frozen_ms": since(now),
            # where the time went, from the freeze: the description (and the HTTP
            # connections closed), the exec and the interpreter's start-up, the imports,
            # the restore of every job and process
            "described_ms": since(timings.get("exec")),
            "exec_ms": since(timings.get("imported")),
            "imported_ms": since(timings.get("main")),
            "restore_ms": round(timings["restore"] * 1000, 1) if "restore" in timings else None,
            **self._adopted_counts,
        }
        logger.info(
            "gafferd restarted in place (pid %d, hand-over %d): %d job(s), %d process(es) "
            "adopted; %.0f ms from the freeze, %.0f ms in all",
            os.getpid(),
            self.restarter.handovers,
            last["jobs"],
            last["processes"],
            last["frozen_ms"],
            last["duration_ms"],
        )
        self.manager.events.publish(
            "handover", {"event": "handover", "name": "gafferd", "pid": os.getpid(), **last}
        )
        config_failed = bool(self._handed.get("config_failed"))
        self._handed = None  # memory: the description is not needed any more
        if not config_failed:
            warn_problems(self.config, "restart: ")
            self._apply_jobs(self.config)
        self.plugins.on_start(self.manager)

    # -- SIGHUP ----------------------------------------------------------------------------
    def _apply_jobs(self, config: DaemonConfig) -> None:
        manager = self.manager
        assert manager is not None
        loaded = set(manager.jobs())
        for job_id in [job for job in self.file_jobs if job not in config.jobs]:
            if job_id in loaded:
                manager.unload(job_id)
                logger.info("reload: unloaded %s", job_id)
            del self.file_jobs[job_id]
        for spec in config.jobs_by_priority():
            old = self.file_jobs.get(spec.id)
            try:
                if spec.id not in loaded:
                    manager.load(spec.config, sessionid=spec.session, start=spec.start)
                    logger.info("reload: loaded %s", spec.id)
                elif old is None or not old.same_as(spec):
                    self._update(spec, old)
                    logger.info("reload: updated %s", spec.id)
            except (ProcessError, ValueError) as exc:
                logger.error("reload: %s: [job:%s] not applied: %s", spec.origin, spec.id, exc)
                continue
            self.file_jobs[spec.id] = spec

    def _update(self, spec: JobSpec, old: JobSpec | None) -> None:
        manager = self.manager
        assert manager is not None
        if old is not None and old.config == spec.config:  # only `start` changed
            (manager.start_job if spec.start else manager.stop_job)(spec.id)
            return
        manager.update(spec.config, sessionid=spec.session, start=spec.start)
        if not spec.start:
            manager.stop_job(spec.id)


def _overridden(
    config: ProcessConfig, entry: dict[str, Any], start: bool
) -> tuple[ProcessConfig, dict[str, str] | None, bool]:
    """A config, its load env and whether it starts, as a state file entry changes them."""
    env = None
    if "config" in entry:
        config = ProcessConfig.from_dict(entry["config"])
        env = entry.get("env") or None
    if "numprocesses" in entry:
        config = config.replace(numprocesses=entry["numprocesses"])
    return config, env, bool(entry.get("started", start))


def _priority(entry: dict[str, Any]) -> int:
    config = entry.get("config")
    return config.get("priority", 999) if isinstance(config, dict) else 999


def _by_job(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if isinstance(record, dict) and isinstance(record.get("job"), str):
            out.setdefault(record["job"], []).append(dict(record, foreign="unknown"))
    return out


def _stop_group(pgid: int) -> None:
    """SIGTERM now, SIGKILL 5 s later if the group is still there (no job waits)."""

    def kill() -> None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass

    try:
        os.killpg(pgid, signal.SIGTERM)
    except OSError:
        return
    timer = threading.Timer(5.0, kill)
    timer.daemon = True
    timer.start()
