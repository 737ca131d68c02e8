"""The text of /metrics (gaffer/http/metrics.py) and the loop-lag sampler
(gaffer/http/telemetry.py), on their own: escaping, numbers, what is left out, and a lag
made by really blocking a loop."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gaffer.core.usage import Usage
from gaffer.http.metrics import escape, exposition, number
from gaffer.http.telemetry import LoopLag, Telemetry
from tests.helpers import wait_until


def job(session: str, name: str, **fields: object) -> dict[str, object]:
    return {
        "session": session,
        "job": name,
        "state": "running",
        "wanted": 1,
        "kept_alive": 1,
        "restarts": 0,
        "last_exit": None,
        "processes": [],
        **fields,
    }


def parse(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_label_values_with_quotes_backslashes_and_newlines_round_trip() -> None:
    odd = 'we"ird\\na\nme'
    now = time.time()
    usage = {
        "time": now,
        "jobs": [job(odd, odd, processes=[(7, now - 2.5, Usage(1.5, 4096, now - 3, 5))])],
    }
    families = parse(exposition(usage, None, None))
    [wanted] = families["gaffer_job_processes_wanted"]
    assert wanted.labels == {"session": odd, "job": odd}
    [cpu] = families["gaffer_process_cpu_seconds"]
    assert cpu.labels == {"session": odd, "job": odd, "process": "7"} and cpu.value == 1.5
    [uptime] = families["gaffer_process_uptime_seconds"]
    assert uptime.value == pytest.approx(2.5, abs=0.01)
    assert escape("plain") == "plain"
    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_numbers() -> None:
    assert number(3) == "3"
    assert number(True) == "1"
    assert number(0.25) == "0.25"
    assert number(1e-7) == "1e-07"
    assert number(math.inf) == "+Inf"
    assert number(-math.inf) == "-Inf"
    assert number(math.nan) == "NaN"


def test_what_is_left_out() -> None:
    """A process not read (gone, or not spawned) has no sample; an unknown descriptor
    count no fds sample; a job that never exited no exit samples; without telemetry,
    nothing of the serving process; a family without samples no header either."""
    now = time.time()
    usage = {
        "time": now,
        "jobs": [
            job(
                "s",
                "j",
                processes=[(1, now, None), (2, None, Usage(0.0, 1, now, None))],
            )
        ],
    }
    text = exposition(usage, None, None)
    families = parse(text)
    assert [s.labels["process"] for s in families["gaffer_process_cpu_seconds"]] == ["2"]
    assert "gaffer_process_open_fds" not in families
    assert "gaffer_process_uptime_seconds" not in families
    assert "gaffer_job_last_exit_code" not in families
    assert "process_resident_memory_bytes" not in families
    assert "# TYPE gaffer_job_last_exit_code" not in text


def test_exit_by_signal() -> None:
    last = {"exit_status": 0, "term_signal": 9, "time": time.time()}
    families = parse(exposition({"time": 0.0, "jobs": [job("s", "j", last_exit=last)]}, None, None))
    assert [s.value for s in families["gaffer_job_last_exit_code"]] == [0]
    assert [s.value for s in families["gaffer_job_last_exit_signal"]] == [9]


def test_the_serving_process() -> None:
    telemetry = Telemetry()
    telemetry.requests[("/jobs", 200)] = 3
    telemetry.lag.samples.extend([0.001] * 98 + [0.05, 0.2])
    own = Usage(2.5, 30 << 20, 1_700_000_000.5, 21)
    families = parse(exposition({"time": 0.0, "jobs": [], "self": own}, telemetry, 42))
    assert families["process_cpu_seconds"][0].value == 2.5
    assert families["process_resident_memory_bytes"][0].value == 30 << 20
    assert families["process_open_fds"][0].value == 21
    assert families["process_start_time_seconds"][0].value == 1_700_000_000.5
    assert families["gaffer_loop_lag_p99_seconds"][0].value == 0.05
    assert families["gaffer_loop_lag_max_seconds"][0].value == 0.2
    [requests] = families["gaffer_http_requests"]
    assert requests.labels == {"route": "/jobs", "status": "200"} and requests.value == 3
    assert families["gaffer_events_published"][0].value == 42


def test_quantiles_are_nearest_rank() -> None:
    lag = LoopLag()
    assert lag.quantile(0.99) is None and lag.maximum() is None
    lag.samples.extend(float(n) for n in range(1, 101))
    assert lag.quantile(0.99) == 99.0
    assert lag.quantile(0.5) == 50.0
    assert lag.maximum() == 100.0
    lag.samples.clear()
    lag.samples.append(0.3)
    assert lag.quantile(0.99) == 0.3


def test_the_window_keeps_the_last_minute() -> None:
    lag = LoopLag(interval=0.1, window=60.0)
    lag.samples.extend([1.0] + [0.0] * 600)
    assert len(lag.samples) == 600 and lag.maximum() == 0.0


async def test_a_blocked_loop_shows_as_lag() -> None:
    lag = LoopLag(interval=0.01)
    lag.start(asyncio.get_running_loop())
    try:
        await wait_until(lambda: len(lag.samples) >= 3, what="a few samples")
        before = len(lag.samples)
        time.sleep(0.2)  # noqa: ASYNC251 - blocking the loop is the point: 0.2 s late
        await wait_until(lambda: len(lag.samples) > before, what="the late sample")
        assert lag.maximum() >= 0.15
    finally:
        lag.stop()
    assert not lag.running


async def test_telemetry_runs_while_a_handler_is_attached() -> None:
    telemetry = Telemetry()
    loop = asyncio.get_running_loop()
    telemetry.attach(loop)
    telemetry.attach(loop)  # a new handler before the old one stops (a reload)
    telemetry.detach()
    assert telemetry.lag.running
    telemetry.detach()
    assert not telemetry.lag.running
