"""``ClusterRegistry`` in an embedding program: its ``cluster`` events, and the etcd
client under it, against a real etcd."""

from __future__ import annotations

import asyncio

import pytest

from gaffer import Manager, ProcessConfig
from gaffer.cluster.etcd import (
    Etcd,
    EtcdError,
    EtcdUnavailable,
    created,
    parse_endpoints,
    put_op,
    range_op,
)
from gaffer.cluster.registry import ClusterRegistry
from tests.cluster.conftest import Cluster
from tests.helpers import EventRecorder, child_cmd, wait_until


async def test_registry_events_follow_etcd_going_and_coming_back(cluster: Cluster) -> None:
    endpoints = parse_endpoints(cluster.etcd.url)
    async with Manager() as manager:
        events = EventRecorder(manager, "cluster")
        registry = ClusterRegistry(endpoints, "emb", ttl=2, addresses=["unix:/run/emb.sock"])
        registry.start(manager.loop, manager)
        try:
            await events.wait("cluster", state="connected", name="emb")
            manager.load(ProcessConfig("w", child_cmd("sleep", 1004), numprocesses=2))

            async def published() -> bool:
                jobs = await registry.jobs()
                return [(j["node"], j["job"], j["processes"]) for j in jobs] == [
                    ("emb", "default.w", 2)
                ]

            await _until(published, "the job published")
            assert [node["name"] for node in await registry.nodes()] == ["emb"]
            seen = len(events.events)
            await asyncio.to_thread(cluster.etcd.stop)
            await events.wait("cluster", state="disconnected", after=seen)
            assert manager.info("default.w")["running"] == 2  # supervision goes on
            with pytest.raises(EtcdUnavailable):
                await registry.nodes()
            seen = len(events.events)
            await asyncio.to_thread(cluster.etcd.start)
            await events.wait("cluster", state="connected", after=seen, timeout=15)
        finally:
            await registry.stop()
        await events.wait("cluster", state="stopped")
    # the graceful stop revoked the lease: the node and its job are gone at once
    etcd = Etcd(endpoints)
    try:
        assert await etcd.range("/gaffer/") == []
    finally:
        etcd.close()


async def test_etcd_client_transactions_leases_and_watches(cluster: Cluster) -> None:
    etcd = Etcd(["http://127.0.0.1:1", *parse_endpoints(cluster.etcd.url)], timeout=2)
    try:
        # the first endpoint refuses: requests go on to the next one, and stay there
        assert await etcd.put("/t/a", "1") > 0
        assert etcd.endpoint == parse_endpoints(cluster.etcd.url)[0]
        done, _ = await etcd.txn([created("/t/b", 0)], [put_op("/t/b", "x")])
        assert done
        done, responses = await etcd.txn(
            [created("/t/b", 0)], [put_op("/t/b", "y")], [range_op("/t/b")]
        )
        assert not done
        assert responses[0]["response_range"]["count"] == "1"
        assert [(kv.key, kv.value) for kv in await etcd.range("/t/")] == [
            ("/t/a", "1"),
            ("/t/b", "x"),
        ]

        lease, ttl = await etcd.grant(5)
        assert ttl == 5
        await etcd.put("/t/leased", "v", lease)
        assert (await etcd.get("/t/leased")).lease == lease
        assert 0 < await etcd.keepalive(lease) <= 5
        assert await etcd.revoke(lease)
        assert await etcd.get("/t/leased") is None
        assert await etcd.keepalive(lease) == 0  # etcd no longer knows it
        assert not await etcd.revoke(lease)
        with pytest.raises(EtcdError, match="lease not found"):
            await etcd.put("/t/x", "v", lease)

        changes: list[tuple[str, str, str]] = []
        start = cluster.etcd.revision() + 1
        watch = asyncio.ensure_future(
            etcd.watch(
                "/t/",
                start,
                lambda events: changes.extend(
                    (e["type"], e["kv"].key, e["kv"].value) for e in events
                ),
            )
        )
        await etcd.put("/t/c", "3")
        assert await etcd.delete("/t/", prefix=True) == 3
        await wait_until(lambda: len(changes) == 4, what="the watched changes")
        assert changes[0] == ("PUT", "/t/c", "3")
        assert sorted(changes[1:]) == [("DELETE", key, "") for key in ("/t/a", "/t/b", "/t/c")]
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
    finally:
        etcd.close()
    nowhere = Etcd(["http://127.0.0.1:1"], timeout=1)
    with pytest.raises(EtcdUnavailable, match=r"127\.0\.0\.1:1"):
        await nowhere.put("/t/a", "1")
    nowhere.close()


async def _until(check, what: str, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
