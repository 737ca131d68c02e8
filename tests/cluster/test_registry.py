"""Nodes register in a real etcd, list each other and each other's jobs, leave when they
die, and come back when etcd does. Real etcd, real gafferd processes, real HTTP."""

from __future__ import annotations

import os
import signal
import time

from tests.cluster.conftest import TTL, Cluster, Node
from tests.gafferd.harness import free_port, wait_gone
from tests.helpers import child_cmd, wait_until_sync

WEB = """
    [job:web]
    cmd = {child} sleep 1001
    numprocesses = 2
"""


def _published(record: dict) -> bool:
    return (record.get("processes"), record.get("state")) == (2, "running")


def start_three(cluster: Cluster) -> list[Node]:
    nodes = [cluster.node(name, WEB) for name in ("a", "b", "c")]
    cluster.wait_nodes({"a", "b", "c"}, via=nodes[0])
    wait_until_sync(
        lambda: all(
            _published(nodes[0].cluster_jobs().get((node.name, "default.web"), {}))
            for node in nodes
        ),
        timeout=10,
        what="every node's web job published running its 2 processes",
    )
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
        assert record["ttl"] == TTL
        assert record["version"]
        assert record["started"] <= time.time()


def test_cluster_jobs_show_every_node_and_follow_changes(cluster: Cluster) -> None:
    a, b, c = start_three(cluster)
    assert a.cluster_jobs()[("b", "default.web")] == {
        "node": "b",
        "job": "default.web",
        "state": "running",
        "processes": 2,
        "numprocesses": 2,
    }
    # a change on b is seen through c
    assert b.request("POST", "/jobs/default/web/numprocesses", {"scale": "=3"})[0] == 200
    wait_until_sync(
        lambda: c.cluster_jobs()[("b", "default.web")]["processes"] == 3,
        what="b's third process seen through c",
    )
    assert c.cluster_jobs()[("b", "default.web")]["numprocesses"] == 3
    # stopped on c
    assert c.request("POST", "/jobs/default/web/state", "0")[0] == 202
    wait_until_sync(
        lambda: a.cluster_jobs()[("c", "default.web")]["state"] == "stopped",
        what="c's job stopped, seen through a",
    )
    # loaded and unloaded on a
    body = {"name": "extra", "cmd": child_cmd("sleep", 1002)}
    assert a.request("POST", "/jobs/batch", body)[0] == 200
    wait_until_sync(lambda: ("a", "batch.extra") in b.cluster_jobs(), what="a's new job")
    assert a.request("DELETE", "/jobs/batch/extra")[0] == 200
    wait_until_sync(lambda: ("a", "batch.extra") not in b.cluster_jobs(), what="a's job gone")
    # one node's jobs
    status, body = a.request("GET", "/cluster/jobs?node=b")
    assert status == 200
    assert [(job["node"], job["job"]) for job in body["jobs"]] == [("b", "default.web")]


def test_a_killed_node_leaves_within_its_ttl_and_a_stopped_one_at_once(cluster: Cluster) -> None:
    a, b, c = start_three(cluster)
    children = c.job_pids("sleep 1001")
    assert len(children) == 2
    os.kill(c.pid, signal.SIGKILL)
    killed = time.monotonic()
    c.proc.wait(10)
    wait_until_sync(
        lambda: "c" not in a.cluster_nodes(),
        timeout=TTL + 2,
        what=f"the killed node c gone from the registry within {TTL} + 2 s",
    )
    assert time.monotonic() - killed <= TTL + 2
    assert not [key for key in a.cluster_jobs() if key[0] == "c"]
    wait_gone(children)  # gafferd's guard took them
    # a graceful stop revokes the lease: gone as soon as gafferd has exited
    assert b.stop() == 0
    assert set(a.cluster_nodes()) == {"a"}
    assert set(a.cluster_jobs()) == {("a", "default.web")}


