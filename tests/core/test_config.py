"""ProcessConfig: defaults, validation, identity resolution, immutability, dict forms."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from gaffer.core.config import ProcessConfig
from gaffer.core.flapping import FlappingInfo
from gaffer.core.restart import BackoffInfo


def test_config_defaults():
    cfg = ProcessConfig("web", "python -m http.server")
    assert cfg.name == "web"
    assert cfg.cmd == "python -m http.server"
    assert cfg.args == ()
    assert dict(cfg.env) == {}
    assert cfg.os_env is False
    assert cfg.uid is None
    assert cfg.gid is None
    assert cfg.cwd is None
    assert cfg.shell is False
    assert cfg.detach is False
    assert cfg.numprocesses == 1
    assert cfg.flapping == FlappingInfo(2, 1.0, 7.0, 5)  # crash loops contained by default
    assert (cfg.restart, cfg.backoff, cfg.start_secs, cfg.start_retries) == (
        "always",
        BackoffInfo(0.1, 2.0, 30.0),
        1.0,
        5,
    )
    assert (cfg.give_up_on, cfg.stop_signal, cfg.umask, dict(cfg.rlimits), cfg.env_file) == (
        (),
        "TERM",
        None,
        {},
        None,
    )
    assert cfg.redirect_output == ()
    assert cfg.redirect_input is False
    assert cfg.custom_streams == ()
    assert cfg.custom_channels == ()
    assert cfg.graceful_timeout == 10.0
    assert cfg.priority == 999
    assert (cfg.resolved_uid, cfg.resolved_gid, cfg.username) == (None, None, None)


def test_config_cmd_and_args_stored_as_given():
    cfg = ProcessConfig("web", "python -u  app.py", args=["--port", 8080, 1.5])
    assert cfg.cmd == "python -u  app.py"
    assert cfg.args == ("--port", "8080", "1.5")


def test_config_args_string_is_shell_split():
    cfg = ProcessConfig("web", "echo", args="a 'b c' \"d e\" f\\ g")
    assert cfg.args == ("a", "b c", "d e", "f g")


def test_config_settings_are_normalized():
    cfg = ProcessConfig(
        "web",
        "app",
        env={"PORT": 80, "RATE": 1.5},
        graceful_timeout=3,
        redirect_output="out, err",
        custom_streams=("ctl",),
        flapping="2 1. 7. 5",
        uid="0",
        cwd="/tmp",
    )
    assert dict(cfg.env) == {"PORT": "80", "RATE": "1.5"}
    assert isinstance(cfg.graceful_timeout, float)
    assert cfg.redirect_output == ("out", "err")
    assert cfg.custom_streams == ("ctl",)
    assert cfg.flapping == FlappingInfo(2, 1.0, 7.0, 5)
    assert cfg.uid == 0
    assert cfg.cwd == "/tmp"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("numprocesses", "2"),
        ("numprocesses", -1),
        ("numprocesses", 1.0),
        ("numprocesses", True),
        ("graceful_timeout", "x"),
        ("graceful_timeout", -1),
        ("graceful_timeout", float("nan")),
        ("priority", "1"),
        ("shell", "yes"),
        ("os_env", 1),
        ("detach", None),
        ("redirect_input", "true"),
        ("env", {"A": object()}),
        ("env", {"A=B": "x"}),
        ("env", {"": "x"}),
        ("env", {"A": True}),
        ("env", ["A=B"]),
        ("redirect_output", ["a", "b", "c"]),
        ("redirect_output", ["a b"]),
        ("redirect_output", 5),
        ("custom_streams", ["x", "x"]),
        ("custom_streams", ["a/b"]),
        ("uid", -1),
        ("uid", True),
        ("uid", 1.5),
        ("gid", ""),
        ("flapping", "1 2"),
        ("flapping", {"attempts": 0}),
        ("cwd", 5),
        ("cwd", ""),
        ("args", 5),
        ("args", "unterminated 'quote"),
        ("args", [None]),
        ("custom_channels", ["notafile"]),
        ("custom_channels", 3),
    ],
)
def test_config_bad_option_raises_value_error_naming_it(option, value):
    with pytest.raises(ValueError, match=f"option '{option}' of job 'web'"):
        ProcessConfig("web", "app", **{option: value})


def test_config_custom_streams_may_not_use_stdin():
    with pytest.raises(ValueError, match=r"option 'custom_streams'.*stdin"):
        ProcessConfig("web", "app", custom_streams=["stdin"])


def test_config_custom_streams_may_not_reuse_an_output_label():
    with pytest.raises(ValueError, match=r"option 'custom_streams'.*out"):
        ProcessConfig("web", "app", redirect_output=["out", "err"], custom_streams=["out"])


def test_config_unknown_user_and_group():
    with pytest.raises(ValueError, match=r"option 'uid'.*no-such-user-xyz"):
        ProcessConfig("web", "app", uid="no-such-user-xyz")
    with pytest.raises(ValueError, match=r"option 'gid'.*no-such-group-xyz"):
        ProcessConfig("web", "app", gid="no-such-group-xyz")


def test_config_unknown_option_is_named():
    with pytest.raises(ValueError, match=r"unknown option.*'numprocess'"):
        ProcessConfig("web", "app", numprocess=2)


@pytest.mark.parametrize("name", ["", "  ", "a b", "a\tb", "a/b", ".x", None, 5])
def test_config_bad_name(name):
    with pytest.raises(ValueError, match="option 'name'"):
        ProcessConfig(name, "app")


@pytest.mark.parametrize("cmd", ["", "   ", None, ["app"]])
def test_config_bad_cmd(cmd):
    with pytest.raises(ValueError, match="option 'cmd'"):
        ProcessConfig("web", cmd)


def test_config_name_may_hold_a_dot():
    assert ProcessConfig("web.1", "app").name == "web.1"


@pytest.mark.parametrize("uid", ["root", 0, "0"])
def test_config_uid_resolves_user(uid):
    cfg = ProcessConfig("web", "app", uid=uid)
    assert cfg.resolved_uid == 0
    assert cfg.resolved_gid == 0  # the user's primary group
    assert cfg.username == "root"


@pytest.mark.parametrize("gid", ["root", 0])
def test_config_gid_resolves_group(gid):
    cfg = ProcessConfig("web", "app", gid=gid)
    assert cfg.resolved_gid == 0
    assert cfg.resolved_uid is None
    assert cfg.username is None


def test_config_numeric_uid_without_passwd_entry_is_kept():
    cfg = ProcessConfig("web", "app", uid=65432, gid=65431)
    assert (cfg.resolved_uid, cfg.resolved_gid, cfg.username) == (65432, 65431, None)


def test_config_env_is_read_only():
    cfg = ProcessConfig("web", "app", env={"A": "1"})
    with pytest.raises(TypeError, match="read-only"):
        cfg.env["B"] = "2"
    with pytest.raises(TypeError):
        del cfg.env["A"]
    with pytest.raises(TypeError):
        cfg.env.update(B="2")
    with pytest.raises(TypeError):
        cfg.env.pop("A")
    with pytest.raises(TypeError):
        cfg.env.clear()
    with pytest.raises(TypeError):
        cfg.env.setdefault("B", "2")
    assert dict(cfg.env) == {"A": "1"}


def test_config_env_is_read_only_to_in_place_union():
    cfg = ProcessConfig("web", "app", env={"A": "1"})
    env = cfg.env
    with pytest.raises(TypeError):
        env |= {"B": "2"}
    assert dict(cfg.env) == {"A": "1"}


def test_config_is_frozen():
    cfg = ProcessConfig("web", "app")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.numprocesses = 3


def test_config_replace_returns_new_validated_config():
    cfg = ProcessConfig("web", "app", numprocesses=2, env={"A": "1"})
    other = cfg.replace(numprocesses=4, cmd="app2", args="x y")
    assert (other.name, other.cmd, other.numprocesses, other.args) == ("web", "app2", 4, ("x", "y"))
    assert dict(other.env) == {"A": "1"}
    assert (cfg.cmd, cfg.numprocesses, cfg.args) == ("app", 2, ())
    with pytest.raises(ValueError, match="option 'numprocesses'"):
        cfg.replace(numprocesses="many")
    with pytest.raises(ValueError, match="unknown option"):
        cfg.replace(bogus=1)


def test_config_to_dict_from_dict_round_trip():
    cfg = ProcessConfig(
        "web",
        "app --flag",
        args=["a", "b c"],
        env={"A": "1"},
        os_env=True,
        uid="root",
        gid=0,
        cwd="/tmp",
        shell=False,
        detach=False,
        numprocesses=3,
        flapping="3 2 1 4",
        redirect_output=["out", "err"],
        redirect_input=True,
        custom_streams=["ctl"],
        custom_channels=[7],
        graceful_timeout=2.5,
        priority=-1,
    )
    data = cfg.to_dict()
    assert data["args"] == ["a", "b c"]
    assert data["env"] == {"A": "1"}
    assert type(data["env"]) is dict
    assert data["flapping"] == {"attempts": 3, "window": 2.0, "retry_in": 1.0, "max_retry": 4}
    assert data["custom_channels"] == [7]
    again = ProcessConfig.from_dict(data)
    assert again == cfg
    assert hash(again) == hash(cfg)
    assert again.to_dict() == data


def test_config_to_dict_without_channels():
    left, right = socket.socketpair()
    with left, right:
        cfg = ProcessConfig("web", "app", custom_channels=[left])
        assert cfg.to_dict()["custom_channels"] == [left]
        data = cfg.to_dict(with_channels=False)
    assert "custom_channels" not in data
    assert ProcessConfig.from_dict(data).custom_channels == ()


def test_config_from_dict_requires_name_and_cmd():
    with pytest.raises(ValueError, match="misses cmd"):
        ProcessConfig.from_dict({"name": "web"})
    with pytest.raises(ValueError, match="misses name and cmd"):
        ProcessConfig.from_dict({})
    with pytest.raises(ValueError, match="must be a dict"):
        ProcessConfig.from_dict([("name", "web")])


def test_config_mapping_access():
    cfg = ProcessConfig("web", "app", numprocesses=3)
    assert cfg["numprocesses"] == 3
    assert cfg["name"] == "web"
    assert cfg.get("cmd") == "app"
    assert cfg.get("missing", 3) == 3
    assert cfg.get("missing") is None
    assert "cmd" in cfg
    assert "missing" not in cfg
    with pytest.raises(KeyError):
        cfg["missing"]
    assert list(cfg.keys())[:3] == ["name", "cmd", "args"]
    assert set(cfg.keys()) == set(cfg.to_dict())


def test_config_equal_configs_are_equal_and_hash_alike():
    one = ProcessConfig("web", "app", env={"A": "1"}, flapping=[2, 1, 7, 5])
    two = ProcessConfig("web", "app", env={"A": 1}, flapping="2 1. 7. 5")
    assert one == two
    assert hash(one) == hash(two)
    assert len({one, two}) == 1
    assert one != one.replace(numprocesses=2)
    assert one != ProcessConfig("web", "app")


@pytest.mark.parametrize(
    "option",
    [
        {"redirect_output": ["out"]},
        {"redirect_input": True},
        {"custom_streams": ["ctl"]},
        {"stdout_logfile": "-"},
        {"stderr_logfile": "syslog"},
    ],
)
def test_config_detach_refuses_pipes_to_gaffer(option):
    (name,) = option
    with pytest.raises(ValueError, match=rf"{name}.*detached"):
        ProcessConfig("d", "sleep 1", detach=True, **option)


def test_config_detach_accepts_log_file_paths():
    cfg = ProcessConfig("d", "sleep 1", detach=True, stdout_logfile="/tmp/d.log")
    assert cfg.detach and cfg.stdout_logfile == "/tmp/d.log"
