"""Issue 11.8: the files gafferd writes. The pidfile is never opened through a symbolic
link and never seen half-written (a new file replaces it); log files given through the
API stay under ``log_root`` (403 otherwise)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.gafferd.harness import Gafferd
from tests.helpers import child_argv, wait_until_sync
from tests.security.site import start, tcp


def test_a_pidfile_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path: Path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "gafferd.pid").symlink_to(victim)
    daemon = Gafferd(tmp_path, "", args=("--pidfile", str(tmp_path / "gafferd.pid")))
    result = daemon.run()
    assert result.returncode == 78, result
    assert "symbolic link" in result.stderr
    assert victim.read_text() == "precious\n"


def test_a_stale_pidfile_is_replaced_whole_never_seen_empty(tmp_path: Path):
    pidfile = tmp_path / "run" / "gafferd.pid"
    pidfile.parent.mkdir()
    pidfile.write_text("4242424\n")  # stale: nobody holds its lock
    stale_inode = pidfile.stat().st_ino
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add(pidfile.read_text())
            except FileNotFoundError:
                seen.add("<none>")

    reader = threading.Thread(target=read)
    reader.start()
    daemon = Gafferd(tmp_path, "", args=("--pidfile", str(pidfile)))
    try:
        daemon.start()
        wait_until_sync(lambda: f"{daemon.pid}\n" in seen, what="our pid read")
    finally:
        stop.set()
        reader.join()
    try:
        assert seen <= {"4242424\n", f"{daemon.pid}\n"}, seen  # never empty, never partial
        assert pidfile.stat().st_ino != stale_inode  # a new file, renamed over the old one
        assert sorted(p.name for p in pidfile.parent.iterdir()) == ["gafferd.pid"]
        second = Gafferd(tmp_path, "", args=("--pidfile", str(pidfile)))
        refused = second.run()
        assert refused.returncode == 1 and "already running" in refused.stderr
    finally:
        assert daemon.stop() == 0
    assert not pidfile.exists()


@pytest.fixture
def rooted(tmp_path: Path):
    root = tmp_path / "var" / "log"
    root.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    daemon, port = start(tmp_path, gaffer="log_root = var/log")
    try:
        yield daemon, port, root, outside
    finally:
        daemon.stop()


def _load(port: int, name: str, logfile: str):
    argv = child_argv("output", "hello")
    body = {"name": name, "cmd": argv[0], "args": argv[1:], "stdout_logfile": logfile}
    return tcp(port, "POST", "/jobs/default", body)


def test_log_files_from_the_api_stay_under_log_root(rooted):
    daemon, port, root, outside = rooted
    for logfile in (
        str(outside / "x.log"),
        "/etc/cron.d/gaffer",
        "../../outside/x.log",
        "link/x.log",  # a symbolic link out of the root
        f"syslog@{outside / 'socket'}",
    ):
        answer = _load(port, "bad", logfile)
        assert answer.status == 403, (logfile, answer)
        assert answer.json["error"] == "forbidden" and "log_root" in answer.json["reason"]
    assert daemon.request("GET", "/jobs")[1] == {"jobs": []}
    assert list(outside.iterdir()) == []
    # inside it (a relative name is taken in it), gaffer's own stdout, syslog
    for name, logfile in (("rel", "web.log"), ("abs", str(root / "sub.log")), ("dash", "-")):
        answer = _load(port, name, logfile)
        assert answer.status == 200, (logfile, answer)
    wait_until_sync(lambda: (root / "web.log").exists(), what="web.log in log_root")
    info = daemon.request("GET", "/jobs/default/rel")[1]
    assert info["config"]["stdout_logfile"] == os.path.join(root, "web.log")


def test_log_root_in_the_shipped_ini():
    """etc/gafferd.ini confines the API's log files to the repository's var/log, where
    its own jobs log."""
    root = Path(__file__).resolve().parents[2]
    printed = subprocess.run(
        [
            sys.executable,
            "-m",
            "gafferd",
            "-c",
            str(root / "etc" / "gafferd.ini"),
            "--print-config",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"^log_root = (\S+) +;", printed, re.M)
    assert match and os.path.realpath(match.group(1)) == str(root / "var" / "log"), printed
