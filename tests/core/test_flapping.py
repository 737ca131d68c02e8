"""FlappingInfo settings and the FlappingHistory verdicts, driven with plain timestamps."""

from __future__ import annotations

import math

import pytest

from gaffer import ProcessConfig
from gaffer.core.flapping import FlappingHistory, FlappingInfo, Verdict

RESPAWN, RETRY_LATER, GIVE_UP = Verdict.RESPAWN, Verdict.RETRY_LATER, Verdict.GIVE_UP


def run(info: FlappingInfo, times: list[float]) -> list[Verdict]:
    history = FlappingHistory(info)
    return [history.record_exit(now) for now in times]


# -- FlappingInfo ---------------------------------------------------------------------------
def test_flapping_info_defaults():
    info = FlappingInfo()
    assert (info.attempts, info.window, info.retry_in, info.max_retry) == (2, 1.0, 7.0, 5)


def test_flapping_info_stores_seconds_as_floats():
    info = FlappingInfo(attempts=3, window=2, retry_in=0, max_retry=1)
    assert isinstance(info.window, float)
    assert isinstance(info.retry_in, float)
    assert info.to_dict() == {"attempts": 3, "window": 2.0, "retry_in": 0.0, "max_retry": 1}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attempts", 0),
        ("attempts", -1),
        ("attempts", True),
        ("attempts", 1.5),
        ("max_retry", 0),
        ("max_retry", False),
        ("window", -0.1),
        ("window", math.nan),
        ("window", math.inf),
        ("window", True),
        ("window", "1"),
        ("retry_in", -1),
        ("retry_in", math.nan),
    ],
)
def test_flapping_info_rejects_bad_value_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"flapping\.{field}"):
        FlappingInfo(**{field: value})


def test_flapping_info_coerce_none_and_instance():
    info = FlappingInfo(3, 2.0, 1.0, 4)
    assert FlappingInfo.coerce(None) is None
    assert FlappingInfo.coerce(info) is info


@pytest.mark.parametrize("word", ["off", "OFF", " none ", "false", "no"])
def test_flapping_info_coerce_off_words(word):
    assert FlappingInfo.coerce(word) is None
    assert ProcessConfig("job", "true", flapping=word).flapping is None


def test_flapping_info_coerce_dict():
    info = FlappingInfo.coerce({"attempts": 3, "retry_in": 2})
    assert info == FlappingInfo(attempts=3, window=1.0, retry_in=2.0, max_retry=5)


def test_flapping_info_coerce_dict_rejects_unknown_key():
    with pytest.raises(ValueError, match=r"unknown key.*windw"):
        FlappingInfo.coerce({"attempts": 3, "windw": 2})


@pytest.mark.parametrize(
    "value",
    [
        [2, 1.0, 7.0, 5],
        (2, 1, 7, 5),
        ["2", "1.", "7.", "5"],
        "2, 1., 7., 5",
        "2 1. 7. 5",
        "2,1.,7.,5",
        "  2 1. 7. 5  ",
    ],
)
def test_flapping_info_coerce_four_values(value):
    assert FlappingInfo.coerce(value) == FlappingInfo(2, 1.0, 7.0, 5)


@pytest.mark.parametrize("value", ["2 1. 7.", "2, 1., 7., 5, 6", [2, 1.0, 7.0], "", []])
def test_flapping_info_coerce_rejects_wrong_count(value):
    with pytest.raises(ValueError, match="expected 4 values"):
        FlappingInfo.coerce(value)


@pytest.mark.parametrize("value", ["a 1. 7. 5", "2 one 7. 5", [2, None, 7, 5], [True, 1, 7, 5]])
def test_flapping_info_coerce_rejects_non_numbers(value):
    with pytest.raises(ValueError, match="as numbers"):
        FlappingInfo.coerce(value)


def test_flapping_info_coerce_rejects_bool_window_in_list():
    # FlappingInfo(window=True) is refused; the list form must refuse it too rather than
    # silently turning True into a 1-second window.
    with pytest.raises(ValueError, match="flapping"):
        FlappingInfo.coerce([2, True, 7, 5])


@pytest.mark.parametrize("value", [5, 1.5, object()])
def test_flapping_info_coerce_rejects_other_types(value):
    with pytest.raises(ValueError, match="flapping: expected"):
        FlappingInfo.coerce(value)


