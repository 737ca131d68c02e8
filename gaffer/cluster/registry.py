"""``ClusterRegistry``: a node of a cluster, registered in etcd with its jobs.

An application of the Manager (``start(loop, manager)``, ``stop()``, ``restart()``)::

    registry = ClusterRegistry(parse_endpoints("etcd://10.0.0.5:2379"), "web-1",
                               addresses=["https://10.0.0.7:5000"])
    manager.start(apps=[http, registry])

What it does, in one coroutine (a *session* per lease):

1. take a lease (the previous one if etcd still knows it, else a new one);
2. claim the node's key in a transaction: only if nobody holds it, or we do (a gafferd
   started twice with one name waits, state ``conflict``, until the other goes);
3. write every job (and remove what is left of jobs that are gone);
4. read the cluster jobs and their claims, and watch both (``placement``);
5. then keep the lease alive every TTL/3, write the jobs that changed (at most one
   write every ``min_interval``, 0.25 s, however fast events come: a crash loop), and
   claim or release instances of cluster jobs as the watches report changes.

Any failure ends the session; the next one starts after a backoff (0.5 s doubling to 5 s,
with jitter). Supervision never depends on etcd: jobs run on while the node is
disconnected. Each change of state is published as a ``cluster`` event:
``connecting``, ``connected``, ``disconnected``, ``conflict``, ``stopped``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Iterable
from typing import Any

import gaffer
from gaffer.cluster import placement, records
from gaffer.cluster.etcd import (
    Etcd,
    EtcdError,
    created,
    delete_op,
    leased,
    put_op,
    range_op,
)
from gaffer.errors import ProcessError

logger = logging.getLogger("gaffer.cluster")

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 5.0
MIN_INTERVAL = 0.25  # at most 4 writes of job changes a second


class NameTaken(EtcdError):
    """Another live gafferd is registered under this node name."""


class LeaseLost(EtcdError):
    """etcd no longer knows our lease (it expired while we could not reach etcd)."""


class ClusterRegistry:
    """Registers a node and publishes its jobs (see the module docstring).

    Args:
        endpoints: etcd base URLs (``gaffer.cluster.etcd.parse_endpoints``).
        node: the node's name (unique in the cluster).
        prefix: the key prefix (``/gaffer/``).
        ttl: seconds the node's lease lives without a keep-alive.
        addresses: URLs of the node's HTTP API, for other nodes and clients.
        min_interval: seconds between two writes of job changes.
    """

    def __init__(
        self,
        endpoints: Iterable[str],
        node: str,
        prefix: str = records.DEFAULT_PREFIX,
        ttl: int = 10,
        addresses: Iterable[str] = (),
        min_interval: float = MIN_INTERVAL,
    ) -> None:
        self.endpoints = list(endpoints)
        self.node = records.check_node_name(node)
        self.layout = records.Layout(prefix)
        self.ttl = max(1, int(ttl))
        self.addresses = list(addresses)
        self.min_interval = min_interval
        self.state = "stopped"
        self.reason = ""
        self.started_at = time.time()
        self.manager: Any = None
        self.etcd: Etcd | None = None
        self._lease = 0
        self._granted_ttl = self.ttl
        self._old_lease = 0  # the previous session's lease, revoked once replaced
        self._published: dict[str, str] = {}  # job -> the record text etcd has
        self._changed: set[str] = set()  # jobs to look at again
        self._all_changed = False
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.placement: placement.Placement | None = None  # the cluster jobs run here
        self._last_renewal = 0.0  # when etcd last confirmed the lease (monotonic)
        self._fence: asyncio.TimerHandle | None = None

    # -- the application ---------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop, manager: Any) -> None:
        self.manager = manager
        # a request must fail well before the lease would expire, so that a slow etcd
        # is noticed while a keep-alive can still save the lease
        self.etcd = Etcd(self.endpoints, timeout=max(0.5, self.ttl / 3))
        self._wake = asyncio.Event()
        self.placement = placement.Placement(self.layout, self.node, manager)
        manager.events.subscribe(".", self._on_event)
        self._set_state("connecting", f"etcd at {', '.join(self.endpoints)}")
        self._task = loop.create_task(self._run(), name="gaffer-cluster")

    async def stop(self) -> None:
        if self.manager is not None:
            self.manager.events.unsubscribe(".", self._on_event)
        task, self._task = self._task, None
        if self._fence is not None:
            self._fence.cancel()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.etcd is not None:
            if self._lease:  # the node and its jobs leave the registry now, not at expiry
                try:
                    await self.etcd.revoke(self._lease, within=1.0)
                except EtcdError as exc:
                    logger.info("cluster: lease not revoked (%s); it expires in %ds", exc, self.ttl)
                self._lease = 0
            self.etcd.close()
        self._set_state("stopped", "gafferd is stopping")

    def restart(self) -> None:
        """Nothing to do: the registry follows the jobs through events."""

    def set_addresses(self, addresses: Iterable[str]) -> None:
        """The API moved (a reload changed the binds): register the new addresses."""
        addresses = list(addresses)
        if addresses != self.addresses:
            self.addresses = addresses
            self._all_changed = True
            if self._wake is not None:
                self._wake.set()

    # -- the view of every node --------------------------------------------------------------
    async def nodes(self) -> list[dict[str, Any]]:
        """Every registered node, by name. Raises EtcdError when etcd cannot answer."""
        assert self.etcd is not None
        found = [records.decode(kv.value) for kv in await self.etcd.range(self.layout.nodes)]
        return [node for node in found if node is not None]

    async def jobs(self) -> list[dict[str, Any]]:
        """Every job of every node, by node then job."""
        assert self.etcd is not None
        found = [records.decode(kv.value) for kv in await self.etcd.range(self.layout.jobs)]
        return [job for job in found if job is not None]

    async def cluster_jobs(self) -> list[dict[str, Any]]:
        """Every cluster job, with the node holding each of its instances."""
        assert self.etcd is not None
        return await placement.described(self.etcd, self.layout)

    async def declare(self, job: str, config: dict[str, Any], **count: int) -> None:
        """Declare a cluster job (``nodes=N`` or ``per_node=1``); ``config`` is valid."""
        assert self.etcd is not None
        await placement.declare(self.etcd, self.layout, job, config, **count)

    async def withdraw(self, job: str) -> bool:
        assert self.etcd is not None
        return await placement.withdraw(self.etcd, self.layout, job)

    def status(self) -> dict[str, Any]:
        """This node's own view of its registration."""
        return {
            "node": self.node,
            "state": self.state,
            "reason": self.reason,
            "endpoints": self.endpoints,
            "ttl": self.ttl,
        }

    # -- events ------------------------------------------------------------------------------
    def _on_event(self, evtype: str, msg: Any) -> None:
        if evtype == "cluster" or evtype.startswith(("job.", "proc.")):
            return  # the per-job copies of events already seen, and our own
        name = msg.get("name") if isinstance(msg, dict) else None
        if isinstance(name, str) and "." in name:
            self._changed.add(name)
            if evtype == "unload" and self.placement and name in self.placement.running:
                self.placement.dirty = True  # a cluster job unloaded here: load it again
        else:
            self._all_changed = True
        if self._wake is not None:
            self._wake.set()

    def _set_state(self, state: str, reason: str = "") -> None:
        if state == self.state and reason == self.reason:
            return
        self.state, self.reason = state, reason
        level = logging.WARNING if state in ("disconnected", "conflict") else logging.INFO
        logger.log(
            level, "cluster: node %s %s%s", self.node, state, f": {reason}" if reason else ""
        )
        if self.manager is not None:
            self.manager.events.publish(
                "cluster", {"event": "cluster", "name": self.node, "state": state, "reason": reason}
            )

    # -- sessions ----------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            try:
                await self._session()
            except NameTaken as exc:
                self._set_state("conflict", str(exc))
            except LeaseLost as exc:
                self._set_state("disconnected", str(exc))
                self._lease = 0
                delay = BACKOFF_FIRST  # etcd answers: register again at once
            except EtcdError as exc:
                self._set_state("disconnected", str(exc))
            except Exception:
                logger.exception("cluster: the registry failed")
                self._set_state("disconnected", "internal error: see gafferd's log")
            if self.state == "connected":
                delay = BACKOFF_FIRST
            self._arm_fence()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _session(self) -> None:
        etcd = self.etcd
        assert etcd is not None and self._wake is not None and self.placement is not None
        lease = await self._take_lease()
        await self._claim_name(lease)
        await self._publish_all(lease)
        watches = await self._watch_placement()
        try:
            self._set_state("connected", f"etcd at {etcd.endpoint}, lease {lease:x}")
            if self._fence is not None:
                self._fence.cancel()
                self._fence = None
            await self._serve(lease, watches)
        finally:
            for watch in watches:
                watch.cancel()
            await asyncio.gather(*watches, return_exceptions=True)

    async def _serve(self, lease: int, watches: list[asyncio.Task[None]]) -> None:
        """Keep the lease alive, write job changes, place cluster jobs; until a failure."""
        etcd, wake, placed = self.etcd, self._wake, self.placement
        assert etcd is not None and wake is not None and placed is not None
        interval = self._granted_ttl / 3
        next_keepalive = time.monotonic() + interval
        while True:
            if placed.dirty:
                await placed.reconcile(etcd, lease)
            wait = next_keepalive - time.monotonic()
            if wait > 0 and not wake.is_set():
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancel
                    # that comes as the event is set, and stop() would wait for ever
                    async with asyncio.timeout(wait):
                        await wake.wait()
                except TimeoutError:
                    pass
            for watch in watches:
                if watch.done():
                    watch.result()  # raises why it ended
                    raise EtcdError("a watch ended")
            if wake.is_set():
                wake.clear()
                await self._publish_changes(lease)
                await asyncio.sleep(self.min_interval)  # the debounce: changes pile up
            if time.monotonic() >= next_keepalive:
                sent = time.monotonic()  # etcd renews at or after this: it expires later
                if await etcd.keepalive(lease) <= 0:
                    raise LeaseLost(f"lease {lease:x} expired")
                self._last_renewal = sent
                next_keepalive = sent + interval

    async def _watch_placement(self) -> list[asyncio.Task[None]]:
        """Read the cluster jobs and their claims, then watch both from that revision."""
        etcd, placed = self.etcd, self.placement
        assert etcd is not None and placed is not None
        prefixes = [self.layout.desired, self.layout.claims]
        (desired, claims), revision = await etcd.read(prefixes)
        placed.reset(desired, claims)

        def on_events(events: list[dict[str, Any]]) -> None:
            placed.on_events(events)
            if self._wake is not None:
                self._wake.set()

        watches = [
            asyncio.ensure_future(etcd.watch(prefix, revision + 1, on_events))
            for prefix in prefixes
        ]
        for watch in watches:  # a watch that ends wakes the loop, which ends the session
            watch.add_done_callback(lambda _: self._wake.set() if self._wake else None)
        return watches

    def _arm_fence(self) -> None:
        """Out of touch with etcd: once the lease may have expired, the cluster jobs run
        here may be claimed elsewhere; stop them then (unless reconnected before)."""
        if self._fence is not None or self.placement is None or not self.placement.running:
            return
        loop = asyncio.get_running_loop()
        delay = self._last_renewal + self._granted_ttl - time.monotonic()
        self._fence = loop.call_later(max(0.0, delay), self._fence_now)

    def _fence_now(self) -> None:
        self._fence = None
        if self.state != "connected" and self.placement is not None:
            self.placement.fence()

    async def _take_lease(self) -> int:
        etcd = self.etcd
        assert etcd is not None
        sent = time.monotonic()
        if self._lease:
            ttl = await etcd.keepalive(self._lease)
            if ttl > 0:  # etcd kept it (it restarted, or a request failed): keep using it
                self._granted_ttl = ttl
                self._last_renewal = sent
                return self._lease
            self._lease = 0
        lease, self._granted_ttl = await etcd.grant(self.ttl)
        self._lease = lease
        self._last_renewal = sent
        return lease

    def _node_record(self) -> str:
        return records.encode(
            {
                "name": self.node,
                "addresses": self.addresses,
                "version": gaffer.__version__,
                "pid": os.getpid(),
                "started": self.started_at,
                "ttl": self.ttl,
            }
        )

    async def _claim_name(self, lease: int) -> None:
        """Put the node's key if nobody holds it, or if it is on one of our leases."""
        etcd = self.etcd
        assert etcd is not None
        key, value = self.layout.node(self.node), self._node_record()
        done, responses = await etcd.txn(
            [created(key, 0)], [put_op(key, value, lease)], [range_op(key)]
        )
        if done:
            return
        kvs = responses[0].get("response_range", {}).get("kvs") if responses else None
        holder = int(kvs[0].get("lease", 0)) if kvs else 0
        if holder and holder in (lease, self._old_lease):
            done, _ = await etcd.txn([leased(key, holder)], [put_op(key, value, lease)])
            if done:
                return
        other = records.decode(await self._value(key)) or {}
        raise NameTaken(
            f"node name {self.node!r} is held by another gafferd (pid {other.get('pid', '?')} "
            f"at {', '.join(other.get('addresses') or ['?'])}); registering again once it "
            f"is gone (at most {other.get('ttl', '?')} s after it died)"
        )

    async def _value(self, key: str) -> str:
        assert self.etcd is not None
        kv = await self.etcd.get(key)
        return kv.value if kv is not None else ""

    async def _publish_all(self, lease: int) -> None:
        """Every job, and the removal of keys of jobs that are gone."""
        etcd = self.etcd
        assert etcd is not None
        self._changed.clear()
        self._all_changed = False
        current = self._snapshot(self._job_names())
        stale = [
            kv.key
            for kv in await etcd.range(self.layout.jobs_of(self.node), keys_only=True)
            if kv.key[len(self.layout.jobs_of(self.node)) :] not in current
        ]
        ops = [
            put_op(self.layout.job(self.node, job), text, lease) for job, text in current.items()
        ]
        ops += [delete_op(key) for key in stale]
        await etcd.apply(ops)
        self._published = current
        if self._old_lease and self._old_lease != lease:
            await etcd.revoke(self._old_lease)  # whatever is still on it is stale
        self._old_lease = lease

    async def _publish_changes(self, lease: int) -> None:
        etcd = self.etcd
        assert etcd is not None
        if self._all_changed:
            self._all_changed = False
            self._changed.clear()
            names = set(self._job_names()) | set(self._published)
            await etcd.put(self.layout.node(self.node), self._node_record(), lease)
        else:
            names, self._changed = self._changed, set()
        current = self._snapshot(names)
        ops = []
        for job in names:
            text = current.get(job)
            if text is None:
                if job in self._published:
                    ops.append(delete_op(self.layout.job(self.node, job)))
            elif self._published.get(job) != text:
                ops.append(put_op(self.layout.job(self.node, job), text, lease))
        if not ops:
            return
        try:
            await etcd.apply(ops)
        except EtcdError:
            self._all_changed = True  # not known to be written: the next session writes all
            raise
        for job in names:
            if job in current:
                self._published[job] = current[job]
            else:
                self._published.pop(job, None)

    def _job_names(self) -> list[str]:
        return list(self.manager.jobs())

    def _snapshot(self, names: Iterable[str]) -> dict[str, str]:
        """The record text of each job of ``names`` still loaded."""
        found = {}
        for job in names:
            try:
                info = self.manager.info(job)
            except ProcessError:
                continue  # unloaded
            found[job] = records.encode(records.job_record(self.node, job, info))
        return found
