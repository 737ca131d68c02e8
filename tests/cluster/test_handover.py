"""A node of the cluster restarted in place (SIGUSR2) stays the same node: it keeps its
etcd lease, so its name and its claims stay its own (no conflict with itself until the
old lease expires). Real etcd, real gafferd."""

from __future__ import annotations

import json
import re
import signal

import pytest

from tests.cluster.conftest import Cluster
from tests.helpers import wait_until_sync

pytestmark = pytest.mark.timeout(120)


def _lease(node) -> str | None:
    status, body = node.request("GET", "/cluster/nodes")
    if status != 200 or body["state"] != "connected":
        return None
    found = re.search(r"lease ([0-9a-f]+)", json.dumps(body))
    return found.group(1) if found else None


def test_a_node_restarted_in_place_keeps_its_lease(cluster: Cluster) -> None:
    node = cluster.node("a", jobs="[job:web]\ncmd = {child} sleep\n")
    wait_until_sync(lambda: _lease(node), what="registered")
    lease = _lease(node)
    node.signal(signal.SIGUSR2)
    node.wait_log("restarted in place", timeout=30)
    wait_until_sync(lambda: _lease(node), what="connected again")
    assert _lease(node) == lease
    assert "conflict" not in node.log_text()
    wait_until_sync(lambda: ("a", "default.web") in node.cluster_jobs(), what="its jobs listed")
