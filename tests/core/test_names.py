"""Parsing of job ids, session ids, signals and scale operations."""

from __future__ import annotations

import signal

import pytest

from gaffer.core.names import apply_scale, job_id, parse_signal, split_job_id, validate_session
from gaffer.errors import InvalidArgument


# -- job ids --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("web", ("default", "web")),
        ("s.n", ("s", "n")),
        ("s.n.x", ("s", "n.x")),
        ("s/n", ("s", "n")),
        ("s/n/x", ("s", "n/x")),
    ],
)
def test_split_job_id(name, expected):
    assert split_job_id(name) == expected


def test_split_job_id_with_explicit_session_keeps_the_name_whole():
    assert split_job_id("web", "s") == ("s", "web")
    assert split_job_id("a.b", "s") == ("s", "a.b")


@pytest.mark.parametrize(
    ("name", "sessionid", "expected"),
    [
        ("web", None, "default.web"),
        ("s.n", None, "s.n"),
        ("s/n", None, "s.n"),
        ("s.n.x", None, "s.n.x"),
        ("web", "other", "other.web"),
    ],
)
def test_job_id(name, sessionid, expected):
    assert job_id(name, sessionid) == expected


@pytest.mark.parametrize("name", [".x", "x.", "", "/x", "x/", ".", None, 5])
def test_split_job_id_rejects_bad_ids(name):
    with pytest.raises(InvalidArgument) as info:
        split_job_id(name)
    assert isinstance(info.value, ValueError)
    assert info.value.reason == "bad_name"
    assert not hasattr(info.value, "errno")  # statuses are the HTTP layer's business


def test_job_id_rejects_bad_ids():
    with pytest.raises(ValueError, match="bad job id"):
        job_id("x.")


# -- sessions -------------------------------------------------------------------------------
def test_validate_session_accepts_plain_names():
    assert validate_session("default") == "default"
    assert validate_session("my-app_2") == "my-app_2"


@pytest.mark.parametrize("sessionid", ["", "a.b", "a/b", None, 3])
def test_validate_session_rejects_bad_ids(sessionid):
    with pytest.raises(InvalidArgument) as info:
        validate_session(sessionid)
    assert info.value.reason == "bad_name"


# -- signals --------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [9, "9", "KILL", "SIGKILL", "kill", "sigkill", " 9 "])
def test_parse_signal_kill_spellings(sig):
    assert parse_signal(sig) == signal.SIGKILL


def test_parse_signal_strips_and_upcases_names():
    assert parse_signal(" hup ") == signal.SIGHUP
    assert parse_signal("Term") == signal.SIGTERM
    assert parse_signal(signal.SIGUSR1) == signal.SIGUSR1


def test_parse_signal_returns_a_plain_int():
    result = parse_signal("TERM")
    assert type(result) is int


@pytest.mark.parametrize(
    "sig",
    ["NOSUCHSIG", "SIG", "", "-9", 0, "0", 999, "999", -1, True, False, None, 1.5, ["KILL"]],
)
def test_parse_signal_rejects_bad_signals(sig):
    with pytest.raises(InvalidArgument) as info:
        parse_signal(sig)
    assert info.value.reason == "bad_signal"
    assert not hasattr(info.value, "errno")  # statuses are the HTTP layer's business


@pytest.mark.parametrize(
    ("sig", "expected"),
    [
        (signal.SIGRTMIN, signal.SIGRTMIN),
        (str(signal.SIGRTMIN + 2), signal.SIGRTMIN + 2),
        ("RTMIN", signal.SIGRTMIN),
        ("rtmin+3", signal.SIGRTMIN + 3),
        ("SIGRTMAX-1", signal.SIGRTMAX - 1),
        (signal.SIGRTMAX, signal.SIGRTMAX),
    ],
)
def test_parse_signal_takes_real_time_signals_by_number_and_offset(sig, expected):
    assert parse_signal(sig) == expected


@pytest.mark.parametrize("sig", ["RTMIN+99", "RTMAX+1", "RTMIN-1", "RTMIN+", signal.NSIG])
def test_parse_signal_refuses_real_time_signals_out_of_range(sig):
    with pytest.raises(InvalidArgument) as info:
        parse_signal(sig)
    assert info.value.reason == "bad_signal"


def test_parse_signal_rejects_non_ascii_digits_as_invalid_argument():
    # "²".isdigit() is true but int("²") fails: it must still be a bad_signal error.
    with pytest.raises(InvalidArgument) as info:
        parse_signal("²")
    assert info.value.reason == "bad_signal"


# -- scale ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("current", "n", "expected"),
    [
        (2, 3, 5),
        (2, 0, 2),
        (5, -3, 2),
        (2, -5, 0),
        (2, "3", 5),
        (2, "+3", 5),
        (5, "-3", 2),
        (2, "-5", 0),
        (7, "=3", 3),
        (7, "=0", 0),
        (0, " +2 ", 2),
        (1, "+03", 4),
    ],
)
def test_apply_scale(current, n, expected):
    assert apply_scale(current, n) == expected


@pytest.mark.parametrize(
    "n", ["*3", "", "   ", "+", "-", "=", "abc", "3x", "+-3", 1.5, True, None, [3]]
)
def test_apply_scale_rejects_bad_operations(n):
    with pytest.raises(InvalidArgument) as info:
        apply_scale(2, n)
    assert info.value.reason == "bad_operation"
    assert not hasattr(info.value, "errno")  # statuses are the HTTP layer's business


def test_apply_scale_rejects_non_ascii_digits_as_invalid_argument():
    with pytest.raises(InvalidArgument) as info:
        apply_scale(2, "+²")
    assert info.value.reason == "bad_operation"
