"""gafferd's ini file and settings: what is read, and every way it can be wrong."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

from gaffer import FlappingInfo
from gaffer.core.options import OPTIONS
from gaffer.core.optiontext import text_size as to_size
from gafferd.config import JOB_KEYS, ConfigError, find_config, load_config
from gafferd.settings import SETTINGS, SettingError, markdown_table, resolve


def write(directory: Path, text: str, name: str = "gafferd.ini") -> str:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


def error_of(path: str) -> str:
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    return str(excinfo.value)


def test_the_contract_example_is_read(tmp_path):
    path = write(
        tmp_path,
        """
        [gaffer]
        bind = 127.0.0.1:5000 unix:/run/gaffer/gafferd.sock
        require_key = false
        pidfile = /run/gafferd.pid
        error_log = -
        log_level = info

        [webhooks]
        job.default.web.exit = http://127.0.0.1:9000/hook

        [job:default.web]          ; [job:web] and [process:web] mean session "default"
        cmd = python -m http.server
        args = $PORT
        numprocesses = 2
        flapping = 2, 1., 7., 5    ; commas or spaces: attempts window retry_in max_retry
        redirect_output = stdout, stderr
        graceful_timeout = 10
        priority = 1
        start = true

        [env:default.web]
        PORT = 8000
    """,
    )
    config = load_config(path)
    spec = config.jobs["default.web"]
    assert spec.config.cmd == "python -m http.server"
    assert spec.config.args == ("$PORT",)
    assert spec.config.numprocesses == 2
    assert spec.config.flapping == FlappingInfo(2, 1.0, 7.0, 5)
    assert spec.config.redirect_output == ("stdout", "stderr")
    assert spec.config.env == {"PORT": "8000"}
    assert spec.config.os_env is True  # gafferd jobs start from its environment
    assert spec.start is True
    assert config.webhooks == (("job.default.web.exit", "http://127.0.0.1:9000/hook"),)
    assert config.settings["bind"].raw == "127.0.0.1:5000 unix:/run/gaffer/gafferd.sock"
    assert config.settings["bind"].origin == f"{path}:2"


def test_job_section_forms_and_priority_order(tmp_path):
    path = write(
        tmp_path,
        """
        [job:web]
        cmd = sleep 1
        priority = 5
        [process:worker]
        cmd = sleep 2
        priority = 1
        [job:app.api]
        cmd = sleep 3
        env:DEBUG = 1
        flapping = 2 1. 7. 5
    """,
    )
    config = load_config(path)
    assert list(config.jobs) == ["default.web", "default.worker", "app.api"]
    assert [spec.id for spec in config.jobs_by_priority()] == [
        "default.worker",
        "default.web",
        "app.api",
    ]
    assert config.jobs["app.api"].config.env == {"DEBUG": "1"}  # the case is kept
    assert config.jobs["app.api"].config.flapping == FlappingInfo(2, 1.0, 7.0, 5)


def test_relative_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "conf").mkdir()
    path = write(
        tmp_path / "conf",
        """
        [gaffer]
        pidfile = run/gafferd.pid
        [job:web]
        cmd = sleep 1
        cwd = app
        stdout_logfile = logs/web.log
        stderr_logfile = -
    """,
    )
    config = load_config(path)
    spec = config.jobs["default.web"].config
    assert spec.cwd == str(tmp_path / "conf" / "app")
    assert spec.stdout_logfile == str(tmp_path / "conf" / "logs" / "web.log")
    assert spec.stderr_logfile == "-"
    assert config.settings["pidfile"].raw == str(tmp_path / "conf" / "run" / "gafferd.pid")


def test_includes_and_include_dir(tmp_path):
    (tmp_path / "conf.d" / "more").mkdir(parents=True)
    write(tmp_path, "[job:a]\ncmd = sleep 1\n", "a.ini")
    write(tmp_path / "conf.d", "[job:b]\ncmd = sleep 1\n", "b.ini")
    write(tmp_path / "conf.d" / "more", "[job:c]\ncmd = sleep 1\n", "c.ini")
    write(tmp_path / "conf.d", "not ini at all\n", "notes.txt")
    path = write(tmp_path, "[gaffer]\ninclude = a.ini\ninclude_dir = conf.d\n")
    assert list(load_config(path).jobs) == ["default.a", "default.b", "default.c"]


BAD_CONFIGS = [
    (
        "unknown key",
        "[job:web]\ncmd = sleep 1\nnumproceses = 2\n",
        r"gafferd.ini:3: \[job:web\] numproceses = 2: unknown key; known: .*numprocesses",
    ),
    (
        "bad int",
        "[job:web]\ncmd = sleep 1\nnumprocesses = two\n",
        r"gafferd.ini:3: \[job:web\] numprocesses = two: expected an integer",
    ),
    (
        "negative int",
        "[job:web]\ncmd = sleep 1\nnumprocesses = -1\n",
        r"gafferd.ini:3: \[job:web\] numprocesses = -1: expected an integer >= 0, got -1",
    ),
    (
        "bad flapping",
        "[job:web]\ncmd = sleep 1\nflapping = 2 1.\n",
        r"gafferd.ini:3: \[job:web\] flapping = 2 1\.: flapping: expected 4 values",
    ),
    (
        "bad flapping number",
        "[job:web]\ncmd = sleep 1\nflapping = 2 x 7 5\n",
        r"gafferd.ini:3: \[job:web\] flapping = 2 x 7 5: flapping: expected 'attempts",
    ),
    ("missing cmd", "[job:web]\nnumprocesses = 2\n", r"gafferd.ini:1: \[job:web\] has no cmd"),
    (
        "bad bool",
        "[job:web]\ncmd = sleep 1\nshell = maybe\n",
        r"gafferd.ini:3: \[job:web\] shell = maybe: expected true or false",
    ),
    (
        "bad seconds",
        "[job:web]\ncmd = sleep 1\ngraceful_timeout = soon\n",
        r"gafferd.ini:3: \[job:web\] graceful_timeout = soon: expected a number of seconds",
    ),
    (
        "bad size",
        "[job:web]\ncmd = sleep 1\nlogfile_max_bytes = big\n",
        r"gafferd.ini:3: \[job:web\] logfile_max_bytes = big: expected a size",
    ),
    (
        "unknown user",
        "[job:web]\ncmd = sleep 1\nuid = no-such-user-here\n",
        r"gafferd.ini:3: \[job:web\] uid = no-such-user-here: unknown user",
    ),
    (
        "bad syslog facility",
        "[job:web]\ncmd = sleep 1\nstdout_logfile = syslog:nope\n",
        r"gafferd.ini:3: \[job:web\] stdout_logfile = syslog:nope: unknown syslog facility",
    ),
    (
        "too many labels",
        "[job:web]\ncmd = sleep 1\nredirect_output = a, b, c\n",
        r"gafferd.ini:3: \[job:web\] redirect_output = a, b, c: at most two labels",
    ),
    (
        "unknown setting",
        "[gaffer]\nbnd = 127.0.0.1:5000\n",
        r"gafferd.ini:2: \[gaffer\] bnd = 127\.0\.0\.1:5000: unknown setting; known: .*bind",
    ),
    (
        "bad setting value",
        "[gaffer]\nbacklog = lots\n",
        r"gafferd.ini:2: \[gaffer\] backlog = lots: expected an integer",
    ),
    (
        "bad bind",
        "[gaffer]\nbind = localhost\n",
        r"gafferd.ini:2: \[gaffer\] bind = localhost: bad address 'localhost'",
    ),
    (
        "bad log level",
        "[gaffer]\nlog_level = loud\n",
        r"gafferd.ini:2: \[gaffer\] log_level = loud: expected one of critical",
    ),
    (
        "unknown section",
        "[jobs:web]\ncmd = sleep 1\n",
        r"gafferd.ini:1: \[jobs:web\] unknown section",
    ),
    (
        "duplicate section",
        "[job:web]\ncmd = sleep 1\n[job:web]\ncmd = sleep 2\n",
        r"gafferd.ini:3: section \[job:web\] is already defined at line 1",
    ),
    (
        "duplicate job",
        "[job:web]\ncmd = sleep 1\n[process:web]\ncmd = sleep 2\n",
        r"gafferd.ini:3: \[process:web\] job default\.web is already defined at .*:1",
    ),
    (
        "duplicate key",
        "[job:web]\ncmd = sleep 1\ncmd = sleep 2\n",
        r"gafferd.ini:3: \[job:web\] cmd is already set at line 2",
    ),
    (
        "env of an unknown job",
        "[job:web]\ncmd = sleep 1\n[env:wbe]\nA = 1\n",
        r"gafferd.ini:3: \[env:wbe\] environment for job default\.wbe, which no",
    ),
    ("bad job id", "[job:.web]\ncmd = sleep 1\n", r"gafferd.ini:1: \[job:\.web\] bad job id"),
    ("no equals", "[job:web]\ncmd sleep 1\n", r"gafferd.ini:2: expected key = value"),
    (
        "key before section",
        "cmd = sleep 1\n",
        r"gafferd.ini:1: 'cmd = sleep 1' comes before any \[section\]",
    ),
    (
        "bad webhook url",
        "[webhooks]\nload = ftp://example.com\n",
        r"gafferd.ini:2: \[webhooks\] load = ftp://example.com: 'ftp://example.com' is not an",
    ),
    (
        "unknown ssl key",
        "[ssl]\ncert = x.pem\n",
        r"gafferd.ini:2: \[ssl\] cert = x.pem: unknown key; known: certfile, keyfile",
    ),
    (
        "include of a missing file",
        "[gaffer]\ninclude = nowhere.ini\n",
        r"gafferd.ini:2: include = nowhere.ini: .*nowhere.ini does not exist",
    ),
    (
        "include_dir not a dir",
        "[gaffer]\ninclude_dir = nowhere\n",
        r"gafferd.ini:2: include_dir = nowhere: .*nowhere is not a directory",
    ),
]


@pytest.mark.parametrize(
    ("case", "text", "message"), BAD_CONFIGS, ids=[case for case, _, _ in BAD_CONFIGS]
)
def test_bad_config_names_file_line_section_key_and_value(tmp_path, case, text, message):
    path = write(tmp_path, text)
    error = error_of(path)
    assert re.search(message, error), error
    assert error.startswith(str(tmp_path))


def test_an_error_in_an_included_file_names_that_file(tmp_path):
    write(tmp_path, "[job:b]\ncmd = sleep 1\nnumprocesses = x\n", "b.ini")
    path = write(tmp_path, "[gaffer]\ninclude = b.ini\n")
    assert error_of(path).startswith(f"{tmp_path / 'b.ini'}:3: [job:b] numprocesses = x")


def test_an_include_cycle_is_an_error(tmp_path):
    write(tmp_path, "[gaffer]\ninclude = gafferd.ini\n", "b.ini")
    path = write(tmp_path, "[gaffer]\ninclude = b.ini\n")
    assert "include cycle" in error_of(path)


def test_a_section_defined_in_two_files_names_both(tmp_path):
    write(tmp_path, "[job:web]\ncmd = sleep 2\n", "b.ini")
    path = write(tmp_path, "[gaffer]\ninclude = b.ini\n[job:web]\ncmd = sleep 1\n")
    assert re.search(
        r"b.ini:1: section \[job:web\] is already defined at .*gafferd.ini:3", error_of(path)
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_an_error(tmp_path):
    path = write(tmp_path, "[job:web]\ncmd = sleep 1\n")
    os.chmod(path, 0)
    assert "cannot read: Permission denied" in error_of(path)


def test_an_unreadable_included_file_names_the_include_line(tmp_path):
    (tmp_path / "dir.ini").mkdir()  # unreadable as a file, even for root
    path = write(tmp_path, "[gaffer]\ninclude = dir.ini\n")
    assert re.search(r"gafferd.ini:2: include = dir.ini: cannot read .*dir.ini", error_of(path))


def test_not_utf8_is_an_error(tmp_path):
    path = tmp_path / "gafferd.ini"
    path.write_bytes(b"[job:web]\ncmd = \xff\n")
    assert "not UTF-8" in error_of(str(path))


def test_continuation_lines_and_comments(tmp_path):
    path = write(
        tmp_path,
        """
        # a comment
        ; another
        [job:web]   ; a comment after a header
        cmd = sleep
        args = 100
            200
        numprocesses = 2   ; after a value that no ';' belongs in
        env:URL = http://example.com/#fragment
    """,
    )
    spec = load_config(path).jobs["default.web"].config
    assert spec.args == ("100", "200")
    assert spec.numprocesses == 2
    assert spec.env == {"URL": "http://example.com/#fragment"}


def test_flapping_can_be_turned_off(tmp_path):
    path = write(tmp_path, "[job:web]\ncmd = sleep 1\nflapping = off\n")
    assert load_config(path).jobs["default.web"].config.flapping is None


def test_the_log_keys_are_read_and_checked(tmp_path):
    path = write(
        tmp_path,
        """
        [job:web]
        cmd = sleep 1
        stdout_logfile = web.log
        log_format = json
        log_rotate = daily
        log_max_total = 200MB
        log_markers = false
        log_history = 50
        """,
    )
    config = load_config(path).jobs["default.web"].config
    assert (config.log_format, config.log_rotate, config.log_max_total) == (
        "json",
        "daily",
        200 * 1024**2,
    )
    assert (config.log_markers, config.log_history) == (False, 50)
    for key, value, why in (
        ("log_format", "xml", "expected one of text, json"),
        ("log_rotate", "weekly", "expected one of daily, hourly or off"),
        ("log_max_total", "lots", "expected a size"),
    ):
        error = error_of(write(tmp_path, f"[job:web]\ncmd = sleep 1\n{key} = {value}\n"))
        assert f"gafferd.ini:3: [job:web] {key} = {value}: " in error and why in error, error
    off = write(tmp_path, "[job:web]\ncmd = sleep 1\nlog_rotate = off\nlog_max_total = off\n")
    assert load_config(off).jobs["default.web"].config.log_rotate is None


def test_sizes():
    assert to_size("1048576") == 1048576
    assert to_size("512KB") == 512 * 1024
    assert to_size("50 MiB") == 50 * 1024**2
    assert to_size("1g") == 1024**3
    with pytest.raises(ValueError, match="size"):
        to_size("1.5MB")


def test_every_process_option_has_an_ini_key():
    names = {option.name for option in OPTIONS}
    assert names - {"env", "custom_channels"} <= set(JOB_KEYS)


def test_settings_layer_default_file_environment_command_line(tmp_path):
    path = write(tmp_path, "[gaffer]\nbacklog = 10\nlog_level = debug\nbind = 127.0.0.1:1\n")
    config = load_config(path)
    effective = resolve(
        config.settings,
        {"GAFFERD_BACKLOG": "20", "GAFFERD_BIND": "[::1]:2"},
        {"bind": ["127.0.0.1:3", "unix:/tmp/x.sock"]},
    )
    assert effective.backlog == 20
    assert effective.origins["backlog"] == "environment GAFFERD_BACKLOG"
    assert effective.log_level == "debug"
    assert effective.origins["log_level"] == f"{path}:3"
    assert effective.bind == ["127.0.0.1:3", "unix:/tmp/x.sock"]
    assert effective.origins["bind"] == "command line --bind"
    assert effective.require_key is False
    assert effective.origins["require_key"] == "default"
    lines = "\n".join(effective.lines())
    assert re.search(r"backlog = 20 +; environment GAFFERD_BACKLOG", lines)


def test_a_bad_environment_value_names_the_variable():
    with pytest.raises(SettingError, match=r"environment GAFFERD_BACKLOG: backlog = 'x'"):
        resolve({}, {"GAFFERD_BACKLOG": "x"}, {})


def test_config_discovery(tmp_path, monkeypatch):
    path = write(tmp_path, "[job:web]\ncmd = sleep 1\n")
    assert find_config(path, {}) == (path, str(tmp_path))
    assert find_config(str(tmp_path), {}) == (path, str(tmp_path))
    assert find_config(None, {"GAFFERD_CONFIG": path}) == (path, str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_config(str(empty), {}) == (None, str(empty))
    with pytest.raises(ConfigError, match="no such file"):
        find_config(str(tmp_path / "missing.ini"), {})
    monkeypatch.setenv("HOME", str(tmp_path))
    found, _directory = find_config(None, {})
    assert found is None or found.endswith("gafferd.ini")


def test_the_configuration_doc_lists_every_setting():
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    assert markdown_table() in doc, "regenerate: python -m gafferd.settings"
    for setting in SETTINGS:
        assert setting.env in doc


def test_every_job_key_is_in_the_docs_job_table():
    """docs/configuration.md's job keys table has a row for every option of
    gaffer/core/options.py (declared once there)."""
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    table = doc.split("### Job keys", 1)[1].split("\n## ", 1)[0]
    rows = {
        key.strip("` ")
        for line in table.splitlines()
        if line.startswith("| `")
        for key in line.split("|")[1].split(",")
    }
    missing = {option.name for option in OPTIONS} - rows - {"env", "custom_channels"}
    assert not missing, f"job keys missing from docs/configuration.md: {sorted(missing)}"
    assert rows - {option.name for option in OPTIONS} <= {"cmd", "env:NAME", "start"}
