"""The commands of the API and the permission each needs: one table behind REST and the
``/channel`` WebSocket.

A REST handler and a ``CMD`` message of the channel both end in :func:`run`: it finds the
command, checks the key's right on the command's target *before* anything is looked up or
done (so a denied command changes nothing and a key learns nothing of jobs it may not
read), then runs it. The edges only turn their input into the arguments below and the
result into their answer.

=====================  ========  =========  ==============================================
command                right     target     arguments (checked by the edge)
=====================  ========  =========  ==============================================
sessions, jobs, pids   (list)    -          ``sessionid``: lists show what the key may read
overview, usage        (list)    -          ``names`` (job ids: read on each), else every
                                            job the key may read (403 if it reads
                                            nothing); ``children`` (overview)
load                   manage    session    ``config`` (a dict), ``sessionid``, ``env``,
                                            ``start``; uid/gid need an admin key, log files
                                            must be under ``log_root``
update                 manage    job        as load; ``name`` is the job id
unload, reload         manage    job        ``name``: a job id ``session.name``
start_job, stop_job,   manage    job        ``name``; ``n`` (scale), ``sig`` (killall),
stopall, scale,                             ``graceful_timeout`` and ``env`` (commit)
killall, commit
exists, info, stats,   read      job        ``name``
job_pids
process_info,          read      process    ``pid``
process_exists,
process_stats,
read_output
read_logs              read      job        ``name`` (``/logs``: every job it may read)
stop_process, kill     manage    process    ``pid``; ``sig`` (kill)
send                   write     process    ``pid``, ``data``, ``stream``
=====================  ========  =========  ==============================================

daemon_restart,        admin     -          none: gafferd hands over to a new gafferd that
daemon_state                                adopts every process; what gafferd records of
                                            the operator's requests (its state file)

cluster_nodes,         read      any        the cluster's nodes and jobs (etcd): a key that
cluster_jobs                                may read something; jobs listed if readable
cluster_declare        manage    session    ``sessionid``; the job's config as for load
cluster_withdraw       manage    job        ``name``

``read_output`` and the ``cluster_*`` commands are not run here: the cluster handlers run
them against etcd (gaffer/http/handlers/cluster.py). The feeds that show a process's
output (``/streams``, ``/<pid>/channel``, the ``STREAM`` topic) ask :func:`authorize`
with it. The event feeds
(``/watch``, the ``EVENTS`` topic) show each event to keys that may read its job
(:func:`may_see_event`).

Environments are shown with their secrets redacted (``gaffer.http.auth.redact_env``)
unless the key is an admin key; a process shows only its job's own variables, and how
many it inherited from gafferd.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gaffer.core.config import ProcessConfig
from gaffer.core.logfile import LogTarget
from gaffer.core.names import DEFAULT_SESSION, validate_session
from gaffer.errors import PermissionDenied, ProcessError, ProcessNotFound
from gaffer.http.auth import LOCAL, Permissions, redact_env
from gaffer.http.schema import config_json

READ, WRITE, MANAGE, LIST = "read", "write", "manage", "list"
ADMIN = "admin"  # an admin key, or no keys at all (LOCAL: gafferd's own socket, say)
LOG_OPTIONS = ("stdout_logfile", "stderr_logfile")


@dataclass(frozen=True)
class Policy:
    """What the daemon's settings add to the permissions of keys."""

    log_root: str | None = None  # log files given through the API must be under it
    # the daemon serving the API (its restart, its state; None when a manager is embedded):
    # an object with ``async restart() -> dict`` and ``state() -> dict``
    daemon: Any = None
    # the options given to jobs loaded or updated through the API that do not set them
    # (gafferd's settings of the same name: log_history), asked at each load
    job_defaults: Callable[[], Mapping[str, Any]] = dict


