"""The README's examples run as written."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


def test_readme_has_the_two_setup_commands_on_its_first_screen():
    first_screen = "\n".join(README.read_text().splitlines()[:25])
    assert "make run" in first_screen and "make test" in first_screen


def test_readme_has_embedding_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path):
    script = tmp_path / f"example_{index}.py"
    script.write_text(BLOCKS[index])
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip(), "the example printed nothing"
    if "threading.Timer" in BLOCKS[index]:
        assert "spawn default.worker 1" in result.stdout
        assert result.stdout.rstrip().endswith("stopped: []")
    else:
        lines = result.stdout.splitlines()
        # output comes in chunks as the child writes them (one or two here)
        chunks = [ast.literal_eval(line[len("out ") :]) for line in lines[:-1]]
        assert all(line.startswith("out b") for line in lines[:-1])
        assert b"".join(chunks) == b"42\n"
        assert lines[-1] == "process 1 exited"


TOUR = re.search(r"## A two-minute tour\n.*?```sh\n(.*?)```", README.read_text(), re.DOTALL)


def test_the_tour_installs_first_and_waits_for_gafferd():
    """Pasted at once, no line may race the one before: the venv is made before `make
    run &` starts gafferd in the background, and the first command after it waits for
    gafferd to answer."""
    lines = [line.split("#")[0].strip() for line in TOUR.group(1).splitlines()]
    lines = [line for line in lines if line]
    run = lines.index("make run &")
    assert "make venv" in lines[:run]
    assert "--wait" in lines[run + 1]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs the checkout's venv")
def test_the_tour_runs_pasted_at_once(tmp_path):
    """The tour as written, in a copy of the checkout that shares this venv (so `make venv`
    has nothing to do), on a unix socket of its own: GAFFERD_BIND and GAFFER_ADDRESS are
    the only changes, so that it never meets another gafferd on port 5000."""
    root = README.parent
    for name in ("Makefile", "pyproject.toml", "setup.py"):
        shutil.copy2(root / name, tmp_path / name)  # their times kept: the venv is up to date
    for name in ("etc", "examples"):
        shutil.copytree(root / name, tmp_path / name)
    (tmp_path / ".venv").symlink_to(sys.prefix)
    socket_path = tmp_path / "gafferd.sock"
    env = {
        **os.environ,
        "GAFFERD_BIND": f"unix:{socket_path}",
        "GAFFER_ADDRESS": f"unix:{socket_path}",
        "NO_COLOR": "1",
    }
    for name in ("GAFFERD_CONFIG", "GAFFER_API_KEY", "GAFFER_CONFIG", "MAKEFLAGS"):
        env.pop(name, None)
    script = "set -e\n" + TOUR.group(1) + "wait\n"  # wait: gafferd gone before the test ends
    result = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nothing to be done for 'venv'" in result.stdout, result.stdout
    assert "default.hello loaded" in result.stdout
    assert re.search(r"^hello\.\d+ \| hello from \d+$", result.stdout, re.M), result.stdout
    assert "default.hello stopped" in result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert "gafferd stopped" in result.stderr  # kill %1 stopped it, gracefully
