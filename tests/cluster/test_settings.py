"""The cluster settings: checked at start with a clear message, shown by --print-config,
and nothing of the cluster loaded by a gafferd without one."""

from __future__ import annotations

from pathlib import Path

import pytest

from gaffer.cluster.etcd import parse_endpoints
from gaffer.cluster.records import check_node_name, check_prefix
from tests.cluster.conftest import Node
from tests.gafferd.harness import Gafferd


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("cluster = http://127.0.0.1:2379", "cluster = http://127.0.0.1:2379: expected etcd://"),
        ("cluster = etcd://h:port", "cluster = etcd://h:port: 'h:port': the port must be"),
        ("cluster = etcd://a:1,,b:2", "an empty host in the list"),
        ("cluster = etcd://a:1/v3", "'a:1/v3': expected host:port (no path"),
        ("node_name = a/b", "node_name = a/b: a node name may not hold '/'"),
        ("cluster_prefix = gaffer", "cluster_prefix = gaffer: expected a path that starts"),
        ("cluster_ttl = 0", "cluster_ttl = 0: expected an integer >= 1"),
        ("cluster_advertise = 10.0.0.1:5000", "'10.0.0.1:5000': expected http(s)://host:port"),
    ],
)
def test_bad_cluster_settings_stop_gafferd_naming_the_key(
    tmp_path: Path, line: str, message: str
) -> None:
    daemon = Gafferd(tmp_path, f"[gaffer]\nbind = unix:{tmp_path}/g.sock\n{line}\n")
    result = daemon.run("--check-config")
    assert result.returncode == 78, result.stdout
    assert f"{daemon.ini}:3: [gaffer] " in result.stderr
    assert message in result.stderr


def test_print_config_shows_the_cluster_settings(tmp_path: Path) -> None:
    daemon = Gafferd(
        tmp_path,
        f"[gaffer]\nbind = unix:{tmp_path}/g.sock\ncluster = etcd://10.1.1.1:2379,10.1.1.2\n"
        "node_name = web-1\ncluster_ttl = 5\n",
    )
    result = daemon.run("--print-config")
    assert result.returncode == 0, result.stderr
    lines = {line.split(";")[0].strip() for line in result.stdout.splitlines()}
    assert {
        "cluster = etcd://10.1.1.1:2379,10.1.1.2",
        "node_name = web-1",
        "cluster_ttl = 5",
        "cluster_prefix = /gaffer/",
    } <= lines


def test_endpoints_and_names() -> None:
    assert parse_endpoints("etcd://a:1,b,etcd://[::1]:3") == [
        "http://a:1",
        "http://b:2379",
        "http://[::1]:3",
    ]
    assert check_node_name(" web-1 ") == "web-1"
    assert check_prefix("/prod/gaffer/") == "/prod/gaffer/"
    for bad in ("", "a b", "a\tb"):
        with pytest.raises(ValueError, match=r"node name|non-empty"):
            check_node_name(bad)


def test_a_gafferd_alone_answers_404_and_loads_nothing_of_the_cluster(tmp_path: Path) -> None:
    alone = Gafferd(
        tmp_path, "[job:web]\ncmd = {child} sleep 1001\n", env={"PYTHONPROFILEIMPORTTIME": "1"}
    ).start()
    try:
        for path in ("/cluster/nodes", "/cluster/jobs"):
            status, body = alone.request("GET", path)
            assert status == 404
            assert body["error"] == "no_cluster"
            assert "set cluster = etcd://host:port" in body["reason"]
        status, spec = alone.request("GET", "/openapi.json")
        assert {"/cluster/nodes", "/cluster/jobs"} <= set(spec["paths"])
        assert "503" in spec["paths"]["/cluster/jobs"]["get"]["responses"]
    finally:
        assert alone.stop() == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in alone.output().splitlines()}
    assert "gaffer.core.runner" in imported  # the import log is there...
    # ...and nothing of the cluster in it (but the route's small handler module)
    assert not {name for name in imported if name.startswith(("gaffer.cluster", "gafferd.cluster"))}
    assert "tornado.httpclient" not in imported


def test_a_node_imports_the_cluster_modules(cluster, tmp_path: Path) -> None:
    node = Node(tmp_path / "n", "n", cluster.etcd, "", "")
    node.env["PYTHONPROFILEIMPORTTIME"] = "1"
    node.start()
    try:
        cluster.wait_nodes({"n"}, via=node)
    finally:
        assert node.stop() == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in node.output().splitlines()}
    assert {"gaffer.cluster.registry", "gafferd.cluster"} <= imported
