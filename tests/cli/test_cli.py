"""The ``gaffer`` command against a real gafferd: every command, on the unix socket (and a
few on a TCP port), its output, its exit code (0 success, 1 API error, 2 usage), --json,
colours, and bad input.

``gaffer`` always runs as a real subprocess (``python -m gaffer``) with its own
GAFFER_CONFIG, in a directory of its own. Most tests share one gafferd (module scope) and
leave it empty (every job is unloaded after each test); the accounts tests share another
one that requires keys.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import gaffer
from gaffer.cli.commands import COMMANDS, load_commands
from tests.cli.cli_helpers import (
    Cli,
    Daemon,
    LongLived,
    Reader,
    check_no_leftovers,
    child_job,
    environ_of,
    gaffer_env,
    parse_table,
    run_on_pty,
    start_daemon,
)
from tests.gafferd.harness import Gafferd, free_port
from tests.helpers import CHILD, read_file, wait_until_sync

pytestmark = pytest.mark.timeout(90)

PY = sys.executable
PS_HEADERS = [
    "JOB", "PID", "OS PID", "STATE", "UPTIME", "RESTARTS", "LAST EXIT", "CPU", "MEM", "RSS",
]  # fmt: skip
STATS_HEADERS = ["JOB", "PID", "CPU", "MEM", "RSS", "VMS", "CPU TIME", "UPTIME", "CHILDREN"]
TRANSPORTS = ["unix", "tcp"]
#: the commands of the contract (reference section 7.1), plus events, stats and top
CONTRACT_COMMANDS = [
    "ps", "ps:info", "ps:scale", "ps:start", "ps:stop", "ps:kill", "load", "unload", "reload",
    "run", "logs", "events", "recv", "send", "apps", "login", "users", "user", "user:add",
    "user:del", "user:setpassword", "user:setkey", "keys", "key", "key:create", "key:delete",
    "dev:start", "dev:run", "export", "stats", "top", "daemon:restart", "daemon:state",
]  # fmt: skip


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    """tests/conftest.py's check, but the module's gafferds (and their jobs) live on."""
    yield
    check_no_leftovers()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One gafferd for the module, on a unix socket and a loopback TCP port."""
    with LongLived(start_daemon(tmp_path_factory.mktemp("cli"), tcp=True)) as running:
        yield running


