"""The named states of jobs and processes, and the moves allowed between them.

One vocabulary serves both, so that the API, ``gaffer ps`` and the ``state`` events say
the same words (supervisor's, which users know, plus ``waiting`` and ``ready``):

==========  ======================================  ========================================
state       a process                               a job
==========  ======================================  ========================================
stopped     made, not spawned yet                   not started, or stopped: nothing runs
waiting     -                                       started, waiting for the jobs it requires
starting    spawned, not yet counted as started     started, some processes not up yet
running     lived ``start_secs``: started           every process running
ready       started and said it is ready            every process ready
backoff     -                                       a restart is scheduled, after a delay
stopping    asked to stop, not gone yet             stopping its processes
exited      ended (a new process replaces it)       ended for good: the policy restarts none
fatal       -                                       gave up restarting (crash loop, give_up_on)
==========  ======================================  ========================================

A process is one OS process from spawn to exit: when it dies young, the *job* goes to
``backoff`` (or ``fatal``), and its replacement is a new process. Each table lists, for
a state, the states it may move to; a move not listed raises ``InvalidStateTransition``
(a bug, never a user error). Like supervisor's ``states.py`` this module imports nothing
of the engine, so the tables can be read, drawn and tested on their own.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable, Mapping

from gaffer.errors import InvalidStateTransition


class State(enum.StrEnum):
    STOPPED = "stopped"
    WAITING = "waiting"
    STARTING = "starting"
    RUNNING = "running"
    READY = "ready"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    EXITED = "exited"
    FATAL = "fatal"


S = State

PROCESS_TRANSITIONS: Mapping[State, frozenset[State]] = {
    S.STOPPED: frozenset({S.STARTING}),  # spawned
    S.STARTING: frozenset({S.RUNNING, S.READY, S.STOPPING, S.EXITED}),
    S.RUNNING: frozenset({S.STOPPING, S.EXITED}),
    S.READY: frozenset({S.STOPPING, S.EXITED}),
    S.STOPPING: frozenset({S.EXITED}),
    S.EXITED: frozenset(),
}

# A job's state is a summary of its processes and timers (``summarize``); each move here is
# one the summary makes after one event (a spawn, an exit, a timer, a command), and the
# walks of tests/core/test_states.py make every one of them with real processes.
JOB_TRANSITIONS: Mapping[State, frozenset[State]] = {
    S.STOPPED: frozenset(
        # stopped -> stopping: a stopped job's one-off process is being stopped
        {S.WAITING, S.STARTING, S.RUNNING, S.BACKOFF, S.STOPPING}
    ),
    S.WAITING: frozenset({S.STARTING, S.RUNNING, S.STOPPED}),
    # starting -> stopped: the manager stops, its detached processes are left running
    S.STARTING: frozenset(
        {S.RUNNING, S.READY, S.BACKOFF, S.STOPPING, S.STOPPED, S.EXITED, S.FATAL}
    ),
    S.RUNNING: frozenset({S.STARTING, S.BACKOFF, S.STOPPING, S.STOPPED, S.EXITED, S.FATAL}),
    S.READY: frozenset({S.STARTING, S.STOPPING, S.BACKOFF, S.EXITED, S.FATAL}),
    S.BACKOFF: frozenset({S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED, S.FATAL}),
    S.STOPPING: frozenset({S.STOPPED, S.STARTING, S.RUNNING, S.BACKOFF, S.WAITING}),
    S.EXITED: frozenset({S.STARTING, S.STOPPED}),
    S.FATAL: frozenset({S.STARTING, S.RUNNING, S.STOPPED, S.BACKOFF}),
}

UP = frozenset({S.RUNNING, S.READY})  # a process or job that counts as started

# A refused move is a bug in gaffer. The test suite (and GAFFER_STRICT_STATES=1) raises it;
# in production it is logged as an error and the move is made anyway: a supervisor that
# stops supervising over its own bookkeeping would be worse than a wrong word.
STRICT = os.environ.get("GAFFER_STRICT_STATES") == "1"
logger = logging.getLogger(__name__)

Listener = Callable[[State, State], None]


def check(table: Mapping[State, frozenset[State]], old: State, new: State, what: str) -> None:
    """Raise InvalidStateTransition unless ``table`` lets ``old`` move to ``new``."""
    if new not in table[old]:
        raise InvalidStateTransition(f"{what}: no move from {old} to {new}", old=old, new=new)


def allowed(table: Mapping[State, frozenset[State]], old: State, new: State, what: str) -> None:
    """``check``, raising only in strict mode (see STRICT); else an error is logged."""
    try:
        check(table, old, new, what)
    except InvalidStateTransition:
        if STRICT:
            raise
        logger.error("%s: no move from %s to %s in the state table (a bug)", what, old, new)


def summarize(
    *,
    started: bool,
    alive: int,
    target: int,
    up: int,
    ready_probe: bool,
    waiting: bool = False,
    backoff: bool = False,
    fatal: bool = False,
    finished: bool = False,
) -> State:
    """A job's state from what it is doing (a pure function: see JOB_TRANSITIONS).

    Args:
        started: the job is meant to run (not stopped by a command).
        alive: its processes that have not exited, one-off ones excepted.
        target: how many processes it should run.
        up: among ``alive``, those running (or ready, for a job with a readiness check).
        ready_probe: the job declares how its processes say they are ready.
        waiting: a job it requires is not up.
        backoff: a restart is scheduled after a delay.
        fatal: the restart policy gave up.
        finished: its processes ended and the policy restarts none.
    """
    if fatal:
        return S.FATAL
    if not started:
        return S.STOPPING if alive else S.STOPPED
    if waiting:
        return S.WAITING
    if backoff and up < target:
        return S.BACKOFF
    if finished and not alive:
        return S.EXITED
    if up >= target:
        return S.READY if ready_probe and target else S.RUNNING
    return S.STARTING
