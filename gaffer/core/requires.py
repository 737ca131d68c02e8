"""The Manager's side of ``requires``: which jobs a job waits for, cycles refused at load,
and the waiting jobs woken when a job they require changes state. The graph itself
(resolution, cycles, stop order) is pure policy in deps.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gaffer.core import deps
from gaffer.core.states import UP
from gaffer.errors import InvalidArgument

if TYPE_CHECKING:
    from gaffer.core.config import ProcessConfig
    from gaffer.core.runner import JobRunner


class Requirements:
    """Mixed into the Manager: needs its ``_jobs`` (job id -> JobRunner)."""

    _jobs: dict[str, JobRunner]

    def _requirements(self, extra: tuple[str, ProcessConfig] | None = None) -> dict:
        """job -> the ids of the jobs it requires, for every job (and one being loaded)."""
        graph = {name: deps.resolve(name, r.config.requires) for name, r in self._jobs.items()}
        if extra is not None:
            graph[extra[0]] = deps.resolve(extra[0], extra[1].requires)
        return graph

    def _check_cycles(self, name: str, config: ProcessConfig) -> None:
        cycle = deps.find_cycle(self._requirements((name, config)))
        if cycle is not None:
            raise InvalidArgument(
                f"requires: {name} would be in a dependency cycle: {' -> '.join(cycle)}",
                reason="dependency_cycle",
            )

    def _blockers(self, runner: JobRunner) -> list[str]:
        """The jobs ``runner`` requires that are not up, each with why."""
        waiting = []
        for name in deps.resolve(runner.name, runner.config.requires):
            required = self._jobs.get(name)
            if required is None:
                waiting.append(f"{name} (not loaded)")
            elif required.state not in UP:
                waiting.append(f"{name} ({required.state})")
        return waiting

    def _job_state_changed(self, runner: JobRunner) -> None:
        """A job changed state: the jobs waiting for it look again."""
        for other in list(self._jobs.values()):
            if other.waiting_for and any(
                entry.startswith(runner.name + " ") for entry in other.waiting_for
            ):
                other.manage()
