"""``gaffer dev:start`` and ``gaffer dev:run``: a Procfile app run locally, foreman style,
by the real ``gaffer`` command in a process group of its own; and what it leaves behind
when it is stopped (nothing)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.cli.cli_helpers import Cli, Reader
from tests.helpers import pid_exists, wait_until_sync

pytestmark = pytest.mark.timeout(90)

PY = sys.executable
WEB = f"{PY} -u -c \"import os, time; print('web on', os.environ['PORT']); time.sleep(600)\""
WORKER = (
    f"{PY} -u -c \"import itertools, os, time; print('worker on', os.environ['PORT']); "
    f"[(print('tick', i), time.sleep(0.05)) for i in itertools.count()]\""
)
STOP_WITHIN = 5.0  # seconds gaffer may take to stop everything and exit


PREFIX = r"(?:devapp\.)?"  # the entry, maybe after the app's name (gaffer shows devapp.web.1)


def line(who: str, text: str) -> re.Pattern[str]:
    """A console line: ``HH:MM:SS web.1 | text``, the prefix padded (``who`` is
    ``entry.pid``)."""
    return re.compile(rf"^\d\d:\d\d:\d\d {PREFIX}{re.escape(who)}\s*\| {re.escape(text)}$", re.M)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A Procfile app of two process types, in a directory named ``devapp``."""
    directory = tmp_path / "devapp"
    directory.mkdir()
    (directory / "Procfile").write_text(f"web: {WEB}\nworker: {WORKER}\n")
    return directory


@pytest.fixture
def cli(tmp_path: Path, app: Path) -> Cli:
    """gaffer without a gafferd: dev:start and dev:run run everything themselves."""
    return Cli(None, tmp_path / "gaffer.ini", app)


@pytest.fixture
def started() -> Iterator[list[Reader]]:
    """The gaffer processes a test starts; killed (with their group) if one is left."""
    readers: list[Reader] = []
    yield readers
    for reader in readers:
        if reader.proc.poll() is None:
            family = descendants(reader.pid)
            os.killpg(reader.pid, signal.SIGKILL)
            for process in family:
                try:
                    process.kill()
                except psutil.Error:
                    pass
        reader.wait()


def dev_start(cli: Cli, started: list[Reader], *args: str) -> Reader:
    reader = cli.popen("dev:start", *args, start_new_session=True)
    started.append(reader)
    return reader


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def stop_and_check(reader: Reader, how: str = "SIGINT") -> str:
    """Stop gaffer (a signal to it, or a Ctrl-C to its whole group): it exits 0 within a few
    seconds and no process it started is left. Its output."""
    family = descendants(reader.pid)
    assert family, "gaffer started no process"
    if how == "group SIGINT":
        os.killpg(reader.pid, signal.SIGINT)  # what Ctrl-C on a terminal does
    else:
        reader.proc.send_signal(getattr(signal, how))
    try:
        code = reader.wait(STOP_WITHIN)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"gaffer still runs {STOP_WITHIN}s after {how}:\n{reader.stdout[-2000:]}"
        ) from None
    assert code == 0, (code, reader.stdout[-2000:], reader.stderr[-2000:])
    left = [process for process in family if pid_exists(process.pid)]
    assert not left, f"left behind after {how}: {left}"
    return reader.stdout


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "group SIGINT"])
def test_dev_start_runs_the_procfile_and_stops_everything(
    cli: Cli, started: list[Reader], how: str
) -> None:
    gaffer = dev_start(cli, started)
    gaffer.wait_output(line("web.1", "web on 5000"))
    gaffer.wait_output(line("worker.2", "worker on 5100"))
    gaffer.wait_output(line("worker.2", "tick 3"))
    # the processes really run, with their ports
    ports = {}
    for process in descendants(gaffer.pid):
        try:
            if "-c" in process.cmdline() and process.name().startswith("python"):
                ports[process.pid] = process.environ().get("PORT")
        except psutil.Error:
            continue
    assert sorted(ports.values()) == ["5000", "5100"], ports
    output = stop_and_check(gaffer, how)
    ticks = [
        int(match) for match in re.findall(rf" {PREFIX}worker\.2\s*\| tick (\d+)$", output, re.M)
    ]
    assert ticks == list(range(len(ticks))), "worker lines lost or out of order"
    assert "\x1b" not in output  # not a terminal: no colours
    assert "Traceback" not in gaffer.stderr


def test_dev_start_with_two_web_processes(cli: Cli, started: list[Reader]) -> None:
    gaffer = dev_start(cli, started, "-c", "web=2")
    gaffer.wait_output(line("web.1", "web on 5000"))
    gaffer.wait_output(line("web.2", "web on 5001"))
    gaffer.wait_output(line("worker.3", "worker on 5100"))
    output = stop_and_check(gaffer)
    assert len(re.findall(r"\| web on ", output)) == 2


def test_dev_start_of_one_entry(cli: Cli, started: list[Reader]) -> None:
    gaffer = dev_start(cli, started, "worker")
    gaffer.wait_output(line("worker.1", "worker on 5100"))
    gaffer.wait_output(line("worker.1", "tick 2"))
    output = stop_and_check(gaffer)
    assert "web" not in output


def test_dev_start_from_another_port(cli: Cli, started: list[Reader]) -> None:
    gaffer = dev_start(cli, started, "--port", "7000")
    gaffer.wait_output(line("web.1", "web on 7000"))
    gaffer.wait_output(line("worker.2", "worker on 7100"))
    stop_and_check(gaffer)


