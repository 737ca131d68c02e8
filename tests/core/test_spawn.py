"""Building a child's environment and command line (not the spawn itself)."""

from __future__ import annotations

import errno
import os
import pwd
import shutil

import pytest

from gaffer.core.config import ProcessConfig
from gaffer.core.spawn import build_command, build_env, resolve_executable, substitute
from gaffer.errors import SpawnError

SCRIPT = "#!/bin/sh\nexit 0\n"


@pytest.fixture
def bindir(tmp_path):
    """A directory holding an executable ``prog`` and a non-executable ``data``."""
    path = tmp_path / "bin"
    path.mkdir()
    prog = path / "prog"
    prog.write_text(SCRIPT)
    prog.chmod(0o755)
    data = path / "data"
    data.write_text(SCRIPT)
    data.chmod(0o644)
    return path


def config(cmd: str = "prog", **settings) -> ProcessConfig:
    return ProcessConfig("job", cmd, **settings)


# -- build_env ------------------------------------------------------------------------------
def test_build_env_without_os_env_has_only_config_env(monkeypatch):
    monkeypatch.setenv("GAFFER_TEST_OUTER", "outer")
    assert build_env(config(env={"A": "1"})) == {"A": "1"}
    assert build_env(config()) == {}


def test_build_env_precedence(monkeypatch):
    monkeypatch.setenv("GAFFER_TEST_ONLY_OS", "os")
    monkeypatch.setenv("GAFFER_TEST_SHARED", "os")
    cfg = config(os_env=True, env={"GAFFER_TEST_SHARED": "config", "B": "config", "C": "config"})
    env = build_env(cfg, {"B": "extra1", "C": "extra1"}, None, {"C": "extra2"})
    assert env["GAFFER_TEST_ONLY_OS"] == "os"
    assert env["GAFFER_TEST_SHARED"] == "config"
    assert env["B"] == "extra1"
    assert env["C"] == "extra2"
    assert env["PATH"] == os.environ["PATH"]


def test_build_env_extras_apply_without_os_env():
    env = build_env(config(env={"A": "config"}), {"A": "load", "B": "load"}, {})
    assert env == {"A": "load", "B": "load"}


def test_build_env_returns_a_fresh_dict():
    cfg = config(env={"A": "1"})
    env = build_env(cfg)
    env["A"] = "changed"
    assert cfg.env["A"] == "1"
    assert build_env(cfg) == {"A": "1"}


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to name another user")
def test_build_env_sets_identity_of_another_user_below_config_env():
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    env = build_env(config(uid="nobody", env={"HOME": "/override"}))
    assert env == {"HOME": "/override", "USER": entry.pw_name, "LOGNAME": entry.pw_name}


# -- substitute -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$A", "a"),
        ("${A}", "a"),
        ("x${A}y", "xay"),
        ("$A/$B_2", "a/b2"),
        ("$$A", "$A"),
        ("$$", "$"),
        ("cost: $1", "cost: $1"),
        ("a lone $ sign", "a lone $ sign"),
        ("trailing $", "trailing $"),
        ("${1}", "${1}"),
        ("no variables", "no variables"),
    ],
)
def test_substitute(text, expected):
    assert substitute(text, {"A": "a", "B_2": "b2"}, "args") == expected


def test_substitute_does_not_expand_values_again():
    assert substitute("$A", {"A": "$B", "B": "x"}, "args") == "$B"


@pytest.mark.parametrize("text", ["$MISSING", "${MISSING}", "x-$MISSING-y"])
def test_substitute_unknown_variable_raises_spawn_error(text):
    with pytest.raises(SpawnError, match=r"args: \$MISSING is not set") as info:
        substitute(text, {"A": "a"}, "args")
    assert info.value.os_errno == errno.EINVAL


# -- build_command --------------------------------------------------------------------------
def test_build_command_splits_cmd_and_appends_args(bindir):
    cfg = config("prog --flag 'two words'", args=["a", "b c"])
    command = build_command(cfg, {"PATH": str(bindir)})
    assert command.argv == ("prog", "--flag", "two words", "a", "b c")
    assert command.executable == str(bindir / "prog")


def test_build_command_substitutes_in_cmd_words_and_args(bindir):
    env = {"PATH": str(bindir), "PORT": "8080", "NAME": "web", "PROG": "prog"}
    cfg = config("$PROG --port=$PORT", args=["--name", "${NAME}-1", "$$HOME"])
    command = build_command(cfg, env)
    assert command.argv == ("prog", "--port=8080", "--name", "web-1", "$HOME")
    assert command.executable == str(bindir / "prog")
    assert command.env == env