def test_nodes_keep_supervising_without_etcd_and_register_again(cluster: Cluster) -> None:
    a, b, c = start_three(cluster)
    cluster.etcd.stop()
    for node in (a, b, c):
        node.wait_log(f"node {node.name} disconnected", timeout=TTL + 5)
    status, body = a.request("GET", "/cluster/nodes")
    assert status == 503 and body["error"] == "cluster_unavailable", body
    # supervision goes on: a scale, and a killed process replaced
    assert a.request("POST", "/jobs/default/web/numprocesses", {"scale": "=3"})[0] == 200
    wait_until_sync(lambda: len(a.job_pids("sleep 1001")) == 3, what="a's third process")
    victim = sorted(b.job_pids("sleep 1001"))[0]
    os.kill(victim, signal.SIGKILL)
    wait_until_sync(
        lambda: len(b.job_pids("sleep 1001") - {victim}) == 2, what="b's killed process replaced"
    )
    cluster.etcd.start()
    wait_until_sync(
        lambda: all(node.state() == "connected" for node in (a, b, c)),
        timeout=15,
        what="every node connected again",
    )
    for via in (a, b, c):
        cluster.wait_nodes({"a", "b", "c"}, via=via)
    wait_until_sync(
        lambda: b.cluster_jobs()[("a", "default.web")]["processes"] == 3,
        what="the scale done while etcd was away, published once it is back",
    )


def test_nodes_register_again_when_etcd_lost_everything(cluster: Cluster) -> None:
    a, b, c = start_three(cluster)
    cluster.etcd.stop()
    cluster.etcd.wipe()
    cluster.etcd.start()  # a new etcd: no key, no lease
    cluster.wait_nodes({"a", "b", "c"}, via=c, timeout=15)
    wait_until_sync(
        lambda: all(node.state() == "connected" for node in (a, b, c)),
        what="every node connected with a new lease",
    )
    wait_until_sync(
        lambda: len(c.cluster_jobs()) == 3, timeout=10, what="every job published again"
    )


def test_a_crash_loop_is_written_at_most_a_few_times_a_second(cluster: Cluster) -> None:
    node = cluster.node(
        "a",
        "[job:crash]\ncmd = /bin/false\nnumprocesses = 4\n"
        # a crash loop on purpose: no pause, no backoff, never fatal
        "flapping = off\nbackoff = off\nstart_retries = 1000000000\n",
    )
    cluster.wait_nodes({"a"}, via=node)
    wait_until_sync(lambda: ("a", "default.crash") in node.cluster_jobs(), what="the job")
    before, started = cluster.etcd.revision(), time.monotonic()
    exits_before = _exits(node)
    time.sleep(2)  # a measurement window, not a wait for a condition
    writes = cluster.etcd.revision() - before
    elapsed = time.monotonic() - started
    assert _exits(node) - exits_before > 100, "the job should crash-loop"
    assert writes <= elapsed / 0.25 + 2, f"{writes} writes in {elapsed:.1f}s"


def _exits(node: Node) -> int:
    """Processes of the crash job spawned so far (internal pids only grow)."""
    status, body = node.request("GET", "/pids")
    assert status == 200, body
    return max(body["pids"], default=0)


def test_a_second_gafferd_with_a_taken_name_waits_for_it(cluster: Cluster) -> None:
    first = cluster.node("a", WEB)
    cluster.wait_nodes({"a"}, via=first)
    second = cluster.node("a", directory="second")  # the same name, on purpose
    second.wait_log("node a conflict", timeout=10)
    assert second.state() == "conflict"
    assert first.cluster_nodes()["a"]["pid"] == first.pid
    assert first.stop() == 0
    wait_until_sync(
        lambda: second.state() == "connected", timeout=15, what="the second gafferd registered"
    )
    assert second.cluster_nodes()["a"]["pid"] == second.pid


def test_a_reload_that_moves_the_api_registers_the_new_addresses(cluster: Cluster) -> None:
    node = cluster.node("a", WEB)
    cluster.wait_nodes({"a"}, via=node)
    port = free_port()
    text = node.ini.read_text()
    node.ini.write_text(text.replace(f"127.0.0.1:{node.port}", f"127.0.0.1:{port}"))
    node.signal(signal.SIGHUP)
    wanted = [f"http://127.0.0.1:{port}", f"unix:{node.socket}"]

    def registered() -> bool:
        try:
            return node.cluster_nodes()["a"]["addresses"] == wanted
        except OSError:  # a request in flight while the old HTTP server stops
            return False

    wait_until_sync(registered, what="the new address registered")
