"""Side by side: gafferd, supervisord and circusd under the same workloads, in one run.

``python -m bench.peers [--quick] [--write-docs] [--output FILE] [--systems a,b]``, or
``python -m bench peers`` (the full run, no options); ``make bench`` runs it with the
Python of ``.venv-bench``, where supervisor 4.3.0 and circus 0.19.0 are installed next to
gaffer (``make bench-venv``). Each system in turn gets a fresh daemon per workload,
started as a subprocess from a config written into a temp dir (logs in /dev/shm when it
exists), and is stopped with SIGTERM afterwards; any process of the run still alive then is
SIGKILLed and counted in the notes.

"Running" is always read from /proc, never from the daemon's word: a process is running
when it descends from the daemon, is not a zombie, and its command line is the job's.

* cold start: N ``sleep 100000`` (N = 100 and 1,000), from the daemon's launch until all N
  run; polled every 10 ms (new pids only, then a full check of all N).
* spawn rate vs C: ``bench/spawn.c`` (compiled with gcc at run time; reported unavailable
  without gcc) starts the largest N with posix_spawn, timed the same way, right before each
  system's cold start; each system's cold-start rate is a share of the C run next to it.
* restart latency: a job of 5 ``sleep``; SIGKILL the oldest, poll /proc every 1 ms for a new
  descendant running ``sleep``; 200 kills, 5-25 ms apart (circus: a random extra 0-5 s
  before each kill, so that kills fall at a random phase of its 5 s reaping tick, and the
  run is capped by time).
* crash loop: a job ``sh -c 'printf x >> FILE'``, each system's flapping/backoff turned off
  as far as its config allows; bytes added to FILE (= starts) per second over 10 s, after
  1 s of warm-up.
* stdout capture: one ``yes`` of a 99-character line logged to a file in /dev/shm without
  rotation; log growth in MiB/s over 10 s after a 2 s warm-up. The harness punches holes in
  the part already written (``fallocate(PUNCH_HOLE|KEEP_SIZE)``) so that the file size
  keeps counting while tmpfs memory stays small.
* idle: the cold-start daemon with 1,000 ``sleep``, 2 s after all run: its CPU seconds over
  30 s (from /proc/<pid>/task/*/schedstat, in ns; utime + stime of /proc/<pid>/stat when
  threads came and went), its RSS (psutil) and PSS (smaps_rollup), helper processes
  (gafferd's guard) added.
* control latency: 20 calls from this process listing all 1,000 processes through each
  system's own API: gafferd ``GET /pids`` on its unix socket, supervisord XML-RPC
  ``supervisor.getAllProcessInfo`` on its unix socket, circusd ``list`` of the watcher
  over ZMQ (``circus.client.CircusClient``); a fresh connection per call for HTTP and
  XML-RPC, one client for circus.

Before the runs every system's packages are byte-compiled (``compileall``), as an install
does: gaffer is installed editable, and with PYTHONDONTWRITEBYTECODE set each gafferd start
would otherwise compile gaffer's sources again, a cost the peers do not pay.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import http.client
import importlib.metadata
import importlib.util
import json
import math
import os
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.machine import describe, table

SLEEP = shutil.which("sleep") or "/bin/sleep"
YES = shutil.which("yes") or "/usr/bin/yes"
SH = "/bin/sh"
SLEEPER = (SLEEP, "100000")
LINE = ("gaffer-bench-" * 8)[:99]  # yes prints it + "\n": 100 bytes a line
MiB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- peers:begin -->", "<!-- peers:end -->"
SYSTEMS = ("gaffer", "supervisor", "circus")
PEERS = ("supervisor", "circus")
CIRCUS_CHECK_DELAY = 5.0  # circusd's default [circus] check_delay: it reaps and respawns on it


@dataclass
class Sizes:
    cold: tuple[int, ...] = (100, 1000)
    kills: int = 200
    kill_cap: float = 300.0  # seconds: a safety cap for gaffer and supervisor
    circus_kill_cap: float = 60.0
    crash_window: float = 10.0
    containment_window: float = 10.0
    capture_warmup: float = 2.0
    capture_window: float = 10.0
    idle_window: float = 30.0
    calls: int = 20


QUICK = Sizes(
    cold=(100,),
    kills=20,
    kill_cap=60.0,
    circus_kill_cap=15.0,
    crash_window=5.0,
    capture_window=5.0,
    idle_window=5.0,
)


# -- /proc ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Stat:
    comm: str
    state: str
    ppid: int
    cpu_ticks: int  # utime + stime
    start: int  # starttime, in clock ticks since boot: tells a reused pid apart


def read_stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    right = data.rindex(b")")
    comm = data[data.index(b"(") + 1 : right].decode(errors="replace")
    rest = data[right + 2 :].split()
    return Stat(comm, rest[0].decode(), int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[19]))


def read_cmdline(pid: int) -> tuple[str, ...] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return tuple(part.decode(errors="replace") for part in data.split(b"\0")[:-1])


def proc_pids() -> set[int]:
    return {int(name) for name in os.listdir("/proc") if name.isdigit()}


class Watch:
    """The descendants of one process, found in /proc incrementally: a pid is read when it
    is new (not in the snapshot taken before the launch, nor classified since), so a scan
    costs little even with 1,000 children."""

    def __init__(self, root: int, argv: tuple[str, ...], before: set[int]) -> None:
        self.root = root
        self.argv = argv
        self.comm = os.path.basename(argv[0])[:15]
        self.foreign = set(before)
        self.ours = {root}
        self.running: dict[int, int] = {}  # pid -> starttime, running argv
        self.ever: dict[int, int] = {}  # every descendant seen: pid -> starttime
        self.first_seen: float | None = None

    def scan(self) -> dict[int, int]:
        listing = proc_pids()
        self.foreign &= listing
        for pid in [pid for pid in self.running if pid not in listing]:
            del self.running[pid]
        todo = sorted(listing - self.foreign - self.running.keys() - {self.root})
        for _ in range(3):  # a child listed before its parent is settled on the next pass
            unsettled, deferred = set(todo), []
            for pid in todo:
                stat = read_stat(pid)
                if stat is None:
                    continue
                if pid in self.ours or stat.ppid in self.ours:
                    self.adopt(pid, stat)
                elif stat.ppid in unsettled and stat.ppid not in self.foreign:
                    deferred.append(pid)
                else:
                    self.foreign.add(pid)
                unsettled.discard(pid)
            if not deferred:
                break
            todo = deferred
        return self.running

    def adopt(self, pid: int, stat: Stat) -> bool:
        """Record a descendant; True when it runs the job's program."""
        if pid not in self.ours:
            self.ours.add(pid)
            self.ever[pid] = stat.start
            if self.first_seen is None:
                self.first_seen = time.perf_counter()
        if stat.state != "Z" and stat.comm == self.comm and read_cmdline(pid) == self.argv:
            self.running[pid] = stat.start
            return True
        return False

    def verify(self) -> dict[int, int]:
        """Read every running pid again: drop the dead, zombies and reused pids."""
        for pid, start in list(self.running.items()):
            stat = read_stat(pid)
            if stat is None or stat.state == "Z" or stat.start != start:
                del self.running[pid]
        return self.running

    def helpers(self) -> list[int]:
        """Live descendants that are not the job's processes (a system's own helpers)."""
        out = []
        for pid in self.ours - self.running.keys() - {self.root}:
            stat = read_stat(pid)
            if stat is not None and stat.state != "Z" and stat.start == self.ever.get(pid):
                out.append(pid)
        return out


