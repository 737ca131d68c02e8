"""``gaffer --cluster``: one view of every node, and actions sent to another node's API,
with the real command, real gafferd nodes and a real etcd."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cluster.conftest import Cluster, Node, gaffer
from tests.cluster.test_registry import start_three
from tests.helpers import child_cmd, wait_until_sync


def numprocesses(node: Node, job: str = "web") -> int:
    status, body = node.request("GET", f"/jobs/default/{job}/numprocesses")
    assert status == 200, body
    return body["numprocesses"]


def test_ps_lists_every_node_and_scale_goes_to_the_node_named(
    cluster: Cluster, tmp_path: Path
) -> None:
    a, b, c = start_three(cluster)
    via = ("-g", f"unix:{a.socket}", "--cluster")
    listed = gaffer(tmp_path, *via, "ps", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted((row["node"], row["job"], row["processes"]) for row in rows) == [
        ("a", "default.web", 2),
        ("b", "default.web", 2),
        ("c", "default.web", 2),
    ]
    table = gaffer(tmp_path, *via, "ps", "--node", "b")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NODE", "JOB", "STATE", "PROCESSES", "TARGET"]
    assert [line.split() for line in lines[1:]] == [["b", "default.web", "running", "2", "2"]]

    scaled = gaffer(tmp_path, *via, "ps:scale", "web=3", "--node", "b")
    assert scaled.returncode == 0, scaled.stderr
    assert "b: scaling default.web processes... done, now running 3" in scaled.stdout
    assert (numprocesses(a), numprocesses(b), numprocesses(c)) == (2, 3, 2)
    wait_until_sync(
        lambda: a.cluster_jobs()[("b", "default.web")]["processes"] == 3,
        what="the scale seen in the registry",
    )

    # without --node: every node that runs the job
    everywhere = gaffer(tmp_path, *via, "ps:scale", "web+1", "--json")
    assert everywhere.returncode == 0, everywhere.stderr
    assert json.loads(everywhere.stdout) == {
        "a": {"default.web": 3},
        "b": {"default.web": 4},
        "c": {"default.web": 3},
    }


def test_start_stop_and_load_on_other_nodes(cluster: Cluster, tmp_path: Path) -> None:
    a, b, c = start_three(cluster)
    via = ("-g", f"unix:{b.socket}", "--cluster")
    stopped = gaffer(tmp_path, *via, "ps:stop", "web", "--node", "c")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == "c: default.web stopped"
    wait_until_sync(lambda: not c.job_pids("sleep 1001"), what="c's processes stopped")
    assert len(a.job_pids("sleep 1001")) == 2
    started = gaffer(tmp_path, *via, "ps:start", "web", "--node", "c")
    assert started.returncode == 0, started.stderr
    wait_until_sync(lambda: len(c.job_pids("sleep 1001")) == 2, what="c's processes back")

    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({"name": "batch", "cmd": child_cmd("sleep", 1003)}))
    loaded = gaffer(tmp_path, *via, "load", str(jobs), "--node", "a", "--node", "c")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.splitlines() == ["a: default.batch loaded", "c: default.batch loaded"]
    assert (a.job_pids("sleep 1003") and c.job_pids("sleep 1003")) and not b.job_pids("sleep 1003")
    wait_until_sync(
        lambda: (
            {key for key in b.cluster_jobs() if key[1] == "default.batch"}
            == {("a", "default.batch"), ("c", "default.batch")}
        ),
        what="the loaded jobs in the registry",
    )
    # stopping without --node: on every node that runs it
    everywhere = gaffer(tmp_path, *via, "ps:stop", "batch")
    assert everywhere.returncode == 0, everywhere.stderr
    assert sorted(everywhere.stdout.splitlines()) == [
        "a: default.batch stopped",
        "c: default.batch stopped",
    ]


def test_cluster_errors_say_what_is_wrong(cluster: Cluster, tmp_path: Path) -> None:
    a, _b, _c = start_three(cluster)
    via = ("-g", f"unix:{a.socket}", "--cluster")
    unknown = gaffer(tmp_path, *via, "ps:scale", "web=1", "--node", "zz")
    assert unknown.returncode == 2
    assert "no node 'zz' in the cluster (nodes: a, b, c)" in unknown.stderr
    nowhere = gaffer(tmp_path, *via, "ps:stop", "nosuchjob")
    assert nowhere.returncode == 1
    assert "no node of the cluster runs default.nosuchjob" in nowhere.stderr
    no_node = gaffer(tmp_path, *via, "load", "-")
    assert no_node.returncode == 2
    assert "--node" in no_node.stderr
    assert numprocesses(a) == 2


def test_cluster_commands_on_a_gafferd_alone(tmp_path: Path) -> None:
    alone = Node.alone(tmp_path)
    try:
        result = gaffer(tmp_path, "-g", f"unix:{alone.socket}", "--cluster", "ps")
        assert result.returncode == 2
        assert "is not in a cluster" in result.stderr
        plain = gaffer(tmp_path, "-g", f"unix:{alone.socket}", "ps")
        assert plain.returncode == 0, plain.stderr
    finally:
        assert alone.stop() == 0