@pytest.fixture
def cli(daemon: Daemon, tmp_path: Path) -> Iterator[Cli]:
    """``gaffer -g unix:<socket>`` run in an empty directory; every job is unloaded after
    the test."""
    work = tmp_path / "work"
    work.mkdir()
    yield Cli(daemon.unix_url, tmp_path / "config" / "gaffer.ini", work)
    for job in daemon.jobs():
        daemon.unload(job)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def any_cli(cli: Cli, daemon: Daemon, transport: str) -> Cli:
    """The shared gafferd over its unix socket, then over TCP."""
    return cli.with_(url=daemon.url(transport))


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A gafferd with require_key = true and an admin user admin/pw (its key kept)."""
    directory = tmp_path_factory.mktemp("cli-auth")
    with LongLived(start_daemon(directory, require_key=True, tcp=False)) as running:
        yield running


@pytest.fixture
def admin(auth: Daemon, tmp_path: Path) -> Cli:
    """``gaffer`` with the admin key of the require_key gafferd."""
    work = tmp_path / "work"
    work.mkdir()
    return Cli(auth.unix_url, tmp_path / "admin.ini", work, key=auth.admin_key)


def make_procfile(directory: Path, entries: dict[str, str], env: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Procfile").write_text(
        "".join(f"{name}: {command}\n" for name, command in entries.items())
    )
    if env is not None:
        (directory / ".env").write_text(env)
    return directory


def child_command(*mode: str) -> str:
    return " ".join([PY, "-u", str(CHILD), *mode])


def pid_of(result_stdout: str) -> int:
    match = re.search(r"process (\d+) started", result_stdout)
    assert match, result_stdout
    return int(match.group(1))


def wait_text(path: Path, text: str, timeout: float = 10) -> None:
    wait_until_sync(
        lambda: read_file(path) == text,
        timeout=timeout,
        what=f"{text!r} in {path} (now {read_file(path)!r})",
    )


def sync_stream(daemon: Daemon, reader: Reader, pid: int) -> None:
    """Write marker lines to ``pid``'s stdin until ``reader`` (a ``gaffer recv``) shows one:
    from then on it is surely following the output."""
    counter = iter(range(10_000))

    def seen() -> bool:
        if "marker-" in reader.stdout:
            return True
        assert reader.proc.poll() is None, (reader.stdout, reader.stderr)
        daemon.ok("POST", f"/streams/{pid}/stdin", f"marker-{next(counter)}\n")
        return False

    wait_until_sync(seen, timeout=20, interval=0.2, what="gaffer recv following the output")


def no_traceback(result: Any) -> None:
    assert "Traceback" not in result.stderr, result
    assert "Traceback" not in result.stdout, result


# -- --version, --help -----------------------------------------------------------------------------


def test_version(cli: Cli) -> None:
    result = cli.ok("--version", url=False)
    assert result.stdout.strip() == f"gaffer {gaffer.__version__}"


def test_every_command_of_the_contract_exists() -> None:
    load_commands()
    missing = [name for name in CONTRACT_COMMANDS if name not in COMMANDS]
    assert not missing


def test_help_lists_every_command_and_the_global_options(cli: Cli) -> None:
    result = cli.ok("--help", url=False)
    assert result.stdout.startswith("usage: gaffer")
    for name in CONTRACT_COMMANDS:
        assert re.search(rf"^\s+{re.escape(name)}\s", result.stdout, re.M), name
    for option in ("-g", "--gafferd-http-address", "--api-key", "--procfile", "--env", "--json"):
        assert option in result.stdout


@pytest.mark.parametrize("name", CONTRACT_COMMANDS)
def test_help_of_every_command(cli: Cli, name: str) -> None:
    load_commands()
    command = COMMANDS[name]
    result = cli(name, "--help", url=False)
    assert result.returncode == 0, result
    assert result.stdout.startswith(f"usage: gaffer {name}"), result
    assert command.summary and command.summary in " ".join(result.stdout.split())
    for names, kwargs in command.arguments:
        for option in names:
            if option.startswith("-"):
                assert option in result.stdout, (name, option)
            else:
                assert (kwargs.get("metavar") or option) in result.stdout, (name, option)
    assert result.stderr == ""


# -- ps --------------------------------------------------------------------------------------------


def test_ps_table(daemon: Daemon, any_cli: Cli) -> None:
    job = daemon.load(child_job("pstable", "sleep", numprocesses=2, start_secs=0.2))
    pids = daemon.wait_pids(job, 2)
    daemon.wait_state(job, "running")
    result = any_cli.ok("ps")
    headers, rows = parse_table(result.stdout)
    assert headers == PS_HEADERS
    mine = [row for row in rows if row["JOB"] == "default.pstable"]
    assert sorted(int(row["PID"]) for row in mine) == sorted(pids)
    for row in mine:
        process = daemon.process(int(row["PID"]))
        assert int(row["OS PID"]) == process["os_pid"]
        assert row["STATE"] == "running"
        assert (row["RESTARTS"], row["LAST EXIT"]) == ("0", "-")
        assert re.fullmatch(r"\d+[smhd](\d+[smh])?", row["UPTIME"]), row
        assert re.fullmatch(r"\d+\.\d%", row["CPU"]), row
        assert re.fullmatch(r"\d+\.\d%", row["MEM"]), row
        assert re.fullmatch(r"\d+(\.\d)?[BKMG]", row["RSS"]), row
    assert "\x1b" not in result.stdout  # not a terminal: no colours


def test_ps_json_is_a_list_of_dicts_with_numbers(daemon: Daemon, cli: Cli) -> None:
    job = daemon.load(child_job("psjson", "sleep", numprocesses=2, start_secs=0.2))
    pids = daemon.wait_pids(job, 2)
    daemon.wait_state(job, "running")
    daemon.load(child_job("psjson-idle", "sleep"), start=False)
    rows = json.loads(cli.ok("ps", "--json").stdout)
    assert isinstance(rows, list)
    mine = [row for row in rows if row["job"] == "default.psjson"]
    assert sorted(row["pid"] for row in mine) == sorted(pids)
    for row in mine:
        assert row["state"] == "running"
        assert row["os_pid"] == daemon.process(row["pid"])["os_pid"]
        for key in ("pid", "os_pid", "rss"):
            assert isinstance(row[key], int) and row[key] > 0, (key, row)
        for key in ("cpu", "mem", "create_time"):
            assert isinstance(row[key], int | float) and not isinstance(row[key], bool), row
        assert abs(time.time() - row["create_time"]) < 300
        assert (row["restarts"], row["last_exit"]) == (0, None)
    [idle] = [row for row in rows if row["job"] == "default.psjson-idle"]
    assert idle["pid"] is None and idle["state"] == "stopped"
    # the global --json, before the command, does the same
    assert isinstance(json.loads(cli.ok("--json", "ps").stdout), list)


def test_ps_of_named_jobs_and_of_an_app(daemon: Daemon, cli: Cli) -> None:
    daemon.wait_pids(daemon.load(child_job("psnamed", "sleep")), 1)
    daemon.wait_pids(daemon.load(child_job("psother", "sleep")), 1)
    daemon.wait_pids(daemon.load(child_job("inapp", "sleep"), session="psapp"), 1)
    only = json.loads(cli.ok("ps", "psnamed", "--json").stdout)
    assert {row["job"] for row in only} == {"default.psnamed"}
    of_app = json.loads(cli.ok("--app", "psapp", "ps", "--json").stdout)
    assert {row["job"] for row in of_app} == {"psapp.inapp"}
    everything = json.loads(cli.ok("ps", "--json").stdout)
    assert {"default.psnamed", "default.psother", "psapp.inapp"} <= {
        row["job"] for row in everything
    }


def test_ps_shows_restarts_the_last_exit_and_when_a_job_retries(daemon: Daemon, cli: Cli) -> None:
    # dies after 0.3 s, every time: the flapping policy pauses it for 30 s after 2
    job = daemon.load(child_job("psretry", "crash", 300, start_secs=0.1, flapping="2 60 30 5"))
    info = daemon.wait_state(job, "backoff")
    assert info["restarts"] == 1 and info["last_exit"]["exit_status"] == 1, info
    assert info["next_restart_at"] > time.time() + 20
    rows = json.loads(cli.ok("ps", "psretry", "--json").stdout)
    assert [(row["pid"], row["state"], row["restarts"]) for row in rows] == [(None, "backoff", 1)]
    _, table = parse_table(cli.ok("ps", "psretry").stdout)
    [row] = table
    assert re.fullmatch(r"backoff \(retry in (2\d|30)s\)", row["STATE"]), row
    assert (row["PID"], row["RESTARTS"]) == ("-", "1")
    assert re.fullmatch(r"exit 1, \d+s ago", row["LAST EXIT"]), row


def test_ps_shows_why_a_job_cannot_spawn(daemon: Daemon, cli: Cli) -> None:
    daemon.load({"name": "psmissing", "cmd": "/no/such/program"})
    info = daemon.wait_state("default.psmissing", "backoff")
    assert "/no/such/program" in info["error"], info
    lines = cli.ok("ps", "psmissing").stdout.splitlines()
    assert any(line.startswith("default.psmissing: ") and "not found" in line for line in lines), (
        lines
    )
    [row] = json.loads(cli.ok("ps", "psmissing", "--json").stdout)
    assert row["error"] == info["error"]


def test_ps_shows_what_a_job_waits_for(daemon: Daemon, cli: Cli) -> None:
    daemon.load({"name": "pswaiter", "cmd": "sleep 60", "requires": ["notyet"]})
    daemon.wait_state("default.pswaiter", "waiting")
    _, table = parse_table(cli.ok("ps", "pswaiter").stdout)
    assert [row["STATE"] for row in table] == ["waiting for default.notyet (not loaded)"]
    [row] = json.loads(cli.ok("ps", "pswaiter", "--json").stdout)
    assert row["waiting_for"] == ["default.notyet (not loaded)"]


def test_ps_of_an_unknown_job_fails_like_other_commands(daemon: Daemon, cli: Cli) -> None:
    ps = cli("ps", "nosuch")
    info = cli("ps:info", "nosuch")
    assert (ps.returncode, info.returncode) == (1, 1)
    assert ps.stderr == info.stderr and "nosuch" in ps.stderr, (ps.stderr, info.stderr)


def test_ps_without_jobs(daemon: Daemon, cli: Cli) -> None:
    assert daemon.jobs() == []
    assert cli.ok("ps").stdout.strip() == "no job"
    assert json.loads(cli.ok("ps", "--json").stdout) == []


# -- ps:info ---------------------------------------------------------------------------------------


def test_ps_info_of_a_pid(daemon: Daemon, cli: Cli) -> None:
    job = daemon.load(child_job("infopid", "sleep"))
    [pid] = daemon.wait_pids(job, 1)
    os_pid = daemon.process(pid)["os_pid"]
    text = cli.ok("ps:info", str(pid)).stdout
    pairs = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in text.splitlines())
    assert pairs["pid"] == str(pid)
    assert pairs["name"] == "default.infopid"
    assert pairs["os_pid"] == str(os_pid)
    info = json.loads(cli.ok("ps:info", str(pid), "--json").stdout)
    assert info["pid"] == pid and info["os_pid"] == os_pid
    assert info["name"] == "default.infopid"
    assert info["args"][-1] == "sleep"


def test_ps_info_of_a_job(daemon: Daemon, cli: Cli) -> None:
    job = daemon.load(child_job("infojob", "sleep", numprocesses=2))
    pids = daemon.wait_pids(job, 2)
    text = cli.ok("ps:info", "infojob").stdout
    assert re.search(r"^name\s+default\.infojob$", text, re.M), text
    assert re.search(r"^active\s+True$", text, re.M), text
    assert re.search(r"^running\s+2$", text, re.M), text
    info = json.loads(cli.ok("ps:info", "default.infojob", "--json").stdout)
    assert info["name"] == "default.infojob"
    assert info["active"] is True and info["running"] == 2 and info["numprocesses"] == 2
    assert sorted(info["processes"]) == sorted(pids)
    assert info["config"]["args"][-1] == "sleep"


def test_ps_info_of_unknown_targets(cli: Cli) -> None:
    for target in ("nosuchjob", "99999"):
        result = cli("ps:info", target)
        assert result.returncode == 1, result
        assert result.stdout == ""
        assert result.stderr.startswith("gaffer: ") and len(result.stderr.splitlines()) == 1
        no_traceback(result)
    assert "nosuchjob" in cli("ps:info", "nosuchjob").stderr


# -- ps:scale --------------------------------------------------------------------------------------


def test_ps_scale_sets_adds_and_removes(daemon: Daemon, any_cli: Cli) -> None:
    daemon.load(child_job("web", "sleep"), session="scale")
    daemon.load(child_job("worker", "sleep"), session="scale")
    daemon.load(child_job("api", "sleep", numprocesses=3), session="scale")
    daemon.wait_pids("scale.api", 3)
    result = any_cli.ok("--app", "scale", "ps:scale", "web=3", "worker+2", "api-1")
    assert result.lines == [
        "Scaling scale.web processes... done, now running 3",
        "Scaling scale.worker processes... done, now running 3",
        "Scaling scale.api processes... done, now running 2",
    ]
    daemon.wait_pids("scale.web", 3)
    daemon.wait_pids("scale.worker", 3)
    daemon.wait_pids("scale.api", 2)
    assert daemon.info("scale.web")["numprocesses"] == 3
    # --json: the new numbers; session.job names work without --app
    result = any_cli.ok("ps:scale", "scale.web-2", "scale.api=4", "--json")
    assert json.loads(result.stdout) == {"scale.web": 1, "scale.api": 4}
    daemon.wait_pids("scale.web", 1)
    daemon.wait_pids("scale.api", 4)


def test_ps_scale_errors(daemon: Daemon, cli: Cli) -> None:
    daemon.load(child_job("scalebad", "sleep"), start=False)
    for spec in ("scalebad", "scalebad=x", "=3", "scalebad*2"):
        result = cli("ps:scale", spec)
        assert result.returncode == 2, result
        assert "bad scale" in result.stderr
    assert daemon.info("default.scalebad")["numprocesses"] == 1
    unknown = cli("ps:scale", "nosuchjob=2")
    assert unknown.returncode == 1, unknown
    assert "nosuchjob" in unknown.stderr
    no_traceback(unknown)
    huge = cli("ps:scale", "scalebad=1000000")  # gafferd's process_limit: 10,000
    assert huge.returncode == 1, huge
    assert "over its limit of 10000 (process_limit)" in huge.stderr, huge
    no_traceback(huge)
    assert daemon.info("default.scalebad")["numprocesses"] == 1


# -- ps:start, ps:stop -----------------------------------------------------------------------------


def test_ps_start_and_stop_a_job(daemon: Daemon, cli: Cli) -> None:
    job = daemon.load(child_job("startstop", "sleep", numprocesses=2), start=False)
    assert daemon.pids(job) == []
    assert cli.ok("ps:start", "startstop").stdout.strip() == "default.startstop started"
    daemon.wait_pids(job, 2)
    assert daemon.info(job)["active"] is True
    assert cli.ok("ps:stop", "startstop").stdout.strip() == "default.startstop stopped"
    assert daemon.pids(job) == []  # removed at once
    assert daemon.info(job)["active"] is False
    assert daemon.has_job(job)  # stopped, still loaded


def test_ps_stop_a_pid_replaces_it(daemon: Daemon, cli: Cli) -> None:
    job = daemon.load(child_job("stoppid", "sleep"))
    [pid] = daemon.wait_pids(job, 1)
    os_pid = daemon.process(pid)["os_pid"]
    assert cli.ok("ps:stop", str(pid)).stdout.strip() == f"process {pid} stopped"
    [new] = daemon.wait_pids(job, 1)
    assert new != pid
    assert not daemon.process_exists(pid)
    wait_until_sync(lambda: not psutil.pid_exists(os_pid), what=f"os pid {os_pid} gone")


def test_ps_start_and_stop_every_job_of_an_app(daemon: Daemon, cli: Cli) -> None:
    for name in ("one", "two"):
        daemon.load(child_job(name, "sleep"), session="whole", start=False)
    refused = cli("--app", "whole", "ps:start")
    assert refused.returncode == 2, refused
    assert "--yes" in refused.stderr
    assert daemon.pids("whole.one") == []
    started = cli.ok("--app", "whole", "ps:start", "--yes")
    assert sorted(started.lines) == ["whole.one started", "whole.two started"]
    daemon.wait_pids("whole.one", 1)
    daemon.wait_pids("whole.two", 1)
    refused = cli("--app", "whole", "ps:stop")
    assert refused.returncode == 2, refused
    stopped = cli.ok("--app", "whole", "ps:stop", "--no-input")
    assert sorted(stopped.lines) == ["whole.one stopped", "whole.two stopped"]
    assert daemon.pids("whole.one") == [] and daemon.pids("whole.two") == []


def test_ps_start_of_unknown_job(cli: Cli) -> None:
    result = cli("ps:start", "nosuchjob")
    assert result.returncode == 1, result
    assert "nosuchjob" in result.stderr
    no_traceback(result)


# -- ps:kill ---------------------------------------------------------------------------------------


def test_ps_kill_a_job_scenario_9(daemon: Daemon, cli: Cli, tmp_path: Path) -> None:
    """Reference scenario 9: HUP to the job, then stop: STARTHUPQUITSTOP."""
    path = tmp_path / "dummy.txt"
    job = daemon.load(child_job("dummy", "dummy", path))
    daemon.wait_pids(job, 1)
    wait_text(path, "START")
    assert cli.ok("ps:kill", "dummy", "HUP").stdout.strip() == "signal HUP sent to dummy"
    wait_text(path, "STARTHUP")
    cli.ok("ps:stop", "dummy")
    wait_text(path, "STARTHUPQUITSTOP")


def test_ps_kill_a_pid_with_names_and_numbers(daemon: Daemon, cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "dummy.txt"
    job = daemon.load(child_job("dummypid", "dummy", path))
    [pid] = daemon.wait_pids(job, 1)
    wait_text(path, "START")
    cli.ok("ps:kill", str(pid), "SIGHUP")
    wait_text(path, "STARTHUP")
    cli.ok("ps:kill", str(pid), "1")  # SIGHUP
    wait_text(path, "STARTHUPHUP")
    cli.ok("ps:kill", str(pid), "term")  # it exits (and is replaced: START again)
    wait_until_sync(lambda: read_file(path).startswith("STARTHUPHUPQUITSTOP"), what=read_file(path))


def test_ps_kill_errors(daemon: Daemon, cli: Cli) -> None:
    daemon.wait_pids(daemon.load(child_job("killbad", "sleep")), 1)
    for args in (("killbad", "NOSUCHSIGNAL"), ("nosuchjob", "HUP"), ("99999", "HUP")):
        result = cli("ps:kill", *args)
        assert result.returncode == 1, result
        assert result.stderr.startswith("gaffer: "), result
        no_traceback(result)
    missing = cli("ps:kill", "killbad")
    assert missing.returncode == 2, missing


# -- load ------------------------------------------------------------------------------------------


def test_load_a_json_file_with_one_job(daemon: Daemon, any_cli: Cli) -> None:
    path = any_cli.cwd / "job.json"
    path.write_text(json.dumps(child_job("fromjson", "sleep", numprocesses=2)))
    result = any_cli.ok("load", str(path))
    assert result.stdout.strip() == "default.fromjson loaded"
    daemon.wait_pids("default.fromjson", 2)
    again = any_cli("load", str(path))
    assert again.returncode == 1, again
    assert "default.fromjson is already loaded" in again.stderr
    no_traceback(again)


def test_load_of_a_program_that_does_not_exist_fails_with_the_reason(
    daemon: Daemon, cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "ghost.json"
    path.write_text(json.dumps({"name": "ghost", "cmd": "/no/such/program --flag"}))
    result = cli("load", str(path))
    assert result.returncode == 1, result
    assert "default.ghost cannot start: cmd: program '/no/such/program' not found" in (
        result.stderr
    ), result
    info = daemon.info("default.ghost")
    assert info["state"] in ("backoff", "fatal") and "not found" in info["error"]


def test_load_jobs_of_a_json_document(daemon: Daemon, cli: Cli) -> None:
    path = cli.cwd / "jobs.json"
    jobs = [
        child_job("docone", "sleep"),
        child_job("otherapp.doctwo", "sleep"),
        {**child_job("docthree", "sleep"), "start": True},
    ]
    path.write_text(json.dumps({"jobs": jobs}))
    result = cli.ok("load", "--nostart", "jobs.json")
    assert result.lines == [
        "default.docone loaded (not started)",
        "otherapp.doctwo loaded (not started)",
        "default.docthree loaded",  # its own "start" wins over --nostart
    ]
    assert daemon.pids("default.docone") == []
    assert daemon.pids("otherapp.doctwo") == []
    daemon.wait_pids("default.docthree", 1)
    assert "otherapp" in daemon.sessions()


def test_load_from_stdin(daemon: Daemon, cli: Cli) -> None:
    document = json.dumps(child_job("fromstdin", "sleep"))
    result = cli.ok("load", "-", "--json", input=document)
    assert json.loads(result.stdout) == {"loaded": ["default.fromstdin"], "failed": 0}
    daemon.wait_pids("default.fromstdin", 1)


def test_load_a_procfile(daemon: Daemon, any_cli: Cli, tmp_path: Path) -> None:
    app = make_procfile(
        tmp_path / "procapp",
        {"web": child_command("env", "PORT"), "worker": child_command("env", "PORT")},
    )
    result = any_cli.ok("load", "-c", "web=2", cwd=app)
    assert result.lines == ["procapp.web loaded", "procapp.worker loaded"]
    assert daemon.jobs("procapp") == ["procapp.web", "procapp.worker"]
    web = daemon.wait_pids("procapp.web", 2)
    [worker] = daemon.wait_pids("procapp.worker", 1)
    ports = {}
    for pid in [*web, worker]:
        process = daemon.process(pid)
        environ = environ_of(process["os_pid"], "PORT")
        assert environ["PORT"] == process["env"]["PORT"]
        ports[pid] = int(environ["PORT"])
    assert sorted(ports[pid] for pid in web) == [5000, 5001]
    assert ports[worker] == 5100
    config = daemon.info("procapp.web")["config"]
    assert config["cwd"] == str(app)
    assert config["shell"] is True
    assert config["flapping"] == {"attempts": 2, "window": 1.0, "retry_in": 7.0, "max_retry": 5}


def test_load_a_procfile_without_starting(daemon: Daemon, cli: Cli, tmp_path: Path) -> None:
    app = make_procfile(tmp_path / "lazyapp", {"web": child_command("sleep")})
    result = cli.ok("load", "--nostart", "--flapping", "off", cwd=app)
    assert result.stdout.strip() == "lazyapp.web loaded (not started)"
    assert daemon.jobs("lazyapp") == ["lazyapp.web"]
    assert daemon.info("lazyapp.web")["config"]["flapping"] is None
    assert daemon.pids("lazyapp.web") == []
    assert daemon.info("lazyapp.web")["active"] is False
    # -f names the Procfile from anywhere; loading twice says so and exits 1
    again = cli("-f", str(app / "Procfile"), "load")
    assert again.returncode == 1, again
    assert "lazyapp.web is already loaded" in again.stderr


def test_load_a_malformed_procfile(daemon: Daemon, cli: Cli, tmp_path: Path) -> None:
    app = tmp_path / "badproc"
    app.mkdir()
    (app / "Procfile").write_text(f"web: {child_command('sleep')}\nthis line is wrong\n")
    result = cli("load", cwd=app)
    assert result.returncode == 1, result
    assert re.search(r"Procfile:2\b", result.stderr), result
    assert len(result.stderr.splitlines()) == 1
    no_traceback(result)
    assert daemon.jobs() == []


def test_load_a_malformed_json_file(cli: Cli) -> None:
    path = cli.cwd / "broken.json"
    path.write_text('{"name": "x", "cmd": ')
    result = cli("load", str(path))
    assert result.returncode == 1, result
    assert "broken.json" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    no_traceback(result)
    missing = cli("load", "nowhere.json")
    assert missing.returncode == 1, missing
    assert "nowhere.json" in missing.stderr
    nameless = cli.cwd / "nameless.json"
    nameless.write_text('{"cmd": "true"}')
    result = cli("load", str(nameless))
    assert result.returncode == 1, result
    assert "nameless.json" in result.stderr


def test_load_without_a_procfile_is_a_usage_error(cli: Cli) -> None:
    result = cli("load")
    assert result.returncode == 2, result
    assert "Procfile" in result.stderr


def test_a_bad_concurrency_is_a_usage_error(daemon: Daemon, cli: Cli, tmp_path: Path) -> None:
    """``-c web`` is a malformed option value: a usage error (exit 2), as ``ps:scale web``
    and ``run -p X`` are."""
    app = make_procfile(tmp_path / "concapp", {"web": child_command("sleep")})
    result = cli("load", "-c", "web", cwd=app)
    assert "bad concurrency" in result.stderr, result
    assert daemon.jobs("concapp") == []
    assert result.returncode == 2, result


# -- unload, reload --------------------------------------------------------------------------------


def test_unload_named_jobs(daemon: Daemon, any_cli: Cli) -> None:
    for name in ("unone", "untwo", "unkept"):
        daemon.load(child_job(name, "sleep"))
    pids = daemon.wait_pids("default.unone", 1)
    result = any_cli.ok("unload", "unone", "default.untwo")
    assert result.lines == ["default.unone unloaded", "default.untwo unloaded"]
    assert not daemon.has_job("default.unone") and not daemon.has_job("default.untwo")
    assert daemon.has_job("default.unkept")
    assert not daemon.process_exists(pids[0])
    unknown = any_cli("unload", "unone")
    assert unknown.returncode == 1, unknown
    assert "unone" in unknown.stderr


def test_unload_a_whole_app_needs_yes(daemon: Daemon, cli: Cli) -> None:
    for name in ("a", "b"):
        daemon.load(child_job(name, "sleep"), session="wholeapp")
    refused = cli("--app", "wholeapp", "unload")  # stdin is not a terminal
    assert refused.returncode == 2, refused
    assert "--yes" in refused.stderr
    assert daemon.jobs("wholeapp") == ["wholeapp.a", "wholeapp.b"]
    result = cli.ok("--app", "wholeapp", "unload", "--yes")
    assert result.lines == ["wholeapp.a unloaded", "wholeapp.b unloaded"]
    assert "wholeapp" not in daemon.sessions()
    gone = cli("--app", "wholeapp", "unload", "--yes")
    assert gone.returncode != 0, gone


def test_unload_the_procfile_app_and_from_a_file(daemon: Daemon, cli: Cli, tmp_path: Path) -> None:
    app = make_procfile(
        tmp_path / "unapp", {"web": child_command("sleep"), "worker": child_command("sleep")}
    )
    cli.ok("load", "--nostart", cwd=app)
    result = cli.ok("unload", "--yes", cwd=app)
    assert sorted(result.lines) == ["unapp.web unloaded", "unapp.worker unloaded"]
    assert "unapp" not in daemon.sessions()
    # --from-file: the jobs named in a JSON file
    path = cli.cwd / "named.json"
    path.write_text(json.dumps({"jobs": [child_job("ff1", "sleep"), child_job("ff2", "sleep")]}))
    cli.ok("load", str(path))
    result = cli.ok("unload", "--from-file", str(path))
    assert result.lines == ["default.ff1 unloaded", "default.ff2 unloaded"]
    assert daemon.jobs("default") == []


def test_reload_gives_new_processes(daemon: Daemon, cli: Cli) -> None:
    job = daemon.load(child_job("reloadme", "sleep", numprocesses=2))
    before = daemon.wait_pids(job, 2)
    assert cli.ok("reload", "reloadme").stdout.strip() == "default.reloadme reloaded"
    after = daemon.wait_pids(job, 2)
    assert not set(before) & set(after)


def test_reload_a_whole_app(daemon: Daemon, cli: Cli) -> None:
    for name in ("r1", "r2"):
        daemon.load(child_job(name, "sleep"), session="reapp")
    before = daemon.wait_pids("reapp.r1", 1) + daemon.wait_pids("reapp.r2", 1)
    refused = cli("--app", "reapp", "reload")
    assert refused.returncode == 2, refused
    result = cli.ok("--app", "reapp", "reload", "-y")
    assert result.lines == ["reapp.r1 reloaded", "reapp.r2 reloaded"]
    after = daemon.wait_pids("reapp.r1", 1) + daemon.wait_pids("reapp.r2", 1)
    assert not set(before) & set(after)


# -- run -------------------------------------------------------------------------------------------


def test_run_a_one_off_process_with_parameters(daemon: Daemon, any_cli: Cli) -> None:
    job = daemon.load(
        child_job("oneoff", "env", "FOO", "BAR", numprocesses=0, redirect_output=["stdout"])
    )
    result = any_cli.ok("run", "oneoff", "-p", "FOO=hello world", "--param", "BAR=a=b")
    assert result.stdout.strip().startswith("default.oneoff: process ")
    pid = pid_of(result.stdout)
    assert daemon.pids(job) == []  # a one-off: not one of the job's kept-alive processes
    assert pid in daemon.ok("GET", "/pids")["pids"]
    info = json.loads(any_cli.ok("ps:info", str(pid), "--json").stdout)
    assert info["env"]["FOO"] == "hello world" and info["env"]["BAR"] == "a=b"
    assert info["once"] is True
    wait_until_sync(lambda: daemon.process(pid)["os_pid"], what="an os pid")
    environ = environ_of(daemon.process(pid)["os_pid"], "FOO", "BAR")
    assert environ["FOO"] == "hello world" and environ["BAR"] == "a=b"
    job_info = daemon.info(job)
    assert job_info["numprocesses"] == 0 and job_info["running_out"] == 1
    second = json.loads(any_cli.ok("run", "oneoff", "--json").stdout)
    assert second["job"] == "default.oneoff" and second["pid"] > pid


def test_run_takes_the_env_of_the_procfile_app(daemon: Daemon, cli: Cli, tmp_path: Path) -> None:
    app = make_procfile(
        tmp_path / "runapp",
        {"task": child_command("env", "FROM_DOTENV", "EXTRA")},
        env="FROM_DOTENV=dotenv-value\n",
    )
    cli.ok("load", "-c", "task=0", cwd=app)
    pid = pid_of(cli.ok("run", "task", "-p", "EXTRA=given", cwd=app).stdout)
    env = daemon.process(pid)["env"]
    assert env["FROM_DOTENV"] == "dotenv-value" and env["EXTRA"] == "given"


def test_run_errors(daemon: Daemon, cli: Cli) -> None:
    daemon.load(child_job("runbad", "sleep", numprocesses=0))
    bad = cli("run", "runbad", "-p", "NOEQUALSIGN")
    assert bad.returncode == 2, bad
    assert "NAME=VALUE" in bad.stderr
    assert daemon.pids("default.runbad") == []
    unknown = cli("run", "nosuchjob")
    assert unknown.returncode == 1, unknown
    assert "nosuchjob" in unknown.stderr
    no_traceback(unknown)


# -- apps ------------------------------------------------------------------------------------------


def test_apps(daemon: Daemon, cli: Cli) -> None:
    assert cli.ok("apps").stdout.strip() == "no app"
    assert json.loads(cli.ok("apps", "--json").stdout) == {}
    daemon.load(child_job("x", "sleep"), session="appone", start=False)
    daemon.load(child_job("y", "sleep"), session="appone", start=False)
    daemon.load(child_job("z", "sleep"), session="apptwo", start=False)
    assert cli.ok("apps").lines == ["appone: x, y", "apptwo: z"]
    assert json.loads(cli.ok("apps", "--json").stdout) == {
        "appone": ["appone.x", "appone.y"],
        "apptwo": ["apptwo.z"],
    }


# -- recv, send ------------------------------------------------------------------------------------


def echo_job(daemon: Daemon, name: str) -> int:
    job = daemon.load(
        child_job(name, "echo", redirect_input=True, redirect_output=["stdout", "stderr"])
    )
    [pid] = daemon.wait_pids(job, 1)
    return pid


def test_send_and_recv_with_an_echo_process(daemon: Daemon, any_cli: Cli) -> None:
    pid = echo_job(daemon, "echoer")
    with any_cli.popen("recv", str(pid)) as recv:
        sync_stream(daemon, recv, pid)
        sent = any_cli.ok("send", str(pid), "hello", "world")
        assert sent.stdout.strip() == f"sent 12 bytes to {pid}"
        recv.wait_output("hello world\n")
        # recv ends, successfully, when the process exits
        any_cli.ok("ps:stop", "echoer")
        assert recv.wait(15) == 0
    assert recv.stderr == ""


def test_send_lines_of_stdin_until_a_dot(daemon: Daemon, cli: Cli) -> None:
    pid = echo_job(daemon, "echolines")
    with cli.popen("recv", f"{pid}.stdout") as recv:
        sync_stream(daemon, recv, pid)
        sent = cli.ok("send", str(pid), "-", input="one\ntwo\n.\nthree\n")
        assert sent.stdout.strip() == f"sent 8 bytes to {pid}"
        daemon.ok("POST", f"/streams/{pid}/stdin", "the-end\n")
        out = recv.wait_output("the-end\n")
    after_markers = out[out.rindex("marker-") :]
    assert "one\ntwo\nthe-end\n" in after_markers
    assert "three" not in out


def test_recv_is_interrupted_by_ctrl_c(daemon: Daemon, cli: Cli) -> None:
    pid = echo_job(daemon, "echoint")
    with cli.popen("recv", str(pid)) as recv:
        sync_stream(daemon, recv, pid)
        recv.proc.send_signal(2)
        assert recv.wait() == 130
    assert "Traceback" not in recv.stderr


@pytest.mark.parametrize("form", ["PID.STREAM", "PID STREAM"])
def test_send_and_recv_on_a_custom_stream(daemon: Daemon, cli: Cli, form: str) -> None:
    job = daemon.load(child_job("fdthree", "echo-fd3", custom_streams=["ctrl"]))
    [pid] = daemon.wait_pids(job, 1)
    target = [f"{pid}.ctrl"] if form == "PID.STREAM" else [str(pid), "ctrl"]
    with cli.popen("recv", *target) as recv:
        counter = iter(range(1000))

        def echoed() -> bool:
            if "ping-" in recv.stdout:
                return True
            assert recv.proc.poll() is None, (recv.stdout, recv.stderr)
            sent = cli.ok("send", "-s", "ctrl", str(pid), f"ping-{next(counter)}")
            assert sent.stdout.strip().startswith("sent ") and f"{pid}.ctrl" in sent.stdout
            return False

        wait_until_sync(echoed, timeout=20, interval=0.1, what="ctrl echoed to gaffer recv")
        cli.ok("send", f"{pid}.ctrl", "over", "the", "stream")
        recv.wait_output("over the stream\n")
    assert re.fullmatch(r"(ping-\d+\n)+over the stream\n", recv.stdout), recv.stdout


def test_recv_and_send_errors(cli: Cli) -> None:
    for args in (("recv", "99999"), ("send", "99999", "hello")):
        result = cli(*args)
        assert result.returncode == 1, result
        assert len(result.stderr.splitlines()) == 1
        no_traceback(result)
    bad = cli("recv", "notapid")
    assert bad.returncode == 2, bad
    assert "bad pid" in bad.stderr


# -- stats, top ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["stats", "top"])
def test_stats_and_top_once(daemon: Daemon, cli: Cli, command: str) -> None:
    job = daemon.load(child_job("statjob", "sleep", numprocesses=2))
    pids = daemon.wait_pids(job, 2)
    result = cli.ok(command, "--once")
    assert "\x1b" not in result.stdout
    first, *rest = result.stdout.splitlines()
    assert re.search(r"default\.statjob: cpu \d+\.\d% mem \d+\.\d%", first), first
    headers, rows = parse_table("\n".join(rest))
    assert headers == STATS_HEADERS
    mine = [row for row in rows if row["JOB"] == "default.statjob"]
    assert sorted(int(row["PID"]) for row in mine) == sorted(pids)
    for row in mine:
        assert re.fullmatch(r"\d+\.\d%", row["CPU"]) and re.fullmatch(r"\d+\.\d%", row["MEM"])
        assert re.fullmatch(r"\d+(\.\d)?[BKMG]", row["RSS"]), row
        assert row["CHILDREN"] == "0"


@pytest.mark.parametrize("command", ["stats", "top"])
def test_stats_and_top_json(daemon: Daemon, cli: Cli, command: str) -> None:
    job = daemon.load(child_job("statjson", "sleep"))
    [pid] = daemon.wait_pids(job, 1)
    snapshot = json.loads(cli.ok(command, "--once", "--json").stdout)
    [mine] = [entry for entry in snapshot if entry["name"] == "default.statjson"]
    [stat_] = mine["stats"]
    assert stat_["pid"] == pid and stat_["os_pid"] == daemon.process(pid)["os_pid"]
    for key in ("cpu", "mem", "mem_info1", "mem_info2", "ctime"):
        assert isinstance(stat_[key], int | float) and not isinstance(stat_[key], bool), key
    assert stat_["mem_info1"] > 0
    assert isinstance(mine["cpu"], int | float)


def test_stats_of_named_jobs(daemon: Daemon, cli: Cli) -> None:
    daemon.wait_pids(daemon.load(child_job("statone", "sleep")), 1)
    daemon.wait_pids(daemon.load(child_job("stattwo", "sleep")), 1)
    snapshot = json.loads(cli.ok("stats", "--once", "--json", "statone").stdout)
    assert [entry["name"] for entry in snapshot] == ["default.statone"]


# -- export ----------------------------------------------------------------------------------------


def export_app(tmp_path: Path, name: str = "exportapp") -> Path:
    return make_procfile(
        tmp_path / name,
        {"web": child_command("env", "PORT", "GREETING"), "worker": child_command("sleep")},
        env="GREETING=hello there\n",
    )


def test_export_ini_passes_gafferd_check_config(cli: Cli, tmp_path: Path) -> None:
    app = export_app(tmp_path)
    text = cli.ok("export", "-c", "web=2", cwd=app).stdout
    assert "[job:exportapp.web]" in text and "[job:exportapp.worker]" in text
    assert re.search(r"^numprocesses = 2$", text, re.M)
    assert "[env:exportapp.web]" in text and "GREETING = hello there" in text
    written = cli.ok(
        "export", "--format", "ini", "-c", "web=2", "-o", str(tmp_path / "app.ini"), cwd=app
    )
    assert "app.ini" in written.stdout
    assert (tmp_path / "app.ini").read_text() == text
    env = gaffer_env(cli.config)
    if os.geteuid() == 0:  # as root, gafferd refuses its default TCP bind without keys
        env["GAFFERD_ALLOW_ROOT_WITHOUT_KEYS"] = "true"
    check = subprocess.run(
        [PY, "-m", "gafferd", "--check-config", "-c", str(tmp_path / "app.ini")],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "2 job(s)" in check.stdout + check.stderr


def test_export_json(cli: Cli, tmp_path: Path) -> None:
    app = export_app(tmp_path)
    data = json.loads(cli.ok("export", "--format", "json", "-c", "web=2", cwd=app).stdout)
    assert data["name"] == "exportapp"
    web, worker = data["jobs"]
    assert (web["name"], web["numprocesses"], web["port"]) == ("web", 2, 5000)
    assert (worker["name"], worker["numprocesses"], worker["port"]) == ("worker", 1, 5100)
    assert web["env"] == {"GREETING": "hello there"}
    assert web["cwd"] == str(app)


def test_export_systemd(cli: Cli, tmp_path: Path) -> None:
    app = export_app(tmp_path)
    refused = cli("export", "--format", "systemd", cwd=app)
    assert refused.returncode == 2, refused
    units = tmp_path / "units"
    result = cli.ok("export", "--format", "systemd", "-c", "web=2", "-o", str(units), cwd=app)
    assert "4 units" in result.stdout
    assert sorted(os.listdir(units)) == [
        "exportapp-web-1.service",
        "exportapp-web-2.service",
        "exportapp-worker-1.service",
        "exportapp.target",
    ]
    web2 = (units / "exportapp-web-2.service").read_text()
    assert 'Environment="PORT=5001"' in web2
    assert 'Environment="GREETING=hello there"' in web2
    assert f"WorkingDirectory={app}" in web2
    assert "Wants=exportapp-web-2.service" in (units / "exportapp.target").read_text()


def test_exported_ini_gives_gafferd_the_jobs_gaffer_load_gives(
    daemon: Daemon, cli: Cli, tmp_path: Path
) -> None:
    app = export_app(tmp_path, "roundtrip")
    ini = cli.ok("export", "-c", "web=2", cwd=app).stdout
    cli.ok("load", "-c", "web=2", cwd=app)
    other_dir = tmp_path / "fromini"
    other_dir.mkdir()
    from_ini = Gafferd(other_dir, ini).start()
    try:
        for job in ("web", "worker"):
            status, loaded = from_ini.request("GET", f"/jobs/roundtrip/{job}")
            assert status == 200, loaded
            assert loaded["config"] == daemon.info(f"roundtrip.{job}")["config"]
        status, sessions = from_ini.request("GET", "/jobs/roundtrip")
        assert sessions["jobs"] == ["roundtrip.web", "roundtrip.worker"]
        assert len(from_ini.request("GET", "/jobs/roundtrip/web/pids")[1]["pids"]) == 2
    finally:
        assert from_ini.stop() == 0


def test_exported_json_loads_into_the_app(daemon: Daemon, cli: Cli, tmp_path: Path) -> None:
    """``export --format json`` writes ``{"name": APP, "jobs": [...]}`` "as gaffer load
    reads it": loading it gives the jobs ``gaffer load`` gives from the Procfile, in the
    app's session."""
    app = export_app(tmp_path, "jsonround")
    exported = tmp_path / "jsonround.json"
    cli.ok("export", "--format", "json", "-o", str(exported), cwd=app)
    result = cli.ok("load", "--nostart", str(exported))  # from a directory without Procfile
    assert result.lines == [
        "jsonround.web loaded (not started)",
        "jsonround.worker loaded (not started)",
    ]
    assert daemon.jobs("jsonround") == ["jsonround.web", "jsonround.worker"]