@dataclass
class Call:
    """One command being run: who asks, its arguments, and its resolved target."""

    manager: Any
    permissions: Permissions
    values: dict[str, Any]
    policy: Policy = field(default_factory=Policy)
    job: str = ""  # the "job" or "session" target, once checked
    proc: Any = None  # the "process" target, once checked

    def redact(self, env: Mapping[str, str] | None) -> dict[str, str]:
        return dict(env or {}) if self.permissions.is_admin else redact_env(env)


@dataclass(frozen=True)
class Command:
    right: str
    target: str  # "job", "session", "process" or "-"
    run: Callable[[Call], Any] | None


COMMANDS: dict[str, Command] = {}
NO_POLICY = Policy()


def _command(name: str, right: str, target: str) -> Callable[[Any], Any]:
    def register(func: Callable[[Call], Any] | None) -> Any:
        COMMANDS[name] = Command(right, target, func)
        return func

    return register


def authorize(
    name: str,
    manager: Any,
    permissions: Permissions,
    values: dict[str, Any],
    policy: Policy | None = None,
) -> Call:
    """The call of ``name`` once the key may run it on its target (PermissionDenied, or
    ProcessNotFound for an unknown pid, otherwise)."""
    command = COMMANDS[name]
    call = Call(manager, permissions, values, policy or NO_POLICY)
    if command.target == "job":
        call.job = values["name"]
        permissions.require(command.right, call.job)
    elif command.target == "session":
        call.job = validate_session(values.get("sessionid") or DEFAULT_SESSION)
        permissions.require(command.right, call.job)
    elif command.target == "process":
        call.proc = manager.get_process(values["pid"])  # 404 first: pids are not secret
        permissions.require(command.right, call.proc.name)
    elif command.target == "any" and not permissions.reads_anything():
        raise PermissionDenied("this key may not read anything")
    if command.right == ADMIN and not (permissions.is_admin or permissions is LOCAL):
        raise PermissionDenied(f"only an admin key may run {name}")
    return call


