"""The names CONTRACT.md promises are importable and present."""

from __future__ import annotations

import inspect

import gaffer
from gaffer import Manager, Process, ProcessConfig

MANAGER_MEMBERS = """
start run stop restart active events
load unload reload update get start_job stop_job scale commit info stats stopall killall
sessions jobs jobs_walk
running pids get_process kill send stop_process walk monitor unmonitor
add_process remove_process start_process restart_process ttin ttou send_signal
get_process_info get_process_status
""".split()

PROCESS_MEMBERS = """
pid os_pid name active info stats kill stop monitor unmonitor monitor_io unmonitor_io
write writelines streams
""".split()

CONFIG_OPTIONS = """
args env os_env uid gid cwd shell detach numprocesses flapping redirect_output
redirect_input custom_streams custom_channels graceful_timeout priority
""".split()


def test_contract_imports():
    from gaffer import (  # noqa: F401
        EventEmitter,
        FlappingInfo,
        Manager,
        ProcessConfig,
        ProcessConflict,
        ProcessError,
        ProcessNotFound,
    )


def test_all_is_sorted_and_complete():
    assert list(gaffer.__all__) == sorted(gaffer.__all__)
    for name in gaffer.__all__:
        assert hasattr(gaffer, name), name


def test_manager_has_every_contract_member():
    missing = [
        name
        for name in MANAGER_MEMBERS
        if not hasattr(Manager, name) and name not in ("running", "events")
    ]
    assert missing == []
    manager = Manager()
    try:
        assert isinstance(manager.running, dict)
        assert manager.events is not None
    finally:
        manager.loop.close()


def test_process_has_every_contract_member():
    missing = [name for name in PROCESS_MEMBERS if not hasattr(Process, name)]
    # pid, os_pid, name and streams are instance attributes
    assert set(missing) <= {"pid", "os_pid", "name", "streams"}
    init = inspect.signature(Process.__init__).parameters
    assert {"pid", "name"} <= set(init)


def test_process_config_takes_every_option():
    config = ProcessConfig("web", "sleep 1")
    for option in CONFIG_OPTIONS:
        assert option in config, option
    assert {"name", "cmd", *CONFIG_OPTIONS} <= set(config.to_dict())


def test_version_is_a_string():
    assert isinstance(gaffer.__version__, str)
    assert gaffer.version_info[0] == 0
