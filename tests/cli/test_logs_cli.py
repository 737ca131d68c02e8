"""``gaffer logs`` (what the jobs print), ``gaffer events`` (each event once) and
``--wait``, against a real gafferd and real processes."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.cli_helpers import (
    Cli,
    Daemon,
    LongLived,
    Reader,
    check_no_leftovers,
    child_job,
    gaffer_env,
    run_on_pty,
    start_daemon,
)
from tests.gafferd.harness import Gafferd
from tests.helpers import wait_until_sync

pytestmark = pytest.mark.timeout(90)

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}"
TIMESTAMPED = re.compile(r"^\d\d:\d\d:\d\d ")


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    yield
    check_no_leftovers()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with LongLived(start_daemon(tmp_path_factory.mktemp("logs"), tcp=False)) as running:
        yield running


@pytest.fixture
def cli(daemon: Daemon, tmp_path: Path) -> Iterator[Cli]:
    work = tmp_path / "work"
    work.mkdir()
    yield Cli(daemon.unix_url, tmp_path / "config" / "gaffer.ini", work)
    for job in daemon.jobs():
        daemon.unload(job)


def all_lines(daemon: Daemon, job: str) -> list[dict]:
    return daemon.ok("GET", "/jobs/" + job.replace(".", "/", 1) + "/logs?lines=all")["lines"]


def talking(daemon: Daemon, name: str = "talk", count: int = 20, session: str = "default") -> str:
    """A job of 3 processes printing ``count`` lines each, interleaved, stdout and stderr."""
    job = daemon.load(child_job(name, "lines", count, 5, "both", numprocesses=3), session)
    wait_until_sync(
        lambda: len(all_lines(daemon, job)) == 3 * count, what=f"{3 * count} lines of {job}"
    )
    return job


# -- logs ------------------------------------------------------------------------------------------
def test_logs_n_5_shows_exactly_the_last_5_lines_each_with_its_process(daemon, cli):
    job = talking(daemon)
    last = all_lines(daemon, job)[-5:]
    result = cli.ok("logs", "talk", "-n", "5")
    assert result.lines == [f"talk.{line['pid']} | {line['line']}" for line in last]
    assert result.stderr == ""
    # the same as JSON, and of one stream
    as_json = cli.ok("logs", "default.talk", "-n", "5", "--json")
    assert [json.loads(line) for line in as_json.lines] == last
    stderr = [line for line in all_lines(daemon, job) if line["stream"] == "stderr"][-3:]
    result = cli.ok("logs", "talk", "-n", "3", "--stream", "stderr")
    assert result.lines == [f"talk.{line['pid']} | {line['line']}" for line in stderr]
    # with the time each line was read
    result = cli.ok("logs", "talk", "-n", "2", "--timestamps")
    assert all(re.match(rf"{STAMP} talk\.\d \| line \d+ of \d+$", line) for line in result.lines)
    assert len(result.lines) == 2
    assert cli.ok("logs", "talk", "-n", "0").stdout == ""


def test_logs_without_a_job_interleaves_every_job(daemon, cli):
    talking(daemon, "one", 4)
    talking(daemon, "two", 4, session="other")
    every = daemon.ok("GET", "/logs?lines=all")["lines"]
    result = cli.ok("logs", "-n", "100")
    # names padded to one width: other.two.N is the longest
    width = len("other.two.4")
    assert result.lines == [
        f"{(line['job'].removeprefix('default.') + '.' + str(line['pid'])).ljust(width)} | "
        f"{line['line']}"
        for line in every
    ]
    assert {line.split(".")[0] for line in result.lines} == {"one", "other"}
    session = cli.ok("--app", "other", "logs", "-n", "100")
    assert len(session.lines) == 12
    assert all(line.startswith("other.two.") for line in session.lines)


def test_logs_follow_then_ctrl_c(daemon, cli):
    job = daemon.load(child_job("echo", "echo", redirect_input=True))
    [pid] = daemon.wait_pids(job, 1)
    daemon.ok("POST", f"/streams/{pid}/stdin", "before\n")
    wait_until_sync(lambda: len(all_lines(daemon, job)) == 1)
    with cli.popen("logs", "echo", "-f", "-n", "1") as reader:
        reader.wait_output(f"echo.{pid} | before\n")
        daemon.ok("POST", f"/streams/{pid}/stdin", "after\n")
        out = reader.wait_output(f"echo.{pid} | after\n")
        assert out == f"echo.{pid} | before\necho.{pid} | after\n"
        reader.proc.send_signal(2)
        assert reader.wait() == 130
    assert "Traceback" not in reader.stderr


def test_logs_follow_ends_when_the_job_is_unloaded(daemon, cli):
    job = daemon.load(child_job("short", "lines", 1, 0, "out"))
    wait_until_sync(lambda: len(all_lines(daemon, job)) == 1)
    with cli.popen("logs", "short", "-f") as reader:
        reader.wait_output("| line 0 of")  # it follows
        daemon.unload(job)
        assert reader.wait() == 0
    assert reader.stderr == ""


def test_an_unknown_job_fails_as_every_command_does(cli):
    logs = cli("logs", "nosuch")
    ps = cli("ps", "nosuch")
    assert (logs.returncode, ps.returncode) == (1, 1)
    assert logs.stderr == ps.stderr == "gaffer: no job 'nosuch' in session 'default'\n"
    follow = cli("logs", "nosuch", "-f")
    assert (follow.returncode, follow.stderr) == (1, ps.stderr)
    usage = cli("logs", "-n", "-1")
    assert usage.returncode == 2 and "-n must be >= 0" in usage.stderr


def test_logs_colour_each_process_on_a_terminal(daemon, cli):
    talking(daemon, "tinted", 2)
    env = gaffer_env(cli.config)
    shown = run_on_pty(cli.argv(["logs", "tinted", "-n", "6"]), env, cli.cwd)
    colours = set(re.findall(r"\x1b\[(\d+)mtinted\.(\d+)", shown))
    assert len({pid for _, pid in colours}) == 3
    assert len({code for code, _ in colours}) == 3  # one colour per process
    plain = run_on_pty(cli.argv(["logs", "tinted", "--no-color"]), env, cli.cwd)
    assert "\x1b" not in plain and re.search(r"^tinted\.\d+ \| line", plain, re.M)


# -- events ----------------------------------------------------------------------------------------
def scale_until_exit(daemon: Daemon, job_id: str, reader: Reader, timeout: float = 20) -> None:
    """Scale ``job_id`` up, again and again, until ``reader`` (gaffer events -n N) exits."""
    path = "/jobs/" + job_id.replace(".", "/", 1) + "/numprocesses"

    def done() -> bool:
        if reader.proc.poll() is not None:
            return True
        daemon.ok("POST", path, {"scale": "+1"})
        try:
            reader.proc.wait(0.3)
        except subprocess.TimeoutExpired:
            return False
        return True

    wait_until_sync(done, timeout=timeout, what="gaffer events to see its events")


def test_events_show_each_event_once(daemon, cli):
    job = daemon.load(child_job("evjob", "sleep"))
    daemon.wait_pids(job, 1)
    with cli.popen("events", "-n", "12") as reader:
        scale_until_exit(daemon, job, reader)
        assert reader.wait() == 0
    lines = reader.stdout.splitlines()
    assert len(lines) == 12, reader.stdout
    for line in lines:
        assert TIMESTAMPED.match(line), line
        assert "job.default" not in line and "proc." not in line, line  # no twin shown
    kinds = [line.split()[2] for line in lines]
    assert "update" in kinds and "spawn" in kinds
    spawns = [line for line in lines if line.split()[2] == "spawn"]
    assert len(spawns) == len({line.split()[1] for line in spawns})  # each process once
    assert reader.stderr == ""


def test_events_of_a_job_and_all_twins_when_asked(daemon, cli):
    job = daemon.load(child_job("evtwo", "sleep"))
    daemon.wait_pids(job, 1)
    with cli.popen("events", "--ps", "evtwo", "-n", "4") as reader:
        scale_until_exit(daemon, job, reader)
        assert reader.wait() == 0
    lines = reader.stdout.splitlines()
    assert len(lines) == 4
    assert all(re.search(r"default\.evtwo(\.\d+)?\s+\w+", line) for line in lines), lines
    with cli.popen("events", "--all", "--json", "-n", "6") as reader:
        scale_until_exit(daemon, job, reader)
        assert reader.wait() == 0
    names = [json.loads(line)["event"] for line in reader.stdout.splitlines()]
    assert len(names) == 6
    assert any(name.startswith("job.default.evtwo.") for name in names), names


def test_events_of_a_pattern(daemon, cli):
    job = daemon.load(child_job("evpat", "sleep"))
    daemon.wait_pids(job, 1)
    with cli.popen("events", "job.default.evpat.spawn", "-n", "2", "--json") as reader:
        scale_until_exit(daemon, job, reader)
        assert reader.wait() == 0
    events = [json.loads(line) for line in reader.stdout.splitlines()]
    assert [event["event"] for event in events] == ["job.default.evpat.spawn"] * 2


def test_events_interrupted(daemon, cli):
    with cli.popen("events") as reader:
        daemon.load(child_job("evint", "sleep"))

        def following() -> bool:
            daemon.ok("POST", "/jobs/default/evint/numprocesses", {"scale": "+1"})
            return "evint" in reader.stdout

        wait_until_sync(following, timeout=20, interval=0.3, what="gaffer events following")
        reader.proc.send_signal(2)
        assert reader.wait() == 130
    assert "Traceback" not in reader.stderr


# -- --wait ----------------------------------------------------------------------------------------
def test_wait_lets_a_command_follow_a_gafferd_just_started(tmp_path):
    (tmp_path / "d").mkdir()
    gafferd = Gafferd(tmp_path / "d", "")
    cli = Cli(f"unix:{gafferd.socket}", tmp_path / "gaffer.ini", tmp_path)
    with cli.popen("--wait", "ps") as reader:
        gafferd.start(wait=False)  # started after the command: no race either way
        try:
            assert reader.wait(30) == 0, reader.stderr
            assert reader.stdout == "no job\n"
        finally:
            assert gafferd.stop() == 0
    quick = cli("ps")  # without --wait, nobody answers: exit 1 at once
    assert quick.returncode == 1 and "cannot reach gafferd" in quick.stderr


# -- the Python client ----------------------------------------------------------------------------
def test_the_client_reads_and_follows_logs(daemon):
    from gaffer.client import Server

    job = talking(daemon, "viaclient", 2)
    every = all_lines(daemon, job)
    server = Server(daemon.unix_url)
    try:
        assert server.job("viaclient").logs(3) == every[-3:]
        assert server.job("viaclient").logs(None, "stderr") == [
            line for line in every if line["stream"] == "stderr"
        ]
        assert server.logs(2) == daemon.ok("GET", "/logs?lines=2")["lines"]
        followed = server.job("viaclient").follow_logs(2)
        assert [next(followed), next(followed)] == every[-2:]
        followed.close()
    finally:
        server.close()