# -- colours ---------------------------------------------------------------------------------------


def test_colours_on_a_terminal_only(daemon: Daemon, cli: Cli) -> None:
    daemon.wait_pids(daemon.load(child_job("colourful", "sleep")), 1)
    env = gaffer_env(cli.config)
    on_terminal = run_on_pty(cli.argv(["ps"]), env, cli.cwd)
    assert "\x1b[" in on_terminal and "colourful" in on_terminal
    no_color = run_on_pty(cli.argv(["ps"]), {**env, "NO_COLOR": "1"}, cli.cwd)
    assert "\x1b" not in no_color and "colourful" in no_color
    option = run_on_pty(cli.argv(["ps", "--no-color"]), env, cli.cwd)
    assert "\x1b" not in option and "colourful" in option
    apps = run_on_pty(cli.argv(["apps"]), {**env, "NO_COLOR": "1"}, cli.cwd)
    assert "\x1b" not in apps and "default: colourful" in apps
    piped = cli.ok("ps")
    assert "\x1b" not in piped.stdout and "colourful" in piped.stdout


# -- bad addresses, bad usage ----------------------------------------------------------------------

UNREACHABLE_COMMANDS = [
    ("ps",),
    ("apps",),
    ("ps:info", "web"),
    ("ps:scale", "web=2"),
    ("logs",),
    ("logs", "web"),
    ("events",),
    ("recv", "1"),
    ("send", "1", "hello"),
    ("stats", "--once"),
    ("login", "-u", "u", "-p", "p"),
]