def test_flapping_info_coerce_validates_the_values():
    with pytest.raises(ValueError, match=r"flapping\.attempts"):
        FlappingInfo.coerce("0 1 7 5")


# 0.5 callers wrote the counts as floats: FlappingInfo(attempts=1., window=1., ...)
def test_flapping_info_accepts_integral_floats_for_counts():
    info = FlappingInfo(attempts=1.0, window=1.0, retry_in=0.5, max_retry=2)
    assert info == FlappingInfo(1, 1.0, 0.5, 2)
    assert type(info.attempts) is int and type(info.max_retry) is int
    assert info.to_dict() == {"attempts": 1, "window": 1.0, "retry_in": 0.5, "max_retry": 2}
    assert FlappingInfo(max_retry=3.0).max_retry == 3
    config = ProcessConfig("job", "true", flapping=FlappingInfo(2.0, 1.0, 7.0, 5.0))
    assert config.flapping == FlappingInfo()


@pytest.mark.parametrize(
    "value",
    [
        {"attempts": 2.0, "window": 1, "retry_in": 7, "max_retry": 5.0},
        "2. 1. 7. 5.",
        [2.0, 1, 7, 5.0],
    ],
)
def test_flapping_info_coerce_accepts_integral_floats(value):
    assert FlappingInfo.coerce(value) == FlappingInfo(2, 1.0, 7.0, 5)


@pytest.mark.parametrize(
    ("kwargs", "where", "shown"),
    [
        ({"attempts": 1.5}, "attempts", "1.5"),
        ({"max_retry": 2.25}, "max_retry", "2.25"),
        ({"attempts": float("nan")}, "attempts", "nan"),
        ({"max_retry": float("inf")}, "max_retry", "inf"),
        ({"attempts": 0.0}, "attempts", "0"),
    ],
)
def test_flapping_info_refuses_non_integral_counts(kwargs, where, shown):
    with pytest.raises(
        ValueError, match=rf"flapping\.{where}: expected a whole number >= 1, got {shown}"
    ):
        FlappingInfo(**kwargs)


@pytest.mark.parametrize("value", ["2.5 1 7 5", {"attempts": 2.5}, [2, 1, 7, 5.5]])
def test_flapping_info_coerce_refuses_non_integral_counts(value):
    with pytest.raises(ValueError, match="expected a whole number"):
        FlappingInfo.coerce(value)


def test_job_config_names_a_non_integral_count():
    with pytest.raises(
        ValueError, match=r"option 'flapping' of job 'job': flapping\.attempts.*1\.5"
    ):
        ProcessConfig("job", "true", flapping={"attempts": 1.5})


# -- FlappingHistory ------------------------------------------------------------------------
def test_flapping_history_respawns_until_attempts_exits():
    info = FlappingInfo(attempts=3, window=10, retry_in=1, max_retry=5)
    assert run(info, [0.0, 0.1, 0.2]) == [RESPAWN, RESPAWN, RETRY_LATER]


def test_flapping_history_span_over_window_resets_and_respawns():
    history = FlappingHistory(FlappingInfo(attempts=2, window=1, retry_in=7, max_retry=5))
    assert history.record_exit(0.0) is RESPAWN
    assert history.record_exit(1.5) is RESPAWN  # span 1.5 > 1: healthy, history reset
    assert history.snapshot()["recent_exits"] == 0
    assert history.record_exit(2.0) is RESPAWN  # a fresh history: one exit only
    assert history.record_exit(2.5) is RETRY_LATER


def test_flapping_history_span_equal_to_window_is_a_flap():
    info = FlappingInfo(attempts=2, window=1, retry_in=7, max_retry=5)
    assert run(info, [0.0, 1.0]) == [RESPAWN, RETRY_LATER]


def test_flapping_history_retries_max_retry_times_then_gives_up():
    info = FlappingInfo(attempts=2, window=100, retry_in=1, max_retry=3)
    history = FlappingHistory(info)
    verdicts = [history.record_exit(float(t)) for t in range(8)]
    # each pause starts a new history: two more crashes make the next flap
    assert verdicts == [
        RESPAWN, RETRY_LATER, RESPAWN, RETRY_LATER, RESPAWN, RETRY_LATER, RESPAWN, GIVE_UP,
    ]  # fmt: skip
    assert history.retries == 3  # kept for the flap event; start_job resets it


