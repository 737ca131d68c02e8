"""Programs written against gaffer 0.5, run against a real gafferd with the real client
(gaffer.client), where CONTRACT.md is silent (issue 19):

1. a config's own ``to_dict()`` (and ``dict(config)``) is accepted everywhere a config is:
   ``Server.load`` (REST POST, and PUT with ``force``), ``Job.update`` (PUT), the
   ``/channel`` ``load`` and ``update`` commands; ``info()["config"]`` shows it back. Open
   files in ``custom_channels`` cannot cross HTTP: a 400 that says so;
5. ``FlappingInfo`` counts written as floats (``attempts=2.``) pass over HTTP too;
6. a command error on ``/channel`` is ``{"errno", "reason", "message"}``, as documented;
7. a process's IO channel opened write-only refuses a reader (0.5: IOError), one opened
   read-only refuses a write.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gaffer import FlappingInfo, GafferError, Manager, ProcessConfig
from gaffer.client import ApiError, AsyncServer, BadRequest, Server
from gaffer.client.channel import ChannelModeError
from gaffer.http import HttpHandler
from gaffer.http.schema import config_json
from tests.cli.cli_helpers import Daemon, LongLived, check_no_leftovers, start_daemon
from tests.helpers import CHILD, ROOT

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    """tests/conftest.py's check, but the module's gafferd (and its jobs) live on."""
    yield
    check_no_leftovers()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with LongLived(start_daemon(tmp_path_factory.mktemp("compat"), tcp=False)) as running:
        yield running


@pytest.fixture
def daemon(shared: Daemon) -> Iterator[Daemon]:
    """The shared gafferd; every job is unloaded after the test."""
    yield shared
    for job in shared.jobs():
        shared.unload(job)


def dummy(name: str = "dummy", *mode: str, **settings: Any) -> ProcessConfig:
    """A config as a 0.5 program wrote one: most options set, counts as floats."""
    defaults: dict[str, Any] = {
        "args": ["-u", str(CHILD), *(mode or ("sleep",))],
        "env": {"GREETING": "hello", "PORT": "8000"},
        "os_env": True,
        "cwd": str(ROOT),
        "numprocesses": 1,
        "flapping": FlappingInfo(attempts=2.0, window=1.0, retry_in=7.0, max_retry=5.0),
        "redirect_output": ["out", "err"],
        "redirect_input": True,
        "custom_streams": ["ctrl"],
        "graceful_timeout": 2.5,
        "priority": 3,
    }
    return ProcessConfig(name, sys.executable, **{**defaults, **settings})


# -- 1. to_dict() everywhere a config is taken -----------------------------------------------


def test_scenario_load_a_process_config_then_read_it_back(daemon: Daemon) -> None:
    config = dummy()
    assert config.to_dict()["custom_channels"] == []  # what 0.5's to_dict() had too
    with Server(daemon.unix_url) as server:
        job = server.load(config, start=False)  # 0.5: sent config.to_dict()
        assert job.id == "default.dummy"
        info = job.info()
        assert info["config"] == config.to_dict()
        assert info["running"] == 0
        job.start()
        assert job.info()["running"] == 1
        # the dict form is accepted as well, the same way
        other = dummy("other")
        server.load(other.to_dict(), start=False)
        assert server.job("other").info()["config"] == other.to_dict()


def test_dict_of_a_config_is_accepted_too(daemon: Daemon) -> None:
    config = dummy("asdict")
    with Server(daemon.unix_url) as server:
        job = server.load(dict(config), start=False)  # FlappingInfo, tuples inside
        assert job.info()["config"] == config.to_dict()


def test_update_with_to_dict_over_put(daemon: Daemon) -> None:
    config = dummy("upd")
    with Server(daemon.unix_url) as server:
        job = server.load(config)
        changed = config.replace(numprocesses=2, env={"GREETING": "bonjour"})
        job.update(changed, start=True)  # PUT /jobs/default/upd
        assert job.info()["config"] == changed.to_dict()
        again = changed.replace(priority=7)
        server.load(again, force=True)  # PUT as the job exists
        assert job.info()["config"] == again.to_dict()
        assert len(job.pids()) == 2


def test_raw_rest_bodies_of_to_dict(daemon: Daemon) -> None:
    config = dummy("raw")
    status, answer = daemon.request("POST", "/jobs/default", {**config.to_dict(), "start": False})
    assert (status, answer) == (200, {"ok": True})
    updated = config.replace(numprocesses=0)
    status, answer = daemon.request("PUT", "/jobs/default/raw", updated.to_dict())
    assert (status, answer) == (201, {"ok": True})
    assert daemon.info("default.raw")["config"] == updated.to_dict()


async def test_scenario_23_channel_load_and_update_take_to_dict(daemon: Daemon) -> None:
    config = dummy()
    async with AsyncServer(daemon.unix_url) as server:
        channel = await server.socket()
        try:
            # reference scenario 23: load(config dict, start=False) -> {"ok": true}
            answer = await channel.command("load", config.to_dict(), start=False)
            assert answer == {"ok": True}
            assert (await channel.command("jobs"))["jobs"][0] == "default.dummy"
            info = (await channel.command("info", "dummy"))["info"]
            assert info["config"] == config.to_dict()
            changed = config.replace(numprocesses=0, priority=1)
            assert await channel.command("update", changed.to_dict()) == {"ok": True}
            info = (await channel.command("info", "dummy"))["info"]
            assert info["config"] == changed.to_dict()
            # a ProcessConfig itself goes as its to_dict()
            assert await channel.command("update", config) == {"ok": True}
            assert (await channel.command("commit", "dummy"))["pid"] >= 1
        finally:
            await channel.close()


def test_open_channels_cannot_cross_http(daemon: Daemon) -> None:
    left, right = socket.socketpair()
    try:
        config = dummy("chan", custom_channels=[left])
        with Server(daemon.unix_url) as server, pytest.raises(BadRequest) as caught:
            server.load(config)
        message = str(caught.value.reason)
        assert "body.custom_channels" in message
        assert "open files and sockets cannot be sent over HTTP" in message
        assert not daemon.has_job("default.chan")  # nothing loaded
        # the same refusal for a raw body, and for a PUT
        status, answer = daemon.request(
            "POST", "/jobs/default", {"name": "chan", "cmd": "true", "custom_channels": [3]}
        )
        assert status == 400 and "custom_channels" in answer["reason"], answer
        daemon.load({"name": "chan", "cmd": sys.executable, "args": [str(CHILD), "sleep"]})
        status, answer = daemon.request(
            "PUT", "/jobs/default/chan", {"cmd": "true", "custom_channels": [left.fileno()]}
        )
        assert status == 400 and "cannot be sent over HTTP" in answer["reason"], answer
    finally:
        left.close()
        right.close()


async def test_channel_load_refuses_open_channels(daemon: Daemon) -> None:
    async with AsyncServer(daemon.unix_url) as server:
        channel = await server.socket()
        try:
            with pytest.raises(ApiError) as caught:
                await channel.command("load", {"name": "x", "cmd": "true", "custom_channels": [4]})
            assert caught.value.status == 400
            assert "custom_channels" in caught.value.reason
        finally:
            await channel.close()
    assert not daemon.has_job("default.x")


async def test_info_of_an_embedded_job_with_open_channels_shows_descriptor_numbers(
    tmp_path: Path,
) -> None:
    # a program embedding the manager may pass open files; the API shows their numbers
    left, right = socket.socketpair()
    try:
        async with Manager() as manager:
            http = HttpHandler(bind=[f"unix:{tmp_path / 'api.sock'}"])
            http.start(manager.loop, manager)
            try:
                config = ProcessConfig(
                    "chan", sys.executable, args=[str(CHILD), "sleep"], custom_channels=[right]
                )
                manager.load(config)
                assert manager.info("chan")["config"] == config.to_dict()  # the objects
                async with AsyncServer(f"unix:{tmp_path / 'api.sock'}") as server:
                    shown = (await server.job("chan").info())["config"]
                    assert shown == {**config.to_dict(), "custom_channels": [right.fileno()]}
                    channel = await server.socket()
                    try:
                        info = (await channel.command("info", "chan"))["info"]
                        assert info["config"]["custom_channels"] == [right.fileno()]
                    finally:
                        await channel.close()
                    # and sending it back is refused, saying why
                    with pytest.raises(BadRequest, match="cannot be sent over HTTP"):
                        await server.job("chan").update(shown)
            finally:
                await http.stop()
    finally:
        left.close()
        right.close()


def test_config_json_shows_channels_as_descriptor_numbers(tmp_path: Path) -> None:
    opened = (tmp_path / "f").open("w")
    closed = (tmp_path / "g").open("w")
    closed.close()
    try:
        config = {"name": "x", "custom_channels": [opened, 7, closed]}
        assert config_json(config)["custom_channels"] == [opened.fileno(), 7, -1]
        assert config_json({"name": "x", "custom_channels": []})["custom_channels"] == []
    finally:
        opened.close()


# -- 5. integral floats for the flapping counts, over HTTP --------------------------------------


def test_flapping_counts_as_floats_over_http(daemon: Daemon) -> None:
    flapping = {"attempts": 2.0, "window": 1.0, "retry_in": 0.5, "max_retry": 3.0}
    status, answer = daemon.request(
        "POST", "/jobs/default", {"name": "flap", "cmd": "true", "flapping": flapping}
    )
    assert (status, answer) == (200, {"ok": True})
    shown = daemon.info("default.flap")["config"]["flapping"]
    assert shown == {"attempts": 2, "window": 1.0, "retry_in": 0.5, "max_retry": 3}
    status, answer = daemon.request(
        "POST",
        "/jobs/default",
        {"name": "flap2", "cmd": "true", "flapping": {**flapping, "attempts": 2.5}},
    )
    assert status == 400, answer
    assert re.search(
        r"flapping\.attempts: expected a whole number >= 1, got 2\.5", answer["reason"]
    )
    assert not daemon.has_job("default.flap2")


# -- 6. the three keys of a command error ---------------------------------------------------------


async def test_command_errors_carry_errno_reason_and_message_as_documented(
    daemon: Daemon,
) -> None:
    async with AsyncServer(daemon.unix_url) as server:
        channel = await server.socket()
        try:
            with pytest.raises(ApiError) as caught:
                await channel.command("info", "nosuchjob")
        finally:
            await channel.close()
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    assert "nosuchjob" in caught.value.reason  # the message, for a person
    doc = (ROOT / "docs" / "http-api.md").read_text()
    assert '"error": {"errno", "reason", "message"}' in doc


async def test_command_error_is_exactly_errno_reason_message(daemon: Daemon) -> None:
    async with AsyncServer(daemon.unix_url) as server:
        connection = await server.transport.websocket("/channel")  # raw JSON messages
        try:
            request = {"identity": "c1", "name": "info", "args": ["nosuchjob"], "kwargs": {}}
            await connection.write_message(json.dumps({"event": "CMD", "data": request}))
            message = json.loads(await asyncio.wait_for(connection.read_message(), 10))
        finally:
            connection.close()
    assert message["event"] == "gaffer:command_error", message
    error = message["data"]["error"]
    assert message["data"]["id"] == "c1"
    assert set(error) == {"errno", "reason", "message"}
    assert (error["errno"], error["reason"]) == (404, "not_found")  # as 0.5
    assert "nosuchjob" in error["message"]


# -- 7. an IO channel used against its mode ------------------------------------------------------


async def test_write_only_io_channel_refuses_a_reader(daemon: Daemon) -> None:
    async with AsyncServer(daemon.unix_url) as server:
        job = await server.load(dummy("echo", "echo", custom_streams=[]))
        pid = await one_pid(job)
        writer = await server.process(pid).channel(mode=2)
        try:
            with pytest.raises(ChannelModeError, match=r"write-only \(mode=2\)") as caught:
                writer.on_data(lambda data: None)
            assert isinstance(caught.value, IOError)
            assert isinstance(caught.value, GafferError)
            await writer.write(b"still writable\n")  # 0.5: the write gets its OK
        finally:
            await writer.close()
        reader = await server.process(pid).channel(mode=1)
        try:
            with pytest.raises(ChannelModeError, match=r"read-only \(mode=1\)"):
                await reader.write(b"nope\n")
            received = bytearray()
            reader.on_data(received.extend)  # a reader may read
        finally:
            await reader.close()


async def one_pid(job: Any, timeout: float = 15) -> int:
    """The pid of the job's one process, once it runs."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len(pids := await job.pids()) != 1:
        assert asyncio.get_running_loop().time() < deadline, f"no process of {job.id}: {pids}"
        await asyncio.sleep(0.02)
    return pids[0]
