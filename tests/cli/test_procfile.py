"""Procfile apps: the Procfile and .env grammars, jobs, and the ini/JSON/systemd exports."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from gaffer import FlappingInfo, Manager, ProcessConfig
from gaffer.cli.procfile import (
    CRASH_LOOP,
    App,
    ProcfileEntry,
    ProcfileError,
    load_env_files,
    normalize_app_name,
    parse_concurrency,
    parse_env,
    parse_procfile,
    to_ini,
    to_json,
    to_systemd,
)
from gaffer.dotenv import DotenvError
from gafferd.config import load_config
from tests.helpers import wait_until


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def make_app(
    tmp_path: Path,
    procfile: str,
    env: str | None = None,
    name: str | None = None,
    directory: str = "demo",
) -> App:
    root = tmp_path / directory
    root.mkdir(exist_ok=True)
    (root / "Procfile").write_text(dedent(procfile))
    if env is not None:
        (root / ".env").write_text(dedent(env))
    return App.load(str(root / "Procfile"), name=name)


THREE = """
    web: python -m http.server $PORT
    worker: python worker.py
    clock: python clock.py
"""


# -- Procfile ---------------------------------------------------------------------------
def test_procfile_entries_keep_their_order_and_lines():
    text = dedent(
        """
        # the app
        web: gunicorn app:wsgi --bind 0.0.0.0:$PORT

          # indented comment
        worker_2:python worker.py \t
        Clock-1:   sh -c 'sleep 1; echo tick # not a comment for us'
        """
    )
    assert parse_procfile(text) == [
        ProcfileEntry("web", "gunicorn app:wsgi --bind 0.0.0.0:$PORT", 2),
        ProcfileEntry("worker_2", "python worker.py", 5),
        ProcfileEntry("Clock-1", "sh -c 'sleep 1; echo tick # not a comment for us'", 6),
    ]


def test_procfile_with_windows_line_endings():
    assert parse_procfile("web: a b\r\n\r\nworker: c\r\n") == [
        ProcfileEntry("web", "a b", 1),
        ProcfileEntry("worker", "c", 3),
    ]


def test_empty_procfile_has_no_entries():
    assert parse_procfile("\n# nothing\n\n") == []


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("web cmd", "expected 'name: command'"),
        ("we b: cmd", "expected 'name: command'"),
        ("web.x: cmd", "expected 'name: command'"),
        ("web : cmd", "expected 'name: command'"),
        (": cmd", "expected 'name: command'"),
        ("wéb: cmd", "expected 'name: command'"),
        ("web:", "'web' has an empty command"),
        ("web:    ", "'web' has an empty command"),
    ],
)
def test_malformed_procfile_lines_name_the_line(line, reason):
    text = f"web0: ok\n\n{line}\nlast: ok\n"
    with pytest.raises(ProcfileError) as excinfo:
        parse_procfile(text, "app/Procfile")
    error = excinfo.value
    assert isinstance(error, ValueError)
    assert (error.path, error.line) == ("app/Procfile", 3)
    assert str(error).startswith("app/Procfile:3: ")
    assert reason in str(error)


def test_duplicate_process_type_names_both_lines():
    text = "web: a\nworker: b\n\nweb: c\n"
    with pytest.raises(ProcfileError) as excinfo:
        parse_procfile(text)
    assert str(excinfo.value) == "Procfile:4: process type 'web' is already defined at line 1"


# -- .env -------------------------------------------------------------------------------
def test_env_basic_syntax():
    text = dedent(
        """
        # comment
        A=1

        export B=two
        export\tC = three
          D =  spaced value \t
        EMPTY=
        A=again
        """
    )
    assert parse_env(text) == {
        "A": "again",
        "B": "two",
        "C": "three",
        "D": "spaced value",
        "EMPTY": "",
    }


def test_env_unquoted_values_lose_inline_comments_only_after_whitespace():
    text = dedent(
        """
        URL=http://host/page#frag
        COLOR=#fff
        NOTE=some text # a comment
        TAB=x\t# a comment after a tab
        NONE= # only a comment
        """
    )
    assert parse_env(text) == {
        "URL": "http://host/page#frag",
        "COLOR": "#fff",
        "NOTE": "some text",
        "TAB": "x",
        "NONE": "",
    }


def test_env_single_quotes_are_literal():
    text = "A=1\nS='  $A ${A} \\n \\\\ \"x\" # not a comment  ' # a comment\n"
    assert parse_env(text)["S"] == '  $A ${A} \\n \\\\ "x" # not a comment  '


def test_env_double_quotes_know_escapes_and_expand():
    text = r"A=1" + "\n" + r'D="  a\nb\tc \"q\" \\ \$A $A ${A} \q # kept  "  # comment' + "\n"
    assert parse_env(text)["D"] == '  a\nb\tc "q" \\ $A 1 1 \\q # kept  '


def test_env_quoted_values_may_span_lines_and_later_lines_keep_their_numbers():
    text = "KEY=\"-----BEGIN-----\n  body line\n-----END-----\"\nS='one\ntwo'\nX=1\nbad line\n"
    with pytest.raises(DotenvError, match=r"^\.env:7: expected KEY=VALUE"):
        parse_env(text)
    assert parse_env(text.replace("bad line\n", "")) == {
        "KEY": "-----BEGIN-----\n  body line\n-----END-----",
        "S": "one\ntwo",
        "X": "1",
    }


def test_env_windows_line_endings():
    assert parse_env('A=1\r\nB="x"\r\nC=y # c\r\n') == {"A": "1", "B": "x", "C": "y"}


def test_env_expansion_from_the_file_then_environ_else_empty():
    text = dedent(
        """
        HOST=localhost
        URL=http://$HOST:${PORT}/x
        PATH=$PATH:/opt/app/bin
        HOME=/srv/app
        WHERE="${HOME}/data"
        MISSING=[$NOPE][${NOPE}]
        DEFAULTED=${NOPE:-fallback} ${HOST:-unused}
        DOLLARS=cost $5 $ $$ ${HOST}s
        """
    )
    environ = {"PORT": "8000", "PATH": "/usr/bin", "HOME": "/root", "HOST": "ignored"}
    assert parse_env(text, environ=environ) == {
        "HOST": "localhost",
        "URL": "http://localhost:8000/x",
        "PATH": "/usr/bin:/opt/app/bin",
        "HOME": "/srv/app",
        "WHERE": "/srv/app/data",
        "MISSING": "[][]",
        "DEFAULTED": "fallback localhost",
        "DOLLARS": "cost $5 $ $$ localhosts",
    }
    assert parse_env("A=$HOME") == {"A": ""}  # no environ: nothing from outside


def test_env_expansion_uses_only_earlier_definitions():
    assert parse_env("A=$B\nB=2\nC=$B\n") == {"A": "", "B": "2", "C": "2"}


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("A=1\nJUSTAWORD\n", 2, "expected KEY=VALUE, got 'JUSTAWORD'"),
        ("A=1\nexport\n", 2, "expected KEY=VALUE"),
        ("1A=x\n", 1, "bad variable name '1A'"),
        ("A-B=x\n", 1, "bad variable name 'A-B'"),
        ("A B=x\n", 1, "bad variable name 'A B'"),
        ("=x\n", 1, "bad variable name ''"),
        ('A=1\nB="open\nstill open\n', 2, 'B: unterminated " quote'),
        ("A=1\n\nB='open\n", 3, "B: unterminated ' quote"),
        ('B="a\\"\n', 1, 'B: unterminated " quote'),
        ('B="done" junk\n', 1, "B: unexpected 'junk' after the closing \" quote"),
        ("B=${OPEN\n", 1, "B: unterminated ${"),
        ("B=${NOT-A-NAME}\n", 1, "B: bad variable name 'NOT-A-NAME'"),
    ],
)
def test_env_errors_name_file_and_line(text, line, reason):
    with pytest.raises(DotenvError) as excinfo:
        parse_env(text, "conf/prod.env")
    assert excinfo.value.line == line
    assert str(excinfo.value).startswith(f"conf/prod.env:{line}: ")
    assert reason in str(excinfo.value)


def test_env_files_later_override_and_see_earlier_ones(tmp_path):
    first = tmp_path / "a.env"
    second = tmp_path / "b.env"
    first.write_text("A=1\nB=from-a\n")
    second.write_text("B=from-b\nC=$A-$B-$D\n")
    env = load_env_files([str(first), str(second)], environ={"A": "outside", "D": "d"})
    assert env == {"A": "1", "B": "from-b", "C": "1-from-b-d"}


def test_missing_env_file_is_an_error(tmp_path):
    missing = str(tmp_path / "nope.env")
    with pytest.raises(DotenvError, match=r"nope\.env: cannot read: No such file"):
        load_env_files([missing])


# -- concurrency ------------------------------------------------------------------------
def test_concurrency_specs():
    assert parse_concurrency([]) == {}
    assert parse_concurrency(["web=2", "worker=3"]) == {"web": 2, "worker": 3}
    assert parse_concurrency(["web=2,worker=3", " clock = 0 "]) == {
        "web": 2,
        "worker": 3,
        "clock": 0,
    }
    assert parse_concurrency(["web=2,", "web=5"]) == {"web": 5}


@pytest.mark.parametrize(
    ("spec", "bad"),
    [
        ("web", "'web'"),
        ("web=", "'web='"),
        ("web=-1", "'web=-1'"),
        ("web=x", "'web=x'"),
        ("web=1.5", "'web=1.5'"),
        ("=2", "'=2'"),
        ("web=2,work er=1", "'work er=1'"),
        ("", "''"),
        (" , ", "' , '"),
    ],
)
def test_bad_concurrency_specs_are_named(spec, bad):
    with pytest.raises(ValueError, match=f"bad concurrency {bad}"):
        parse_concurrency(["ok=1", spec])


# -- App.load ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("directory", "name"),
    [
        ("demo", "demo"),
        ("My App", "my-app"),
        ("Web_Site+v2", "web_site+v2"),
        ("2048", "app-2048"),
        ("_private", "app-_private"),
        ("my.app", "my-app"),
        ("café", "caf-"),
    ],
)
def test_app_name_is_the_normalised_directory_name(tmp_path, directory, name):
    app = make_app(tmp_path, "web: true\n", directory=directory)
    assert app.name == name
    assert app.root == str(tmp_path / directory)


def test_normalise_empty_name():
    assert normalize_app_name("") == "default"


def test_explicit_app_name_is_checked(tmp_path):
    assert make_app(tmp_path, "web: true\n", name="shop+v2").name == "shop+v2"
    for bad in ("Shop", "2shop", "shop.v2", "", "my app"):
        with pytest.raises(ValueError, match="bad app name"):
            make_app(tmp_path, "web: true\n", name=bad)
    with pytest.raises(ValueError, match="bad app name"):
        App("/tmp", "Bad", ())


def test_app_root_is_absolute_from_a_relative_path(tmp_path, monkeypatch):
    make_app(tmp_path, "web: true\n")
    monkeypatch.chdir(tmp_path)
    app = App.load("demo/Procfile")
    assert app.root == str(tmp_path / "demo")
    assert app.procfile == str(tmp_path / "demo" / "Procfile")
    assert app.entries == (ProcfileEntry("web", "true", 1),)


def test_app_env_is_dotenv_next_to_procfile_then_e_files(tmp_path, monkeypatch):
    make_app(tmp_path, "web: true\n", env="A=from-dotenv\nB=from-dotenv\nHOME_COPY=$HOME\n")
    (tmp_path / "extra.env").write_text("B=from-extra\nC=$A+\n")
    monkeypatch.chdir(tmp_path)
    app = App.load(
        str(tmp_path / "demo" / "Procfile"), env_files=["extra.env"], environ={"HOME": "/h"}
    )
    assert dict(app.env) == {
        "A": "from-dotenv",
        "B": "from-extra",
        "HOME_COPY": "/h",
        "C": "from-dotenv+",
    }
    with pytest.raises(TypeError):
        app.env["A"] = "changed"  # type: ignore[index]


def test_app_without_dotenv_has_an_empty_env_but_given_files_must_exist(tmp_path):
    app = make_app(tmp_path, "web: true\n")
    assert dict(app.env) == {}
    with pytest.raises(DotenvError, match=r"missing\.env: cannot read"):
        App.load(app.procfile, env_files=[str(tmp_path / "missing.env")])


def test_app_load_reports_procfile_and_env_errors_with_their_paths(tmp_path):
    with pytest.raises(DotenvError, match="Procfile: cannot read"):
        App.load(str(tmp_path / "Procfile"))
    with pytest.raises(ProcfileError, match=r"Procfile:2: expected 'name: command'"):
        make_app(tmp_path, "web: ok\noops\n")
    with pytest.raises(DotenvError, match=r"\.env:1: bad variable name"):
        make_app(tmp_path, "web: ok\n", env="9X=1\n")


# -- jobs -------------------------------------------------------------------------------
def test_jobs_are_shell_jobs_with_foreman_ports(tmp_path):
    app = make_app(tmp_path, THREE, env="SECRET=s3\n")
    jobs = app.jobs()
    assert jobs[0] == {
        "name": "web",
        "cmd": "python -m http.server $PORT",
        "shell": True,
        "env": {"SECRET": "s3"},
        "os_env": True,
        "cwd": app.root,
        "numprocesses": 1,
        "redirect_output": ["out", "err"],
        "priority": 0,
        "port": 5000,
        "flapping": {"attempts": 2, "window": 1.0, "retry_in": 7.0, "max_retry": 5},
        "restart": "always",
        "backoff": {"initial": 0.1, "factor": 2.0, "max": 30.0},
        "start_secs": 1.0,
        "start_retries": 5,
    }
    assert [(j["name"], j["port"], j["priority"]) for j in jobs] == [
        ("web", 5000, 0),
        ("worker", 5100, 1),
        ("clock", 5200, 2),
    ]
    for job in jobs:
        config = ProcessConfig.from_dict(job)
        assert (config.name, config.cmd, config.shell, config.port) == (
            job["name"],
            job["cmd"],
            True,
            job["port"],
        )
        assert dict(config.env) == {"SECRET": "s3"}
        assert config.redirect_output == ("out", "err")
        assert config.flapping == CRASH_LOOP == FlappingInfo()  # an entry cannot spin
    assert {job["flapping"] for job in app.jobs(flapping=None)} == {None}


def test_base_port_comes_from_the_argument_then_the_env_port(tmp_path):
    app = make_app(tmp_path, THREE, env="PORT=7000\n")
    assert [j["port"] for j in app.jobs()] == [7000, 7100, 7200]
    assert [j["port"] for j in app.jobs(base_port=9000)] == [9000, 9100, 9200]
    bad = make_app(tmp_path, THREE, env="PORT=http\n")
    with pytest.raises(ValueError, match="PORT='http'"):
        bad.jobs()
    with pytest.raises(ValueError, match="bad base port 0"):
        app.jobs(base_port=0)
    with pytest.raises(ValueError, match=r"clock: ports 65600\.\.65600 go beyond 65535"):
        app.jobs(base_port=65400)


def test_concurrency_only_and_zero(tmp_path):
    app = make_app(tmp_path, THREE)
    jobs = app.jobs({"web": 3, "clock": 0})
    assert [(j["name"], j["numprocesses"]) for j in jobs] == [
        ("web", 3),
        ("worker", 1),
        ("clock", 0),
    ]
    assert ProcessConfig.from_dict(jobs[2]).numprocesses == 0
    only = app.jobs({"clock": 2}, only=["clock", "web"])
    assert [(j["name"], j["numprocesses"], j["port"], j["priority"]) for j in only] == [
        ("web", 1, 5000, 0),
        ("clock", 2, 5200, 2),  # ports and priorities do not move with `only`
    ]
    with pytest.raises(ValueError, match="only: no process type 'nope'"):
        app.jobs(only=["nope"])
    with pytest.raises(ValueError, match="concurrency: no process type 'wbe'"):
        app.jobs({"wbe": 2})
    with pytest.raises(ValueError, match="concurrency of 'web'"):
        app.jobs({"web": -1})


# -- export: ini ------------------------------------------------------------------------
TRICKY_ENV = {
    "SPACES": "a  b   c",
    "QUOTES": "it's \"quoted\" 'twice'",
    "HASH": "#not-a-comment # nor this",
    "SEMI": "a;b;c",
    "LEADING_SEMI": ";starts",
    "DOLLAR": "$HOME ${PORT} $$",
    "EQUALS": "a=b==c",
    "EMPTY": "",
    "BACKSLASH": "C:\\path\\ \\n",
    "UNICODE": "héllo ☃",
    "BRACKETS": "[job:x.y]",
}


def tricky_app(tmp_path: Path) -> App:
    app = make_app(tmp_path, THREE + "    odd_one-2: echo 'a;b' \"#x\" $PORT=1\n")
    return App(app.root, "shop+v2", app.entries, TRICKY_ENV, app.procfile)


@pytest.mark.parametrize(
    ("concurrency", "base_port", "flapping"),
    [
        (None, None, CRASH_LOOP),
        ({"web": 4, "clock": 0}, 6000, None),
        (None, 7000, FlappingInfo(3, 0.5, 2.25, 1)),
    ],
)
def test_ini_export_round_trips_through_gafferd(tmp_path, concurrency, base_port, flapping):
    app = tricky_app(tmp_path)
    path = tmp_path / "gafferd.ini"
    text = to_ini(app, concurrency, base_port, flapping=flapping)
    path.write_text(text)
    assert text.startswith("# gafferd configuration of app shop+v2\n")
    assert f"# exported by gaffer from {app.procfile}\n" in text
    config = load_config(str(path))
    jobs = app.jobs(concurrency, base_port, flapping=flapping)
    assert list(config.jobs) == [f"shop+v2.{job['name']}" for job in jobs]
    for job in jobs:
        spec = config.jobs[f"shop+v2.{job['name']}"]
        assert spec.session == "shop+v2"
        assert spec.start is True
        assert spec.config == ProcessConfig.from_dict(job)
        assert dict(spec.config.env) == TRICKY_ENV
        assert spec.config.flapping == flapping


def test_ini_export_sections(tmp_path):
    app = make_app(tmp_path, "web: run\n", env="A=1\n")
    assert to_ini(app, {"web": 2}) == (
        "# gafferd configuration of app demo\n"
        f"# exported by gaffer from {app.procfile}\n"
        "\n"
        "[job:demo.web]\n"
        "cmd = run\n"
        "shell = true\n"
        "os_env = true\n"
        f"cwd = {app.root}\n"
        "numprocesses = 2\n"
        "redirect_output = out err\n"
        "priority = 0\n"
        "port = 5000\n"
        "flapping = 2 1.0 7.0 5\n"
        "restart = always\n"
        "backoff = 0.1 2.0 30.0\n"
        "start_secs = 1.0\n"
        "start_retries = 5\n"
        "\n"
        "[env:demo.web]\n"
        "A = 1\n"
    )
    assert "[env:" not in to_ini(make_app(tmp_path, "web: run\n", directory="noenv"))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("two\nlines", "line break"),
        ("form\x0cfeed", "line break"),
        (" leading", "whitespace"),
        ("trailing\t", "whitespace"),
        ("a ;b", "';' after whitespace"),
        ("a\t;b", "';' after whitespace"),
    ],
)
def test_ini_export_refuses_values_it_cannot_carry(tmp_path, value, problem):
    base = make_app(tmp_path, "web: run\n")
    app = App(base.root, base.name, base.entries, {"OK": "1", "BAD": value})
    with pytest.raises(ValueError, match=f"cannot export variable BAD = .* it .*{problem}"):
        to_ini(app)


def test_ini_export_refuses_a_command_with_a_comment_marker(tmp_path):
    app = make_app(tmp_path, "web: cd app ; ./run\n")
    with pytest.raises(ValueError, match=r"cannot export \[job:demo.web\] cmd = 'cd app ; ./run'"):
        to_ini(app)
    assert json.loads(to_json(app))["jobs"][0]["cmd"] == "cd app ; ./run"  # JSON can


# -- export: JSON -----------------------------------------------------------------------
def test_json_export_round_trips(tmp_path):
    app = tricky_app(tmp_path)
    data = json.loads(to_json(app, {"worker": 2}, 8000))
    assert data == {"name": "shop+v2", "jobs": app.jobs({"worker": 2}, 8000)}
    assert [ProcessConfig.from_dict(job).port for job in data["jobs"]] == [8000, 8100, 8200, 8300]
    assert data["jobs"][1]["numprocesses"] == 2
    assert [ProcessConfig.from_dict(job).flapping for job in data["jobs"]] == [CRASH_LOOP] * 4
    off = json.loads(to_json(app, flapping=None))
    assert [ProcessConfig.from_dict(job).flapping for job in off["jobs"]] == [None] * 4


# -- export: systemd --------------------------------------------------------------------
def test_systemd_export_files(tmp_path):
    app = make_app(tmp_path, THREE, env="SECRET=s3\nPORT=6000\n")
    files = to_systemd(app, {"web": 2, "clock": 0}, user="deploy")
    assert list(files) == [
        "demo.target",
        "demo-web-1.service",
        "demo-web-2.service",
        "demo-worker-1.service",
    ]
    target = files["demo.target"].splitlines()
    assert [line for line in target if line.startswith("Wants=")] == [
        "Wants=demo-web-1.service",
        "Wants=demo-web-2.service",
        "Wants=demo-worker-1.service",
    ]
    assert target[-2:] == ["[Install]", "WantedBy=multi-user.target"]
    web2 = files["demo-web-2.service"].splitlines()
    for line in (
        "[Unit]",
        "Description=demo web.2",
        "PartOf=demo.target",
        "[Service]",
        "User=deploy",
        f"WorkingDirectory={app.root}",
        'Environment="SECRET=s3"',
        'Environment="PORT=6001"',
        "ExecStart=/bin/sh -c 'python -m http.server $$PORT'",
        "Restart=always",
        "KillMode=mixed",
    ):
        assert line in web2
    assert [line for line in web2 if "PORT=" in line] == ['Environment="PORT=6001"']
    assert 'Environment="PORT=6100"' in files["demo-worker-1.service"].splitlines()
    assert not any(line.startswith("User=") for line in to_systemd(app)["demo-web-1.service"])
    # systemd's own crash-loop limit is kept, unless flapping is off
    assert "StartLimitIntervalSec=0" not in web2
    unlimited = to_systemd(app, flapping=None)["demo-web-1.service"].splitlines()
    assert unlimited[unlimited.index("[Unit]") : unlimited.index("[Service]")] == [
        "[Unit]",
        "Description=demo web.1",
        "PartOf=demo.target",
        "StartLimitIntervalSec=0",
        "",
    ]


def test_systemd_export_quotes_commands_and_values(tmp_path):
    procfile = "web: echo \"it's $PORT\" 'a\\b' 100% ${HOME}\n"
    base = make_app(tmp_path, procfile)
    env = {"MSG": 'say "hi" \\ 50% $HOME', "TWO": "a\nb"}
    app = App(base.root, "shop+v2", base.entries, env, base.procfile)
    files = to_systemd(app)
    assert list(files) == ["shop\\x2bv2.target", "shop\\x2bv2-web-1.service"]
    service = files["shop\\x2bv2-web-1.service"].splitlines()
    assert "PartOf=shop\\x2bv2.target" in service
    assert 'Environment="MSG=say \\"hi\\" \\\\ 50%% $HOME"' in service
    assert 'Environment="TWO=a\\nb"' in service
    assert "ExecStart=/bin/sh -c 'echo \"it\\'s $$PORT\" \\'a\\\\b\\' 100%% $${HOME}'" in service
    with pytest.raises(ValueError, match="bad user name"):
        to_systemd(app, user="root\nExecStartPre=/bin/evil")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_export_passes_systemd_analyze_verify(tmp_path):
    procfile = "web: echo \"it's $PORT\" 'a\\b' 100% ${HOME}\nworker: sleep 1; echo done\n"
    base = make_app(tmp_path, procfile)
    env = {"MSG": 'say "hi" \\ 50% $HOME', "TWO": "a\nb"}
    app = App(base.root, base.name, base.entries, env, base.procfile)
    units = tmp_path / "units"
    units.mkdir()
    for name, text in to_systemd(app, {"web": 2}).items():
        (units / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in units.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if str(units) in line or "quot" in line.lower() or "escape" in line.lower()
    ]
    assert problems == []
    assert result.returncode == 0, result.stderr


# -- a Procfile job, really run -----------------------------------------------------------
class Output:
    """An io listener keeping the output of each pid."""

    def __init__(self) -> None:
        self.by_pid: dict[int, bytes] = {}

    def __call__(self, label: str, msg: dict) -> None:
        self.by_pid[msg["pid"]] = self.by_pid.get(msg["pid"], b"") + msg["data"]

    def lines(self) -> list[bytes]:
        return sorted(self.by_pid.values())


async def test_a_procfile_job_runs_with_its_env_cwd_and_one_port_per_instance(tmp_path):
    app = make_app(
        tmp_path,
        'web: echo "$GREETING web on $PORT ($(cat marker))" && exec sleep 60\n',
        env="GREETING='hello there'\n",
    )
    (Path(app.root) / "marker").write_text("in root")
    [job] = app.jobs({"web": 2})
    output = Output()
    async with Manager() as manager:
        manager.monitor_io(output, f"{app.name}.web")
        manager.load(ProcessConfig.from_dict(job), sessionid=app.name)
        expected = [b"hello there web on 5000 (in root)\n", b"hello there web on 5001 (in root)\n"]
        await wait_until(lambda: output.lines() == expected, what=f"{expected}")
        assert len(manager.pids(f"{app.name}.web")) == 2
