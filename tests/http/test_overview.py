"""``GET /overview`` (what ``gaffer top`` and the dashboard show) and the dashboard's
static files, through a real gafferd."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import gaffer
from gaffer.http.handlers.observe import DASHBOARD_DIR
from tests.gafferd.harness import ROOT, Gafferd
from tests.helpers import wait_until_sync
from tests.http.rest_helpers import Api, admin_key_of, start_gafferd

pytestmark = pytest.mark.timeout(60)

# the sleep program, not Python: its descriptors and memory do not move once it runs
SLEEP = shutil.which("sleep") or "/bin/sleep"
JOBS = f"""
[job:web]
cmd = {SLEEP} 1000
numprocesses = 2

[job:app.worker]
cmd = {SLEEP} 1000
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Gafferd, Api]]:
    daemon, api = start_gafferd(tmp_path, JOBS, tcp=True)
    daemon.start()
    try:
        api.wait_pids("default.web", 2)
        api.wait_pids("app.worker", 1)
        yield daemon, api
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def overview(api: Api, query: str = "", status: int = 200) -> Any:
    response = api.get(f"/overview{query}")
    assert response.status == status, response
    assert response.headers["Content-Type"] == "application/json"
    return response.json


def test_overview_shows_every_job_its_processes_and_gafferd(site: tuple[Gafferd, Api]) -> None:
    daemon, api = site
    data = overview(api)
    jobs = {job["name"]: job for job in data["jobs"]}
    assert set(jobs) == {"default.web", "app.worker"}
    web = jobs["default.web"]
    assert (web["session"], web["job"], web["numprocesses"], web["wanted"]) == (
        "default",
        "web",
        2,
        2,
    )
    assert web["running"] == web["kept_alive"] == 2 and web["running_out"] == 0
    assert web["restarts"] == 0 and web["last_exit"] is None and web["error"] is None
    assert [row["pid"] for row in web["stats"]] == api.pids("default.web")
    for row in web["stats"]:
        real = psutil.Process(row["os_pid"])
        assert row["os_pid"] == api.get(f"/{row['pid']}").json["os_pid"]
        assert row["fds"] == real.num_fds()
        assert 0.8 * real.memory_info().rss <= row["mem_info1"] <= 1.25 * real.memory_info().rss
        assert row["state"] in ("starting", "running") and row["once"] is False
        assert 0 < row["uptime"] < 60 and row["children"] is None
        for key in ("cpu", "mem", "mem_info2", "ctime", "create_time", "nice", "username"):
            assert row[key] is not None, key
    assert web["rss"] == sum(row["mem_info1"] for row in web["stats"])
    assert web["cpu"] == pytest.approx(sum(row["cpu"] for row in web["stats"]), abs=0.1)

    own = data["daemon"]
    assert own["pid"] == daemon.pid and own["version"] == gaffer.__version__
    # connections come and go: the count must agree with /proc at a quiet moment
    wait_until_sync(
        lambda: abs(overview(api)["daemon"]["fds"] - psutil.Process(daemon.pid).num_fds()) <= 2,
        what="gafferd's open fds in the overview to agree with /proc",
    )
    assert own["rss"] > 0 and own["uptime"] > 0 and own["cpu_seconds"] > 0
    assert isinstance(own["http_requests"], int) and own["events_published"] > 0
    assert own["loop_lag_p99"] is None or own["loop_lag_p99"] >= 0


def test_overview_of_named_jobs_and_with_children(site: tuple[Gafferd, Api]) -> None:
    _, api = site
    data = overview(api, "?job=app.worker&job=web&job=default.web")
    assert [job["name"] for job in data["jobs"]] == ["app.worker", "default.web"]
    data = overview(api, "?job=web&children=1")
    assert all(row["children"] == [] for row in data["jobs"][0]["stats"])

    missing = overview(api, "?job=nope", 404)
    assert missing == {"error": "not_found", "reason": "no job 'nope' in session 'default'"}
    bad = overview(api, "?job=app.", 400)
    assert bad["error"] == "bad_request" and "app." in bad["reason"]
    bad = overview(api, "?children=maybe", 400)
    assert bad == {"error": "bad_request", "reason": "children must be 0 or 1, got 'maybe'"}