@pytest.mark.parametrize("where", ["unix", "tcp"])
@pytest.mark.parametrize("args", UNREACHABLE_COMMANDS, ids=lambda args: args[0])
def test_unreachable_gafferd(cli: Cli, tmp_path: Path, where: str, args: tuple[str, ...]) -> None:
    url = f"unix:{tmp_path / 'nobody.sock'}" if where == "unix" else f"127.0.0.1:{free_port()}"
    result = cli.with_(url=url)(*args, timeout=20)
    assert result.returncode == 1, result
    assert len(result.stderr.splitlines()) == 1, result
    assert result.stderr.startswith("gaffer: cannot reach gafferd"), result
    no_traceback(result)


def test_the_address_may_come_from_the_environment(daemon: Daemon, cli: Cli) -> None:
    daemon.load(child_job("byenv", "sleep"), start=False)
    result = cli.ok("apps", url=False, env={"GAFFER_ADDRESS": daemon.tcp_url})
    assert "default: byenv" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("nosuchcommand",),
        ("ps:scale", "web"),
        ("ps:info",),
        ("ps:kill", "web"),
        ("send", "1"),
        ("key:create",),
        ("user:add",),
        ("export", "--format", "yaml"),
        (),
    ],
    ids=lambda args: " ".join(args) or "nothing",
)
def test_usage_errors(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "gaffer" in result.stderr
    no_traceback(result)


# -- accounts: login, users, keys (gafferd with require_key) ---------------------------------------


def keys_by_label(cli: Cli) -> dict[str, dict[str, Any]]:
    return {key["label"]: key for key in json.loads(cli.ok("keys", "--json").stdout)}


def test_a_missing_key_says_to_log_in(auth: Daemon, admin: Cli) -> None:
    result = admin.with_(key=None)("ps")
    assert result.returncode == 1, result
    assert "gaffer login" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    no_traceback(result)


def test_a_wrong_key_is_forbidden(auth: Daemon, admin: Cli) -> None:
    result = admin.with_(key="gk_not-a-real-key")("ps")
    assert result.returncode == 1, result
    assert result.stderr.startswith("gaffer: forbidden"), result
    assert len(result.stderr.splitlines()) == 1
    no_traceback(result)


def test_login_saves_a_key_used_next_time(auth: Daemon, admin: Cli, tmp_path: Path) -> None:
    # the admin creates a user and gives it a key that may read the session "loginapp"
    assert admin.ok("user:add", "loginuser", "-p", "s3cret").stdout.strip() == (
        "user loginuser created"
    )
    admin.ok("key:create", "loginapp+r", "--label", "loginuser-key")
    key_id = keys_by_label(admin)["loginuser-key"]["key_id"]
    admin.ok("user:setkey", "loginuser", key_id)
    # the user logs in: the key is saved (mode 0600) in GAFFER_CONFIG's file
    config = tmp_path / "user" / "gaffer.ini"
    user = admin.with_(key=None, config=config)
    result = user.ok("login", "-u", "loginuser", "-p", "s3cret")
    assert str(config) in result.stdout and "loginuser" in result.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text()
    assert f'[node "{auth.unix_url}"]' in text
    saved = re.search(r"^key = (gk_\S+)$", text, re.M)
    assert saved, text
    # the next commands use it, without --api-key
    assert user.ok("ps").stdout.strip() == "no job"
    assert user.ok("--app", "loginapp", "ps").stdout.strip() == "no job"
    # it may read, not write
    job = cli_job_file(tmp_path, "loginapp.denied")
    denied = user("load", str(job))
    assert denied.returncode == 1, denied
    assert "forbidden" in denied.stderr
    # --api-key overrides the saved key
    wrong = user("--api-key", "gk_wrong", "ps")
    assert wrong.returncode == 1 and "forbidden" in wrong.stderr
    # the user config of the admin's runs was never touched
    assert not admin.config.exists()


def cli_job_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(child_job(name, "sleep")))
    return path


