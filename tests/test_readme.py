"""The README's examples run as written."""

from __future__ import annotations

import re
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
        assert "out b'42\\n'" in result.stdout
        assert "exit 0" in result.stdout
        assert "scaled to 0" in result.stdout