def test_gaffer_top_reads_the_overview(site: tuple[Gafferd, Api]) -> None:
    """top and the dashboard share a route: one request of top is one /overview, and
    what it prints is that route's answer."""
    daemon, api = site

    def overview_requests() -> int:
        text = api.get("/metrics").text
        for line in text.splitlines():
            if line.startswith('gaffer_http_requests_total{route="/overview",status="200"}'):
                return int(float(line.split()[-1]))
        return 0

    before = overview_requests()
    top = subprocess.run(
        [sys.executable, "-m", "gaffer", "-g", f"unix:{daemon.socket}", "top", "--once", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert top.returncode == 0, top.stderr
    assert overview_requests() == before + 1
    printed = json.loads(top.stdout)
    served = overview(api, "?children=1")["jobs"]
    assert [job["name"] for job in printed] == [job["name"] for job in served]
    for mine, theirs in zip(printed, served, strict=True):
        assert set(mine) == set(theirs)
        for key in ("state", "numprocesses", "wanted", "running", "restarts"):
            assert mine[key] == theirs[key], key
        assert [(r["pid"], r["os_pid"]) for r in mine["stats"]] == [
            (r["pid"], r["os_pid"]) for r in theirs["stats"]
        ]


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[Api, Api]]:
    daemon, api = start_gafferd(tmp_path, "require_key = true\n" + JOBS, tcp=True)
    created = daemon.run("--create-admin-user", "--username", "admin", "--password", "pw")
    assert created.returncode == 0, created.stderr
    daemon.start()
    try:
        admin = api.with_key(admin_key_of(created.stdout))
        admin.wait_pids("default.web", 2)
        yield api, admin
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_overview_shows_what_the_key_may_read(keyed: tuple[Api, Api]) -> None:
    api, admin = keyed
    assert api.get("/overview").status == 401
    assert overview(admin)["daemon"] is not None

    response = admin.post("/keys", {"permissions": {"read": ["app"]}})
    app_only = admin.with_key(response.json["api_key"])
    data = overview(app_only)
    assert [job["name"] for job in data["jobs"]] == ["app.worker"]
    assert data["daemon"] is None  # gafferd's own figures: for keys that read everything
    refused = overview(app_only, "?job=web", 403)
    assert refused == {"error": "forbidden", "reason": "this key may not read 'default.web'"}

    response = admin.post("/keys", {"permissions": {"create_key": True}})
    nothing = admin.with_key(response.json["api_key"])
    assert overview(nothing, "", 403)["reason"] == "this key may not read any job"


# -- the dashboard's files ------------------------------------------------------------------


def test_the_dashboard_is_served_without_a_key(keyed: tuple[Api, Api]) -> None:
    api, _ = keyed  # keys required: the files hold no data, the page asks for one
    moved = api.get("/dashboard")
    assert moved.status == 301 and moved.headers["Location"] == "/dashboard/"
    page = api.get("/dashboard/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<script type="module" src="dashboard.js"></script>' in page.text
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    script = api.get("/dashboard/dashboard.js")
    assert script.status == 200 and "javascript" in script.headers["Content-Type"]
    assert "https://" not in script.text and "http://" not in script.text  # no CDN
    style = api.get("/dashboard/dashboard.css")
    assert style.status == 200 and style.headers["Content-Type"].startswith("text/css")
    assert api.head("/dashboard/index.html").status == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/dashboard/nope.js", 404),
        ("GET", "/dashboard/../gafferd.ini", 404),
        ("GET", "/dashboard/%2e%2e/gafferd.ini", 404),
        ("GET", "/dashboard/..", 404),
        ("GET", "/dashboard/%00", 404),
        ("GET", "/dashboard/.hidden", 404),
        ("GET", "/dashboard/a%2fb", 404),
        ("POST", "/dashboard/", 405),
        ("DELETE", "/dashboard/index.html", 405),
    ],
)
def test_dashboard_errors_are_json(
    keyed: tuple[Api, Api], method: str, path: str, status: int
) -> None:
    api, _ = keyed
    response = api.request(method, path)
    assert response.status == status, response
    assert response.headers["Content-Type"] == "application/json"
    body = response.json
    assert isinstance(body["error"], str) and isinstance(body["reason"], str)
    assert "static" not in body["reason"]  # said in the dashboard's words


def test_every_file_of_the_dashboard_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["gaffer.http"]
    files = sorted(path.name for path in Path(DASHBOARD_DIR).iterdir())
    assert files == ["dashboard.css", "dashboard.js", "index.html"]
    for name in files:
        assert any(fnmatch.fnmatch(f"dashboard/{name}", p) for p in patterns), name


def test_overview_and_metrics_are_in_the_api_description(site: tuple[Gafferd, Api]) -> None:
    _, api = site
    paths = api.get("/openapi.json").json["paths"]
    assert set(paths["/overview"]["get"]["parameters"][0]) >= {"name", "in"}
    assert {p["name"] for p in paths["/overview"]["get"]["parameters"]} == {"job", "children"}
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert "/dashboard/{path}" in paths
    wait_until_sync(lambda: api.get("/ping").status == 200, what="still answering")