def test_login_with_a_wrong_password(auth: Daemon, admin: Cli, tmp_path: Path) -> None:
    admin.ok("user:add", "wrongpw", "-p", "right")
    config = tmp_path / "wrong.ini"
    result = admin.with_(key=None, config=config)("login", "-u", "wrongpw", "-p", "wrong")
    assert result.returncode == 1, result
    assert len(result.stderr.splitlines()) == 1
    no_traceback(result)
    assert not config.exists()


def test_login_as_the_admin(auth: Daemon, admin: Cli, tmp_path: Path) -> None:
    config = tmp_path / "deep" / "dir" / "gaffer.ini"
    logged = admin.with_(key=None, config=config)
    logged.ok("login", "--username", "admin", "--password", "pw")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    users = json.loads(logged.ok("users", "--json").stdout)
    assert "admin" in {user["username"] for user in users}


def test_users_commands(auth: Daemon, admin: Cli) -> None:
    admin.ok("user:add", "ursula", "-p", "first")
    admin.ok("user:add", "ulrich", "--password", "pw2", "--type", "0")
    headers, rows = parse_table(admin.ok("users").stdout)
    assert headers == ["USER", "TYPE", "KEY"]
    by_name = {row["USER"]: row for row in rows}
    assert by_name["ursula"]["TYPE"] == "user" and by_name["ursula"]["KEY"] == "-"
    assert by_name["ulrich"]["TYPE"] == "admin"
    assert by_name["admin"]["TYPE"] == "admin"
    shown = admin.ok("user", "ursula").stdout
    assert re.search(r"^username\s+ursula$", shown, re.M)
    assert "first" not in shown and "password" not in shown
    ursula = json.loads(admin.ok("user", "ursula", "--json").stdout)
    assert ursula["username"] == "ursula" and ursula["user_type"] == 1
    # a duplicate is an API error
    again = admin("user:add", "ursula", "-p", "x")
    assert again.returncode == 1, again
    # the password changes: the old one no longer logs in, the new one does
    result = admin.ok("user:setpassword", "ursula", "-p", "second")
    assert result.stdout.strip() == "password of ursula changed"
    admin.ok("key:create", "+k", "--label", "ursula-key")
    key_id = keys_by_label(admin)["ursula-key"]["key_id"]
    assert admin.ok("user:setkey", "ursula", key_id).stdout.strip() == "key of ursula set"
    assert json.loads(admin.ok("user", "ursula", "--json").stdout)["key_id"] == key_id
    user = admin.with_(key=None, config=admin.cwd / "ursula.ini")
    assert user("login", "-u", "ursula", "-p", "first").returncode == 1
    user.ok("login", "-u", "ursula", "-p", "second")
    # delete: gone from the list, and `user` of it is an API error
    assert admin.ok("user:del", "ursula").stdout.strip() == "user ursula deleted"
    assert "ursula" not in {row["USER"] for row in parse_table(admin.ok("users").stdout)[1]}
    missing = admin("user", "ursula")
    assert missing.returncode == 1, missing
    assert "ursula" in missing.stderr


