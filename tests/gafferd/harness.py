"""A real gafferd in a subprocess, with its ini file in a temporary directory."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from tests.helpers import CHILD, children_of, cmdline_of, pid_exists, wait_until_sync

ROOT = Path(__file__).resolve().parents[2]


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Gafferd:
    """``Gafferd(tmp_path, ini_text).start()``; ``stop()`` checks nothing is left."""

    def __init__(
        self,
        directory: Path,
        ini: str = "",
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.dir = directory
        self.socket = str(directory / "gafferd.sock")
        self.ini = directory / "gafferd.ini"
        self.log = directory / "gafferd.log"
        self.write(ini)
        root = {"GAFFERD_ALLOW_ROOT_WITHOUT_KEYS": "true"} if os.geteuid() == 0 else {}
        # tests run as root in containers: gafferd's refusal to serve TCP there without
        # keys is what tests/security/test_root.py checks; here it would only be in the way
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **root, **(env or {})}
        self.env.pop("GAFFERD_CONFIG", None)
        self.args = args
        self.prefix = prefix  # a wrapper command that execs gafferd (limits, ...)
        self.proc: subprocess.Popen[bytes] | None = None
        self._stdout = directory / "gafferd.stdout"

    def write(self, ini: str) -> None:
        """Write the ini file; every line is stripped, so blocks may be indented as they
        like in the tests (no continuation lines here)."""
        text = "\n".join(line.strip() for line in ini.strip().splitlines()) + "\n"
        if "[gaffer]" not in text:
            text = f"[gaffer]\nbind = unix:{self.socket}\n\n{text}"
        text = text.replace("{child}", f"{sys.executable} -u {CHILD}")
        self.ini.write_text(text)

    def command(self, *extra: str) -> list[str]:
        return [
            *self.prefix,
            sys.executable,
            "-m",
            "gafferd",
            "-c",
            str(self.ini),
            "--error-log",
            str(self.log),
            *self.args,
            *extra,
        ]

    def run(self, *extra: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run gafferd to completion (--check-config, --print-config, a bad config...)."""
        return subprocess.run(
            [sys.executable, "-m", "gafferd", "-c", str(self.ini), *self.args, *extra],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            cwd=self.dir,
        )

    def start(self, wait: bool = True) -> Gafferd:
        with self._stdout.open("wb") as out:
            self.proc = subprocess.Popen(
                self.command(), env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.dir
            )
        if wait:
            wait_until_sync(self.ready, timeout=20, what="gafferd answering /ping")
        return self

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"gafferd exited with {self.proc.returncode}:\n{self.output()}\n{self.log_text()}"
            )
        try:
            return self.request("GET", "/ping")[0] == 200
        except OSError:
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        conn = UnixHTTPConnection(self.socket)
        try:
            data = (
                None
                if body is None
                else (body if isinstance(body, bytes | str) else json.dumps(body))
            )
            headers = dict(headers or {})
            if data is not None and not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "application/json"  # gafferd takes no other body
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []

    def job_pids(self, marker: str) -> set[int]:
        """OS pids of the children whose command line holds ``marker``."""
        return {pid for pid in children_of(self.pid) if marker in cmdline_of(pid)}

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20) -> int:
        """TERM, wait, and check that no child outlives gafferd."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        children = self.children()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        _gone, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, f"children left after gafferd stopped: {alive}"
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for child in self.children():
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            self.proc.kill()
            self.proc.wait(10)

    def output(self) -> str:
        return self._stdout.read_text(errors="replace") if self._stdout.exists() else ""

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, text: str, timeout: float = 10) -> None:
        wait_until_sync(
            lambda: text in self.log_text(),
            timeout=timeout,
            what=f"{text!r} in gafferd's log:\n{self.log_text()}",
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive TCP ports free on 127.0.0.1 (a job's instances
    listen on ``port + slot``). Taken below the ephemeral range: a port in it may become
    the local end of some outgoing connection between this check and its use."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
        ephemeral = int(ports.read().split()[0])
    for _ in range(100):
        base = random.randrange(10_000, max(ephemeral - count, 10_001))
        sockets = [socket.socket() for _ in range(count)]
        try:
            for offset, sock in enumerate(sockets):
                sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError(f"no {count} consecutive free ports found")


def wait_gone(pids: set[int], timeout: float = 10) -> None:
    wait_until_sync(
        lambda: not any(pid_exists(pid) for pid in pids),
        timeout=timeout,
        what=f"processes {sorted(pids)} gone",
    )
