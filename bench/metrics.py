"""What a scrape costs gafferd: ``GET /metrics`` (and ``GET /overview``) at 1,000 processes.

A real gafferd (subprocess) runs 10 jobs of 100 ``sleep`` each. Its CPU time (user +
system, from /proc) is read over ``SCRAPES`` scrapes spaced ``GAP`` seconds apart, less
what it uses idle over the same time (measured first): CPU per scrape is the figure the
target is about (under 20 ms), since the /proc reading happens in a worker thread, which
the wall-clock latency alone would hide. The latency is measured by the client, on the
same 2 cores.

Then, in this process, the text format itself: gaffer's hand-written exposition
(gaffer/http/metrics.py) against prometheus_client's ``generate_latest`` for the same
4,000 process samples (docs/design.md, "/metrics: which exposition").
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.machine import table

JOBS = 10
PER_JOB = 100
SCRAPES = 40
GAP = 0.25
SLEEP = shutil.which("sleep") or "/bin/sleep"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def start_gafferd(directory: str, port: int) -> subprocess.Popen[bytes]:
    lines = ["[gaffer]", f"bind = 127.0.0.1:{port}", "log_level = warning"]
    # a loopback port without keys: gafferd refuses it to root unless told (docs/security.md)
    lines += ["allow_root_without_keys = true", ""]
    for n in range(JOBS):
        lines += [f"[job:job{n}]", f"cmd = {SLEEP} 100000", f"numprocesses = {PER_JOB}", ""]
    ini = os.path.join(directory, "gafferd.ini")
    with open(ini, "w") as handle:
        handle.write("\n".join(lines))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gafferd", "-c", ini],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            status, body = get(port, "/overview")
            jobs = json.loads(body)["jobs"] if status == 200 else []
            if len(jobs) == JOBS and all(job["state"] == "running" for job in jobs):
                return proc
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("gafferd did not start its 1,000 processes")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(port: int, pid: int, path: str) -> dict[str, float]:
    """Scrapes on one keep-alive connection, as Prometheus makes them."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def scrape() -> tuple[int, bytes]:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()

    scrape()  # warm-up
    # idle: what gafferd spends with nobody asking, over as long as the scrapes take
    start, began = cpu_seconds(pid), time.monotonic()
    time.sleep(SCRAPES * GAP)
    idle_rate = (cpu_seconds(pid) - start) / (time.monotonic() - began)
    latencies, size = [], 0
    start, began = cpu_seconds(pid), time.monotonic()
    for _ in range(SCRAPES):
        sent = time.perf_counter()
        status, body = scrape()
        latencies.append(time.perf_counter() - sent)
        assert status == 200, (status, body[:200])
        size = len(body)
        time.sleep(GAP)
    used = cpu_seconds(pid) - start - idle_rate * (time.monotonic() - began)
    conn.close()
    latencies.sort()
    return {
        "cpu_ms": 1000 * max(used, 0.0) / SCRAPES,
        "p50": 1000 * statistics.median(latencies),
        "p95": 1000 * latencies[int(len(latencies) * 0.95)],
        "bytes": size,
    }


def lag_max(port: int) -> float:
    _, body = get(port, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith("gaffer_loop_lag_max_seconds "):
            return float(line.split()[1]) * 1000
    return float("nan")


def formats() -> list[tuple[str, str, str]]:
    """gaffer's exposition against prometheus_client's, same 4,000 samples, in-process."""
    from gaffer.core.usage import Usage
    from gaffer.http.metrics import exposition

    now = time.time()
    jobs = []
    for j in range(JOBS):
        processes = [
            (j * PER_JOB + i, now - 100, Usage(1.25 + i, 1_500_000 + i, now - 100, 3))
            for i in range(PER_JOB)
        ]
        jobs.append(
            {
                "session": "default",
                "job": f"job{j}",
                "state": "running",
                "wanted": PER_JOB,
                "kept_alive": PER_JOB,
                "restarts": 0,
                "last_exit": None,
                "processes": processes,
            }
        )
    usage: dict[str, Any] = {"time": now, "self": None, "jobs": jobs}
    hand = _best(lambda: exposition(usage, None, None))

    started = time.perf_counter()
    from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.exposition import generate_latest

    imported = time.perf_counter() - started

    class Collector:
        def collect(self) -> Any:
            labels = ["session", "job", "process"]
            cpu = CounterMetricFamily("gaffer_process_cpu_seconds", "CPU", labels=labels)
            rss = GaugeMetricFamily("gaffer_process_resident_memory_bytes", "RSS", labels=labels)
            fds = GaugeMetricFamily("gaffer_process_open_fds", "fds", labels=labels)
            up = GaugeMetricFamily("gaffer_process_uptime_seconds", "uptime", labels=labels)
            for job in jobs:
                for pid, created, found in job["processes"]:
                    values = [job["session"], job["job"], str(pid)]
                    cpu.add_metric(values, found.cpu_seconds)
                    rss.add_metric(values, found.rss)
                    fds.add_metric(values, found.fds)
                    up.add_metric(values, now - created)
            yield from (cpu, rss, fds, up)

    registry = CollectorRegistry()
    registry.register(Collector())
    library = _best(lambda: generate_latest(registry))
    return [
        ("gaffer/http/metrics.py (hand-written)", f"{hand:.1f}", "-"),
        ("prometheus_client generate_latest", f"{library:.1f}", f"{imported * 1000:.0f}"),
    ]


def _best(call: Any, runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    directory = tempfile.mkdtemp(prefix="gaffer-bench-metrics-")
    port = free_port()
    proc = start_gafferd(directory, port)
    rows = []
    try:
        for path in ("/ping", "/metrics", "/overview"):
            result = measure(port, proc.pid, path)
            rows.append(
                (
                    f"GET {path}",
                    f"{result['cpu_ms']:.1f}",
                    f"{result['p50']:.1f}",
                    f"{result['p95']:.1f}",
                    f"{result['bytes'] / 1024:.1f}",
                )
            )
        lag = lag_max(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        shutil.rmtree(directory, ignore_errors=True)
    print(
        table(
            f"A scrape at {JOBS * PER_JOB:,} processes ({SCRAPES} scrapes, {GAP} s apart; "
            f"gafferd CPU less its idle use; target: under 20 ms of CPU)",
            ("request", "gafferd CPU ms", "p50 ms", "p95 ms", "KiB"),
            rows,
        )
    )
    print(f"\nLongest loop lag during the run: {lag:.1f} ms\n")
    print(
        table(
            f"The text format of {JOBS * PER_JOB * 4:,} process samples (median of 15)",
            ("exposition", "ms", "import ms"),
            formats(),
        )
    )