def test_key_commands(auth: Daemon, admin: Cli) -> None:
    created = admin.ok("key:create", "+k", "subapp+r", "--label", "creator")
    secret = re.fullmatch(r"key created \(shown once\): (gk_\S+)\n", created.stdout)
    assert secret, created
    data = json.loads(
        admin.ok("key:create", "keysapp+r", "keysapp.web+rwm", "--label", "scoped", "--json").stdout
    )
    assert data["api_key"].startswith("gk_")
    assert data["permissions"] == {
        "read": ["keysapp", "keysapp.web"],
        "write": ["keysapp.web"],
        "manage": ["keysapp.web"],
    }
    keys = keys_by_label(admin)
    assert keys["creator"]["permissions"]["create_key"] is True
    assert keys["creator"]["permissions"]["admin"] is False
    assert keys["scoped"]["permissions"]["read"] == ["keysapp", "keysapp.web"]
    headers, rows = parse_table(admin.ok("keys").stdout)
    assert headers == ["KEY ID", "LABEL", "PARENT", "PERMISSIONS"]
    [row] = [row for row in rows if row["LABEL"] == "scoped"]
    assert row["KEY ID"] == keys["scoped"]["key_id"]
    assert "write:keysapp.web" in row["PERMISSIONS"]
    assert "read:keysapp,keysapp.web" in row["PERMISSIONS"]
    shown = json.loads(admin.ok("key", keys["scoped"]["key_id"], "--json").stdout)
    assert shown["key_id"] == keys["scoped"]["key_id"] and shown["label"] == "scoped"
    assert data["api_key"] not in json.dumps(shown)  # never the secret
    # the create_key key makes a sub-key of itself
    sub = admin.with_(key=secret.group(1)).ok("key:create", "subapp+r", "--label", "sub")
    assert sub.stdout.startswith("key created")
    keys = keys_by_label(admin)
    assert keys["sub"]["parent"] == keys["creator"]["key_id"]
    # deleting a key deletes its sub-keys
    deleted = admin.ok("key:delete", keys["creator"]["key_id"]).stdout
    assert deleted.startswith("deleted 2 key(s): ")
    assert keys["creator"]["key_id"] in deleted and keys["sub"]["key_id"] in deleted
    assert {"creator", "sub"}.isdisjoint(keys_by_label(admin))
    gone = admin("key", keys["creator"]["key_id"])
    assert gone.returncode == 1, gone
    # its secret no longer opens anything
    assert admin.with_(key=secret.group(1))("ps").returncode == 1


