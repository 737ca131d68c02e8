"""Cluster jobs: declared once, their instances claimed by nodes through etcd
transactions (each exactly once), moved off a dead node within the lease TTL, stopped by
a node that lost etcd for longer than its lease. Real etcd, real gafferd nodes."""

from __future__ import annotations

import os
import signal
import time

from tests.cluster.conftest import TTL, Cluster, Node
from tests.cluster.test_registry import WEB, start_three
from tests.gafferd.harness import Gafferd, wait_gone
from tests.helpers import child_cmd, wait_until_sync

MARK = "sleep 1005"
BATCH = {"name": "batch", "cmd": child_cmd("sleep", 1005), "numprocesses": 2}


def runners(nodes: list[Node]) -> set[str]:
    """The nodes where the cluster job's processes run (read from the processes)."""
    return {node.name for node in nodes if node.job_pids(MARK)}


def declared(via: Node) -> dict:
    status, body = via.request("GET", "/cluster/jobs")
    assert status == 200, body
    return {job["job"]: job for job in body["declared"]}


def wait_runners(nodes: list[Node], count: int, what: str, timeout: float = 10) -> set[str]:
    def placed() -> bool:
        names = runners(nodes)
        return len(names) == count and all(
            len(node.job_pids(MARK)) == 2 for node in nodes if node.name in names
        )

    wait_until_sync(placed, timeout=timeout, what=f"{what} (runs on: {runners(nodes)})")
    return runners(nodes)


def test_instances_run_once_each_and_move_off_a_dead_node(cluster: Cluster) -> None:
    nodes = start_three(cluster)
    a, b = nodes[0], nodes[1]
    status, body = a.request("POST", "/cluster/jobs", {**BATCH, "nodes": 2})
    assert status == 201, body
    assert body == {"job": "default.batch", "nodes": 2}
    holders = wait_runners(nodes, 2, "2 instances on 2 nodes")
    instances = declared(b)["default.batch"]["instances"]
    assert sorted(instances) == ["0", "1"]
    assert set(instances.values()) == holders
    assert declared(b)["default.batch"]["nodes"] == 2

    victim = next(node for node in nodes if node.name in holders)
    spare = next(node for node in nodes if node.name not in holders)
    orphans = victim.job_pids(MARK)
    os.kill(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    victim.proc.wait(10)
    wait_until_sync(
        lambda: len(spare.job_pids(MARK)) == 2,
        timeout=TTL + 2,
        what=f"the instance of the killed {victim.name} claimed by {spare.name}",
    )
    assert time.monotonic() - killed <= TTL + 2
    wait_gone(orphans)
    live = [node for node in nodes if node is not victim]
    assert runners(live) == {node.name for node in live}
    wait_until_sync(
        lambda: (
            set(declared(spare)["default.batch"]["instances"].values())
            == {node.name for node in live}
        ),
        what="the claims in etcd",
    )

    # fewer instances: one node lets its instance go
    status, _ = spare.request("POST", "/cluster/jobs", {**BATCH, "nodes": 1})
    assert status == 201
    wait_runners(live, 1, "1 instance left")
    # withdrawn: every instance stops
    assert spare.request("DELETE", "/cluster/jobs/default/batch")[0] == 200
    wait_runners(live, 0, "no instance after the withdrawal")
    assert "default.batch" not in declared(spare)
    assert spare.request("DELETE", "/cluster/jobs/default/batch")[0] == 404


def test_per_node_jobs_run_on_every_node_even_one_that_joins_later(cluster: Cluster) -> None:
    a, b, c = start_three(cluster)
    status, body = b.request("POST", "/cluster/jobs", {**BATCH, "per_node": 1})
    assert status == 201, body
    wait_runners([a, b, c], 3, "an instance on each node")
    d = cluster.node("d", WEB)
    wait_runners([a, b, c, d], 4, "an instance on the new node too")
    assert set(declared(d)["default.batch"]["instances"]) == {"a", "b", "c", "d"}
    # unloaded through a node's own API: the declaration wins, the node loads it again
    before = b.job_pids(MARK)
    assert b.request("DELETE", "/jobs/default/batch")[0] == 200
    wait_until_sync(lambda: len(b.job_pids(MARK) - before) == 2, what="b's instance loaded again")
    # a node stopped gracefully releases its instance at once (its lease is revoked)
    assert d.stop() == 0
    wait_until_sync(
        lambda: set(declared(a)["default.batch"]["instances"]) == {"a", "b", "c"},
        timeout=2,
        what="d's instance released",
    )
    assert c.request("DELETE", "/cluster/jobs/default/batch")[0] == 200
    wait_runners([a, b, c], 0, "no instance after the withdrawal")


def test_a_node_that_lost_etcd_past_its_lease_stops_its_instances(cluster: Cluster) -> None:
    nodes = start_three(cluster)
    a = nodes[0]
    assert a.request("POST", "/cluster/jobs", {**BATCH, "nodes": 2})[0] == 201
    holders = wait_runners(nodes, 2, "2 instances")
    cluster.etcd.stop()
    stopped = time.monotonic()
    wait_runners(nodes, 0, "instances stopped once the lease may be gone", timeout=TTL + 3)
    assert time.monotonic() - stopped >= TTL - 1  # not before the lease could expire
    assert all(len(node.job_pids("sleep 1001")) == 2 for node in nodes)  # the rest runs on
    for node in nodes:
        if node.name in holders:
            node.wait_log(f"{node.name} lost etcd for longer than its lease")
    cluster.etcd.start()
    wait_runners(nodes, 2, "2 instances placed again", timeout=20)


def test_a_node_with_its_own_job_of_that_name_takes_no_instance(cluster: Cluster) -> None:
    a, b = cluster.node("a", WEB), cluster.node("b", WEB)
    cluster.wait_nodes({"a", "b"}, via=a)
    status, body = a.request(
        "POST", "/cluster/jobs", {"name": "web", "cmd": child_cmd("sleep", 1005), "per_node": 1}
    )
    assert status == 201, body
    a.wait_log("a has its own job default.web")
    b.wait_log("b has its own job default.web")
    assert declared(a)["default.web"]["instances"] == {}
    assert len(a.job_pids("sleep 1001")) == 2 and not a.job_pids(MARK)


def test_bad_cluster_job_declarations(cluster: Cluster, tmp_path) -> None:
    a = cluster.node("a")
    cluster.wait_nodes({"a"}, via=a)
    cases = [
        ({**BATCH}, "give either nodes = N or per_node = 1"),
        ({**BATCH, "nodes": 2, "per_node": 1}, "give either nodes = N or per_node = 1"),
        ({**BATCH, "nodes": 0}, "body.nodes"),
        ({**BATCH, "per_node": 2}, "body.per_node"),
        ({**BATCH, "nodes": 1, "numprocesses": -1}, "numprocesses"),
        ({"cmd": "x", "nodes": 1}, "body.name: required"),
    ]
    for body, reason in cases:
        status, answer = a.request("POST", "/cluster/jobs", body)
        assert status == 400, (body, answer)
        assert reason in answer["reason"], (body, answer)
    assert declared(a) == {}
    (tmp_path / "alone").mkdir()
    alone = Gafferd(tmp_path / "alone", "").start()
    try:
        status, answer = alone.request("POST", "/cluster/jobs", {**BATCH, "nodes": 1})
        assert (status, answer["error"]) == (404, "no_cluster")
    finally:
        assert alone.stop() == 0
