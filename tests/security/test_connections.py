"""Issue 11.3: connections that say nothing cannot starve gafferd. A cap on open
connections (the idle one of longest standing makes room), a header timeout, an idle
timeout, and no storm of log lines nor a spinning loop when accept() fails with EMFILE."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import psutil

from tests.helpers import wait_until_sync
from tests.security.site import start, tcp


def _closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True once the server closed ``sock`` (EOF), False if it is still open."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _server_connections(pid: int, port: int) -> int:
    return sum(
        1
        for conn in psutil.Process(pid).net_connections(kind="tcp")
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    )


def test_a_connection_that_sends_no_head_is_closed_after_header_timeout(tmp_path: Path):
    daemon, port = start(tmp_path, gaffer="header_timeout = 0.5\nidle_timeout = 30")
    try:
        silent = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n")  # never ends its head
        started = time.monotonic()
        assert _closed_by_server(silent, 5)
        assert _closed_by_server(slow, 5)
        assert time.monotonic() - started < 4
        silent.close()
        slow.close()
        assert tcp(port, "GET", "/ping").status == 200
    finally:
        daemon.stop()


def test_a_kept_alive_connection_is_closed_after_idle_timeout(tmp_path: Path):
    daemon, port = start(tmp_path, gaffer="header_timeout = 30\nidle_timeout = 0.5")
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = b""
            while b"OK" not in answer:
                answer += sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")
            assert _closed_by_server(sock, 5)  # then nothing more came: closed
    finally:
        daemon.stop()


def test_max_connections_caps_open_connections_and_others_are_served(tmp_path: Path):
    daemon, port = start(tmp_path, gaffer="max_connections = 20")
    idle = []
    try:
        for _ in range(100):
            idle.append(socket.create_connection(("127.0.0.1", port)))
        # every new connection made room by closing the one idle the longest
        wait_until_sync(
            lambda: _server_connections(daemon.pid, port) <= 20,
            what="at most 20 connections open in gafferd",
        )
        assert tcp(port, "GET", "/ping").status == 200
        assert sum(_closed_by_server(sock, 0.01) for sock in idle[:50]) == 50
        assert "refusing" not in daemon.log_text()  # making room is no error
    finally:
        for sock in idle:
            sock.close()
        daemon.stop()


def test_a_feed_is_never_closed_to_make_room(tmp_path: Path):
    daemon, port = start(tmp_path, gaffer="max_connections = 5")
    try:
        feed = socket.create_connection(("127.0.0.1", port))
        feed.sendall(b"GET /watch?feed=continuous HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += feed.recv(4096)
        others = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        assert tcp(port, "GET", "/ping").status == 200
        assert not _closed_by_server(feed, 0.3)
        for sock in others:
            sock.close()
        feed.close()
    finally:
        daemon.stop()


def test_out_of_descriptors_pauses_accepting_without_a_log_storm(tmp_path: Path):
    """gafferd under a limit of 64 descriptors, most of them taken by its processes'
    pipes: accept() fails with EMFILE. The warning comes at most once a second, the loop
    does not spin, and a client still gets its answer (room is made)."""
    limit = (
        "import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    daemon, port = start(
        tmp_path,
        gaffer="max_connections = 1000",
        jobs="""
            [job:piped]
            cmd = {child} sleep
            numprocesses = 8
            redirect_output = out, err
            redirect_input = true
        """,
        prefix=(sys.executable, "-c", limit),
    )
    held: list[socket.socket] = []
    try:
        wait_until_sync(
            lambda: len(daemon.request("GET", "/jobs/default/piped/pids")[1]["pids"]) == 8,
            what="8 processes",
        )
        for _ in range(80):  # more than gafferd can hold
            held.append(socket.create_connection(("127.0.0.1", port)))
        daemon.wait_log("cannot accept connections")
        proc = psutil.Process(daemon.pid)
        cpu = sum(proc.cpu_times()[:2])
        lines = daemon.log_text().count("cannot accept connections")
        time.sleep(2.0)  # the window observed: connections keep waiting meanwhile
        assert sum(proc.cpu_times()[:2]) - cpu < 0.5  # not spinning
        assert daemon.log_text().count("cannot accept connections") - lines <= 3
        assert "Traceback" not in daemon.log_text()
        answer = tcp(port, "GET", "/ping", timeout=5)
        assert answer.status == 200
    finally:
        for sock in held:
            sock.close()
        daemon.stop()
