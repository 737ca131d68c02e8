"""Soak: does the daemon's memory stay flat? (issue 20: under +2 MiB.)

``python -m bench.soak [--quick] [--minutes M] [--restarts N] [--systems a,b]
[--write-docs]``, or ``python -m bench soak`` (the full run: gafferd alone, 10,000
restarts, 60 minutes). The daemons are started and watched as in ``bench/peers.py``
(a fresh daemon per workload, processes read from /proc, its helper processes, gafferd's
guard, counted with it):

* restarts: 1,000 ``sleep``; SIGKILL 100 of them at a time, wait until 1,000 run again,
  until N (10,000) have been replaced. RSS and PSS of the daemon and its helpers once
  all 1,000 ran for 8 s (past gafferd's first heap trim), then 8 s after the last
  replacement ran.
* chatty children: 200 processes each printing a 100-byte line every 0.1 s, logged to
  one file in /dev/shm (its written part given back to tmpfs as it grows, as in the
  capture workload); RSS and PSS 8 s after all run, every minute, and at the end of M
  minutes (60); the daemon's CPU over the whole window.

``--quick`` (for CI and a look before the real run): 2,000 restarts, 2 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.machine import describe, table
from bench.peers import (
    CLASSES,
    DOCS,
    SLEEPER,
    HolePuncher,
    Job,
    MiB,
    Run,
    precompile,
    raise_fd_limit,
    read_tail,
    write_docs,
)

BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
CHATTY = (
    "import sys, time\n"
    "line = 'x' * 99 + '\\n'\n"
    "while True:\n"
    "    sys.stdout.write(line)\n"
    "    sys.stdout.flush()\n"
    "    time.sleep(0.1)\n"
)
SETTLE = 8.0  # seconds before a measure: gafferd trims its heap 5 s after its start
PROCESSES = 1000
BATCH = 100
CHATTY_COUNT = 200


@dataclass
class Sample:
    rss: float  # MiB, daemon and helpers
    pss: float

    def __str__(self) -> str:
        return f"{self.rss:.1f} / {self.pss:.1f}"


@dataclass
class Soak:
    name: str
    before: Sample
    after: Sample
    notes: list[str] = field(default_factory=list)

    @property
    def growth(self) -> Sample:
        return Sample(self.after.rss - self.before.rss, self.after.pss - self.before.pss)


def measure(run: Run) -> Sample:
    return Sample(sum(run.rss()) / MiB, run.pss() / MiB)


def fresh(name: str, scratch: str, logs: str, label: str):
    directory = tempfile.mkdtemp(prefix=f"{name}-{label}-", dir=scratch)
    logdir = tempfile.mkdtemp(prefix=f"{name}-{label}-", dir=logs)
    return CLASSES[name](directory, logdir)


def restarts(name: str, scratch: str, logs: str, total: int, log) -> Soak:
    job = Job("sleepers", SLEEPER, PROCESSES, kills=True)  # no backoff, no pause
    run = Run(fresh(name, scratch, logs, "restarts"), job)
    try:
        run.wait_running(PROCESSES)
        time.sleep(SETTLE)
        before = measure(run)
        log(f"{name}: {PROCESSES} running: RSS / PSS {before} MiB; killing {total}")
        started, replaced = time.perf_counter(), 0
        while replaced < total:
            victims = random.sample(sorted(run.watch.verify()), min(BATCH, total - replaced))
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            replaced += len(victims)
            deadline = time.monotonic() + 120
            while len(run.watch.scan()) < PROCESSES or len(run.watch.verify()) < PROCESSES:
                run.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: {PROCESSES} not running again after 120 s")
                time.sleep(0.01)
        elapsed = time.perf_counter() - started
        time.sleep(SETTLE)
        after = measure(run)
    finally:
        run.stop()
    log(f"{name}: after {replaced} replacements ({elapsed:.0f} s): RSS / PSS {after} MiB")
    return Soak(
        name, before, after, [f"{replaced:,} replaced in {elapsed:.0f} s, {BATCH} at a time"]
    )


def chatty(name: str, scratch: str, logs: str, minutes: float, log) -> Soak:
    system = fresh(name, scratch, logs, "chatty")
    logfile = os.path.join(system.logdir, "chatty.log")
    program = os.path.join(system.directory, "chatty.py")  # a file: ini files hold one line
    Path(program).write_text(CHATTY)
    job = Job("chatty", (sys.executable, "-S", program), CHATTY_COUNT, logfile=logfile)
    run = Run(system, job)
    samples = []
    try:
        run.wait_running(CHATTY_COUNT)
        punch = HolePuncher(logfile)
        punch.wait(SETTLE)
        before = measure(run)
        cpu0, size0, t0 = run.cpu_seconds()[0], os.path.getsize(logfile), time.perf_counter()
        log(f"{name}: {CHATTY_COUNT} chatty children: RSS / PSS {before} MiB; {minutes:g} min")
        end = t0 + minutes * 60
        while time.perf_counter() < end:
            punch.wait(min(60.0, end - time.perf_counter()))
            samples.append(measure(run))
            log(f"  {(time.perf_counter() - t0) / 60:.0f} min: RSS / PSS {samples[-1]} MiB")
        after = samples[-1] if samples else measure(run)
        elapsed = time.perf_counter() - t0
        cpu = run.cpu_seconds()[0] - cpu0
        lines = (os.path.getsize(logfile) - size0) / 100
        tail = read_tail(logfile)
        alive = len(run.watch.verify())
    finally:
        run.stop()
    if not tail.endswith(b"x\n") or alive != CHATTY_COUNT:
        raise RuntimeError(f"{name}: {alive} chatty children at the end; log tail {tail[-200:]!r}")
    peak = max(samples, key=lambda sample: sample.rss) if samples else after
    return Soak(
        name,
        before,
        after,
        [
            f"{minutes:g} min, {lines / elapsed:,.0f} lines/s logged",
            f"daemon CPU {100 * cpu / elapsed:.1f}% of a core",
            f"highest RSS / PSS seen {peak} MiB",
        ],
    )


def render(results: list[tuple[str, Soak]], versions: dict[str, str], elapsed: float) -> str:
    rows = []
    for label, soak in results:
        growth = soak.growth
        rows.append(
            (
                f"{soak.name}: {label}",
                str(soak.before),
                str(soak.after),
                f"{growth.rss:+.1f} / {growth.pss:+.1f}",
                "; ".join(soak.notes),
            )
        )
    header = ("workload", "RSS / PSS before (MiB)", "after (MiB)", "growth (MiB)", "notes")
    text = table("Memory over time (soak)", header, rows)
    versions_text = ", ".join(f"{name} {version}" for name, version in versions.items())
    return text.replace(
        f"Machine: {describe()}",
        f"Machine: {describe()}; {versions_text}; load average at end "
        f"{' '.join(f'{load:.2f}' for load in os.getloadavg())}; whole run {elapsed / 60:.0f} min",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="2,000 restarts, 2 minutes")
    parser.add_argument("--minutes", type=float, help="chatty children for this long [60]")
    parser.add_argument("--restarts", type=int, help="processes replaced [10,000]")
    parser.add_argument("--systems", default="gaffer", help="comma-separated [gaffer]")
    parser.add_argument(
        "--write-docs", action="store_true", help=f"replace {BEGIN} ... {END} in {DOCS.name}"
    )
    args = parser.parse_args(argv or [])
    minutes = args.minutes if args.minutes is not None else (2.0 if args.quick else 60.0)
    total = args.restarts if args.restarts is not None else (2000 if args.quick else 10_000)
    systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    missing = [name for name in systems if name not in CLASSES or not CLASSES[name].available()]
    if missing:
        parser.error(f"not available here: {', '.join(missing)}")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    raise_fd_limit()
    precompile(systems, log)
    versions = {name: CLASSES[name].version() for name in systems}
    started = time.perf_counter()
    scratch = tempfile.mkdtemp(prefix="gaffer-soak-")
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    logs = tempfile.mkdtemp(prefix="gaffer-soak-", dir=shm)
    results: list[tuple[str, Soak]] = []
    try:
        for name in systems:
            results.append(
                (
                    f"{PROCESSES:,} `sleep`, {total:,} restarts",
                    restarts(name, scratch, logs, total, log),
                )
            )
            results.append(
                (
                    f"{CHATTY_COUNT} chatty children, {minutes:g} min",
                    chatty(name, scratch, logs, minutes, log),
                )
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)
    text = render(results, versions, time.perf_counter() - started)
    print(text)
    if args.write_docs:
        write_docs(text, begin=BEGIN, end=END)
        log(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
