"""Nodes register in a real etcd, list each other and each other's jobs."""

from __future__ import annotations

from tests.cluster.conftest import Cluster

WEB = """
    [job:web]
    cmd = {child} sleep 1001
    numprocesses = 2
"""


def start_three(cluster: Cluster):
    nodes = [cluster.node(name, WEB) for name in ("a", "b", "c")]
    cluster.wait_nodes({"a", "b", "c"}, via=nodes[0])
    return nodes


def test_nodes_register_and_every_node_lists_all_of_them(cluster: Cluster) -> None:
    a, b, c = start_three(cluster)
    for via in (a, b, c):
        cluster.wait_nodes({"a", "b", "c"}, via=via)
        assert via.state() == "connected"
    seen = a.cluster_nodes()
    for node in (a, b, c):
        record = seen[node.name]
        assert record["addresses"] == [node.url, f"unix:{node.socket}"]
        assert record["pid"] == node.pid
        assert record["ttl"] == 2
        assert record["version"]
