"""The state file (issue 17.3): what the operator asked through the API survives a
restart of gafferd: stopped stays stopped, scaled stays scaled, jobs loaded through the
API come back, detached processes are adopted rather than started twice. Real gafferds,
stopped and started again on the same directory."""

from __future__ import annotations

import json
import os
import signal
import stat

import psutil
import pytest

from tests.gafferd.harness import Gafferd
from tests.helpers import CHILD, child_cmd, pid_exists, wait_until_sync

pytestmark = pytest.mark.timeout(120)

JOBS = """
    [job:web]
    cmd = {child} sleep
    numprocesses = 2

    [job:worker]
    cmd = {child} sleep

    [job:batch]
    cmd = {child} sleep
"""


def _pids(daemon: Gafferd, job: str) -> list[int]:
    status, body = daemon.request("GET", f"/jobs/default/{job}/pids")
    assert status == 200, body
    return body["pids"]


def _info(daemon: Gafferd, job: str) -> dict:
    status, body = daemon.request("GET", f"/jobs/default/{job}")
    assert status == 200, body
    return body


def _recorded(path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def test_what_the_operator_asked_survives_a_restart(tmp_path):
    state = tmp_path / "var" / "gafferd-state.json"
    daemon = Gafferd(tmp_path, JOBS).start()
    try:
        wait_until_sync(lambda: len(_pids(daemon, "web")) == 2, what="web up")
        assert not state.exists()  # nothing asked yet: no file made
        assert daemon.request("POST", "/jobs/default/web/state", "0")[0] == 202
        assert (
            daemon.request("POST", "/jobs/default/worker/numprocesses", {"scale": "=3"})[0] == 200
        )
        assert daemon.request("DELETE", "/jobs/default/batch")[0] == 200
        api_job = {"name": "api", "cmd": child_cmd("env", "GREETING"), "numprocesses": 2}
        body = {**api_job, "env": {"GREETING": "hello"}}
        assert daemon.request("POST", "/jobs/default", body)[0] in (200, 201)
        wait_until_sync(
            lambda: (
                set(_recorded(state).get("jobs", {}))
                == {"default.web", "default.worker", "default.api"}
            ),
            what="the state file",
        )
        recorded = _recorded(state)
        assert recorded["jobs"]["default.web"] == {"started": False}
        assert recorded["jobs"]["default.worker"] == {"numprocesses": 3}
        assert recorded["unloaded"] == ["default.batch"]
        assert recorded["jobs"]["default.api"]["config"]["env"] == {"GREETING": "hello"}
        assert recorded["jobs"]["default.api"]["started"] is True
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
        # what gafferd shows of it
        status, shown = daemon.request("GET", "/daemon/state")
        assert status == 200
        assert shown["state_file"] == str(state)
        assert shown["state"]["jobs"] == recorded["jobs"]
        assert daemon.stop() == 0
        assert _recorded(state) == recorded  # its own stop is not the operator's
        # the next gafferd comes back to it: web never starts, worker runs 3, api is back
        daemon.start()
        wait_until_sync(lambda: len(_pids(daemon, "worker")) == 3, what="worker x3")
        wait_until_sync(lambda: len(_pids(daemon, "api")) == 2, what="api x2")
        assert _info(daemon, "web")["state"] == "stopped"
        assert _pids(daemon, "web") == []
        assert daemon.request("GET", "/jobs/default/batch")[0] == 404
        pid = _pids(daemon, "api")[0]
        status, info = daemon.request("GET", f"/{pid}")
        assert info["env"]["GREETING"] == "hello"
        assert daemon.stop() == 0
        # --fresh: the ini file alone
        fresh = Gafferd(tmp_path, JOBS, args=("--fresh",)).start()
        try:
            wait_until_sync(lambda: len(_pids(fresh, "web")) == 2, what="web up again")
            assert len(_pids(fresh, "worker")) == 1
            assert fresh.request("GET", "/jobs/default/api")[0] == 404
        finally:
            assert fresh.stop() == 0
    finally:
        daemon.kill()


def test_a_broken_state_file_is_set_aside(tmp_path):
    state = tmp_path / "var" / "gafferd-state.json"
    state.parent.mkdir()
    state.write_text("{not json")
    daemon = Gafferd(tmp_path, JOBS).start()
    try:
        wait_until_sync(lambda: len(_pids(daemon, "web")) == 2, what="web up")
        assert (tmp_path / "var" / "gafferd-state.json.bad").read_text() == "{not json"
        daemon.wait_log("ignored")  # gafferd's log thread may write it after the spawns
    finally:
        assert daemon.stop() == 0


def test_state_file_off_records_nothing(tmp_path):
    daemon = Gafferd(
        tmp_path, f"[gaffer]\nbind = unix:{tmp_path}/gafferd.sock\nstate_file = off\n" + JOBS
    ).start()
    try:
        wait_until_sync(lambda: len(_pids(daemon, "web")) == 2, what="web up")
        assert daemon.request("POST", "/jobs/default/web/state", "0")[0] == 202
        wait_until_sync(lambda: _info(daemon, "web")["state"] == "stopped", what="stopped")
        assert daemon.request("GET", "/daemon/state")[1]["state_file"] is None
    finally:
        assert daemon.stop() == 0
    assert not (tmp_path / "var").exists()


def _copies(marker: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if str(CHILD) in cmdline and marker in cmdline:
            found.append(proc.pid)
    return found


def test_a_detached_job_is_adopted_after_a_restart_not_started_twice(tmp_path):
    marker = f"{os.getpid()}.5"  # a sleep of that many seconds: this test's own copies
    daemon = Gafferd(
        tmp_path,
        f"""
        [job:kept]
        cmd = {{child}} sleep {marker}
        detach = true
        """,
    ).start()
    try:
        wait_until_sync(lambda: len(_copies(marker)) == 1, what="the detached process")
        (first,) = _copies(marker)
        state = tmp_path / "var" / "gafferd-state.json"
        wait_until_sync(lambda: _recorded(state).get("detached"), what="recorded")
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(20) == 0
        assert pid_exists(first)  # detached: it outlives gafferd
        daemon.start()
        wait_until_sync(lambda: _pids(daemon, "kept"), what="the job has its process")
        (pid,) = _pids(daemon, "kept")
        assert daemon.request("GET", f"/{pid}")[1]["os_pid"] == first
        assert _copies(marker) == [first]  # adopted, not started again
        daemon.wait_log("1 process(es) a previous gafferd started adopted")
        wait_until_sync(lambda: _info(daemon, "kept")["state"] == "running", what="running")
        # it is the job's like any: stopping the job stops it, its exit is noticed
        assert daemon.request("POST", "/jobs/default/kept/state", "0")[0] == 202
        wait_until_sync(lambda: not pid_exists(first), what="the adopted process stopped")
        wait_until_sync(lambda: _info(daemon, "kept")["state"] == "stopped", what="stopped")
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(20) == 0
    finally:
        for pid in _copies(marker):
            os.kill(pid, signal.SIGKILL)
        daemon.kill()
