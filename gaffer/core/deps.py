"""Dependencies between jobs (the ``requires`` option): names, cycles, start and stop order.

Pure functions of the jobs' ids and requirements: no loop, no process. A job id is
``session.name``; a required name without a session is taken in the job's own session
(``requires = db`` in session ``app`` is ``app.db``), as jobs of one app require each
other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gaffer.core.names import job_id, split_job_id


def resolve(job: str, required: Iterable[str]) -> tuple[str, ...]:
    """The ids of what ``job`` (an id) requires."""
    session, _ = split_job_id(job)
    return tuple(name if _qualified(name) else job_id(name, session) for name in required)


def _qualified(name: str) -> bool:
    return "." in name or "/" in name


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle of ``graph`` (job -> the jobs it requires) as ``[a, b, ..., a]``, or None.
    Jobs that are required but not in the graph (not loaded) end a path."""
    done: set[str] = set()
    for start in graph:
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, list[str]]] = [(start, list(graph.get(start, ())))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, pending = stack[-1]
            if not pending:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            nxt = pending.pop()
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt in done or nxt not in graph:
                continue
            stack.append((nxt, list(graph[nxt])))
            path.append(nxt)
            on_path.add(nxt)
    return None


def stop_waves(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The jobs of ``graph`` in the order they stop: each wave holds the jobs no job left
    requires, so a job stops before what it requires; jobs that nothing links stop
    together, in the first wave. ``graph`` has no cycle (load refuses them)."""
    required_by: dict[str, set[str]] = {job: set() for job in graph}
    for job, requires in graph.items():
        for required in requires:
            if required in required_by:
                required_by[required].add(job)
    left = set(graph)
    waves = []
    while left:
        wave = sorted(job for job in left if not (required_by[job] & left))
        if not wave:  # a cycle after all: stop what is left together
            wave = sorted(left)
        waves.append(wave)
        left -= set(wave)
    return waves