def test_dev_start_restarts_an_entry_that_exits(cli: Cli, started: list[Reader], app: Path) -> None:
    (app / "Procfile").write_text(f"once: {PY} -u -c \"print('short life')\"\n")
    gaffer = dev_start(cli, started, "--flapping", "off")  # at once, every time
    wait_until_sync(
        lambda: (
            len(re.findall(rf"^\S+ {PREFIX}once\.\d+\s*\| short life$", gaffer.stdout, re.M)) >= 3
        ),
        timeout=15,
        what="three runs of the entry",
    )
    stop_and_check(gaffer)


def said(text: str) -> re.Pattern[str]:
    """A line of gaffer's own about an entry: ``HH:MM:SS gaffer | devapp.web ...``."""
    return re.compile(rf"^\d\d:\d\d:\d\d gaffer\s*\| {PREFIX}{re.escape(text)}$", re.M)


def exits(output: str, entry: str) -> int:
    return len(re.findall(rf"\| {PREFIX}{entry}\.\d+ exited with status", output))


def test_dev_start_holds_back_an_entry_that_cannot_start(
    cli: Cli, started: list[Reader], app: Path
) -> None:
    """An entry whose command is not found does not respawn in a storm (the original's
    issue #19): two exits within a second stop it for 7 s; the other entries run on."""
    (app / "Procfile").write_text(f"web: {WEB}\nbad: /nonexistent/command\n")
    gaffer = dev_start(cli, started)
    gaffer.wait_output(line("web.1", "web on 5000"))
    output = gaffer.wait_output(said("bad is flapping: retry in 7.0s"))
    flapped = time.monotonic()
    assert exits(output, "bad") == 2, output
    assert "not found" in output  # the shell's message, shown as the entry's output
    web = [p for p in descendants(gaffer.pid) if "web on" in " ".join(p.cmdline())]
    assert web and all(p.is_running() for p in web)
    output = stop_and_check(gaffer)
    if time.monotonic() - flapped < 6:  # not retried before the 7 s are up
        assert exits(output, "bad") == 2, output
    assert "flapping" not in gaffer.stderr  # said once, on the console, not logged again


def test_dev_start_gives_up_on_an_entry_as_told(cli: Cli, started: list[Reader], app: Path) -> None:
    """--flapping 'attempts window retry_in max_retry': retried once 0.2 s later, then
    left stopped; the engine's warnings show as console lines, not bare log records."""
    (app / "Procfile").write_text(f"web: {WEB}\ncrash: exit 3\n")
    gaffer = dev_start(cli, started, "--flapping", "2 1 0.2 1")
    output = gaffer.wait_output(
        said("crash gave up (fatal): crash loop (flapping: max_retry reached)")
    )
    assert said("crash is flapping: retry in 0.2s").search(output), output
    # twice, paused, twice more (a pause starts a new history), then given up
    assert exits(output, "crash") == 4, output
    assert "max_retry reached" in output and "is flapping: gave up" not in output
    gaffer.wait_output(line("web.1", "web on 5000"))
    stop_and_check(gaffer)
    assert gaffer.stderr == "", gaffer.stderr


def test_dev_start_errors(cli: Cli, app: Path, tmp_path: Path) -> None:
    unknown = cli("dev:start", "nosuchentry")
    assert unknown.returncode == 1, unknown
    assert "nosuchentry" in unknown.stderr
    (app / "Procfile").write_text("web: true\nnot a procfile line\n")
    broken = cli("dev:start")
    assert broken.returncode == 1, broken
    assert re.search(r"Procfile:2\b", broken.stderr), broken
    assert "Traceback" not in broken.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = cli("dev:start", cwd=empty)
    assert missing.returncode == 2, missing
    assert "Procfile" in missing.stderr
    (app / "Procfile").write_text("web: true\n")
    for spec in ("2 1", "0 1 7 5", "two 1 7 5"):
        bad = cli("dev:start", "--flapping", spec)
        assert bad.returncode == 2, (spec, bad)
        assert f"--flapping {spec!r}: flapping" in bad.stderr, bad


def test_dev_run_prints_the_output(cli: Cli) -> None:
    result = cli("dev:run", "echo", "hello", timeout=30)
    assert result.returncode == 0, result
    assert re.search(r"^\d\d:\d\d:\d\d (?:run\.)?echo\.1\s*\| hello$", result.stdout, re.M), result


@pytest.mark.parametrize("code", [1, 3, 42])
def test_dev_run_exits_with_the_command_s_code(cli: Cli, code: int) -> None:
    result = cli("dev:run", "sh", "-c", f"exit {code}", timeout=30)
    assert result.returncode == code, result


def test_dev_run_has_the_env_of_the_app(cli: Cli, app: Path) -> None:
    (app / ".env").write_text("GREETING=from dotenv\n")
    result = cli("dev:run", "sh", "-c", 'echo "$GREETING in $PWD"', timeout=30)
    assert result.returncode == 0, result
    assert f"from dotenv in {app}" in result.stdout


def test_dev_run_several_times(cli: Cli) -> None:
    result = cli("dev:run", "-n", "3", "echo", "again", timeout=30)
    assert result.returncode == 0, result
    assert len(re.findall(r"\| again$", result.stdout, re.M)) == 3


def test_dev_run_without_a_command(cli: Cli) -> None:
    result = cli("dev:run")
    assert result.returncode == 2, result
