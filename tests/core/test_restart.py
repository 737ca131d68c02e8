"""The restart policy (core/restart.py): a pure function of settings, history and the exit.
Plain numbers only: no loop, no clock, no process."""

from __future__ import annotations

import signal

import pytest

from gaffer.core.flapping import FlappingHistory, FlappingInfo
from gaffer.core.restart import (
    Action,
    BackoffInfo,
    ExitMatch,
    History,
    Policy,
    give_up_on,
    signal_name,
)

NO_FLAPPING = History(None)


def decide(history: History, policy: Policy, *, code=1, sig=0, started=False, now=0.0, **kw):
    return history.on_exit(policy, code, sig, started=started, now=now, draw=lambda: 1.0, **kw)


# -- backoff ---------------------------------------------------------------------------------
def test_backoff_grows_by_factor_up_to_max():
    backoff = BackoffInfo(0.1, 2, 1)
    full = [backoff.delay(n, lambda: 1.0) for n in range(1, 7)]
    assert full == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_backoff_jitter_draws_between_half_and_all_of_the_delay():
    backoff = BackoffInfo(1, 2, 30)
    assert backoff.delay(3, lambda: 0.0) == pytest.approx(2.0)
    assert backoff.delay(3, lambda: 0.5) == pytest.approx(3.0)
    assert backoff.delay(3, lambda: 1.0) == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.1, 2, 30", BackoffInfo(0.1, 2, 30)),
        ("1 3 60", BackoffInfo(1, 3, 60)),
        ([0.5, 2, 10], BackoffInfo(0.5, 2, 10)),
        ({"initial": 0.2, "factor": 1.5, "max": 5}, BackoffInfo(0.2, 1.5, 5)),
        ("off", None),
        (None, None),
    ],
)
def test_backoff_coerce(value, expected):
    assert BackoffInfo.coerce(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1 2", "expected 'initial, factor, max'"),
        ("a b c", "as numbers"),
        ({"initial": 1, "step": 2}, "unknown key"),
        ([1, 0.5, 10], "backoff.factor: expected a number >= 1"),
        ([5, 2, 1], "backoff.max: 1.0 is below backoff.initial 5.0"),
        ([-1, 2, 3], "backoff.initial: expected a number >= 0"),
        ([1, 2, float("inf")], "backoff.max"),
    ],
)
def test_backoff_refuses_bad_values_naming_them(value, message):
    with pytest.raises(ValueError, match=message):
        BackoffInfo.coerce(value)


# -- give_up_on ------------------------------------------------------------------------------
def test_give_up_on_reads_codes_and_signal_names():
    matches = give_up_on("2, 78 SEGV sigabrt")
    assert matches == (
        ExitMatch(code=2),
        ExitMatch(code=78),
        ExitMatch(signum=signal.SIGSEGV),
        ExitMatch(signum=signal.SIGABRT),
    )
    assert [match.to_json() for match in matches] == [2, 78, "SEGV", "ABRT"]
    assert ExitMatch(code=2).matches(2, 0) and not ExitMatch(code=2).matches(0, 2)
    assert ExitMatch(signum=11).matches(0, 11) and not ExitMatch(signum=11).matches(11, 0)


@pytest.mark.parametrize("value", ["256", "-1", "NOSUCHSIG", [True], [2.5]])
def test_give_up_on_refuses_what_is_no_exit(value):
    with pytest.raises(ValueError, match=r"give_up_on|signal"):
        give_up_on(value)


def test_signal_names():
    assert (signal_name(15), signal_name(3), signal_name(signal.SIGRTMIN + 2)) == (
        "TERM",
        "QUIT",
        "RTMIN+2",
    )


# -- decisions -------------------------------------------------------------------------------
def test_a_process_that_had_started_is_restarted_at_once():
    decision = decide(History(None), Policy(), started=True)
    assert (decision.action, decision.delay) == (Action.RESTART, 0.0)