@pytest.mark.parametrize("spec", ["bad", "+z", "app+x", "app.web+", "+"])
def test_key_create_with_a_bad_permission(auth: Daemon, admin: Cli, spec: str) -> None:
    before = keys_by_label(admin)
    result = admin("key:create", spec, "--label", f"never-{spec}")
    assert result.returncode == 2, result
    assert "bad permission" in result.stderr
    assert keys_by_label(admin).keys() == before.keys()


def test_keys_limit_what_the_cli_may_do(auth: Daemon, admin: Cli, tmp_path: Path) -> None:
    reader = json.loads(admin.ok("key:create", "permsapp+r", "--json").stdout)["api_key"]
    manager = json.loads(admin.ok("key:create", "permsapp+rwm", "--json").stdout)["api_key"]
    job = cli_job_file(tmp_path, "permsapp.job")
    denied = admin.with_(key=reader)("load", "--nostart", str(job))
    assert denied.returncode == 1, denied
    assert denied.stderr.startswith("gaffer: forbidden"), denied
    try:
        admin.with_(key=manager).ok("load", "--nostart", str(job))
        listed = json.loads(admin.with_(key=reader).ok("--app", "permsapp", "ps", "--json").stdout)
        assert [row["job"] for row in listed] == ["permsapp.job"]
        scale = admin.with_(key=reader)("ps:scale", "permsapp.job=2")
        assert scale.returncode == 1 and "forbidden" in scale.stderr
    finally:
        admin("unload", "permsapp.job")