def test_build_command_unknown_variable_raises(bindir):
    with pytest.raises(SpawnError, match=r"\$NOPE"):
        build_command(config("prog", args=["$NOPE"]), {"PATH": str(bindir)})
    with pytest.raises(SpawnError, match=r"cmd: \$NOPE"):
        build_command(config("prog $NOPE"), {"PATH": str(bindir)})


def test_build_command_shell(bindir):
    cfg = config("echo $HOME && prog", shell=True, args=["a", "$X"])
    command = build_command(cfg, {"PATH": str(bindir), "X": "x"})
    assert command.argv == ("/bin/sh", "-c", "echo $HOME && prog", "a", "x")
    assert command.executable == "/bin/sh"


def test_build_command_carries_cwd_and_identity(bindir, tmp_path):
    command = build_command(config(cwd=str(tmp_path)), {"PATH": str(bindir)})
    assert command.cwd == str(tmp_path)
    assert (command.uid, command.gid, command.groups) == (None, None, None)


def test_build_command_unbalanced_quote_raises_spawn_error(bindir):
    with pytest.raises(SpawnError, match="cmd") as info:
        build_command(config("prog 'open"), {"PATH": str(bindir)})
    assert info.value.os_errno == errno.EINVAL


def test_build_command_resolves_through_child_path(bindir, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    command = build_command(config(), {"PATH": f"/nonexistent:{bindir}"})
    assert command.executable == str(bindir / "prog")
    assert command.argv[0] == "prog"


def test_build_command_falls_back_to_gaffer_path(bindir, monkeypatch):
    monkeypatch.setenv("PATH", str(bindir))
    command = build_command(config(), {"HOME": "/root"})
    assert command.executable == str(bindir / "prog")


def test_build_command_child_path_wins_over_gaffer_path(bindir, monkeypatch):
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(SpawnError):
        build_command(config(), {"PATH": "/nonexistent"})


def test_build_command_missing_program(bindir):
    with pytest.raises(SpawnError, match="no-such-prog-xyz") as info:
        build_command(config("no-such-prog-xyz --x"), {"PATH": str(bindir)})
    assert info.value.os_errno == errno.ENOENT
    assert info.value.reason == "spawn_error"


def test_build_command_relative_program_resolved_against_cwd(bindir):
    command = build_command(config("./prog", cwd=str(bindir)), {})
    assert command.executable == os.path.join(str(bindir), "./prog")
    assert os.path.samefile(command.executable, bindir / "prog")
    assert command.argv == ("./prog",)


def test_build_command_relative_program_missing_in_cwd(tmp_path):
    with pytest.raises(SpawnError, match=r"\./prog") as info:
        build_command(config("./prog", cwd=str(tmp_path)), {})
    assert info.value.os_errno == errno.ENOENT


def test_build_command_non_executable_file(bindir):
    with pytest.raises(SpawnError, match="not an executable") as info:
        build_command(config(str(bindir / "data")), {})
    assert info.value.os_errno == errno.EACCES


# -- resolve_executable ---------------------------------------------------------------------
def test_resolve_executable_absolute_path(bindir):
    assert resolve_executable(str(bindir / "prog"), {}, "/") == str(bindir / "prog")


def test_resolve_executable_directory_is_not_executable(bindir):
    with pytest.raises(SpawnError) as info:
        resolve_executable(str(bindir), {}, None)
    assert info.value.os_errno == errno.EACCES


def test_resolve_executable_relative_without_cwd_uses_current_dir(bindir, monkeypatch):
    monkeypatch.chdir(bindir)
    assert resolve_executable("./prog", {}, None) == "./prog"


def test_resolve_executable_skips_non_executable_in_path(bindir):
    with pytest.raises(SpawnError, match="'data' not found") as info:
        resolve_executable("data", {"PATH": str(bindir)}, None)
    assert info.value.os_errno == errno.ENOENT


def test_resolve_executable_relative_path_entry_gives_absolute_result(bindir, monkeypatch):
    monkeypatch.chdir(bindir.parent)
    found = resolve_executable("prog", {"PATH": "bin"}, None)
    assert os.path.isabs(found)
    assert found == str(bindir / "prog")


def test_resolve_executable_finds_system_programs():
    assert resolve_executable("sh", {"PATH": os.defpath}, None) == shutil.which(
        "sh", path=os.defpath
    )


def test_resolve_executable_relative_path_entry_is_relative_to_child_cwd(bindir, monkeypatch):
    # execvp in the child (which runs in ``cwd``) resolves a relative PATH entry there.
    elsewhere = bindir / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    found = resolve_executable("prog", {"PATH": "bin"}, str(bindir.parent))
    assert found == str(bindir / "prog")