def test_flapping_history_give_up_clears_the_history_and_keeps_the_count():
    history = FlappingHistory(FlappingInfo(attempts=1, window=1, retry_in=0.1, max_retry=1))
    history.record_exit(0.0)
    assert history.record_exit(0.1) is GIVE_UP
    assert history.snapshot()["recent_exits"] == 0
    assert history.snapshot()["retries"] == 1
    history.reset()
    assert history.snapshot()["retries"] == 0


def test_flapping_history_reference_trace():
    info = FlappingInfo(attempts=1, window=1, retry_in=0.1, max_retry=1)
    history = FlappingHistory(info)
    assert history.record_exit(0.1) is RETRY_LATER
    assert history.record_exit(0.3) is GIVE_UP


def test_flapping_history_defaults_count_retries_across_pauses():
    # retry_in (7 s) > window (1 s). The original kept the exits from before the pause: the
    # first exit after it saw a span of 7 s > window, called the job healthy and reset the
    # count, so a job that could not start was retried every 7 s for ever. A pause now
    # starts a new history: the count goes on until max_retry.
    history = FlappingHistory(FlappingInfo())
    assert history.record_exit(0.0) is RESPAWN
    assert history.record_exit(0.5) is RETRY_LATER  # flapping: retried 7 s later
    assert history.retries == 1
    now = 7.5
    for retries in (2, 3, 4, 5):
        assert history.record_exit(now) is RESPAWN
        assert history.record_exit(now + 0.2) is RETRY_LATER
        assert history.retries == retries
        now += 7.5
    assert history.record_exit(now) is RESPAWN
    assert history.record_exit(now + 0.2) is GIVE_UP
    assert history.retries == 5


def test_flapping_history_a_job_that_runs_longer_than_window_is_healthy_again():
    history = FlappingHistory(FlappingInfo())
    history.record_exit(0.0)
    assert history.record_exit(0.5) is RETRY_LATER
    assert history.record_exit(7.5) is RESPAWN
    assert history.record_exit(30.0) is RESPAWN  # 22.5 s between crashes: healthy
    assert history.retries == 0


def test_flapping_history_span_is_measured_since_the_last_pause():
    info = FlappingInfo(attempts=2, window=1, retry_in=7, max_retry=3)
    history = FlappingHistory(info)
    verdicts = [history.record_exit(now) for now in (0.0, 0.5, 8.0, 8.6, 16.0, 17.5)]
    assert verdicts == [RESPAWN, RETRY_LATER, RESPAWN, RETRY_LATER, RESPAWN, RESPAWN]
    assert history.retries == 0  # 1.5 s between the last two: healthy


def test_flapping_history_attempts_above_max_retry_can_flap():
    # The original bounded the history at max_retry, so such a job never flapped; the
    # history now holds max(attempts, max_retry) exits.
    info = FlappingInfo(attempts=3, window=10, retry_in=1, max_retry=1)
    history = FlappingHistory(info)
    verdicts = [history.record_exit(float(t)) for t in range(6)]
    assert verdicts == [RESPAWN, RESPAWN, RETRY_LATER, RESPAWN, RESPAWN, GIVE_UP]
    assert history.exits.maxlen == 3


def test_flapping_history_reset():
    history = FlappingHistory(FlappingInfo(attempts=2, window=10, retry_in=1, max_retry=5))
    history.record_exit(0.0)
    history.record_exit(0.1)
    history.reset()
    assert history.snapshot()["retries"] == 0
    assert history.snapshot()["recent_exits"] == 0
    assert history.record_exit(0.2) is RESPAWN


def test_flapping_history_snapshot():
    history = FlappingHistory(FlappingInfo(attempts=3, window=2, retry_in=4, max_retry=5))
    assert history.snapshot() == {
        "attempts": 3,
        "window": 2.0,
        "retry_in": 4.0,
        "max_retry": 5,
        "retries": 0,
        "recent_exits": 0,
    }
    for now in (0.0, 0.5):
        history.record_exit(now)
    assert history.snapshot()["recent_exits"] == 2
    history.record_exit(1.0)  # a flap: the pause starts a new history
    assert history.snapshot() == {
        "attempts": 3,
        "window": 2.0,
        "retry_in": 4.0,
        "max_retry": 5,
        "retries": 1,
        "recent_exits": 0,
    }
