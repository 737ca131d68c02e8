"""Issue 11.3, at scale: 20,000 connections that say nothing leave /ping answering within
100 ms for the others, and gafferd holds no more of them than max_connections."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.security.site import start, tcp

CONNECTIONS = 20_000

# holds N connections to a port, saying nothing, until its stdin closes
HOLDER = textwrap.dedent("""
    import resource, socket, sys, time
    count, port = int(sys.argv[1]), int(sys.argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = []
    for n in range(count):
        if n % 1000 == 999:
            # a client faster than gafferd's accept() fills the listen queue, and a SYN
            # dropped waits 1 s to be sent again: let gafferd catch up
            time.sleep(0.1)
        held.append(socket.create_connection(("127.0.0.1", port), 30))
    print(len(held), flush=True)
    sys.stdin.read()
""")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_20000_idle_connections_leave_ping_answering(tmp_path: Path):
    daemon, port = start(tmp_path, gaffer="max_connections = 1000\nbacklog = 4096")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    per_holder = min(CONNECTIONS, hard - 64)  # a holder per descriptor limit's worth
    holders: list[subprocess.Popen[str]] = []
    try:
        left = CONNECTIONS
        while left > 0:
            count = min(left, per_holder)
            holders.append(
                subprocess.Popen(
                    [sys.executable, "-c", HOLDER, str(count), str(port)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
            left -= count
        opened = sum(int(holder.stdout.readline() or 0) for holder in holders)
        assert opened == CONNECTIONS
        latencies = []
        for _ in range(10):
            started = time.perf_counter()
            answer = tcp(port, "GET", "/ping", timeout=5)
            latencies.append(time.perf_counter() - started)
            assert answer.status == 200
        open_in_gafferd = sum(
            1
            for conn in psutil.Process(daemon.pid).net_connections(kind="tcp")
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_ESTABLISHED
        )
        assert open_in_gafferd <= 1000
        assert max(latencies) < 0.1, [f"{x * 1000:.1f} ms" for x in latencies]
    finally:
        for holder in holders:
            holder.stdin.close()
            holder.wait(30)
            holder.stdout.close()
        daemon.stop()
