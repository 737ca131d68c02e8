"""What a job of the ini file will meet when it starts: problems found without starting it.

``gafferd --check-config`` reports them as errors (exit 78; ``--lenient`` makes them
warnings), and gafferd logs them as warnings at start and on SIGHUP (a program may be
installed, a directory made, after gafferd started: the job's spawn errors then say the
rest). Each names the file and line of the key:

* a ``cmd`` that does not split (an unbalanced quote);
* a ``$VAR`` of ``cmd`` or ``args`` set neither by the job nor in gafferd's environment
  (with ``os_env``);
* a program that is not found, through the job's own ``PATH``, relative to its ``cwd``;
* a ``cwd`` that is not a directory.

They are found as the spawn would (``gaffer.core.spawn.build_command``): one rule, two
moments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gaffer.core.spawn import build_command, build_env
from gaffer.errors import SpawnError
from gafferd.config import DaemonConfig, JobSpec


@dataclass(frozen=True)
class Problem:
    origin: str  # path:line of the key
    job: str
    message: str

    def __str__(self) -> str:
        return f"{self.origin}: [job:{self.job}] {self.message}"


def check_jobs(config: DaemonConfig) -> list[Problem]:
    """The problems of every job of ``config``, in the order of the file."""
    problems: list[Problem] = []
    for spec in sorted(config.jobs.values(), key=lambda spec: spec.origin):
        problems.extend(check_job(spec))
    return problems


def check_job(spec: JobSpec) -> list[Problem]:
    config = spec.config
    problems = []

    def problem(key: str, message: str) -> None:
        problems.append(Problem(spec.origins.get(key, spec.origin), spec.id, message))

    if config.cwd and not os.path.isdir(config.cwd):
        problem("cwd", f"cwd {config.cwd}: no such directory")
    try:
        build_command(config, build_env(config))
    except SpawnError as exc:
        text = str(exc)
        key = "args" if text.startswith("args") else "cmd"
        problem(key, text.removeprefix("cmd: ").removeprefix("args: "))
    except (KeyError, OSError) as exc:  # a user of uid that has gone since: said at spawn
        problem("uid", str(exc))
    return problems