def test_failed_starts_back_off_then_turn_fatal_after_start_retries():
    history, policy = History(None), Policy(backoff=BackoffInfo(0.1, 2, 30), start_retries=3)
    decisions = [decide(history, policy) for _ in range(4)]
    assert [d.action for d in decisions] == [Action.RESTART] * 3 + [Action.FATAL]
    assert [d.delay for d in decisions[:3]] == pytest.approx([0.1, 0.2, 0.4])
    assert decisions[3].reason == "4 failed starts in a row (start_retries = 3)"


def test_a_start_ends_the_streak():
    history, policy = History(None), Policy(start_retries=2)
    decide(history, policy)
    decide(history, policy)
    history.started()
    assert decide(history, policy).action is Action.RESTART  # a new streak of one
    assert history.streak == 1


def test_without_backoff_a_failed_start_is_restarted_at_once_but_a_failed_spawn_waits():
    policy = Policy(backoff=None, start_retries=100)
    history = History(None)
    assert decide(history, policy).delay == 0
    assert decide(History(None), policy, spawned=False).delay == 0.1


def test_give_up_on_is_fatal_at_once():
    policy = Policy(give_up_on=give_up_on("2 SEGV"))
    assert decide(History(None), policy, code=2).reason == "give_up_on: exit 2"
    killed = decide(History(None), policy, code=0, sig=signal.SIGSEGV, started=True)
    assert (killed.action, killed.reason) == (Action.FATAL, "give_up_on: signal SEGV")
    assert decide(History(None), policy, code=3).action is Action.RESTART


@pytest.mark.parametrize(
    ("restart", "code", "sig", "action"),
    [
        ("always", 0, 0, Action.RESTART),
        ("always", 1, 0, Action.RESTART),
        ("never", 1, 0, Action.DONE),
        ("never", 0, 0, Action.DONE),
        ("on-failure", 0, 0, Action.DONE),
        ("on-failure", 3, 0, Action.RESTART),
        ("on-failure", 0, signal.SIGTERM, Action.DONE),  # its own stop signal
        ("on-failure", 0, signal.SIGKILL, Action.RESTART),
    ],
)
def test_restart_modes(restart, code, sig, action):
    policy = Policy(restart=restart, stop_signal=signal.SIGTERM)
    assert decide(History(None), policy, code=code, sig=sig, started=True).action is action


def test_on_failure_knows_the_job_s_own_stop_signal():
    policy = Policy(restart="on-failure", stop_signal=signal.SIGQUIT)
    assert decide(History(None), policy, code=0, sig=signal.SIGQUIT).action is Action.DONE
    assert decide(History(None), policy, code=0, sig=signal.SIGTERM).action is Action.RESTART


def test_flapping_pauses_then_gives_up():
    flapping = FlappingHistory(FlappingInfo(attempts=2, window=1, retry_in=7, max_retry=1))
    history, policy = History(flapping), Policy(start_retries=100)
    assert decide(history, policy, now=0.0).action is Action.RESTART
    paused = decide(history, policy, now=0.1)
    assert (paused.action, paused.delay) == (Action.PAUSE, 7.0)
    assert decide(history, policy, now=7.2).action is Action.RESTART
    given_up = decide(history, policy, now=7.3)
    assert given_up.action is Action.FATAL and "flapping" in given_up.reason


def test_a_failed_spawn_beside_running_processes_is_no_crash_loop():
    flapping = FlappingHistory(FlappingInfo(attempts=1, window=1, retry_in=7, max_retry=1))
    history = History(flapping)
    decision = decide(history, Policy(), spawned=False, count_flapping=False)
    assert decision.action is Action.RESTART and flapping.snapshot()["recent_exits"] == 0


def test_the_default_crash_loop_is_contained():
    """A default job whose program exits at once: how many spawns in its first 10 s, and
    when is it given up (the bench measures the same with real processes)."""
    from gaffer import ProcessConfig
    from gaffer.core.job import Job

    job = Job("default", ProcessConfig("storm", "true"))
    now, spawns, draws = 0.0, 0, iter([0.5] * 100)
    while True:
        spawns += 1
        decision = job.history.on_exit(
            job.policy, 0, 0, started=False, now=now, draw=lambda: next(draws)
        )
        if decision.action is Action.FATAL:
            break
        now += decision.delay + 0.002  # a spawn and an exit take about 2 ms
    assert spawns <= 10 and now < 20, (spawns, now)
