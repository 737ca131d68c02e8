"""Turning a job config into an OS process: command line, environment, spawn.

Spawning goes through ``subprocess.Popen``, which on Linux uses ``vfork`` and so runs as
fast as ``posix_spawn`` (about 2,000 ``sleep`` processes a second on a 2-core machine, see
docs/performance.md) while also handling ``cwd``, uid/gid, supplementary groups and the
closing of stray descriptors. Popen only places descriptors at 0, 1 and 2; a child that
needs more (``custom_streams``, ``custom_channels``, at fd 3, 4, ...) is spawned with a
``preexec_fn`` that moves them into place, which costs a ``fork`` instead of a ``vfork``.

gaffer reaps its children itself (``childwatch.py``), never through Popen: the Popen object
is dropped at once, marked as already reaped so that ``subprocess`` never waits on the pid.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import re
import resource
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gaffer.core.config import ProcessConfig
from gaffer.core.options import rlimit_values
from gaffer.dotenv import DotenvError, load_env_files
from gaffer.errors import SpawnError

_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True, slots=True)
class Command:
    """Everything the OS needs to start one process of a job."""

    executable: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str | None
    uid: int | None
    gid: int | None
    groups: tuple[int, ...] | None
    umask: int = -1  # -1: gaffer's own
    rlimits: tuple[tuple[int, int], ...] = ()  # (resource, soft = hard)
    # encoded once per job, not by Popen at every spawn (70 variables: 70 µs a spawn)
    env_bytes: dict[bytes, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        encoded = {os.fsencode(key): os.fsencode(value) for key, value in self.env.items()}
        object.__setattr__(self, "env_bytes", encoded)


def build_env(config: ProcessConfig, *extra: Mapping[str, str] | None) -> dict[str, str]:
    """gaffer's environment (with ``os_env``) < the user's identity < ``env_file`` <
    ``config.env`` < each ``extra`` (the load env, then a commit's env). Raises SpawnError
    when the env file cannot be read."""
    env: dict[str, str] = dict(os.environ) if config.os_env else {}
    if config.username is not None and config.resolved_uid != os.getuid():
        entry = pwd.getpwnam(config.username)
        env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
    if config.env_file is not None:
        try:
            env.update(load_env_files([config.env_file], environ=env))
        except DotenvError as exc:
            raise SpawnError(f"env_file: {exc}", os_errno=errno.ENOENT) from None
    env.update(config.env)
    for more in extra:
        if more:
            env.update(more)
    return env


def substitute(text: str, env: Mapping[str, str], where: str) -> str:
    """Replace ``$VAR`` and ``${VAR}`` from ``env``; ``$$`` is a literal ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name = match.group(2) or match.group(3)
        try:
            return env[name]
        except KeyError:
            raise SpawnError(
                f"{where}: ${name} is not set in the process environment "
                "(write $$ for a literal $)",
                os_errno=errno.EINVAL,
            ) from None

    return _VAR.sub(replace, text) if "$" in text else text


def build_command(config: ProcessConfig, env: Mapping[str, str]) -> Command:
    """The argv, resolved executable and identity of a process. Raises SpawnError."""
    if config.shell:
        argv = ["/bin/sh", "-c", config.cmd, *(substitute(arg, env, "args") for arg in config.args)]
    else:
        try:
            words = _split(config.cmd)
        except ValueError as exc:
            raise SpawnError(f"cmd {config.cmd!r}: {exc}", os_errno=errno.EINVAL) from None
        argv = [substitute(word, env, "cmd") for word in words]
        argv += [substitute(arg, env, "args") for arg in config.args]
    executable = resolve_executable(argv[0], env, config.cwd)
    uid, gid = config.resolved_uid, config.resolved_gid
    groups = None
    if config.username is not None and uid != os.getuid():
        groups = tuple(os.getgrouplist(config.username, gid if gid is not None else 0))
    umask = -1 if config.umask is None else config.umask
    limits = tuple(rlimit_values(config.rlimits))
    return Command(executable, tuple(argv), env, config.cwd, uid, gid, groups, umask, limits)


def _split(cmd: str) -> list[str]:
    import shlex

    words = shlex.split(cmd)
    if not words:
        raise ValueError("empty command")
    return words


def resolve_executable(program: str, env: Mapping[str, str], cwd: str | None) -> str:
    """Find ``program`` like ``execvp`` would in the child: through the child's ``PATH``
    (or gaffer's own when the child has none), relative to ``cwd`` when it holds a slash."""
    if "/" in program:
        path = program if os.path.isabs(program) or not cwd else os.path.join(cwd, program)
        if not os.path.exists(path):
            raise SpawnError(
                f"cmd: program {program!r} not found" + (f" (cwd {cwd!r})" if cwd else ""),
                os_errno=errno.ENOENT,
            )
        if not os.access(path, os.X_OK) or os.path.isdir(path):
            raise SpawnError(f"cmd: {program!r} is not an executable file", os_errno=errno.EACCES)
        return path
    search = env.get("PATH") or os.environ.get("PATH") or os.defpath
    if cwd:  # relative PATH entries are relative to the child's directory, as in the child
        search = os.pathsep.join(
            entry if os.path.isabs(entry) else os.path.join(cwd, entry)
            for entry in search.split(os.pathsep)
        )
    found = shutil.which(program, path=search)
    if found is None:
        raise SpawnError(
            f"cmd: program {program!r} not found in PATH={search}", os_errno=errno.ENOENT
        )
    if not os.path.isabs(found):
        found = os.path.abspath(found)
    return found


def spawn(
    command: Command,
    *,
    stdin: int | None,
    stdout: int | None,
    stderr: int | None,
    extra_fds: Sequence[int] = (),
    mapped_fds: Sequence[tuple[int, int]] = (),
) -> int:
    """Start ``command`` in a new session (so in its own process group); return its pid.

    ``stdin``/``stdout``/``stderr`` are descriptors for fd 0/1/2 (None: /dev/null for stdin,
    gaffer's own for stdout and stderr). ``extra_fds`` are placed at fd 3, 4, ...;
    ``mapped_fds`` are ``(N, fd)``: ``fd`` placed at N.
    """
    kwargs: dict = {}
    if command.uid is not None and command.uid != os.geteuid():
        kwargs["user"] = command.uid
        if command.groups is not None:
            kwargs["extra_groups"] = list(command.groups)
    if command.gid is not None and command.gid != os.getegid():
        kwargs["group"] = command.gid
    placed = [*enumerate(extra_fds, start=3), *mapped_fds]
    if placed or command.rlimits:  # a fork instead of a vfork: only for these jobs
        kwargs["preexec_fn"] = _in_child(placed, command.rlimits)
        kwargs["close_fds"] = not placed
    else:
        kwargs["close_fds"] = True
    try:
        popen = subprocess.Popen(
            command.argv,
            executable=command.executable,
            env=command.env_bytes,
            cwd=command.cwd,
            start_new_session=True,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=stdout,
            stderr=stderr,
            umask=command.umask,
            **kwargs,
        )
    except subprocess.SubprocessError as exc:  # preexec_fn failed in the child
        raise SpawnError(f"cannot start {command.argv[0]!r}: {exc}") from None
    except OSError as exc:
        raise SpawnError(_describe_os_error(exc, command), os_errno=exc.errno) from None
    # gaffer reaps this child through its own watcher; Popen must never wait on it.
    popen.returncode = 0
    return popen.pid


def _in_child(placed: list[tuple[int, int]], limits: tuple[tuple[int, int], ...]):
    """A preexec_fn that sets the resource limits and moves each ``(target, fd)`` of
    ``placed`` to its target in the child, whatever the numbers."""
    base = 1 + max((target for target, _ in placed), default=2)

    def prepare() -> None:
        for which, value in limits:
            resource.setrlimit(which, (value, value))
        if placed:
            place()

    def place() -> None:
        # first out of the way of every target, then into place
        high = [(target, fcntl.fcntl(fd, fcntl.F_DUPFD, base)) for target, fd in placed]
        for target, fd in high:
            os.dup2(fd, target, inheritable=True)
        for _, fd in high:
            os.close(fd)
        # close_fds is off on this path: close what would leak, every inheritable
        # descriptor above ours (close-on-exec ones, like Popen's error pipe, stay)
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd >= base:
                try:
                    if not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                        os.close(fd)
                except OSError:
                    pass

    return prepare


def _describe_os_error(exc: OSError, command: Command) -> str:
    if exc.errno == errno.ENOENT and command.cwd and exc.filename == command.cwd:
        return f"cwd: directory {command.cwd!r} does not exist"
    if exc.errno in (errno.EACCES, errno.EPERM):
        who = f" as uid {command.uid}" if command.uid is not None else ""
        return f"cannot start {command.executable!r}{who}: {exc.strerror}"
    return f"cannot start {command.executable!r}: {exc.strerror or exc}"
