"""DeferredHttpHandler: the HTTP server built when the first client connects.

Real sockets and a real HttpHandler on a real manager; ``build`` is the function gafferd
gives it (here a small one that counts its calls).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gaffer import Manager
from gaffer.http import binding, deferred
from gaffer.http.deferred import DeferredHttpHandler
from tests.helpers import wait_until


class Builds:
    """``build(sockets)`` for a DeferredHttpHandler: an HttpHandler on those sockets,
    after ``failures`` failed attempts."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, sockets):
        from gaffer.http import HttpHandler

        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("the certificate is gone")
        return HttpHandler(sockets=sockets)


async def get(path: str, request: str = "/ping") -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(
            f"GET {request} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:  # closed with the request unread
        return b""
    finally:
        writer.close()


def unix_socket(tmp_path: Path, name: str = "api.sock"):
    return binding.bind(binding.parse_address(f"unix:{tmp_path / name}"))


async def test_nothing_is_built_until_a_client_connects_then_it_is_served(tmp_path):
    builds = Builds()
    async with Manager() as manager:
        http = DeferredHttpHandler([unix_socket(tmp_path)], builds)
        http.start(manager.loop, manager)
        assert http.addresses == [f"unix:{tmp_path / 'api.sock'}"]
        await asyncio.sleep(0.05)  # turns of the loop: still nothing built
        assert builds.calls == 0 and http.handler is None
        answers = await asyncio.gather(*(get(str(tmp_path / "api.sock")) for _ in range(5)))
        assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers)
        assert builds.calls == 1  # built once, for the first one
        assert http.addresses == http.handler.addresses
        await http.stop()
    assert not (tmp_path / "api.sock").exists()


async def test_stopped_before_any_client_it_closes_its_sockets_and_removes_their_files(
    tmp_path,
):
    builds = Builds()
    sockets = [unix_socket(tmp_path, "a.sock"), unix_socket(tmp_path, "b.sock")]
    async with Manager() as manager:
        http = DeferredHttpHandler(sockets, builds)
        http.start(manager.loop, manager)
        await http.stop()
    assert builds.calls == 0
    assert all(sock.fileno() == -1 for sock in sockets)
    assert not (tmp_path / "a.sock").exists() and not (tmp_path / "b.sock").exists()


async def test_a_socket_handed_over_before_the_first_client_keeps_its_file(tmp_path):
    sock = unix_socket(tmp_path)
    successor = sock.dup()  # what a reload keeping the address does
    async with Manager() as manager:
        http = DeferredHttpHandler([sock], Builds())
        http.start(manager.loop, manager)
        http.release_sockets([sock])
        await http.stop()
    assert (tmp_path / "api.sock").exists()
    binding.close(successor)


async def test_a_server_that_cannot_be_built_closes_the_waiting_client_and_tries_again(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(deferred, "RETRY", 0.05)
    builds = Builds(failures=1)
    async with Manager() as manager:
        http = DeferredHttpHandler([unix_socket(tmp_path)], builds)
        http.start(manager.loop, manager)
        with caplog.at_level(logging.ERROR, "gaffer.http"):
            assert await get(str(tmp_path / "api.sock")) == b""  # closed, not left waiting
        assert "the HTTP API could not be started" in caplog.text
        assert "the certificate is gone" in caplog.text
        # watched again after RETRY: the next client is served
        await wait_until(lambda: http._watched, what="watching again")
        assert (await get(str(tmp_path / "api.sock"))).startswith(b"HTTP/1.1 200 ")
        assert builds.calls == 2
        await http.stop()


@pytest.mark.parametrize("request_path", ["/pids", "/openapi.json"])
async def test_the_built_server_answers_every_route_kind(tmp_path, request_path):
    async with Manager() as manager:
        http = DeferredHttpHandler([unix_socket(tmp_path)], Builds())
        http.start(manager.loop, manager)
        answer = await get(str(tmp_path / "api.sock"), request_path)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        await http.stop()


async def test_a_hand_over_before_the_first_client_leaves_it_waiting_for_the_next_server(
    tmp_path,
):
    """gafferd/handover.py: the client connecting during the hand-over is not accepted by
    the gafferd leaving; the next one (here a second handler on the same socket, as after
    the exec) finds it waiting and answers it."""
    builds, successor_builds = Builds(), Builds()
    sock = unix_socket(tmp_path)
    async with Manager() as manager:
        http = DeferredHttpHandler([sock], builds)
        http.start(manager.loop, manager)
        await http.hand_over(1.0)
        client = asyncio.ensure_future(get(str(tmp_path / "api.sock")))
        await asyncio.sleep(0.1)  # turns of the loop: nobody accepts it
        assert not client.done() and builds.calls == 0
        successor = DeferredHttpHandler([sock.dup()], successor_builds)
        http.release_sockets([sock])
        await http.stop()
        successor.start(manager.loop, manager)
        assert (await client).startswith(b"HTTP/1.1 200 ")
        assert builds.calls == 0 and successor_builds.calls == 1
        await successor.stop()
    assert not (tmp_path / "api.sock").exists()


async def test_a_failed_hand_over_before_the_first_client_serves_again(tmp_path):
    builds = Builds()
    async with Manager() as manager:
        http = DeferredHttpHandler([unix_socket(tmp_path)], builds)
        http.start(manager.loop, manager)
        await http.hand_over(1.0)
        client = asyncio.ensure_future(get(str(tmp_path / "api.sock")))
        await asyncio.sleep(0.1)
        assert not client.done()
        http.resume()  # the exec failed: this gafferd goes on
        assert (await client).startswith(b"HTTP/1.1 200 ")
        assert builds.calls == 1
        await http.stop()


async def test_the_telemetry_counts_the_loop_lag_from_the_start(tmp_path):
    from gaffer.http.telemetry import Telemetry

    telemetry = Telemetry()
    async with Manager() as manager:
        http = DeferredHttpHandler([unix_socket(tmp_path)], Builds(), telemetry=telemetry)
        http.start(manager.loop, manager)
        assert telemetry.lag.running  # before any client: /metrics reports since the start
        await wait_until(lambda: telemetry.lag.samples, what="a lag sample")
        await http.stop()
        assert not telemetry.lag.running
