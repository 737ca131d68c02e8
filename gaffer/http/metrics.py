"""``GET /metrics``: the Prometheus text exposition format (version 0.0.4), written here.

Why not prometheus_client's exposition (docs/design.md has the figures): for the 4,000
samples of 1,000 processes it takes about 20 times as long as these f-strings, and
importing it would add a dependency, 70 ms of start-up and 2 MiB to gafferd. The tests
parse this output with prometheus_client's parser and check it with ``promtool``.

Every family is written whole (its HELP, its TYPE, then its samples), counters end in
``_total``, values are in base units (seconds, bytes). Labels: ``session`` and ``job``
(the job's name in its session), ``process`` (gaffer's internal pid), ``state``,
``route`` and ``status``. Names and help texts: docs/observability.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import gaffer
from gaffer.core.states import State
from gaffer.http.telemetry import Telemetry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = tuple(str(state) for state in State)


def escape(value: str) -> str:
    """A label value: backslash, double quote and newline escaped."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def number(value: float | int) -> str:
    if isinstance(value, int):  # bool included: True is 1
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Family:
    """One metric family: its header and its sample lines."""

    __slots__ = ("lines", "name")

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name = name
        self.lines = [f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"]

    def add(self, labels: str, value: float | int) -> None:
        """``labels``: the inside of the braces, already escaped (may be empty)."""
        if labels:
            self.lines.append(f"{self.name}{{{labels}}} {number(value)}\n")
        else:
            self.lines.append(f"{self.name} {number(value)}\n")

    @property
    def empty(self) -> bool:
        return len(self.lines) == 1


def exposition(
    usage: dict[str, Any], telemetry: Telemetry | None, events_published: int | None
) -> str:
    """The text of /metrics: the jobs of ``usage`` (``Manager.ausage``) and their
    processes; the serving process itself when ``telemetry`` is given."""
    families = [*_job_families(usage["jobs"], usage["time"])]
    if telemetry is not None:
        families += _own_families(usage.get("self"), telemetry, events_published)
    lines: list[str] = []
    for family in families:
        if not family.empty:
            lines += family.lines
    return "".join(lines)


def _job_families(jobs: Iterable[dict[str, Any]], now: float) -> list[Family]:
    wanted = Family(
        "gaffer_job_processes_wanted",
        "gauge",
        "Processes the job should run now (its numprocesses; 0 while stopped or fatal).",
    )
    running = Family(
        "gaffer_job_processes_running",
        "gauge",
        "Kept-alive processes of the job that are alive (one-off processes not counted).",
    )
    restarts = Family(
        "gaffer_job_restarts_total", "counter", "Processes of the job restarted after an exit."
    )
    state = Family(
        "gaffer_job_state", "gauge", "1 for the job's current state, 0 for the other states."
    )
    exit_code = Family(
        "gaffer_job_last_exit_code",
        "gauge",
        "Exit status of the job's last process exit (absent before the first exit).",
    )
    exit_signal = Family(
        "gaffer_job_last_exit_signal",
        "gauge",
        "Signal that ended the job's last exited process, 0 for none (absent before the "
        "first exit).",
    )
    cpu = Family(
        "gaffer_process_cpu_seconds_total", "counter", "CPU time of the process, user + system."
    )
    rss = Family(
        "gaffer_process_resident_memory_bytes", "gauge", "Resident memory size of the process."
    )
    fds = Family("gaffer_process_open_fds", "gauge", "Open file descriptors of the process.")
    uptime = Family(
        "gaffer_process_uptime_seconds", "gauge", "Seconds since gaffer spawned the process."
    )
    cpu_lines, rss_lines, fds_lines, up_lines = cpu.lines, rss.lines, fds.lines, uptime.lines
    for job in jobs:
        labels = f'session="{escape(job["session"])}",job="{escape(job["job"])}"'
        wanted.add(labels, job["wanted"])
        running.add(labels, job["kept_alive"])
        restarts.add(labels, job["restarts"])
        current = job["state"]
        for word in STATES:
            state.lines.append(
                f'gaffer_job_state{{{labels},state="{word}"}} {1 if word == current else 0}\n'
            )
        last = job["last_exit"]
        if last is not None:
            exit_code.add(labels, last.get("exit_status") or 0)
            exit_signal.add(labels, last.get("term_signal") or 0)
        # the lines of 1,000 processes: written inline (every value here is a finite
        # number of a known type)
        for pid, created, found in job["processes"]:
            if found is None:
                continue
            process = f'{labels},process="{pid}"}} '
            cpu_lines.append(f"gaffer_process_cpu_seconds_total{{{process}{found.cpu_seconds!r}\n")
            rss_lines.append(f"gaffer_process_resident_memory_bytes{{{process}{found.rss}\n")
            if found.fds is not None:
                fds_lines.append(f"gaffer_process_open_fds{{{process}{found.fds}\n")
            if created is not None:
                up_lines.append(f"gaffer_process_uptime_seconds{{{process}{now - created:.3f}\n")
    return [wanted, running, restarts, state, exit_code, exit_signal, cpu, rss, fds, uptime]


def _own_families(own: Any, telemetry: Telemetry, events_published: int | None) -> list[Family]:
    info = Family("gaffer_build_info", "gauge", "Always 1; the version of gaffer as a label.")
    info.add(f'version="{escape(gaffer.__version__)}"', 1)
    cpu = Family(
        "process_cpu_seconds_total", "counter", "CPU time of gafferd itself, user + system."
    )
    rss = Family("process_resident_memory_bytes", "gauge", "Resident memory size of gafferd.")
    fds = Family("process_open_fds", "gauge", "Open file descriptors of gafferd.")
    start = Family("process_start_time_seconds", "gauge", "When gafferd started, as a Unix time.")
    if own is not None:
        cpu.add("", own.cpu_seconds)
        rss.add("", own.rss)
        if own.fds is not None:
            fds.add("", own.fds)
        start.add("", round(own.start_time, 2))
    lag_p99 = Family(
        "gaffer_loop_lag_p99_seconds",
        "gauge",
        "99th percentile of how late gafferd's event loop ran a timer, over the last minute.",
    )
    lag_max = Family(
        "gaffer_loop_lag_max_seconds",
        "gauge",
        "Longest lateness of gafferd's event loop over the last minute.",
    )
    p99, worst = telemetry.lag.quantile(0.99), telemetry.lag.maximum()
    if p99 is not None and worst is not None:
        lag_p99.add("", p99)
        lag_max.add("", worst)
    requests = Family(
        "gaffer_http_requests_total", "counter", "HTTP requests answered, by route and status."
    )
    for (route, status), count in sorted(telemetry.requests.items()):
        requests.add(f'route="{escape(route)}",status="{status}"', count)
    events = Family("gaffer_events_published_total", "counter", "Events published by the manager.")
    if events_published is not None:
        events.add("", events_published)
    return [info, cpu, rss, fds, start, lag_p99, lag_max, requests, events]