# -- a job, and the three systems' configs for it ------------------------------------------
@dataclass
class Job:
    name: str
    argv: tuple[str, ...]
    numprocesses: int
    logfile: str | None = None  # stdout to this file, never rotated
    crash: bool = False  # exits at once: turn off every backoff the system has
    kills: bool = False  # SIGKILLed in a row: a kill is not a failed start, nor a crash loop


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 120.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def make_connection(self, host: object) -> UnixHTTPConnection:  # type: ignore[override]
        return UnixHTTPConnection(self.path)


class System(ABC):
    """A program that starts a job's processes: a supervisor, or the C baseline."""

    name = ""
    api = ""
    notes: dict[str, str] = {}

    def __init__(self, directory: str, logdir: str) -> None:
        self.directory = directory
        self.logdir = logdir

    @staticmethod
    def available() -> bool:
        return True

    @abstractmethod
    def command(self, job: Job) -> list[str]: ...

    def close(self) -> None:  # noqa: B027 - most systems hold nothing to close
        pass


class Peer(System):
    """A supervisor under test: it has a version and an API that lists its processes."""

    @staticmethod
    @abstractmethod
    def version() -> str: ...

    @abstractmethod
    def list_all(self, job: Job) -> int: ...


class Gaffer(Peer):
    name = "gaffer"
    api = "HTTP GET /pids (unix socket)"

    @staticmethod
    def version() -> str:
        import gaffer

        return gaffer.__version__

    def command(self, job: Job) -> list[str]:
        self.socket = os.path.join(self.directory, "gafferd.sock")
        lines = [
            "[gaffer]",
            f"bind = unix:{self.socket}",
            "log_level = warning",
            "",
            f"[job:{job.name}]",
            f"cmd = {shlex.join(job.argv)}",
            f"numprocesses = {job.numprocesses}",
        ]
        if job.crash:  # restarted at once, every time: no pause, no backoff, never fatal
            lines += ["flapping = off", "backoff = off", "start_retries = 1000000000"]
        if job.kills:
            lines += ["start_secs = 0", "flapping = off"]
        if job.logfile:
            lines += [f"stdout_logfile = {job.logfile}", "logfile_max_bytes = 0"]
        path = os.path.join(self.directory, "gafferd.ini")
        Path(path).write_text("\n".join(lines) + "\n")
        return [sys.executable, "-m", "gafferd", "-c", path]

    def list_all(self, job: Job) -> int:
        conn = UnixHTTPConnection(self.socket)
        try:
            conn.request("GET", "/pids")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"GET /pids: {response.status} {body[:200]!r}")
            return len(json.loads(body)["pids"])
        finally:
            conn.close()


class Supervisor(Peer):
    name = "supervisor"
    api = "XML-RPC getAllProcessInfo (unix socket)"

    @staticmethod
    def version() -> str:
        return importlib.metadata.version("supervisor")

    @staticmethod
    def available() -> bool:
        return importlib.util.find_spec("supervisor") is not None

    def command(self, job: Job) -> list[str]:
        self.socket = os.path.join(self.directory, "supervisor.sock")
        lines = [
            "[unix_http_server]",
            f"file = {self.socket}",
            "",
            "[supervisord]",
            f"logfile = {self.logdir}/supervisord.log",
            f"pidfile = {self.directory}/supervisord.pid",
            f"childlogdir = {self.logdir}",
            "loglevel = warn",
            "nodaemon = true",
            "minfds = 8192",
            "minprocs = 4096",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl = unix://{self.socket}",
            "",
            f"[program:{job.name}]",
            f"command = {shlex.join(job.argv)}",
            f"numprocs = {job.numprocesses}",
            "process_name = %(program_name)s_%(process_num)04d",
            "autorestart = true",
            "stderr_logfile = NONE",
        ]
        if job.logfile:
            lines += [
                f"stdout_logfile = {job.logfile}",
                "stdout_logfile_maxbytes = 0",
                "stdout_logfile_backups = 0",
            ]
        else:
            lines += ["stdout_logfile = NONE"]
        if job.crash:  # a start is good at once, and retried (nearly) forever
            lines += ["startsecs = 0", "startretries = 1000000000"]
        elif job.kills:
            lines += ["startsecs = 0"]
        path = os.path.join(self.directory, "supervisord.conf")
        Path(path).write_text("\n".join(lines) + "\n")
        return [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", path]

    def list_all(self, job: Job) -> int:
        proxy = xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(self.socket))
        try:
            return len(proxy.supervisor.getAllProcessInfo())
        finally:
            proxy("close")()


