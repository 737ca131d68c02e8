"""Issue 11.6: reloading is safe. An empty ini file on SIGHUP is refused (the running
jobs stay); --check-config names, with file:line, what the jobs will meet (a program not
found, a cwd that does not exist, an unbalanced quote, an undefined $VAR): errors unless
--lenient; and a ' ;' never cuts a command line silently."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from tests.gafferd.harness import Gafferd
from tests.helpers import wait_until_sync

JOBS = """
    [job:web]
    cmd = {child} sleep
    numprocesses = 2
"""


@pytest.mark.parametrize("text", ["", "\n\n", "; nothing but comments\n# here\n"])
def test_an_empty_file_on_sighup_is_refused_and_the_jobs_stay(tmp_path: Path, text: str):
    daemon = Gafferd(tmp_path, JOBS).start()
    try:
        wait_until_sync(lambda: len(daemon.job_pids("sleep")) == 2, what="2 sleepers")
        before = daemon.job_pids("sleep")
        daemon.ini.write_text(text)  # what a reader sees while an editor rewrites it
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("the file is empty")
        assert "configuration not reloaded, keeping the running one" in daemon.log_text()
        assert daemon.request("GET", "/jobs")[1] == {"jobs": ["default.web"]}
        assert daemon.job_pids("sleep") == before
        # and at start too: a truncated file is no configuration
        result = daemon.run("--check-config")
        assert result.returncode == 78 and "the file is empty" in result.stderr
    finally:
        daemon.stop()


def _line_of(ini: Path, text: str) -> str:
    for number, line in enumerate(ini.read_text().splitlines(), 1):
        if text in line:
            return f"{ini}:{number}"
    raise AssertionError(f"{text!r} not in {ini}")


def test_check_config_names_what_jobs_will_meet_with_file_and_line(tmp_path: Path):
    daemon = Gafferd(
        tmp_path,
        f"""
        [job:missing]
        cmd = no-such-program-4242 --flag

        [job:nowhere]
        cmd = {sys.executable} -V
        cwd = {tmp_path}/no/such/dir

        [job:quote]
        cmd = sh -c 'echo unbalanced

        [job:variable]
        cmd = {sys.executable} $UNDEFINED_VARIABLE_4242

        [job:fine]
        cmd = {{child}} sleep
        """,
    )
    result = daemon.run("--check-config")
    assert result.returncode == 78, result
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 4, result.stderr
    expected = {
        "cmd = no-such-program": "program 'no-such-program-4242' not found in PATH=",
        "cwd = ": "no such directory",
        "cmd = sh -c": "No closing quotation",
        "cmd = " + sys.executable + " $UNDEFINED": "$UNDEFINED_VARIABLE_4242 is not set",
    }
    for key_line, message in expected.items():
        origin = _line_of(daemon.ini, key_line)
        assert any(f"{origin}: " in line and message in line for line in errors), (
            origin,
            message,
            errors,
        )
    assert "--lenient" in result.stderr
    lenient = daemon.run("--check-config", "--lenient")
    assert lenient.returncode == 0, lenient
    assert lenient.stderr.count(": warning: ") == 4
    assert "4 warning(s)" in lenient.stdout


@pytest.mark.parametrize(
    "line",
    [
        "cmd = (sleep 5 &) ; exec sleep 6",
        "args = 100 ; 200",
        "env:PATH = /bin ; /usr/bin",
        "stdout_logfile = out.log ; the output",
    ],
)
def test_a_semicolon_after_a_space_never_cuts_a_text_value_silently(tmp_path: Path, line: str):
    cmd = "" if line.startswith("cmd") else "cmd = sleep 5\n"
    daemon = Gafferd(tmp_path, f"[job:cut]\nshell = true\n{cmd}{line}\n")
    result = daemon.run("--check-config")
    assert result.returncode == 78
    assert _line_of(daemon.ini, line) in result.stderr
    assert "would cut the value" in result.stderr
    daemon.start(wait=False)  # and gafferd does not start with half a command
    assert daemon.proc.wait(20) == 78


def test_quoted_or_unspaced_semicolons_are_kept_and_comments_elsewhere_still_work(
    tmp_path: Path,
):
    out = tmp_path / "out"
    daemon = Gafferd(
        tmp_path,
        f"""
        [job:web]          ; a comment after a section header
        cmd = echo first > {out}; exec sleep 300
        shell = true
        flapping = 2, 1., 7., 5    ; commas or spaces: attempts window retry_in max_retry

        [job:quoted]
        cmd = sh -c "echo a ; exec sleep 301"
        """,
    )
    daemon.start()
    try:
        wait_until_sync(lambda: out.exists() and out.read_text() == "first\n", what="the echo")
        wait_until_sync(lambda: daemon.job_pids("sleep 300"), what="exec sleep 300")
        wait_until_sync(lambda: daemon.job_pids("sleep 301"), what="the quoted ';' kept")
        info = daemon.request("GET", "/jobs/default/web")[1]
        assert info["config"]["flapping"]["attempts"] == 2
    finally:
        daemon.stop()
