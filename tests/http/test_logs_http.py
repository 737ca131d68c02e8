"""A job's recent output over HTTP, from a real gafferd: /jobs/<sid>/<name>/logs and /logs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from tests.gafferd.harness import Gafferd
from tests.helpers import wait_until_sync
from tests.http.rest_helpers import Api, admin_key_of, start_gafferd

JOBS = """
[job:talk]
cmd = {child} lines 20 5 both
numprocesses = 3

[job:app.quiet]
cmd = {child} lines 2 0 out
"""


@pytest.fixture
def talking(tmp_path) -> Iterator[tuple[Gafferd, Api]]:
    daemon, api = start_gafferd(tmp_path, JOBS)
    daemon.start()
    try:
        wait_until_sync(
            lambda: len(api.get("/jobs/default/talk/logs?lines=all").json["lines"]) == 60,
            what="the 60 lines of the 3 processes",
        )
        yield daemon, api
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_the_last_lines_of_a_job_each_with_its_process_stream_and_time(talking):
    daemon, api = talking
    every = api.get("/jobs/default/talk/logs?lines=all").json
    assert every["name"] == "default.talk"
    lines = every["lines"]
    assert {line["pid"] for line in lines} == {1, 2, 3}
    os_pids = {pid: api.get(f"/{pid}").json["os_pid"] for pid in (1, 2, 3)}
    for line in lines:
        assert set(line) == {"job", "pid", "os_pid", "stream", "time", "line"}
        assert line["job"] == "default.talk"
        assert line["os_pid"] == os_pids[line["pid"]]
        _, index, _, os_pid = line["line"].split()
        assert int(os_pid) == line["os_pid"]
        assert line["stream"] == ("stderr" if int(index) % 2 else "stdout")
    assert api.get("/jobs/default/talk/logs?lines=5").json["lines"] == lines[-5:]
    assert api.get("/jobs/default/talk/logs").json["lines"] == lines[-10:]  # 10 by default
    stderr = api.get("/jobs/default/talk/logs?lines=all&stream=stderr").json["lines"]
    assert stderr == [line for line in lines if line["stream"] == "stderr"]
    # every job, interleaved by time; one session's
    both = api.get("/logs?lines=all").json["lines"]
    assert {line["job"] for line in both} == {"default.talk", "app.quiet"}
    assert [line["time"] for line in both] == sorted(line["time"] for line in both)
    quiet = api.get("/logs?session=app").json["lines"]
    assert [line["line"].rsplit(" ", 1)[0] for line in quiet] == ["line 0 of", "line 1 of"]
    # gafferd printed them too, each with its process's name: foreman style
    output = daemon.output()
    for pid, os_pid in os_pids.items():
        assert re.search(rf"^talk\.{pid} +\| line 19 of {os_pid}$", output, re.M), output
    assert re.search(r"^app\.quiet\.\d +\| line 1 of \d+$", output, re.M), output


def test_bad_requests_and_unknown_jobs(talking):
    _daemon, api = talking
    unknown = api.get("/jobs/default/nosuch/logs")
    assert unknown.status == 404
    assert unknown.json == {"error": "not_found", "reason": "no job 'nosuch' in session 'default'"}
    for query, reason in (
        ("lines=-1", "lines must be a number >= 0 or all"),
        ("lines=ten", "lines must be a number >= 0 or all"),
        ("stream=stdin", "stream must be one of stdout, stderr, all"),
        ("follow=1&feed=longpoll", "feed must be one of continuous, eventsource"),
        ("feed=nope", "feed must be one of"),
    ):
        response = api.get(f"/jobs/default/talk/logs?{query}")
        assert response.status == 400, (query, response)
        assert reason in response.json["reason"], (query, response)


def _read_lines(response, count: int) -> list[bytes]:
    return [response.readline() for _ in range(count)]


def test_follow_gives_the_last_lines_then_each_new_one(tmp_path):
    daemon, api = start_gafferd(tmp_path, "[job:echo]\ncmd = {child} echo\nredirect_input = true")
    daemon.start()
    try:
        api.post("/streams/1/stdin", "one\ntwo\n")
        wait_until_sync(lambda: len(api.get("/jobs/default/echo/logs").json["lines"]) == 2)
        with api.open_stream("/jobs/default/echo/logs?follow=1&lines=1") as conn:
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("Content-Type") == "application/x-ndjson"
            first = json.loads(response.readline())
            assert (first["line"], first["pid"], first["stream"]) == ("two", 1, "stdout")
            api.post("/streams/1/stdin", "three\n")
            assert json.loads(response.readline())["line"] == "three"
            # the job goes: the feed ends
            assert api.delete("/jobs/default/echo").status == 200
            assert response.read() == b""
        api.load("echo", "echo", redirect_input=True)
        pid = api.wait_pids("default.echo", 1)[0]
        with api.open_stream("/jobs/default/echo/logs?follow=1&feed=eventsource&lines=0") as conn:
            response = conn.getresponse()
            assert response.getheader("Content-Type") == "text/event-stream"
            api.post(f"/streams/{pid}/stdin", "four\n")
            event, data, blank = _read_lines(response, 3)
            assert (event, blank) == (b"event: log\n", b"\n")
            assert json.loads(data.removeprefix(b"data: "))["line"] == "four"
        # every job, those loaded later included
        with api.open_stream("/logs?follow=1&lines=0") as conn:
            response = conn.getresponse()
            api.load("late", "lines", 1, 0, "err")
            line = json.loads(response.readline())
            assert (line["job"], line["stream"]) == ("default.late", "stderr")
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_a_key_reads_the_logs_of_the_jobs_it_may_read(tmp_path):
    daemon, api = start_gafferd(
        tmp_path,
        """require_key = true
        [job:mine.a]
        cmd = {child} lines 1 0 out
        [job:theirs.b]
        cmd = {child} lines 1 0 out
        """,
    )
    created = daemon.run("--create-admin-user", "--username", "root", "--password", "pw")
    admin = api.with_key(admin_key_of(created.stdout))
    daemon.start()
    try:
        wait_until_sync(lambda: len(admin.get("/logs").json["lines"]) == 2)
        response = admin.post("/keys", {"permissions": {"read": ["mine"]}})
        reader = api.with_key(response.json["api_key"])
        assert [line["job"] for line in reader.get("/logs").json["lines"]] == ["mine.a"]
        assert reader.get("/jobs/mine/a/logs").status == 200
        refused = reader.get("/jobs/theirs/b/logs")
        assert refused.status == 403 and refused.json["error"] == "forbidden"
        assert api.get("/logs").status == 401
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_job_output_inherit_leaves_the_output_to_the_jobs(tmp_path):
    daemon, api = start_gafferd(
        tmp_path, "job_output = inherit\n[job:plain]\ncmd = {child} lines 2 0 out\n"
    )
    daemon.start()
    try:
        wait_until_sync(lambda: "line 1 of" in daemon.output(), what="the job's own lines")
        assert re.search(r"^line 0 of \d+$", daemon.output(), re.M)  # no prefix: its own
        assert api.get("/jobs/default/plain/logs").json["lines"] == []  # nothing kept
        assert daemon.stop() == 0
    finally:
        daemon.kill()
