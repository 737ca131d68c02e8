"""What the tests of the ``gaffer`` command and of the Python client share: a real gafferd
kept for a whole module, the real ``gaffer`` command run as a subprocess, and jobs running
the fixture program (tests/fixtures/child.py)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.gafferd.harness import ROOT, Gafferd, free_port
from tests.helpers import CHILD, exec_done, wait_until_sync

#: gafferd processes that live for a whole test module: they and their jobs are no leak.
LONG_LIVED: set[int] = set()

#: variables of the test runner's environment that would change what gaffer does
SCRUBBED = ("GAFFER_ADDRESS", "GAFFER_API_KEY", "GAFFER_CONFIG", "NO_COLOR", "GAFFER_LOOP")


def child_job(name: str, *mode: object, **settings: Any) -> dict[str, Any]:
    """A job config running the fixture program in ``mode`` (e.g. ``"sleep"``, ``"echo"``)."""
    return {
        "name": name,
        "cmd": sys.executable,
        "args": ["-u", str(CHILD), *map(str, mode)],
        **settings,
    }


# -- gafferd ---------------------------------------------------------------------------------------


@dataclass
class Daemon:
    """A running gafferd: its harness, its addresses, and the admin key when it has one."""

    gafferd: Gafferd
    port: int | None = None
    admin_key: str | None = None

    @property
    def socket(self) -> str:
        return self.gafferd.socket

    @property
    def unix_url(self) -> str:
        return f"unix:{self.gafferd.socket}"

    @property
    def tcp_url(self) -> str:
        assert self.port is not None, "this gafferd has no TCP bind"
        return f"http://127.0.0.1:{self.port}"

    def url(self, transport: str = "unix") -> str:
        return self.tcp_url if transport == "tcp" else self.unix_url

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"X-Api-Key": self.admin_key} if self.admin_key else None
        return self.gafferd.request(method, path, body, headers=headers)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.request(method, path, body)
        assert 200 <= status < 300, (method, path, status, answer)
        return answer

    # jobs, straight over HTTP (the setup of a test, not what it checks)
    def load(self, config: dict[str, Any], session: str = "default", start: bool = True) -> str:
        self.ok("POST", f"/jobs/{session}", {**config, "start": start})
        return f"{session}.{config['name']}"

    def unload(self, job_id: str) -> None:
        self.request("DELETE", "/jobs/" + job_id.replace(".", "/", 1))

    def has_job(self, job_id: str) -> bool:
        return self.request("GET", "/jobs/" + job_id.replace(".", "/", 1))[0] == 200

    def info(self, job_id: str) -> dict[str, Any]:
        return self.ok("GET", "/jobs/" + job_id.replace(".", "/", 1))

    def pids(self, job_id: str) -> list[int]:
        return self.ok("GET", "/jobs/" + job_id.replace(".", "/", 1) + "/pids")["pids"]

    def process(self, pid: int) -> dict[str, Any]:
        return self.ok("GET", f"/{pid}")

    def process_exists(self, pid: int) -> bool:
        return self.request("GET", f"/{pid}")[0] == 200

    def wait_pids(self, job_id: str, count: int, timeout: float = 15) -> list[int]:
        """Wait until ``job_id`` has ``count`` processes that really run (an OS pid each,
        whose exec is done: /proc shows their own command line)."""
        found: list[int] = []

        def ready() -> bool:
            nonlocal found
            found = self.pids(job_id)
            if len(found) != count:
                return False
            os_pids = [self.request("GET", f"/{pid}")[1].get("os_pid") for pid in found]
            return all(os_pid and exec_done(os_pid) for os_pid in os_pids)

        wait_until_sync(ready, timeout=timeout, what=f"{count} processes of {job_id}: {found}")
        return found

    def wait_state(self, job_id: str, state: str, timeout: float = 15) -> dict[str, Any]:
        """Wait until the job is in ``state``; its info then."""
        info: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal info
            info = self.info(job_id)
            return info["state"] == state

        wait_until_sync(reached, timeout=timeout, what=f"{job_id} {state}: {info.get('state')}")
        return info

    def sessions(self) -> list[str]:
        return self.ok("GET", "/sessions")["sessions"]

    def jobs(self, session: str | None = None) -> list[str]:
        status, answer = self.request("GET", "/jobs" + (f"/{session}" if session else ""))
        return answer["jobs"] if status == 200 else []


def environ_of(os_pid: int, *names: str, timeout: float = 10) -> dict[str, str]:
    """The environment of the OS process ``os_pid`` once it holds ``names`` (right after
    the fork, before the exec, it is still its parent's)."""
    found: dict[str, str] = {}

    def ready() -> bool:
        nonlocal found
        try:
            found = psutil.Process(os_pid).environ()
        except psutil.Error:
            return False
        return all(name in found for name in names)

    wait_until_sync(ready, timeout=timeout, what=f"{names} in the environment of {os_pid}")
    return found


def start_daemon(directory: Path, require_key: bool = False, tcp: bool = True) -> Daemon:
    """A gafferd on ``directory/gafferd.sock`` (and a free loopback port with ``tcp``); with
    ``require_key``, an admin user ``admin``/``pw`` is created first and its key kept."""
    port = free_port() if tcp else None
    binds = f"unix:{directory / 'gafferd.sock'}" + (f" 127.0.0.1:{port}" if port else "")
    ini = f"[gaffer]\nbind = {binds}\n" + ("require_key = true\n" if require_key else "")
    gafferd = Gafferd(directory, ini)
    admin_key = None
    if require_key:
        created = gafferd.run("--create-admin-user", "--username", "admin", "--password", "pw")
        assert created.returncode == 0, created.stderr + created.stdout
        match = re.search(r"(gk_\S+)", created.stdout + created.stderr)
        assert match, created.stdout + created.stderr
        admin_key = match.group(1)
    gafferd.start()
    return Daemon(gafferd, port, admin_key)


@dataclass
class LongLived:
    """``with LongLived(daemon):`` for a module-scoped fixture: the daemon's processes are
    not counted as leaks while it lives, and it must stop cleanly (no child left)."""

    daemon: Daemon

    def __enter__(self) -> Daemon:
        LONG_LIVED.add(self.daemon.gafferd.pid)
        return self.daemon

    def __exit__(self, *exc_info: object) -> None:
        try:
            if exc_info[0] is None:
                assert self.daemon.gafferd.stop() == 0
        finally:
            self.daemon.gafferd.kill()
            LONG_LIVED.discard(self.daemon.gafferd.pid)


def leftover_children(ignore: set[int]) -> list[psutil.Process]:
    """Live children (or zombies) of the test runner, but the ``ignore`` daemons and what
    they started."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            child.status()
            lineage = {child.pid, *(parent.pid for parent in child.parents())}
        except psutil.NoSuchProcess:
            continue
        if not lineage & ignore:
            found.append(child)
    return found


def check_no_leftovers(timeout: float = 5) -> None:
    """tests/conftest.py's ``no_leaked_children`` check, for modules that keep a gafferd
    across their tests."""
    try:
        wait_until_sync(lambda: not leftover_children(LONG_LIVED), timeout=timeout, interval=0.02)
    except AssertionError:
        leftovers = leftover_children(LONG_LIVED)
        for child in leftovers:
            try:
                child.kill()
            except psutil.Error:
                pass
        raise AssertionError(f"test left processes behind: {leftovers}") from None


# -- the gaffer command ----------------------------------------------------------------------------


def gaffer_env(config: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a gaffer subprocess: this checkout on the path, a private user
    config, wide tables, nothing of the runner's GAFFER_* settings."""
    env = {key: value for key, value in os.environ.items() if key not in SCRUBBED}
    env.update({"PYTHONPATH": str(ROOT), "GAFFER_CONFIG": str(config), "COLUMNS": "250"})
    env.update(extra or {})
    return env


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __repr__(self) -> str:  # what pytest shows when an assertion fails
        return (
            f"<gaffer {' '.join(self.args)!r} exit {self.returncode}\n"
            f"stdout: {self.stdout[-2000:]!r}\nstderr: {self.stderr[-2000:]!r}>"
        )

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


@dataclass
class Cli:
    """Runs ``python -m gaffer -g URL [--api-key KEY] ARGS...`` in ``cwd`` with
    GAFFER_CONFIG=``config``."""

    url: str | None
    config: Path
    cwd: Path
    key: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def argv(self, args: Sequence[str], url: bool = True) -> list[str]:
        prefix = [sys.executable, "-m", "gaffer"]
        if url and self.url:
            prefix += ["-g", self.url]
        if self.key:
            prefix += ["--api-key", self.key]
        return prefix + list(args)

    def with_(self, **changes: Any) -> Cli:
        values = {
            "url": self.url,
            "config": self.config,
            "cwd": self.cwd,
            "key": self.key,
            "env": self.env,
        }
        values.update(changes)
        return Cli(**values)

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 30,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        url: bool = True,
    ) -> Result:
        completed = subprocess.run(
            self.argv(args, url),
            input=input,
            capture_output=True,
            text=True,
            env=gaffer_env(self.config, {**self.env, **(env or {})}),
            cwd=cwd or self.cwd,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        return Result(list(args), completed.returncode, completed.stdout, completed.stderr)

    def ok(self, *args: str, **kwargs: Any) -> Result:
        """Run and check it succeeded."""
        result = self(*args, **kwargs)
        assert result.returncode == 0, result
        return result

    def popen(self, *args: str, cwd: Path | None = None, **kwargs: Any) -> Reader:
        """Start gaffer in the background, its output read as it comes."""
        return Reader(
            subprocess.Popen(
                self.argv(args),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=gaffer_env(self.config, {**self.env, **kwargs.pop("env", {})}),
                cwd=cwd or self.cwd,
                **kwargs,
            )
        )


class Reader:
    """A subprocess whose stdout and stderr are collected by threads as they come."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._out = bytearray()
        self._err = bytearray()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._pump, args=(proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._pump, args=(proc.stderr, self._err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: Any, into: bytearray) -> None:
        while True:
            data = stream.read1(65536)
            if not data:
                return
            with self._lock:
                into.extend(data)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> str:
        with self._lock:
            return self._out.decode(errors="replace")

    @property
    def stderr(self) -> str:
        with self._lock:
            return self._err.decode(errors="replace")

    def wait_output(self, text: str | re.Pattern[str], timeout: float = 15) -> str:
        """Wait until stdout holds ``text`` (a string, or a regex); stdout so far."""

        def found() -> bool:
            out = self.stdout
            return text in out if isinstance(text, str) else text.search(out) is not None

        try:
            wait_until_sync(found, timeout=timeout, what=f"{text!r} in the output")
        except AssertionError:
            raise AssertionError(
                f"no {text!r} within {timeout}s (exit {self.proc.poll()})\n"
                f"stdout: {self.stdout[-3000:]!r}\nstderr: {self.stderr[-3000:]!r}"
            ) from None
        return self.stdout

    def wait(self, timeout: float = 15) -> int:
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None and not any(thread.is_alive() for thread in self._threads):
                stream.close()
        return code

    def stop(self) -> None:
        """Kill it (and reap it) if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def parse_table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """A table printed by gaffer (columns separated by two spaces or more, as the header
    says): its headers and its rows as dicts."""
    lines = [line for line in text.splitlines() if line.strip()]
    header_index = next(
        index for index, line in enumerate(lines) if re.match(r"^[A-Z][A-Z ]+(  |$)", line)
    )
    header = lines[header_index]
    names = re.split(r"\s{2,}", header.strip())
    starts = [header.index(name) for name in names]
    rows = []
    for line in lines[header_index + 1 :]:
        cells = []
        for index, start in enumerate(starts):
            end = starts[index + 1] if index + 1 < len(starts) else None
            cells.append(line[start:end].strip())
        rows.append(dict(zip(names, cells, strict=True)))
    return names, rows


def run_on_pty(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 30) -> str:
    """Run ``argv`` with a pseudo-terminal as stdin, stdout and stderr; all it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(10) == 0, b"".join(chunks)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return b"".join(chunks).decode(errors="replace")