class Circus(Peer):
    name = "circus"
    api = "ZMQ `list` of the watcher (CircusClient)"
    client = None

    @staticmethod
    def version() -> str:
        return importlib.metadata.version("circus")

    @staticmethod
    def available() -> bool:
        return importlib.util.find_spec("circus") is not None

    def command(self, job: Job) -> list[str]:
        self.endpoint = f"ipc://{self.directory}/circus.sock"
        lines = [
            "[circus]",
            f"endpoint = {self.endpoint}",
            f"pubsub_endpoint = ipc://{self.directory}/circus-pub.sock",
            "statsd = false",
            "loglevel = warning",
            "",
            f"[watcher:{job.name}]",
            f"cmd = {job.argv[0]}",
            f"args = {shlex.join(job.argv[1:])}",
            f"numprocesses = {job.numprocesses}",
            "respawn = true",  # the default; no [plugin:flapping] section, so no flapping
            "max_retry = -1",  # spawn failures retried forever (not about exits)
        ]
        if job.logfile:
            lines += [
                "stdout_stream.class = FileStream",
                f"stdout_stream.filename = {job.logfile}",
                "stdout_stream.max_bytes = 0",
            ]
        path = os.path.join(self.directory, "circus.ini")
        Path(path).write_text("\n".join(lines) + "\n")
        return [sys.executable, "-m", "circus.circusd", path]

    def list_all(self, job: Job) -> int:
        from circus.client import CircusClient

        if self.client is None:
            self.client = CircusClient(endpoint=self.endpoint, timeout=120)
        answer = self.client.call({"command": "list", "properties": {"name": job.name}})
        if answer.get("status") != "ok":
            raise RuntimeError(f"circus list: {answer}")
        return len(answer["pids"])

    def close(self) -> None:
        if self.client is not None:
            self.client.stop()
            self.client = None


class CBaseline(System):
    name = "C posix_spawn"

    def __init__(self, directory: str, logdir: str, binary: str) -> None:
        super().__init__(directory, logdir)
        self.binary = binary

    def command(self, job: Job) -> list[str]:
        return [self.binary, str(job.numprocesses), *job.argv]


CLASSES: dict[str, type[Peer]] = {"gaffer": Gaffer, "supervisor": Supervisor, "circus": Circus}


