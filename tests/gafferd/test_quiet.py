"""A quiet daemon: reads logged at DEBUG, changes at INFO with their key, repeated warnings
of a crash loop once a minute a job; and the rate limiter behind them."""

from __future__ import annotations

import json
import re

import pytest

from gaffer.core.ratelimit import RateLimiter
from tests.gafferd.harness import UnixHTTPConnection
from tests.http.rest_helpers import Api, admin_key_of, start_gafferd

pytestmark = pytest.mark.timeout(90)


def count_events(api: Api, path: str, evtype: str, count: int) -> None:
    """Read the feed ``path`` until ``count`` events ``evtype`` went by."""
    conn = UnixHTTPConnection(api.socket_path, timeout=30)
    try:
        conn.request("GET", path, headers=api.headers())
        response = conn.getresponse()
        seen = 0
        while seen < count:
            line = response.readline()
            assert line, "the feed ended"
            if line.strip() and json.loads(line)["event"].endswith(evtype):
                seen += 1
    finally:
        conn.close()


def test_reads_are_debug_changes_are_one_info_line_with_their_key(tmp_path):
    daemon, api = start_gafferd(tmp_path, "require_key = true\n[job:w]\ncmd = {child} sleep")
    created = daemon.run("--create-admin-user", "--username", "root", "--password", "pw")
    admin = api.with_key(admin_key_of(created.stdout))
    daemon.start()
    try:
        key_id = admin.get("/users/root").json["key_id"]
        for path in ("/jobs", "/pids", "/jobs/default/w", "/jobs/default/w/stats", "/sessions"):
            assert admin.get(path).status == 200
        assert admin.post("/jobs/default/w/numprocesses", {"scale": "+1"}).status == 200
        assert api.with_key("gk_nope").get("/jobs").status == 403
        daemon.wait_log("POST /jobs/default/w/numprocesses")
        daemon.wait_log("GET /jobs 403")
        log = daemon.log_text()
        assert not re.search(r"\] gaffer\.http\.access: GET .* 200 ", log), log
        changes = [line for line in log.splitlines() if "gaffer.http.access" in line]
        assert len(changes) == 2, log
        assert re.search(
            rf"\[INFO\] gaffer\.http\.access: POST /jobs/default/w/numprocesses 200 "
            rf"[\d.]+ms key={key_id} ",
            changes[0],
        ), changes
        assert "[WARNING]" in changes[1] and "key=-" in changes[1]
        # the API is announced once, at the start, not again when its server loads at the
        # first connection
        assert log.count("HTTP API on") == 1, log
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_reads_show_at_debug(tmp_path):
    daemon, api = start_gafferd(tmp_path)
    daemon.args = ("--log-level", "debug")
    daemon.start()
    try:
        assert api.get("/jobs").status == 200
        daemon.wait_log("[DEBUG] gaffer.http.access: GET /jobs 200")
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_a_crash_loop_warns_once_a_minute(tmp_path):
    daemon, api = start_gafferd(
        tmp_path,
        """
        [job:missing]
        cmd = /nonexistent/program
        flapping = off
        backoff = 0.02, 1, 0.02
        start_retries = 100000

        [job:crash]
        cmd = {child} exit 1
        flapping = 2, 10, 0.05, 100000
        backoff = 0.02, 1, 0.02
        start_retries = 100000
        """,
    )
    daemon.start()
    try:
        count_events(api, "/watch/job/default/missing?feed=continuous", "spawn_error", 10)
        count_events(api, "/watch/job/default/crash?feed=continuous", ".flap", 3)
        log = daemon.log_text()
        assert len(re.findall(r"cannot spawn default\.missing", log)) == 1, log
        assert len(re.findall(r"default\.crash: .*retried in", log)) == 1, log
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_the_rate_limiter_lets_one_through_per_interval_and_counts_the_rest():
    now = [100.0]
    limiter = RateLimiter(60.0, clock=lambda: now[0])
    assert limiter.say(("web", "spawn")) == ""
    assert limiter.say(("web", "spawn")) is None
    assert limiter.say(("web", "spawn")) is None
    assert limiter.say(("api", "spawn")) == ""  # another job has its own
    assert limiter.say(("web", "pause")) == ""  # and another kind
    now[0] += 59.9
    assert limiter.say(("web", "spawn")) is None
    now[0] += 0.2
    assert limiter.say(("web", "spawn")) == " (3 more like it held back)"
    assert limiter.say(("web", "spawn")) is None
