"""Rebuilding a manager from the description a previous life made (handover.py).

Every job is made again from its config, with its counters, crash history, timers and
recent output; every process is adopted under its internal pid, through the descriptors
that survived the exec (its pidfd, which pins it: no other process can be behind it; its
pipes; its custom streams). States are restored as they were, not moved: nothing
happened to the processes, only to gafferd. Nothing is spawned here and nothing is
published: ``start()`` then reconciles each job as usual (a job that has all its
processes spawns none).
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from gaffer.core.checks import Health
from gaffer.core.childwatch import ChildHandle
from gaffer.core.config import ProcessConfig
from gaffer.core.guard import Guard
from gaffer.core.handover import FORMAT, _enlarged, inheritable
from gaffer.core.keeper import Keeper
from gaffer.core.notify import NotifySocket
from gaffer.core.pipes import claim_capture_pipes
from gaffer.core.spawn import Command
from gaffer.core.states import UP, State
from gaffer.core.stdio import Stdio
from gaffer.errors import HandoverError, SpawnError

if TYPE_CHECKING:
    from gaffer.core.manager import Manager
    from gaffer.core.process import Process
    from gaffer.core.runner import JobRunner
    from gaffer.core.table import ProcessTable

logger = logging.getLogger("gaffer.core.handover")


def restore(manager: Manager, state: dict[str, Any]) -> dict[str, int]:
    if state.get("format") != FORMAT:
        raise HandoverError(f"unknown hand-over format {state.get('format')!r} (expected {FORMAT})")
    if manager.started:
        raise RuntimeError("restore() comes before start()")
    inheritable(state.get("fds", ()), False)  # children spawned from now on get none
    table = manager._table
    loop = manager.loop
    envs = [dict(env) for env in state["envs"]]
    commands = [_command(entry, envs) for entry in state["commands"]]
    table._next_pid = max(table._next_pid, state["next_pid"])
    manager.exit_code = state.get("exit_code")
    table.detached_sessions.update(state.get("detached_sessions", ()))
    table.watcher.reap_later(state.get("forgotten", []))
    guard = state.get("guard")
    if guard is not None and guard.get("kind") == "keeper":
        table.guard = Keeper(
            loop, table.watcher, guard["fd"], on_lost=manager._keeper_lost, groups=guard["groups"]
        )
        table.guard.start()
    elif guard is not None:
        table.guard = Guard(loop, table.watcher, on_restart=manager._publish, adopt=guard)
    if state.get("notify") is not None:
        fd, address = state["notify"]
        table._notify = NotifySocket(loop, table._notified, adopt=(fd, address))
    manager._handed_orphans = state.get("orphans", [])
    for pid, *previous in state.get("sampler", ()):
        table.sampler._previous[pid] = tuple(previous)
    counts = {"jobs": 0, "processes": 0}
    for entry in state["jobs"]:
        counts["processes"] += _job(manager, entry, envs, commands)
        counts["jobs"] += 1
    for record in state.get("unloaded", ()):
        config = ProcessConfig.from_dict(record["config"])
        proc = _process(table, None, config, record, envs, commands)
        table.stopping[proc.pid] = proc
    return counts


def _command(entry: dict[str, Any], envs: list[dict[str, str]]) -> Command:
    return Command(
        entry["executable"],
        tuple(entry["argv"]),
        envs[entry["env"]],
        entry["cwd"],
        entry["uid"],
        entry["gid"],
        None if entry["groups"] is None else tuple(entry["groups"]),
        entry["umask"],
        tuple((which, value) for which, value in entry["rlimits"]),
    )


def _job(
    manager: Manager,
    entry: dict[str, Any],
    envs: list[dict[str, str]],
    commands: list[Command],
) -> int:
    config = ProcessConfig.from_dict(entry["config"])
    runner = manager._add_runner(entry["session"], config, entry["env"])
    job = runner.job
    table = manager._table
    runner.wanted = entry["wanted"]
    runner.numprocesses = entry["numprocesses"]
    runner.state = State(entry["state"])  # restored, not moved: nothing happened to the job
    runner.restarts = entry["restarts"]
    runner.last_exit = entry["last_exit"]
    runner.error = entry["error"]
    runner.spawn_failures = entry["spawn_failures"]
    runner.paused_by_flapping = entry["paused_by_flapping"]
    runner.gave_up = entry["gave_up"]
    runner.finished = entry["finished"]
    runner._gate_open = entry["gate_open"]
    runner.waiting_for = list(entry["waiting_for"])
    runner._slot_history = {slot: (count, last) for slot, count, last in entry["slot_history"]}
    job.history.streak = entry["streak"]
    if entry["flapping"] is not None and job.flapping is not None:
        exits, retries = entry["flapping"]
        job.flapping.exits.extend(exits)
        job.flapping.retries = retries
    job.output.restore(
        (when, pid, os_pid, stream, base64.b64decode(data))
        for when, pid, os_pid, stream, data in entry["output"]
    )
    checks = runner._checks
    checks.status.update({pid: text for pid, text in entry["status"]})
    checks.results.update({pid: Health(**health) for pid, health in entry["health"]})
    procs: dict[int, Process] = {}
    for record in entry["processes"]:
        proc = _process(table, runner, config, record, envs, commands)
        procs[proc.pid] = proc
        if not record["listed"]:
            table.stopping[proc.pid] = proc
        else:
            table.running[proc.pid] = proc
            if proc.once:
                job.running_out[proc.pid] = proc
    for pid in entry["order"]:
        job.add_running(procs[pid])
    runner._exiting = set(entry["exiting"])
    runner._unhealthy = set(entry["unhealthy"])
    runner.retiring = [procs[pid] for pid in entry["retiring"] if pid in procs]
    runner._up = sum(1 for proc in job.running if proc.state in UP)
    if entry["next_restart_at"] is not None:
        delay = max(0.0, entry["next_restart_at"] - time.time())
        after = runner._flap_retry if runner.paused_by_flapping else runner._backoff_done
        runner._restart_timer = manager.loop.call_later(delay, after)
        runner.next_restart_at = entry["next_restart_at"]
    # the checks go on: start_secs counted from the spawn, probes again, health again
    listed = [proc for proc in procs.values() if proc.pid in table.running]
    for proc in sorted(listed, key=lambda p: p.spawned_at or 0.0):
        if proc.state is State.STARTING:
            checks.started(proc, config)
        elif proc.state in UP and not proc.once:
            checks.watch_health(proc, config)
    return len(procs)


def _process(
    table: ProcessTable,
    runner: JobRunner | None,
    config: ProcessConfig,
    record: dict[str, Any],
    envs: list[dict[str, str]],
    commands: list[Command],
) -> Process:
    loop = table.loop
    index = record["command"]
    command = commands[index] if index is not None else None
    alive = record["alive"]
    sinks = runner.sinks if runner is not None and alive else (None, None)
    proc = table.make_process(
        record["pid"],
        record["job"],
        config,
        envs[record["env"]],
        command,  # type: ignore[arg-type]
        once=record["once"],
        graceful_timeout=record["graceful_timeout"],
        sinks=sinks,
        history=runner.job.output if runner is not None else None,
        on_exit=runner._exit_callback if runner is not None else _unlisted_exit(table),
        on_state=runner._state_callback if runner is not None else None,
        on_notify=runner._notify_callback if runner is not None else None,
    )
    proc.slot = record["slot"]
    proc.restarts = record["restarts"]
    proc.last_exit = record["last_exit"]
    proc.spawned_at = record["spawned_at"]
    proc.up_since = record["up_since"]
    proc.state = State(record["state"])
    proc.stopping = record["stopping"]
    if alive:
        table.hold_sinks(proc, sinks)
        table.mark_output(proc, sinks, runner.job.output if runner is not None else None, False)
        _adopt_alive(proc, record)
    else:
        _adopt_lingering(proc, record, command)
    if record["escaped"]:
        proc._escaped = {pid: (fd if fd >= 0 else None) for pid, fd in record["escaped"]}
        for pid, fd in proc._escaped.items():
            if fd is not None:
                loop.add_reader(fd, proc._escaped_exited, pid)
    if record["kill_at"] is not None:
        proc._kill_timer = loop.call_at(record["kill_at"], proc._kill_group)
    return proc


def _adopt_alive(proc: Process, record: dict[str, Any]) -> None:
    writers = {"stdout": proc._log_writers[0], "stderr": proc._log_writers[1]}
    outputs = []
    for label, fd, stream, at_line_start in record["outputs"]:
        writer = writers[stream]
        if writer is not None:
            writer._at_line_start = at_line_start
        outputs.append((label, fd, writer, stream))
    stdio = Stdio(
        stdin_w=record["stdin"],
        ready_read=record["ready"],
        outputs=outputs,
        sockets=[
            (label, child_fd, socket.socket(fileno=fd), None)
            for label, child_fd, fd in record["streams"]
        ],
        enlarged=record["enlarged"],
    )
    claim_capture_pipes(record["enlarged"])
    proc.adopt(record["os_pid"], record["pidfd"], record["foreign"], stdio, record["create_time"])
    pending = base64.b64decode(record["stdin_pending"])
    if pending and proc._stdin is not None:
        proc._stdin.write(pending)


def _adopt_lingering(proc: Process, record: dict[str, Any], command: Command | None) -> None:
    """A leader that exited, its group (or escaped descendants) not gone yet: the stop
    goes on (SIGKILL at the deadline) until they are."""
    os_pid = record["os_pid"]
    handle = ChildHandle(os_pid, lambda status, sig: None)
    handle.exited = True
    proc._handle = handle
    proc.os_pid = os_pid
    proc.command = command
    proc.create_time = record["create_time"]
    proc.exit_status, proc.term_signal = record["exit"]
    if record["group_alive"]:
        proc._group_alive = True
        proc._group_watch.add(os_pid, proc._end_group_watch)


def _unlisted_exit(table: ProcessTable) -> Any:
    """The exit of a process whose job was unloaded (it was being stopped)."""

    def exited(proc: Process, exit_status: int, term_signal: int) -> None:
        table.exited(proc)

    return exited


def adopt_into(manager: Manager, name: str, records: list[dict[str, Any]]) -> list[int]:
    """Adopt processes a previous gafferd started into the loaded, not started job
    ``name`` (a detached job's processes found again after a restart; the processes the
    keeper held after a crash). Each record: ``os_pid``, ``slot``, ``once``,
    ``create_time``, ``pid`` (internal; None: a new one), ``pidfd`` (-1: opened here),
    ``foreign`` (``"reported"``, ``"unknown"``), ``start_ticks`` (checked against
    /proc when the pidfd is opened here: a pid reused by another process is refused),
    ``outputs`` ``[[label, fd, stream]]``, ``stdin``, ``streams``. Returns the internal
    pids given; a process that is gone (or not the one recorded) is skipped."""
    from gaffer.core.procfs import pidfd_or_none, proc_stat, start_ticks

    runner = manager._get_job(name)
    if runner.processes:
        raise HandoverError(f"{name} already has processes: adopt before it starts")
    table = manager._table
    adopted = []
    for record in sorted(records, key=lambda r: (r.get("slot") is None, r.get("slot") or 0)):
        os_pid = record["os_pid"]
        pidfd = record.get("pidfd", -1)
        if pidfd < 0:
            pidfd = pidfd_or_none(os_pid)
            stat = proc_stat(os_pid)
            if pidfd is None or stat is None or stat.exited:
                _close(pidfd)
                continue
            if (
                record.get("start_ticks") is not None
                and start_ticks(os_pid) != record["start_ticks"]
            ):
                _close(pidfd)  # the pid was reused: not the process recorded
                continue
        pid = record.get("pid") or table._next_pid
        table._next_pid = max(table._next_pid, pid + 1)
        try:
            env, command = runner.job.prepare(record.get("slot") or 0)
        except SpawnError:  # shown as the config says; the process runs as it was started
            env, command = {}, None
        full = {
            "pid": pid,
            "job": runner.name,
            "command": None if command is None else 0,
            "env": 0,
            "once": record.get("once", False),
            "graceful_timeout": runner.config.graceful_timeout,
            "slot": None if record.get("once") else record.get("slot"),
            "restarts": record.get("restarts", 0),
            "last_exit": None,
            "spawned_at": None,
            "up_since": manager.loop.time(),
            "state": str(State.RUNNING),  # restored: it has been running all along
            "stopping": False,
            "alive": True,
            "os_pid": os_pid,
            "pidfd": pidfd,
            "foreign": record.get("foreign", "unknown"),
            "create_time": record.get("create_time") or time.time(),
            "outputs": [[*out[:3], True] for out in record.get("outputs", ())],
            "stdin": record.get("stdin", -1),
            "stdin_pending": "",
            "ready": -1,
            "streams": record.get("streams", []),
            "enlarged": sum(1 for out in record.get("outputs", ()) if _enlarged(out[1])),
            "escaped": [],
            "kill_at": None,
        }
        proc = _process(table, runner, runner.config, full, [dict(env)], [command])  # type: ignore[list-item]
        table.running[pid] = proc
        if proc.once:
            runner.job.running_out[pid] = proc
        else:
            runner.job.add_running(proc)
            runner._up += 1
            runner._checks.watch_health(proc, runner.config)
        if runner.config.detach:
            table.detached_sessions.add(os_pid)
        adopted.append(pid)
    return adopted


def _close(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        os.close(fd)