# -- one daemon, from launch to a clean stop -----------------------------------------------
class Run:
    """One daemon with one job: launched at construction, stopped by ``stop()``."""

    def __init__(self, system: System, job: Job) -> None:
        self.system = system
        self.job = job
        argv = system.command(job)
        self.output = open(os.path.join(system.logdir, f"{system.name}.out"), "wb")  # noqa: SIM115
        before = proc_pids()
        self.launched = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            cwd=system.directory,
            start_new_session=True,
        )
        self.watch = Watch(self.proc.pid, job.argv, before)
        self.leftovers = 0
        self.stop_seconds = 0.0
        self.ignored_sigterms = 0
        self.killed = False

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            self.output.flush()
            tail = Path(self.output.name).read_bytes()[-2000:].decode(errors="replace")
            raise RuntimeError(f"{self.system.name} exited with {self.proc.returncode}:\n{tail}")

    def wait_running(self, count: int, timeout: float = 300.0, interval: float = 0.01) -> float:
        """Seconds from the launch until ``count`` processes of the job run (from /proc)."""
        while True:
            running = self.watch.scan()
            now = time.perf_counter()
            if len(running) >= count and len(self.watch.verify()) >= count:
                return now - self.launched
            self.check_alive()
            if now - self.launched > timeout:
                raise TimeoutError(
                    f"{self.system.name}: {len(running)} of {count} running after {timeout:.0f} s"
                )
            time.sleep(interval)

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds of the daemon and its helpers: (utime + stime from /proc/<pid>/stat,
        in clock ticks; the sum of /proc/<pid>/task/*/schedstat, in ns, which sees what a
        tick cannot, but forgets threads that have exited)."""
        pids = [self.proc.pid, *self.watch.helpers()]
        ticks = sum(stat.cpu_ticks for pid in pids if (stat := read_stat(pid)) is not None)
        nanoseconds = 0
        for pid in pids:
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    path = f"/proc/{pid}/task/{task}/schedstat"
                    with contextlib.suppress(OSError, ValueError, IndexError), open(path) as handle:
                        nanoseconds += int(handle.read().split()[0])
        return ticks / CLK_TCK, nanoseconds / 1e9

    def uss(self, pids: list[int]) -> list[int]:
        """Unique set size (memory only this process holds) of each of ``pids``."""
        import psutil

        sizes = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                sizes.append(psutil.Process(pid).memory_full_info().uss)
        return sizes

    def pss(self) -> int:
        """Proportional set size in bytes of the daemon and its helpers together: each
        page shared with other processes counts for its share only, so a helper that maps
        the daemon's interpreter is not charged twice for it."""
        total = 0
        for pid in [self.proc.pid, *self.watch.helpers()]:
            with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        return total

    def rss(self) -> list[int]:
        """RSS in bytes of the daemon, then of each helper."""
        import psutil

        sizes = []
        for pid in [self.proc.pid, *self.watch.helpers()]:
            with contextlib.suppress(psutil.Error):
                sizes.append(psutil.Process(pid).memory_info().rss)
        return sizes

    def stop(self, timeout: float = 180.0, patience: float = 10.0) -> None:
        """SIGTERM, and wait. A SIGTERM counts as ignored when, ``patience`` seconds
        later, the daemon is there and not one of the job's processes has stopped: it is
        then sent again (circusd drops a SIGTERM that lands while its periodic
        ``manage_watchers`` holds the arbiter's command lock). SIGKILL after ``timeout``."""
        started = time.perf_counter()
        self.system.close()
        while self.proc.poll() is None:
            alive = set(self.watch.verify())
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(patience)
                break
            except subprocess.TimeoutExpired:
                pass
            if time.perf_counter() - started > timeout:
                print(
                    f"  {self.system.name} did not stop in {timeout:.0f} s: SIGKILL",
                    file=sys.stderr,
                )
                self.killed = True
                self.proc.kill()
                self.proc.wait()
                break
            if alive and alive <= set(self.watch.verify()):
                self.ignored_sigterms += 1
        self.stop_seconds = time.perf_counter() - started
        self.output.close()
        self.leftovers = kill_leftovers(
            self.watch.ever, (self.system.directory, self.system.logdir)
        )


def kill_leftovers(seen: dict[int, int], markers: tuple[str, ...]) -> int:
    """SIGKILL what is left of a run: the descendants seen (same pid and start time) and
    any process whose command line names one of the run's directories."""
    left = set()
    for pid, start in seen.items():
        stat = read_stat(pid)
        if stat is not None and stat.start == start and stat.state != "Z":
            left.add(pid)
    for pid in proc_pids() - {os.getpid()}:
        cmdline = read_cmdline(pid)
        if cmdline and any(marker in part for part in cmdline for marker in markers):
            stat = read_stat(pid)
            if stat is not None and stat.state != "Z":
                left.add(pid)
    found = len(left)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while left and time.monotonic() < deadline:
        left = {pid for pid in left if (stat := read_stat(pid)) and stat.state != "Z"}
        time.sleep(0.01)
    return found


# -- the workloads -------------------------------------------------------------------------
@dataclass
class Results:
    values: dict[str, dict[str, float | None]] = field(default_factory=dict)
    notes: dict[str, dict[str, str]] = field(default_factory=dict)
    leftovers: dict[str, int] = field(default_factory=dict)
    stops: dict[str, list[str]] = field(default_factory=dict)  # trouble stopping a daemon
    failures: list[str] = field(default_factory=list)

    def put(self, row: str, system: str, value: float | None, note: str = "") -> None:
        self.values.setdefault(row, {})[system] = value
        if note:
            self.notes.setdefault(row, {})[system] = note


class Bench:
    def __init__(self, sizes: Sizes, systems: list[str], log: Callable[[str], None]) -> None:
        self.sizes = sizes
        self.systems = systems
        self.log = log
        self.results = Results()
        self.scratch = tempfile.mkdtemp(prefix="gaffer-peers-")
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.logs = tempfile.mkdtemp(prefix="gaffer-peers-", dir=shm)
        self.c_binary = compile_spawn(self.scratch)
        if self.c_binary is None:
            log("C baseline: no gcc (or bench/spawn.c did not compile): reported unavailable")
        self.load_at_start = " ".join(f"{load:.2f}" for load in os.getloadavg())

    def cleanup(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
        shutil.rmtree(self.logs, ignore_errors=True)

    def fresh(self, name: str, label: str) -> System:
        directory = tempfile.mkdtemp(prefix=f"{name}-{label}-", dir=self.scratch)
        logdir = tempfile.mkdtemp(prefix=f"{name}-{label}-", dir=self.logs)
        return CLASSES[name](directory, logdir)

    def finish(self, run: Run, label: str) -> None:
        run.stop()
        name = run.system.name
        self.results.leftovers[name] = self.results.leftovers.get(name, 0) + run.leftovers
        if run.leftovers:
            self.log(f"  {name}: {run.leftovers} process(es) left behind, killed")
        if run.ignored_sigterms or run.killed:
            what = f"{run.ignored_sigterms} SIGTERM ignored" if run.ignored_sigterms else ""
            if run.killed:
                what += (", " if what else "") + "SIGKILLed after 180 s"
            self.results.stops.setdefault(name, []).append(f"{label}: {what}")
            self.log(f"  {name} ({label}): {what}")

    # C baseline: run right before each system's cold start, so that both see the same
    # machine (other work on it changes the spawn rate of everything)
    def baseline(self, before: str) -> None:
        if self.c_binary is None:
            return
        count = max(self.sizes.cold)
        directory = tempfile.mkdtemp(prefix="c-", dir=self.scratch)
        run = Run(CBaseline(directory, directory, self.c_binary), Job("sleepers", SLEEPER, count))
        try:
            elapsed = run.wait_running(count)
        finally:
            run.stop()
        self.results.put("c_cold", before, elapsed)
        self.log(f"C posix_spawn: {count} running after {elapsed:.3f} s")

    # cold start, then idle and control latency on the largest N
    def cold_start(self, name: str) -> None:
        largest = max(self.sizes.cold)
        for count in self.sizes.cold:
            system = self.fresh(name, f"cold{count}")
            job = Job("sleepers", SLEEPER, count)
            run = Run(system, job)
            try:
                elapsed = run.wait_running(count)
                first = run.watch.first_seen
                spawn_phase = (run.launched + elapsed - first) if first else None
                self.results.put(f"cold{count}", name, elapsed)
                if spawn_phase:
                    self.results.put(f"phase{count}", name, spawn_phase)
                self.log(
                    f"{name}: {count} running after {elapsed:.3f} s "
                    f"(first child seen at {(first or 0) - run.launched:.3f} s)"
                )
                if count == largest:
                    self.idle(run, count)
                    self.control(run, job, count)
            finally:
                self.finish(run, f"cold start {count}")
            self.log(f"  stopped in {run.stop_seconds:.1f} s")

    def idle(self, run: Run, count: int) -> None:
        time.sleep(2.0)
        ticks0, sched0 = run.cpu_seconds()
        time.sleep(self.sizes.idle_window)
        ticks1, sched1 = run.cpu_seconds()
        by_ticks, by_sched = ticks1 - ticks0, sched1 - sched0
        # schedstat unless threads came and went (then only the ticks saw all of it)
        cpu = by_sched if by_sched > 0 and by_ticks <= by_sched + 2 / CLK_TCK else by_ticks
        alive = len(run.watch.verify())
        if alive != count:
            raise RuntimeError(f"{run.system.name}: {alive} of {count} running after idle")
        helpers = run.watch.helpers()
        rss = run.rss()
        name = run.system.name
        note = f"{100 * cpu / self.sizes.idle_window:.2f}% of a core"
        if helpers:
            note += f", {len(helpers)} helper process(es) added"
        self.results.put("idle_cpu", name, cpu, note)
        parts = " + ".join(f"{size / MiB:.1f}" for size in rss)
        note = ""
        if helpers:
            uss = " + ".join(f"{size / MiB:.1f}" for size in run.uss(helpers))
            note = f"daemon + helper(s) {parts} MiB (helper USS {uss} MiB)"
        self.results.put("idle_rss", name, sum(rss) / MiB, note)
        self.results.put("idle_pss", name, run.pss() / MiB, "")
        self.log(
            f"{name}: idle {cpu:.3f} CPU s over {self.sizes.idle_window:.0f} s (ticks "
            f"{by_ticks:.2f}, schedstat {by_sched:.3f}), RSS {parts} MiB, "
            f"helpers {[' '.join(read_cmdline(pid) or ()) for pid in helpers]}"
        )

    def control(self, run: Run, job: Job, count: int) -> None:
        system = run.system
        assert isinstance(system, Peer), "only a supervisor has an API to list with"
        latencies = []
        for _ in range(self.sizes.calls):
            started = time.perf_counter()
            listed = system.list_all(job)
            latencies.append(time.perf_counter() - started)
            if listed != count:
                raise RuntimeError(f"{system.name} listed {listed} of {count} processes")
        latencies.sort()
        self.results.put("ctl_p50", system.name, statistics.median(latencies) * 1000)
        self.results.put("ctl_p99", system.name, percentile(latencies, 99) * 1000)
        self.log(
            f"{system.name}: list {count}: p50 {statistics.median(latencies) * 1000:.1f} ms"
            f" p99 {percentile(latencies, 99) * 1000:.1f} ms"
        )

    # restart latency
    def restart(self, name: str) -> None:
        system = self.fresh(name, "restart")
        run = Run(system, Job("victims", SLEEPER, 5, kills=True))
        cap = self.sizes.circus_kill_cap if name == "circus" else self.sizes.kill_cap
        latencies: list[float] = []
        try:
            run.wait_running(5)
            time.sleep(1.5)  # past supervisor's startsecs: no kill lands on a STARTING process
            started = time.monotonic()
            while len(latencies) < self.sizes.kills and time.monotonic() - started < cap:
                pause = random.uniform(0.005, 0.025)
                if name == "circus":
                    pause += random.uniform(0, CIRCUS_CHECK_DELAY)
                time.sleep(pause)
                latencies.append(kill_one(run))
        finally:
            self.finish(run, "restart")
        latencies.sort()
        capped = len(latencies) < self.sizes.kills
        note = f"{len(latencies)} kills" + (f" (capped at {cap:.0f} s)" if capped else "")
        self.results.put("restart_p50", name, statistics.median(latencies) * 1000, note)
        self.results.put(
            "restart_p99",
            name,
            percentile(latencies, 99) * 1000,
            "= max" if len(latencies) < 100 else "",
        )
        self.log(
            f"{name}: restart p50 {statistics.median(latencies) * 1000:.2f} ms, "
            f"p99 {percentile(latencies, 99) * 1000:.2f} ms over {len(latencies)} kills"
        )

    # a crash loop under each system's defaults
    def containment(self, name: str) -> None:
        """A job loaded with the defaults whose program exits at once: starts in its first
        ``containment_window`` seconds, and the daemon's CPU meanwhile."""
        system = self.fresh(name, "containment")
        counter = os.path.join(system.logdir, "starts")
        Path(counter).touch()
        run = Run(system, Job("storm", (SH, "-c", f"printf x >> {counter}"), 1))
        try:
            deadline = time.monotonic() + 60
            while os.path.getsize(counter) == 0:
                run.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: the job never started")
                time.sleep(0.005)
            cpu0, t0 = run.cpu_seconds()[0], time.perf_counter()
            time.sleep(self.sizes.containment_window)
            starts = os.path.getsize(counter)
            cpu = run.cpu_seconds()[0] - cpu0
            elapsed = time.perf_counter() - t0
        finally:
            self.finish(run, "containment")
        self.results.put("contained_starts", name, starts)
        self.results.put("contained_cpu", name, 100 * cpu / elapsed)
        self.log(
            f"{name}: default crash loop: {starts} starts, daemon at {100 * cpu / elapsed:.1f}% CPU"
        )

    # crash loop
    def crash_loop(self, name: str) -> None:
        system = self.fresh(name, "crash")
        counter = os.path.join(system.logdir, "starts")
        Path(counter).touch()
        run = Run(system, Job("crasher", (SH, "-c", f"printf x >> {counter}"), 1, crash=True))
        try:
            deadline = time.monotonic() + 60
            while os.path.getsize(counter) == 0:
                run.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: the crasher never started")
                time.sleep(0.01)
            time.sleep(1.0)
            before = os.path.getsize(counter)
            time.sleep(self.sizes.crash_window)
            starts = os.path.getsize(counter) - before
        finally:
            self.finish(run, "crash loop")
        rate = starts / self.sizes.crash_window
        self.results.put("crash", name, rate)
        self.log(f"{name}: crash loop {rate:.1f} starts/s")

    # stdout capture
    def capture(self, name: str) -> None:
        system = self.fresh(name, "capture")
        logfile = os.path.join(system.logdir, "writer.log")
        run = Run(system, Job("writer", (YES, LINE), 1, logfile=logfile))
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(logfile) or os.path.getsize(logfile) == 0:
                run.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: nothing logged in 60 s")
                time.sleep(0.01)
            run.watch.scan()
            punch = HolePuncher(logfile)
            punch.wait(self.sizes.capture_warmup)
            cpu0 = run.cpu_seconds()[0]
            size0, t0 = os.path.getsize(logfile), time.perf_counter()
            punch.wait(self.sizes.capture_window)
            size1, t1 = os.path.getsize(logfile), time.perf_counter()
            cpu = run.cpu_seconds()[0] - cpu0
            tail = read_tail(logfile)
        finally:
            self.finish(run, "stdout capture")
        rate = (size1 - size0) / (t1 - t0) / MiB
        lines = tail.split(b"\n")[1:-1]
        if not lines or any(line != LINE.encode() for line in lines):
            raise RuntimeError(f"{name}: the log does not hold the writer's lines: {tail[-300:]!r}")
        note = f"daemon at {100 * cpu / (t1 - t0):.0f}% CPU"
        if not punch.works:
            note += ", hole punching unsupported: window cut short"
        self.results.put("capture", name, rate, note)
        self.log(f"{name}: stdout capture {rate:.0f} MiB/s")


def kill_one(run: Run) -> float:
    """SIGKILL the oldest running process of the job; seconds until /proc shows its
    replacement running (a new descendant, not a zombie, with the job's command line)."""
    watch = run.watch
    deadline = time.monotonic() + 30
    while True:
        watch.scan()
        if len(watch.verify()) >= 5:
            break
        run.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{run.system.name}: fewer than 5 running")
        time.sleep(0.001)
    victim = min(watch.running, key=lambda pid: (watch.running[pid], pid))
    before = proc_pids()
    killed = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    del watch.running[victim]
    while True:
        time.sleep(0.001)
        for pid in sorted(proc_pids() - before):
            stat = read_stat(pid)
            if stat is None:
                continue
            if pid in watch.ours or stat.ppid in watch.ours:
                if watch.adopt(pid, stat):
                    return time.perf_counter() - killed
            else:
                before.add(pid)
        if time.perf_counter() - killed > 30:
            run.check_alive()
            raise TimeoutError(f"{run.system.name}: no replacement 30 s after a SIGKILL")


class HolePuncher:
    """Keeps a growing log's tmpfs footprint small while its size keeps counting: frees
    what the writer wrote more than 64 MiB ago with fallocate(PUNCH_HOLE | KEEP_SIZE)."""

    PUNCH_HOLE_KEEP_SIZE = 0x02 | 0x01
    LIMIT = 8 * 1024 * MiB  # without hole punching, stop waiting past this size

    def __init__(self, path: str) -> None:
        self.path = path
        self.works = True
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]

    def wait(self, seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.perf_counter())))
            self.punch()

    def punch(self) -> None:
        size = os.path.getsize(self.path)
        if not self.works:
            if size > self.LIMIT:
                raise RuntimeError("log too large for tmpfs and hole punching unsupported")
            return
        end = (size - 64 * MiB) // MiB * MiB
        if end <= 0:
            return
        fd = os.open(self.path, os.O_WRONLY)
        try:
            if self.libc.fallocate(fd, self.PUNCH_HOLE_KEEP_SIZE, 0, end) != 0:
                err = ctypes.get_errno()
                if err in (errno.EOPNOTSUPP, errno.ENOSYS):
                    self.works = False
                else:
                    raise OSError(err, os.strerror(err), self.path)
        finally:
            os.close(fd)


def read_tail(path: str, size: int = 4096) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(max(0, os.path.getsize(path) - size))
        return handle.read()


def percentile(values: list[float], pct: float) -> float:
    """Nearest rank of sorted ``values``: with fewer than 100 values, p99 is the max."""
    return values[max(0, math.ceil(len(values) * pct / 100) - 1)]


def compile_spawn(directory: str) -> str | None:
    source = Path(__file__).with_name("spawn.c")
    compiler = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if compiler is None or not source.exists():
        return None
    binary = os.path.join(directory, "spawn")
    result = subprocess.run(
        [compiler, "-O2", "-o", binary, str(source)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        print(f"compiling {source} failed:\n{result.stderr}", file=sys.stderr)
        return None
    return binary


def precompile(systems: list[str], log: Callable[[str], None]) -> None:
    """Byte-compile each system's packages, as an install does: an editable gaffer (and a
    PYTHONDONTWRITEBYTECODE environment) would otherwise compile gaffer's sources at every
    daemon start, a cost the peers, installed with their .pyc, do not pay."""
    import compileall

    packages = {
        "gaffer": ("gaffer", "gafferd", "tornado", "uvloop", "psutil"),
        "supervisor": ("supervisor",),
        "circus": ("circus", "zmq", "tornado", "psutil"),
    }
    for name in systems:
        for package in packages[name]:
            spec = importlib.util.find_spec(package)
            if spec is not None and spec.submodule_search_locations:
                for location in spec.submodule_search_locations:
                    if not compileall.compile_dir(location, quiet=1, workers=0):
                        log(f"  byte-compiling {location}: some files failed")


def raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- the table -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    key: str
    label: str
    digits: int
    higher_is_better: bool
    note: str = ""


def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def fmt_ratio(ratio: float) -> str:
    if ratio >= 100:
        return f"{ratio:,.0f}"
    if ratio >= 10:
        return f"{ratio:.0f}"
    return f"{ratio:.2f}"


def versus(values: dict[str, float | None], higher_is_better: bool) -> str:
    """gaffer against the best peer: 'N x ahead (peer)' when gaffer is better by a factor
    N (a lower time, a higher rate), 'N x behind (peer)' when the peer is."""
    gaffer = values.get("gaffer")
    peers = {name: v for name in PEERS if (v := values.get(name)) is not None}
    if gaffer is None or not peers:
        return "n/a"
    pick = max if higher_is_better else min
    best_name = pick(peers, key=lambda name: peers[name])
    best = peers[best_name]
    better, worse = (gaffer, best) if higher_is_better else (best, gaffer)
    if better == worse:
        return f"tie ({best_name})"
    if worse == 0:
        return f"ahead ({best_name} {best:g})"
    if better == 0:
        return f"behind ({best_name} {best:g})"
    ratio = better / worse
    if ratio >= 1:
        return f"{fmt_ratio(ratio)}x ahead ({best_name})"
    return f"{fmt_ratio(1 / ratio)}x behind ({best_name})"


def render(bench: Bench, versions: dict[str, str], elapsed: float) -> str:
    sizes, res = bench.sizes, bench.results
    largest = max(sizes.cold)
    rows_spec = [Row(f"cold{n}", f"cold start, {n:,} `sleep` (s)", 3, False) for n in sizes.cold]
    rows_spec += [
        Row("rate_vs_c", f"spawn rate vs C posix_spawn, {largest:,} (%)", 0, True),
        Row("restart_p50", "restart after SIGKILL, p50 (ms)", 2, False),
        Row("restart_p99", "restart after SIGKILL, p99 (ms)", 2, False),
        Row("crash", "crash loop (starts/s)", 1, True),
        Row(
            "contained_starts",
            f"crash loop, defaults: starts in the first {sizes.containment_window:.0f} s",
            0,
            False,
        ),
        Row("contained_cpu", "crash loop, defaults: daemon CPU (%)", 1, False),
        Row("capture", "stdout capture to a file (MiB/s)", 0, True),
        Row(
            "idle_cpu",
            f"idle, {largest:,} `sleep`: CPU over {sizes.idle_window:.0f} s (s)",
            3,
            False,
        ),
        Row("idle_rss", f"idle, {largest:,} `sleep`: RSS (MiB)", 1, False),
        Row("idle_pss", f"idle, {largest:,} `sleep`: PSS (MiB)", 1, False),
        Row("ctl_p50", f"list {largest:,} processes via API, p50 (ms)", 1, False),
        Row("ctl_p99", f"list {largest:,} processes via API, p99 (ms)", 1, False),
    ]
    # spawn rate as a share of the C program's, at the largest N
    c_times = res.values.get("c_cold", {})
    for name in SYSTEMS:
        cold = res.values.get(f"cold{largest}", {}).get(name)
        c_time = c_times.get(name)
        res.put("rate_vs_c", name, 100 * c_time / cold if c_time and cold else None)
    general_notes = general_row_notes(bench)
    rows = []
    for spec in rows_spec:
        values = res.values.get(spec.key, {})
        cells = [
            fmt(values.get(name), spec.digits) if name in bench.systems else "not run"
            for name in SYSTEMS
        ]
        notes = [general_notes.get(spec.key, "")]
        notes += [f"{name}: {note}" for name, note in res.notes.get(spec.key, {}).items()]
        rows.append(
            (
                spec.label,
                *cells,
                versus(values, spec.higher_is_better),
                "; ".join(note for note in notes if note),
            )
        )
    header = (
        "workload",
        *(f"{name} {versions.get(name, '')}".strip() for name in SYSTEMS),
        "gaffer vs best peer",
        "notes",
    )
    title = "gaffer, supervisor and circus side by side" + (" (--quick)" if sizes is QUICK else "")
    text = table(title, header, rows)
    extra = ", ".join(f"{name} {versions[name]}" for name in SYSTEMS if name in versions)
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if line.startswith("Machine: "):
            end = " ".join(f"{load:.2f}" for load in os.getloadavg())
            lines[index] = (
                f"{line}; {extra}; load average (1, 5, 15 min) at start {bench.load_at_start},"
                f" at end {end}"
            )
            break
    leftovers = ", ".join(f"{name} {count}" for name, count in res.leftovers.items())
    lines += [
        "",
        f"Processes left behind after the daemons stopped (killed by the harness): "
        f"{leftovers or 'none'}. Whole run: {elapsed / 60:.1f} min.",
    ]
    for name, troubles in res.stops.items():
        lines += ["", f"Stopping {name}: {'; '.join(troubles)}."]
    for failure in res.failures:
        lines += ["", f"FAILED: {failure}"]
    return "\n".join(lines)


def general_row_notes(bench: Bench) -> dict[str, str]:
    sizes, res = bench.sizes, bench.results
    largest = max(sizes.cold)
    notes = {}
    for n in sizes.cold:
        notes[f"cold{n}"] = "from the daemon's launch until all run in /proc"
    c_times = res.values.get("c_cold", {})
    if c_times:
        runs = ", ".join(f"{c_times[name]:.3f} s before {name}" for name in c_times)
        text = (
            f"`bench/spawn.c` starting {largest:,} `sleep` with posix_spawn, timed the same way,"
            f" right before each system's cold start: {runs}; share = C time / system time"
        )
        phase = res.values.get(f"phase{largest}", {}).get("gaffer")
        c_gaffer = c_times.get("gaffer")
        cold = res.values.get(f"cold{largest}", {}).get("gaffer")
        if phase and c_gaffer and cold:
            text += (
                f"; gaffer's spawn phase alone (from its first child, seen at "
                f"{cold - phase:.2f} s, until all run): {largest / phase:,.0f}/s = "
                f"{100 * c_gaffer / phase:.0f}% of C"
            )
        notes["rate_vs_c"] = text
    else:
        notes["rate_vs_c"] = "C baseline unavailable (no gcc)"
    notes["restart_p50"] = (
        "5 `sleep`, oldest SIGKILLed, /proc polled every 1 ms; a kill is of a started "
        "process (gaffer start_secs 0, flapping off; supervisor startsecs 0); circus: kills "
        "at a random phase of its 5 s check_delay"
    )
    notes["crash"] = (
        "`sh -c 'printf x >> FILE'`, starts counted in FILE over "
        f"{sizes.crash_window:.0f} s; gaffer flapping off; supervisor startsecs=0, "
        "startretries=1e9, autorestart; circus no flapping plugin, respawn, but "
        "it only respawns on its check_delay tick (default 5 s, kept)"
    )
    notes["crash"] = notes["crash"].replace(
        "gaffer flapping off", "gaffer flapping, backoff off, start_retries 1e9"
    )
    notes["contained_starts"] = (
        "the same `sh -c 'printf x >> FILE'` with every default, counted from its first "
        "start: gaffer backoff 0.1 s x2, crash-loop pause 7 s, fatal after 6 failed starts "
        "(~15 s); supervisor startsecs 1, startretries 3: FATAL after 4 starts; circus "
        "respawns on its 5 s check_delay, for ever"
    )
    notes["contained_cpu"] = "the daemon's CPU time over the same window, in % of one core"
    notes["capture"] = (
        f"`yes` of a 99-char line, log in /dev/shm, no rotation, "
        f"{sizes.capture_window:.0f} s after {sizes.capture_warmup:.0f} s warm-up"
    )
    notes["idle_cpu"] = "daemon and helpers, /proc/<pid>/task/*/schedstat, from 2 s after all run"
    notes["ctl_p50"] = (
        f"{sizes.calls} calls: gaffer {Gaffer.api}; supervisor {Supervisor.api}; "
        f"circus {Circus.api}"
    )
    return notes


def write_docs(section: str, path: Path = DOCS, begin: str = BEGIN, end: str = END) -> None:
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{section.rstrip()}\n{end}"
    if begin in text and end in text and text.index(begin) < text.index(end):
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    path.write_text(text)


def docs_section(table_text: str, sizes: Sizes) -> str:
    largest = max(sizes.cold)
    return "\n".join(
        [
            "## Side by side with supervisor and circus (`python -m bench.peers`)",
            "",
            "The same workloads under gafferd, supervisord and circusd, one after another in one "
            "run (`make bench`; the peers come from PyPI into `.venv-bench`, see `make "
            "bench-venv`). Every system runs from its own config with defaults except where a "
            "workload says otherwise, a fresh daemon per workload, started as a subprocess and "
            "stopped with SIGTERM. A process counts as running when /proc shows it descending "
            "from the daemon, not a zombie, with the job's command line: never on the daemon's "
            "word.",
            "",
            f"* cold start: N `sleep 100000` ({', '.join(f'{n:,}' for n in sizes.cold)}), from the"
            " daemon's launch until all N run, /proc polled every 10 ms.",
            f"* spawn rate vs C: `bench/spawn.c` starts the same {largest:,} processes with "
            "`posix_spawn`, timed the same way, right before each system's cold start; each "
            "system's cold-start rate as a share of the C run next to it.",
            "* restart latency: 5 `sleep`, the oldest SIGKILLed, /proc polled every 1 ms until a "
            f"new one runs; {sizes.kills} kills 5-25 ms apart; circus: a random extra 0-5 s before "
            "each kill (kills at a random phase of its 5 s reaping tick), capped at "
            f"{sizes.circus_kill_cap:.0f} s.",
            "* crash loop: `sh -c 'printf x >> FILE'`; starts per second counted in FILE, with "
            "each system's flapping or backoff turned off as far as its config allows.",
            "* stdout capture: one `yes` of a 99-character line, logged into /dev/shm without "
            "rotation; growth of the log after a warm-up.",
            f"* idle: {largest:,} `sleep`, from 2 s after all run: the daemon's CPU seconds over "
            f"{sizes.idle_window:.0f} s (`/proc/<pid>/task/*/schedstat`), its RSS and its PSS "
            "(shared pages counted for their share), with its helper processes (gafferd's "
            "guard) added.",
            f"* control: {sizes.calls} calls listing all {largest:,} processes through each "
            "system's own API, from the harness.",
            "",
            table_text,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: N=100, 20 kills, 5 s windows"
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help=f"replace the {BEGIN} ... {END} section of docs/performance.md",
    )
    parser.add_argument(
        "--output", metavar="FILE", help="also write the docs section (text + table) to FILE"
    )
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated subset of gaffer,supervisor,circus",
    )
    args = parser.parse_args(argv or [])
    sizes = QUICK if args.quick else Sizes()
    wanted = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in CLASSES]
    if unknown:
        parser.error(f"unknown system(s): {', '.join(unknown)}")
    missing = [name for name in wanted if not CLASSES[name].available()]
    if missing:
        print(
            f"peers: {', '.join(missing)} not installed for {sys.executable}: run it with "
            "the Python of .venv-bench (`make bench-venv`; `make bench` does), or pass "
            "--systems",
            file=sys.stderr,
        )
        return 1
    raise_fd_limit()
    versions = {name: CLASSES[name].version() for name in wanted}
    versions["Python"] = sys.version.split()[0]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    bench = Bench(sizes, wanted, log)
    log(f"peers: {describe()}; {versions}; scratch {bench.scratch}, logs {bench.logs}")
    try:
        precompile(wanted, log)
        for name in wanted:
            log(f"== {name}")
            for workload in (
                bench.baseline,
                bench.cold_start,
                bench.restart,
                bench.crash_loop,
                bench.containment,
                bench.capture,
            ):
                try:
                    workload(name)
                except Exception as exc:  # one failed workload must not lose the others
                    log(f"  {name} {workload.__name__} FAILED: {exc!r}")
                    bench.results.failures.append(f"{name} {workload.__name__}: {exc}")
    finally:
        bench.cleanup()
    text = render(bench, versions, time.perf_counter() - started)
    print(text)
    section = docs_section(text, sizes)
    if args.output:
        Path(args.output).write_text(section)
        log(f"wrote {args.output}")
    if args.write_docs:
        write_docs(section)
        log(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
