"""HTTP API benchmark: requests per second and latency of gafferd with 100 jobs loaded.

A real gafferd (subprocess) with 100 jobs of one ``sleep`` each, bound to a loopback TCP
port; ``CLIENTS`` client processes, each on one keep-alive connection, send requests for
``SECONDS`` seconds and record each latency. Workloads:

* ``GET /jobs``: the list of 100 jobs;
* ``POST /jobs/default/job0/numprocesses {"scale": "=1"}``: a scale request (the target
  is already 1, so this measures the API, not spawning);
* ``GET /jobs/default/job0``: one job's info.

The clients share the 2 cores with gafferd: the figures are what one machine does when it
is both the client and the server.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.machine import table

JOBS = 100
CLIENTS = 2
SECONDS = 5.0
SLEEP = shutil.which("sleep") or "/bin/sleep"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gafferd(
    directory: str,
    port: int,
    jobs: int = JOBS,
    per_job: int = 1,
    up: Callable[[int], bool] | None = None,
    timeout: float = 30,
) -> subprocess.Popen[bytes]:
    """gafferd on a loopback port with ``jobs`` jobs of ``per_job`` sleeps, once ``up(port)``
    (default: every job listed)."""
    lines = ["[gaffer]", f"bind = 127.0.0.1:{port}", "log_level = warning"]
    # the benchmark may run as root (a container): no keys on loopback, deliberately
    lines += ["allow_root_without_keys = true", ""]
    for n in range(jobs):
        lines += [f"[job:job{n}]", f"cmd = {SLEEP} 100000", f"numprocesses = {per_job}", ""]
    ini = os.path.join(directory, "gafferd.ini")
    with open(ini, "w") as handle:
        handle.write("\n".join(lines))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gafferd", "-c", ini],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    up = up or (lambda port: len(_get_json(port, "/jobs")["jobs"]) == jobs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if up(port):
                return proc
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("gafferd did not come up with its jobs")


def _get_json(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def client(
    port: int, method: str, path: str, body: str | None, seconds: float, out: multiprocessing.Queue
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"} if body else {}
    latencies = []
    errors = 0
    deadline = time.perf_counter() + seconds
    while True:
        started = time.perf_counter()
        if started > deadline:
            break
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status >= 400:
            errors += 1
        latencies.append(time.perf_counter() - started)
    conn.close()
    out.put((latencies, errors))


def load(port: int, method: str, path: str, body: str | None) -> dict[str, float]:
    out: multiprocessing.Queue = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=client, args=(port, method, path, body, SECONDS, out))
        for _ in range(CLIENTS)
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=SECONDS + 30) for _ in workers]
    for worker in workers:
        worker.join()
    latencies = sorted(lat for lats, _ in results for lat in lats)
    errors = sum(err for _, err in results)
    return {
        "rps": len(latencies) / SECONDS,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": errors,
    }


def main() -> None:
    directory = tempfile.mkdtemp(prefix="gaffer-bench-http-")
    port = free_port()
    proc = start_gafferd(directory, port)
    rows = []
    try:
        workloads = [
            ("GET /jobs (100 jobs)", "GET", "/jobs", None),
            (
                "POST scale =1",
                "POST",
                "/jobs/default/job0/numprocesses",
                json.dumps({"scale": "=1"}),
            ),
            ("GET /jobs/default/job0", "GET", "/jobs/default/job0", None),
        ]
        for label, method, path, body in workloads:
            load(port, method, path, body)  # warm-up
            result = load(port, method, path, body)
            rows.append(
                (
                    label,
                    f"{result['rps']:.0f}",
                    f"{result['p50']:.2f}",
                    f"{result['p99']:.2f}",
                    str(result["errors"]),
                )
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        shutil.rmtree(directory, ignore_errors=True)
    print(
        table(
            f"HTTP API ({CLIENTS} keep-alive clients, {SECONDS:.0f} s each)",
            ("request", "requests/s", "p50 ms", "p99 ms", "errors"),
            rows,
        )
    )
