"""The log files of gafferd's jobs: JSON lines, markers, timestamps, daily rotation and the
disk budget, from the ini file, with a real gafferd."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from tests.gafferd.harness import Gafferd
from tests.helpers import wait_until_sync

pytestmark = pytest.mark.timeout(90)

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}"


def test_log_files_of_jobs_from_the_ini_file(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "api.err").write_text("from yesterday\n")
    yesterday = time.time() - 86400
    os.utime(logs / "api.err", (yesterday, yesterday))
    daemon = Gafferd(
        tmp_path,
        f"""
        [gaffer]
        bind = unix:{tmp_path / "gafferd.sock"}

        [job:api]
        cmd = {{child}} lines 4 10 both 3
        numprocesses = 0
        stdout_logfile = logs/api.out
        stderr_logfile = logs/api.err
        log_format = json
        log_rotate = daily
        log_max_total = 1MB

        [job:web]
        cmd = {{child}} lines 2 10 both 0
        numprocesses = 0
        stdout_logfile = logs/web.log
        stderr_logfile = logs/web.log
        log_timestamps = true
        """,
    ).start()
    try:
        pids = {}
        for job in ("api", "web"):
            status, answer = daemon.request("POST", f"/jobs/default/{job}/commit", {})
            assert status == 200, answer
            pids[job] = answer["pid"]
        for name in ("api.out", "api.err", "web.log"):
            wait_until_sync(
                lambda name=name: (
                    (logs / name).exists() and "exited with" in (logs / name).read_text()
                ),
                what=f"the exit marker in {name}",
            )
        # JSON: one object a line, the markers in both files of the job
        for name, stream, indexes in (("api.out", "stdout", (0, 2)), ("api.err", "stderr", (1, 3))):
            records = [json.loads(line) for line in (logs / name).read_text().splitlines()]
            assert {(r["job"], r["pid"]) for r in records} == {("default.api", pids["api"])}
            assert [(r["stream"], r["line"].rsplit(" ", 1)[0]) for r in records] == [
                ("gaffer", "spawned pid"),
                *[(stream, f"line {index} of") for index in indexes],
                ("gaffer", "exited with"),
            ]
            assert records[-1]["line"] == "exited with 3"
        # yesterday's file was rotated away at the first write of today
        assert (logs / "api.err.1").read_text() == "from yesterday\n"
        # text with timestamps: both streams in one file, the markers once
        web = [re.sub(STAMP, "<t>", line) for line in (logs / "web.log").read_text().splitlines()]
        assert [line.rsplit(" ", 1)[0] for line in web] == [
            f"<t> [gaffer] web.{pids['web']}: spawned pid",
            "<t> line 0 of",
            "<t> line 1 of",
            f"<t> [gaffer] web.{pids['web']}: exited with",
        ]
        # and gaffer logs has the lines too, without the markers
        status, kept = daemon.request("GET", "/jobs/default/api/logs?lines=all")
        assert [line["line"].rsplit(" ", 1)[0] for line in kept["lines"]] == [
            f"line {index} of" for index in range(4)
        ]
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_log_history_setting_is_the_default_of_jobs_from_the_file_and_the_api(tmp_path):
    daemon = Gafferd(
        tmp_path,
        f"""
        [gaffer]
        bind = unix:{tmp_path / "gafferd.sock"}
        log_history = 3

        [job:talk]
        cmd = {{child}} lines 10

        [job:own]
        cmd = {{child}} lines 10
        log_history = 5
        """,
    ).start()
    try:

        def kept(job: str) -> list[str]:
            status, answer = daemon.request("GET", f"/jobs/default/{job}/logs?lines=all")
            assert status == 200, answer
            return [line["line"].split(" of ")[0] for line in answer["lines"]]

        wait_until_sync(lambda: kept("talk") == ["line 7", "line 8", "line 9"], what="3 kept")
        wait_until_sync(lambda: kept("own") == [f"line {n}" for n in range(5, 10)], what="5 kept")
        for job, lines in (("talk", 3), ("own", 5)):
            _, info = daemon.request("GET", f"/jobs/default/{job}")
            assert info["config"]["log_history"] == lines
        # a job loaded through the API without log_history gets the setting; its own wins
        for name, body, lines in (("api", {}, 3), ("api_own", {"log_history": 7}, 7)):
            status, answer = daemon.request(
                "POST", "/jobs/default", {"name": name, "cmd": "true", "start": False, **body}
            )
            assert status in (200, 201), answer
            _, info = daemon.request("GET", f"/jobs/default/{name}")
            assert info["config"]["log_history"] == lines
        # SIGHUP with another setting: the jobs without their own follow, lines kept
        pids = daemon.request("GET", "/jobs/default/talk")[1]["processes"]
        daemon.write(daemon.ini.read_text().replace("log_history = 3", "log_history = 4"))
        daemon.signal(signal.SIGHUP)
        wait_until_sync(
            lambda: daemon.request("GET", "/jobs/default/talk")[1]["config"]["log_history"] == 4,
            what="the new default applied",
        )
        assert daemon.request("GET", "/jobs/default/talk")[1]["processes"] == pids
        assert daemon.request("GET", "/jobs/default/own")[1]["config"]["log_history"] == 5
        # the lines still held in memory: one more shows
        assert kept("talk") == ["line 6", "line 7", "line 8", "line 9"]
        assert daemon.stop() == 0
    finally:
        daemon.kill()
