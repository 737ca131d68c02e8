"""gafferd under attack: what others still get, and what gafferd's memory does.

* **Password guessing**: 20 threads send ``GET /auth`` with a wrong password for 30 s
  from one address. Reported: the answers (401 after a scrypt, 429 without), and
  gafferd's RSS after 5 s and at the end (flat: failed logins are a bounded table).
* **Idle connections**: 20,000 connections that never send a byte (held by helper
  processes, as many as the descriptor limit needs), then 50 ``GET /ping`` on new
  connections. Reported: their latency, and how many connections gafferd keeps
  (``max_connections``, 1,000).
"""

from __future__ import annotations

import http.client
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from base64 import b64encode

import psutil

from bench.http import free_port
from bench.machine import table

GUESSERS = 20
GUESS_SECONDS = 30.0
IDLE = 20_000
PINGS = 50

HOLDER = """
import resource, socket, sys, time
count, port = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
for n in range(count):
    if n % 1000 == 999:
        time.sleep(0.1)  # a SYN dropped from a full listen queue waits 1 s: pace
    held.append(socket.create_connection(("127.0.0.1", port), 30))
print(len(held), flush=True)
sys.stdin.read()
"""


def start_gafferd(directory: str, port: int) -> tuple[subprocess.Popen[bytes], str]:
    ini = os.path.join(directory, "gafferd.ini")
    with open(ini, "w") as handle:
        handle.write(
            f"[gaffer]\nbind = 127.0.0.1:{port}\nrequire_key = true\nlog_level = error\n"
            "backlog = 4096\n"
        )
    base = [sys.executable, "-m", "gafferd", "-c", ini]
    subprocess.run(
        [*base, "--create-admin-user", "--username", "admin", "--password", "pw"],
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if ping(port) is not None:
                return proc, ini
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("gafferd did not come up")


def ping(port: int) -> float | None:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/ping")
        ok = conn.getresponse().read() == b"OK"
    finally:
        conn.close()
    return time.perf_counter() - started if ok else None


def guessing(port: int, pid: int) -> list[tuple[str, str]]:
    token = b64encode(b"admin:wrong").decode()
    answers: dict[int, int] = {}
    stop = threading.Event()

    def guess() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            conn.request("GET", "/auth", headers={"Authorization": f"Basic {token}"})
            response = conn.getresponse()
            response.read()
            answers[response.status] = answers.get(response.status, 0) + 1
        conn.close()

    rss = psutil.Process(pid).memory_info
    threads = [threading.Thread(target=guess) for _ in range(GUESSERS)]
    for thread in threads:
        thread.start()
    time.sleep(5)
    at_5 = rss().rss
    time.sleep(GUESS_SECONDS - 5)
    at_end = rss().rss
    stop.set()
    for thread in threads:
        thread.join()
    return [
        ("answers 401 (a scrypt each)", str(answers.get(401, 0))),
        ("answers 429 (no scrypt)", str(answers.get(429, 0))),
        ("gafferd RSS after 5 s", f"{at_5 / 2**20:.1f} MiB"),
        (f"gafferd RSS after {GUESS_SECONDS:.0f} s", f"{at_end / 2**20:.1f} MiB"),
    ]


def idle_connections(port: int, pid: int) -> list[tuple[str, str]]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    holders = []
    left = IDLE
    started = time.monotonic()
    try:
        while left > 0:
            count = min(left, hard - 64)
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
        opening = time.monotonic() - started
        latencies = sorted(ping(port) or 10.0 for _ in range(PINGS))
        kept = sum(
            1
            for conn in psutil.Process(pid).net_connections(kind="tcp")
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_ESTABLISHED
        )
    finally:
        for holder in holders:
            holder.stdin.close()
            holder.wait(30)
            holder.stdout.close()
    return [
        ("idle connections opened", f"{opened} in {opening:.1f} s"),
        ("connections gafferd keeps", str(kept)),
        ("GET /ping p50 (new connection)", f"{statistics.median(latencies) * 1000:.2f} ms"),
        ("GET /ping max", f"{latencies[-1] * 1000:.2f} ms"),
    ]


def main() -> None:
    directory = tempfile.mkdtemp(prefix="gaffer-bench-attack-")
    port = free_port()
    proc, _ = start_gafferd(directory, port)
    try:
        rows = guessing(port, proc.pid)
        rows += idle_connections(port, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        shutil.rmtree(directory, ignore_errors=True)
    print(
        table(
            f"gafferd under attack ({GUESSERS} threads guessing passwords for "
            f"{GUESS_SECONDS:.0f} s; {IDLE:,} idle connections)",
            ("measure", "value"),
            rows,
        )
    )


if __name__ == "__main__":
    main()
