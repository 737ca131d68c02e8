"""``GET /metrics`` through a real gafferd: the Prometheus text format (parsed by
prometheus_client's parser, checked by ``promtool`` where it is installed), the figures
against /proc and the API, keys, and the ``metrics_without_key`` setting."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

import gaffer
from gaffer.core.states import State
from tests.gafferd.harness import Gafferd
from tests.helpers import child_cmd, wait_until_sync
from tests.http.rest_helpers import Api, admin_key_of, start_gafferd

pytestmark = pytest.mark.timeout(60)

# web runs the sleep program, not Python: its descriptors and memory do not move once it runs
SLEEP = shutil.which("sleep") or "/bin/sleep"
JOBS = f"""
[job:web]
cmd = {SLEEP} 1000
numprocesses = 2

[job:batch.crasher]
cmd = {child_cmd("crash", 50, 3)}
flapping = 100, 1., 1., 100
"""
STATES = [str(state) for state in State]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Gafferd, Api]]:
    daemon, api = start_gafferd(tmp_path, JOBS, tcp=True)
    daemon.start()
    try:
        yield daemon, api
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def scrape(api: Api, **kwargs: Any) -> dict[str, Any]:
    """/metrics parsed: family name -> family (as prometheus_client names them)."""
    response = api.get("/metrics", **kwargs)
    assert response.status == 200, response
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def samples(families: dict[str, Any], name: str) -> list[Any]:
    return [
        sample for family in families.values() for sample in family.samples if sample.name == name
    ]


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    found = [s.value for s in samples(families, name) if labels.items() <= s.labels.items()]
    assert len(found) == 1, (name, labels, samples(families, name))
    return found[0]


def crashed(api: Api) -> bool:
    info = api.info("batch.crasher")
    return info["restarts"] >= 2 and info["last_exit"] is not None


def test_metrics_describe_every_job_and_process(site: tuple[Gafferd, Api]) -> None:
    daemon, api = site
    web = api.wait_pids("default.web", 2)
    wait_until_sync(lambda: crashed(api), what="the crasher restarted twice")
    wait_until_sync(lambda: api.info("default.web")["state"] == "running", what="web running")
    api.get("/jobs")
    api.get("/no/such/route")
    families = scrape(api)

    types = {name: family.type for name, family in families.items()}
    assert types == {
        "gaffer_job_processes_wanted": "gauge",
        "gaffer_job_processes_running": "gauge",
        "gaffer_job_restarts": "counter",
        "gaffer_job_state": "gauge",
        "gaffer_job_last_exit_code": "gauge",
        "gaffer_job_last_exit_signal": "gauge",
        "gaffer_process_cpu_seconds": "counter",
        "gaffer_process_resident_memory_bytes": "gauge",
        "gaffer_process_open_fds": "gauge",
        "gaffer_process_uptime_seconds": "gauge",
        "gaffer_build_info": "gauge",
        "process_cpu_seconds": "counter",
        "process_resident_memory_bytes": "gauge",
        "process_open_fds": "gauge",
        "process_start_time_seconds": "gauge",
        "gaffer_loop_lag_p99_seconds": "gauge",
        "gaffer_loop_lag_max_seconds": "gauge",
        "gaffer_http_requests": "counter",
        "gaffer_events_published": "counter",
    }

    web_labels = {"session": "default", "job": "web"}
    assert value(families, "gaffer_job_processes_wanted", **web_labels) == 2
    assert value(families, "gaffer_job_processes_running", **web_labels) == 2
    assert value(families, "gaffer_job_restarts_total", **web_labels) == 0
    states = {
        s.labels["state"]: s.value
        for s in samples(families, "gaffer_job_state")
        if s.labels["job"] == "web"
    }
    assert states == {state: (1.0 if state == "running" else 0.0) for state in STATES}
    assert not [
        s for s in samples(families, "gaffer_job_last_exit_code") if s.labels["job"] == "web"
    ]

    crasher = {"session": "batch", "job": "crasher"}
    assert value(families, "gaffer_job_restarts_total", **crasher) >= 2
    assert value(families, "gaffer_job_last_exit_code", **crasher) == 3
    assert value(families, "gaffer_job_last_exit_signal", **crasher) == 0
    crasher_states = [
        s for s in samples(families, "gaffer_job_state") if s.labels["job"] == "crasher"
    ]
    assert len(crasher_states) == len(STATES) and sum(s.value for s in crasher_states) == 1

    for pid in web:
        labels = {**web_labels, "process": str(pid)}
        os_pid = api.get(f"/{pid}").json["os_pid"]
        real = psutil.Process(os_pid)
        rss = value(families, "gaffer_process_resident_memory_bytes", **labels)
        assert 0.8 * real.memory_info().rss <= rss <= 1.25 * real.memory_info().rss
        assert value(families, "gaffer_process_open_fds", **labels) == real.num_fds()
        cpu = real.cpu_times()
        assert (
            0
            <= value(families, "gaffer_process_cpu_seconds_total", **labels)
            <= cpu.user + cpu.system + 0.02
        )
        assert 0 < value(families, "gaffer_process_uptime_seconds", **labels) < 60

    me = psutil.Process(daemon.pid)
    assert (
        0.8 * me.memory_info().rss
        <= value(families, "process_resident_memory_bytes")
        <= 1.25 * me.memory_info().rss
    )
    # gafferd's own count moves with the HTTP connections (the scrape's own, and this test's
    # earlier ones until gafferd notices their close): it must agree with /proc at a quiet moment
    wait_until_sync(
        lambda: abs(value(scrape(api), "process_open_fds") - me.num_fds()) <= 2,
        what="gafferd's open fds in /metrics to agree with /proc",
    )
    assert abs(value(families, "process_start_time_seconds") - me.create_time()) < 1
    assert value(families, "process_cpu_seconds_total") > 0
    assert value(families, "gaffer_build_info", version=gaffer.__version__) == 1
    assert (
        0
        <= value(families, "gaffer_loop_lag_p99_seconds")
        <= value(families, "gaffer_loop_lag_max_seconds")
    )
    assert value(families, "gaffer_http_requests_total", route="/jobs", status="200") == 1
    assert value(families, "gaffer_http_requests_total", route="unmatched", status="404") == 1
    assert value(families, "gaffer_http_requests_total", route="/{pid}", status="200") >= 2
    published = value(families, "gaffer_events_published_total")
    assert published > 10  # loads, spawns, exits, state changes

    # counters only grow; a scale shows at once
    assert api.post("/jobs/default/web/numprocesses", {"scale": "=3"}).status == 200
    api.wait_pids("default.web", 3)
    again = scrape(api)
    assert value(again, "gaffer_job_processes_wanted", **web_labels) == 3
    assert value(again, "gaffer_job_processes_running", **web_labels) == 3
    assert value(again, "gaffer_events_published_total") > published
    assert value(again, "gaffer_http_requests_total", route="/metrics", status="200") >= 1


def test_metrics_of_a_stopped_job_want_nothing(site: tuple[Gafferd, Api]) -> None:
    _, api = site
    api.wait_pids("default.web", 2)
    assert api.post("/jobs/default/web/state", 0).status == 202
    wait_until_sync(lambda: api.info("default.web")["state"] == "stopped", what="web stopped")
    families = scrape(api)
    labels = {"session": "default", "job": "web"}
    assert value(families, "gaffer_job_processes_wanted", **labels) == 0
    assert value(families, "gaffer_job_processes_running", **labels) == 0
    assert value(families, "gaffer_job_state", state="stopped", **labels) == 1
    assert not [
        s for s in samples(families, "gaffer_process_cpu_seconds_total") if s.labels["job"] == "web"
    ]


def promtool() -> str | None:
    """promtool on PATH, or where `make venv` put it (next to the venv's python)."""
    beside = Path(sys.executable).parent / "promtool"
    return shutil.which("promtool") or (str(beside) if beside.exists() else None)


def test_metrics_pass_promtool(site: tuple[Gafferd, Api]) -> None:
    _, api = site
    api.wait_pids("default.web", 2)
    wait_until_sync(lambda: crashed(api), what="the crasher restarted twice")
    api.get("/jobs")
    text = api.get("/metrics").text
    tool = promtool()
    if tool is None:
        pytest.skip(
            "promtool is not installed, so `promtool check metrics` was not run (the "
            "parser test ran): `make venv` fetches it from Debian's prometheus package"
        )
    checked = subprocess.run(
        [tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""  # no lint remark either


# -- keys ------------------------------------------------------------------------------------


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[Gafferd, Api, Api]]:
    daemon, api = start_gafferd(tmp_path, "require_key = true\n" + JOBS, tcp=True)
    created = daemon.run("--create-admin-user", "--username", "admin", "--password", "pw")
    assert created.returncode == 0, created.stderr
    daemon.start()
    try:
        yield daemon, api, api.with_key(admin_key_of(created.stdout))
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def key(admin: Api, permissions: dict[str, Any]) -> Api:
    response = admin.post("/keys", {"permissions": permissions})
    assert response.status == 201, response
    return admin.with_key(response.json["api_key"])


def test_metrics_show_what_the_key_may_read(keyed: tuple[Gafferd, Api, Api]) -> None:
    _, api, admin = keyed
    admin.wait_pids("default.web", 2)
    assert api.get("/metrics").status == 401
    assert api.get("/metrics", key="gk_not_a_key").status == 403

    everything = scrape(admin)
    assert {s.labels["job"] for s in samples(everything, "gaffer_job_processes_wanted")} == {
        "web",
        "crasher",
    }
    assert samples(everything, "process_resident_memory_bytes")

    batch_only = scrape(key(admin, {"read": ["batch"]}))
    jobs = {s.labels["job"] for family in batch_only.values() for s in family.samples}
    assert jobs == {"crasher"}
    # gafferd's own figures are for keys that may read everything
    assert not samples(batch_only, "process_resident_memory_bytes")
    assert not samples(batch_only, "gaffer_http_requests_total")

    # Prometheus's way: Authorization: Bearer <key>
    bearer = {"Authorization": f"Bearer {admin.key}"}
    assert samples(scrape(api, headers=bearer), "process_resident_memory_bytes")
    wrong = api.get("/metrics", headers={"Authorization": "Bearer gk_nope"})
    assert wrong.status == 403 and wrong.json["reason"] == "unknown or expired API key"
    assert api.get("/jobs", headers=bearer).status == 401  # for /metrics only

    nothing = key(admin, {"create_key": True}).get("/metrics")
    assert nothing.status == 403, nothing
    assert nothing.json == {"error": "forbidden", "reason": "this key may not read any job"}


def test_metrics_without_key_on_loopback(tmp_path: Path) -> None:
    daemon, api = start_gafferd(
        tmp_path, "require_key = true\nmetrics_without_key = loopback\n" + JOBS, tcp=True
    )
    daemon.start()
    try:
        for transport in ("tcp", "unix"):
            families = scrape(api.over(transport))
            assert samples(families, "gaffer_job_processes_wanted"), transport
            assert samples(families, "process_resident_memory_bytes"), transport
            # every other route still asks for a key
            assert api.over(transport).get("/jobs").status == 401, transport
            assert api.over(transport).get("/overview").status == 401, transport
        assert daemon.stop() == 0
    finally:
        daemon.kill()


@pytest.mark.parametrize(
    ("family", "address", "local"),
    [
        ("AF_UNIX", "", True),
        ("AF_INET", "127.0.0.1", True),
        ("AF_INET", "127.8.9.10", True),
        ("AF_INET6", "::1", True),
        ("AF_INET", "10.1.2.3", False),
        ("AF_INET", "192.0.2.7", False),
        ("AF_INET6", "2001:db8::1", False),
        ("AF_INET6", "::ffff:192.0.2.7", False),
        ("AF_INET", "", False),
    ],
)
def test_which_requests_are_local(family: str, address: str, local: bool) -> None:
    import socket

    from gaffer.http.handlers.observe import is_local

    assert is_local(getattr(socket, family), address) is local


def test_metrics_without_key_is_checked_at_start(tmp_path: Path) -> None:
    daemon = Gafferd(tmp_path, "[gaffer]\nmetrics_without_key = always\n")
    result = daemon.run("--check-config")
    assert result.returncode == 78, result
    assert (
        "gafferd.ini:2: [gaffer] metrics_without_key = always: expected one of never, loopback"
        in result.stderr
    )


def test_metrics_setting_from_the_environment(tmp_path: Path) -> None:
    daemon = Gafferd(tmp_path, "", env={"GAFFERD_METRICS_WITHOUT_KEY": "loopback"})
    result = daemon.run("--print-config")
    assert result.returncode == 0, result
    line = next(
        line for line in result.stdout.splitlines() if line.startswith("metrics_without_key")
    )
    assert "loopback" in line and "GAFFERD_METRICS_WITHOUT_KEY" in line
