"""``gafferd --container`` as PID 1 of a new PID namespace (``unshare --pid --fork``, as
root): it reaps every zombie, prints every job's output as ``job.N |`` lines, stops in
dependency order on SIGTERM, and exits with the code of a job with ``on_exit = shutdown``
(a signal n: 128 + n)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.gafferd.harness import ROOT
from tests.helpers import CHILD, wait_until_sync

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="a new PID namespace needs root (as in CI)"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux's unshare missing"),
]

CHILD_CMD = f"{sys.executable} -u {CHILD}"


def run_as_pid1(tmp_path: Path, ini: str) -> subprocess.Popen[bytes]:
    path = tmp_path / "gafferd.ini"
    path.write_text(textwrap.dedent(ini).format(child=CHILD_CMD, tmp=tmp_path))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
    argv += [sys.executable, "-m", "gafferd", "--container", "-c", str(path)]
    return subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 30) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(errors="replace")


def test_the_main_job_ending_ends_the_container_with_its_code(tmp_path: Path) -> None:
    proc = run_as_pid1(
        tmp_path,
        """
        [gaffer]
        bind = unix:{tmp}/gafferd.sock

        [job:app]
        cmd = {child} fail-loud 300 3 the-app-says-goodbye
        redirect_output = out, err
        on_exit = shutdown

        [job:helper]
        cmd = {child} print helping
        restart = never

        [job:zombies]
        ; a daemon's double fork whose grandchild exits at once: an orphan for PID 1
        cmd = {child} daemonize {tmp}/orphan exit
        """,
    )
    code, out = finish(proc)
    assert code == 3, out
    assert re.search(r"^\d\d:\d\d:\d\d app\.1 +\| the-app-says-goodbye$", out, re.M), out
    assert re.search(r"^\d\d:\d\d:\d\d helper\.2 +\| helping$", out, re.M), out
    assert "has on_exit = shutdown: stopping, exit code 3" in out, out


def test_a_signal_ending_the_main_job_is_128_plus_n(tmp_path: Path) -> None:
    proc = run_as_pid1(
        tmp_path,
        """
        [gaffer]
        bind = unix:{tmp}/gafferd.sock

        [job:app]
        cmd = {child} signals {tmp}/signals
        on_exit = shutdown
        start_secs = 0
        """,
    )
    wait_until_sync(lambda: (tmp_path / "signals").exists(), what="the app up")
    os.kill(_pid_of(tmp_path / "signals"), signal.SIGKILL)
    code, out = finish(proc)
    assert code == 128 + signal.SIGKILL, out


def test_sigterm_stops_in_dependency_order_and_leaves_nothing(tmp_path: Path) -> None:
    proc = run_as_pid1(
        tmp_path,
        """
        [gaffer]
        bind = unix:{tmp}/gafferd.sock

        [job:db]
        cmd = {child} hang-term {tmp}/db
        start_secs = 0

        [job:web]
        cmd = {child} hang-term {tmp}/web
        requires = db
        start_secs = 0
        """,
    )
    wait_until_sync(
        lambda: (tmp_path / "db").exists() and (tmp_path / "web").exists(), what="both up"
    )
    time.sleep(0.1)  # let gafferd see them running (a wait for the children, not an assertion)
    [gafferd] = psutil.Process(proc.pid).children()  # PID 1 inside, a child of unshare
    gafferd.send_signal(signal.SIGTERM)
    code, out = finish(proc)
    assert code == 0, out
    web = float((tmp_path / "web").read_text().split()[1])
    db = float((tmp_path / "db").read_text().split()[1])
    assert web + 0.15 < db, out  # web stopped (0.2 s) before db was asked to


def _pid_of(path: Path) -> int:
    """The host pid of the child that wrote ``path``'s first line ("ready")."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"signals\0" + str(path).encode() in cmdline:
            return int(entry)
    raise AssertionError(f"no process writes {path}")
