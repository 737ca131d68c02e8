"""``process_limit``: a ceiling on the processes of all jobs of a manager together.

A typo (``=1000`` for ``=10``) must not fork the host to its knees. The limit is checked
where a target is set (load, update, scale, commit), never where processes are spawned:
a request over it is refused whole, nothing changed. Each job counts for the larger of its
target and its config's ``numprocesses`` (``start_job`` and ``reload`` return to the
config's value without asking), plus its one-off processes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from gaffer.core.config import ProcessConfig
from gaffer.errors import ProcessLimitReached


class Counted(Protocol):
    numprocesses: int

    @property
    def config(self) -> ProcessConfig: ...

    @property
    def running_out(self) -> dict: ...


def check_limit(value: object) -> int | None:
    """A valid ``process_limit``: an integer >= 1, or None for no limit."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"process_limit: expected an integer >= 1 or None, got {value!r}")
    return value  # type: ignore[return-value]


def reserved(job: Counted, target: int | None = None, config: ProcessConfig | None = None) -> int:
    """The processes a job may run: its target, or its config's when larger, plus its
    one-off processes."""
    target = job.numprocesses if target is None else target
    config = job.config if config is None else config
    return max(target, config.numprocesses) + len(job.running_out)


def enforce(
    limit: int | None,
    jobs: Iterable[Counted],
    what: str,
    job: Counted | None,
    target: int,
    config: ProcessConfig | None = None,
    one_offs: int = 0,
) -> None:
    """Raise ProcessLimitReached when giving ``job`` (None: a new one) this target and
    config would raise the total over ``limit``; lowering a total that is already over it
    (the limit was lowered) is always allowed."""
    if limit is None:
        return
    others = sum(reserved(other) for other in jobs if other is not job)
    if job is None:
        before, after = 0, max(target, config.numprocesses if config else 0) + one_offs
    else:
        before = reserved(job)
        after = reserved(job, target, config) + one_offs
    if after > before and others + after > limit:
        raise ProcessLimitReached(
            f"{what}: the manager would have up to {others + after} processes, over its "
            f"limit of {limit} (process_limit); {others} are taken by other jobs"
        )