def readable(permissions: Permissions, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records (``{"job": ...}``) of jobs the key may read."""
    return [record for record in records if permissions.can_read(str(record.get("job")))]


def run(
    name: str,
    manager: Any,
    permissions: Permissions,
    values: dict[str, Any],
    policy: Policy | None = None,
) -> Any:
    """Check, then run command ``name``; its result (an awaitable for stats)."""
    return execute(name, authorize(name, manager, permissions, values, policy))


def execute(name: str, call: Call) -> Any:
    """Run command ``name`` for a ``call`` that :func:`authorize` returned for it (more
    arguments may have been added to ``call.values`` since: a REST handler checks the
    right before it reads the body)."""
    func = COMMANDS[name].run
    assert func is not None, f"{name} is a permission only"
    return func(call)


# -- logs (read by gaffer/http/handlers/logs.py, from the jobs' history) -----------------------
_command("read_logs", READ, "job")(None)


def reader(permissions: Permissions) -> Callable[[str], bool]:
    """Whether the key may read a job: ``/logs`` shows the lines of those jobs only."""
    return permissions.can_read


# -- the cluster (run by gaffer/http/handlers/cluster.py, against etcd) -----------------------
_command("cluster_nodes", READ, "any")(None)
_command("cluster_jobs", READ, "any")(None)
_command("cluster_declare", MANAGE, "session")(None)
_command("cluster_withdraw", MANAGE, "job")(None)


# -- lists ----------------------------------------------------------------------------------
@_command("sessions", LIST, "-")
def _sessions(call: Call) -> list[str]:
    manager, can_read = call.manager, call.permissions.can_read
    return [sid for sid in manager.sessions if any(can_read(job) for job in manager.jobs(sid))]


@_command("jobs", LIST, "-")
def _jobs(call: Call) -> list[str]:
    sessionid = call.values.get("sessionid")
    can_read = call.permissions.can_read
    if sessionid is None:
        return [job for job in call.manager.jobs() if can_read(job)]
    jobs = call.manager.jobs(validate_session(sessionid))  # 404 for an unknown session
    readable = [job for job in jobs if can_read(job)]
    if jobs and not readable:
        call.permissions.require(READ, sessionid)
    return readable


@_command("pids", LIST, "-")
def _pids(call: Call) -> list[int]:
    can_read = call.permissions.can_read
    return [pid for pid, proc in list(call.manager.running.items()) if can_read(proc.name)]


# -- what gaffer top, the dashboard (/overview) and /metrics read -----------------------------
@_command("overview", LIST, "-")
def _overview(call: Call) -> Any:
    """An awaitable: the jobs' state and their processes' stats (Manager.aoverview)."""
    return call.manager.aoverview(_observed(call), bool(call.values.get("children")))


@_command("usage", LIST, "-")
def _usage(call: Call) -> Any:
    """An awaitable: the jobs' state and their processes' usage (Manager.ausage)."""
    return call.manager.ausage(_observed(call))


def sees_everything(permissions: Permissions) -> bool:
    """Whether the serving process's own figures (its memory, loop lag, requests) are
    shown to this key, in /metrics and /overview: read on everything."""
    return permissions.can_read("*")


def _observed(call: Call) -> list[str]:
    names = call.values.get("names")
    permissions = call.permissions
    if names:
        for name in names:
            permissions.require(READ, name)
        return list(names)
    if not permissions.reads_anything():
        raise PermissionDenied("this key may not read any job")
    return [job for job in call.manager.jobs() if permissions.can_read(job)]


# -- jobs -----------------------------------------------------------------------------------
def job_config(call: Call, body: Mapping[str, Any]) -> ProcessConfig:
    """The config of load and update: uid and gid need an admin key; log files must be
    under ``log_root`` (relative ones are taken in it); the daemon's defaults fill what the
    body leaves out."""
    body = {**call.policy.job_defaults(), **body}
    if (body.get("uid") is not None or body.get("gid") is not None) and (
        not call.permissions.is_admin
    ):
        raise PermissionDenied("only an admin key may set uid or gid")
    root = call.policy.log_root
    if root is not None:
        for option in LOG_OPTIONS:
            if isinstance(body.get(option), str):
                body[option] = confined_log(option, body[option], root)
    return ProcessConfig.from_dict(body)


def confined_log(option: str, value: str, root: str) -> str:
    """``value`` of a log option, if it stays under ``root`` (PermissionDenied if not)."""
    if value == "-" or not value:
        return value
    try:
        target = LogTarget.parse(value)
    except ValueError:
        return value  # ProcessConfig says what is wrong with it
    if target.kind == "syslog" and target.path in (None, "/dev/log"):
        return value
    path = value if target.kind == "file" else (target.path or "")
    if target.kind == "file" and not os.path.isabs(os.path.expanduser(value)):
        path = value = os.path.join(root, value)
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.expanduser(path))
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise PermissionDenied(f"{option} {value!r} is outside log_root ({root})")
    return value


@_command("load", MANAGE, "session")
def _load(call: Call) -> None:
    values = call.values
    config = job_config(call, values["config"])
    call.manager.load(
        config, sessionid=call.job, env=values.get("env"), start=values.get("start", True)
    )


@_command("update", MANAGE, "job")
def _update(call: Call) -> None:
    values = call.values
    session = call.job.split(".", 1)[0]
    config = job_config(call, values["config"])
    call.manager.get(call.job)  # 404 before anything changes
    call.manager.update(
        config, sessionid=session, env=values.get("env"), start=values.get("start", False)
    )


@_command("unload", MANAGE, "job")
def _unload(call: Call) -> None:
    call.manager.unload(call.job)


@_command("reload", MANAGE, "job")
def _reload(call: Call) -> None:
    call.manager.reload(call.job)


@_command("start_job", MANAGE, "job")
def _start_job(call: Call) -> None:
    call.manager.start_job(call.job)


@_command("stop_job", MANAGE, "job")
def _stop_job(call: Call) -> None:
    call.manager.stop_job(call.job)


@_command("stopall", MANAGE, "job")
def _stopall(call: Call) -> None:
    call.manager.stopall(call.job)


@_command("scale", MANAGE, "job")
def _scale(call: Call) -> int:
    return call.manager.scale(call.job, call.values["n"])


@_command("killall", MANAGE, "job")
def _killall(call: Call) -> None:
    call.manager.killall(call.job, call.values["sig"])


@_command("commit", MANAGE, "job")
def _commit(call: Call) -> int:
    values = call.values
    return call.manager.commit(
        call.job, graceful_timeout=values.get("graceful_timeout"), env=values.get("env")
    )


@_command("exists", READ, "job")
def _exists(call: Call) -> None:
    call.manager.get(call.job)


@_command("info", READ, "job")
def _info(call: Call) -> dict[str, Any]:
    info = call.manager.info(call.job)
    info["config"] = config_json(info["config"])  # open channels as descriptor numbers
    info["config"]["env"] = call.redact(info["config"].get("env"))
    return info


@_command("stats", READ, "job")
def _stats(call: Call) -> Any:
    return call.manager.astats(call.job)


@_command("job_pids", READ, "job")
def _job_pids(call: Call) -> list[int]:
    return call.manager.pids(call.job)


# -- processes ------------------------------------------------------------------------------
@_command("process_exists", READ, "process")
def _process_exists(call: Call) -> Any:
    return call.proc


@_command("process_info", READ, "process")
def _process_info(call: Call) -> dict[str, Any]:
    info = call.proc.info
    if not call.permissions.is_admin:  # gafferd's own environment is not the job's
        env = info.get("env") or {}
        own = own_env(env, call.proc.config.env)
        info["env"] = redact_env(own)
        info["inherited_env_count"] = len(env) - len(own)
    return info


@_command("process_stats", READ, "process")
def _process_stats(call: Call) -> Any:
    return call.manager.aprocess_stats(call.proc.pid)


_command("read_output", READ, "process")(None)


@_command("stop_process", MANAGE, "process")
def _stop_process(call: Call) -> None:
    call.manager.stop_process(call.proc.pid)


@_command("kill", MANAGE, "process")
def _kill(call: Call) -> None:
    call.manager.kill(call.proc.pid, call.values["sig"])


@_command("send", WRITE, "process")
def _send(call: Call) -> None:
    call.manager.send(call.proc.pid, call.values["data"], stream=call.values.get("stream"))


# -- the daemon ------------------------------------------------------------------------------
def _daemon(call: Call) -> Any:
    daemon = call.policy.daemon
    if daemon is None:
        raise ProcessNotFound("no daemon serves this API (an embedded manager)")
    return daemon


@_command("daemon_restart", ADMIN, "-")
def _daemon_restart(call: Call) -> Any:
    return _daemon(call).restart()  # awaitable: the new code is checked first


@_command("daemon_state", ADMIN, "-")
def _daemon_state(call: Call) -> dict[str, Any]:
    return _daemon(call).state()


def may_see_event(permissions: Permissions, msg: Any) -> bool:
    """Whether a key sees an event of the feeds (/watch, the EVENTS topic): read on its
    job; an event of no job (or of a name that is no job id) only with read on "*"."""
    name = msg.get("name") if isinstance(msg, dict) else None
    if not isinstance(name, str) or not name:
        return permissions.can_read("*")
    try:
        return permissions.can_read(name)
    except ProcessError:  # not a job id: only for keys that read everything
        return permissions.can_read("*")


def own_env(env: Mapping[str, str], configured: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` that are the job's: set by its config, its load or its
    commit (absent from gafferd's environment, or with another value there)."""
    inherited = os.environ
    return {
        name: value
        for name, value in env.items()
        if name in configured or inherited.get(name) != value
    }
