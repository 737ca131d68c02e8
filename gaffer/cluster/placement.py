"""Cluster-wide jobs: a job declared once for the cluster, its instances claimed by nodes
through etcd transactions, so that each instance runs on exactly one node.

Keys (under the prefix)::

    desired/<job>          {"job", "config", "nodes": N} or {"job", "config", "per_node": 1}
                           (no lease: it stays until withdrawn)
    claims/<job>/<slot>    {"node": name}, on the claiming node's lease

An instance is the whole job (its ``numprocesses`` processes) on one node. ``nodes = N``
has the slots ``0`` to ``N-1`` and a node holds at most one of them, so the job runs on N
distinct nodes; ``per_node = 1`` has one slot per node, named after it. A slot is taken
in a transaction that succeeds only if nobody holds it; a claim lives on its node's
lease, so the slots of a dead node are free once its lease expires, and the nodes that
watch see them free and claim them.

A node runs a cluster job while it holds a slot of it. A node that cannot reach etcd
keeps its instances only while its lease may still live (``fence()``, called by the
registry a TTL after the last keep-alive): past that, others may have claimed them.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any

from gaffer.cluster import records
from gaffer.cluster.etcd import Etcd, KeyValue, created, delete_op, put_op, value_is
from gaffer.core.config import ProcessConfig
from gaffer.errors import ProcessError

logger = logging.getLogger("gaffer.cluster")


class Placement:
    """The cluster jobs of one node: what is declared, who holds which slot, what this
    node runs. The registry feeds it etcd's state and changes, and asks it to reconcile."""

    def __init__(self, layout: records.Layout, node: str, manager: Any) -> None:
        self.layout = layout
        self.node = node
        self.manager = manager
        self.desired: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, dict[str, str]] = {}  # job -> slot -> node
        self.running: dict[str, str] = {}  # cluster jobs loaded here -> their config text
        self.refused: set[str] = set()  # jobs that cannot run here, until they change
        self.dirty = False

    # -- etcd's state ----------------------------------------------------------------------
    def reset(self, desired: list[KeyValue], claims: list[KeyValue]) -> None:
        self.desired, self.claims = {}, {}
        for kv in desired:
            self._set_desired(kv.key, kv.value)
        for kv in claims:
            self._set_claim(kv.key, kv.value)
        self.dirty = True

    def on_events(self, events: list[dict[str, Any]]) -> None:
        """Changes of ``desired/`` and ``claims/`` from the registry's watch."""
        for event in events:
            kv: KeyValue = event["kv"]
            if event["type"] == "DELETE":
                self._drop(kv.key)
            elif kv.key.startswith(self.layout.desired):
                self._set_desired(kv.key, kv.value)
            else:
                self._set_claim(kv.key, kv.value)
        self.dirty = True

    def _set_desired(self, key: str, value: str) -> None:
        spec = records.decode(value)
        if spec is not None and isinstance(spec.get("config"), dict):
            job = key[len(self.layout.desired) :]
            self.desired[job] = spec
            self.refused.discard(job)  # changed: worth trying again

    def _set_claim(self, key: str, value: str) -> None:
        job, _, slot = key[len(self.layout.claims) :].rpartition("/")
        claim = records.decode(value) or {}
        if job and isinstance(claim.get("node"), str):
            self.claims.setdefault(job, {})[slot] = claim["node"]

    def _drop(self, key: str) -> None:
        if key.startswith(self.layout.desired):
            self.desired.pop(key[len(self.layout.desired) :], None)
        elif key.startswith(self.layout.claims):
            job, _, slot = key[len(self.layout.claims) :].rpartition("/")
            self.claims.get(job, {}).pop(slot, None)

    # -- reconciling -----------------------------------------------------------------------
    async def reconcile(self, etcd: Etcd, lease: int) -> None:
        """Claim or release slots, then run exactly the jobs whose slot this node holds."""
        self.dirty = False
        for job, spec in self.desired.items():
            slots = self._slots(spec)
            held = [slot for slot, node in self.claims.get(job, {}).items() if node == self.node]
            keep = [slot for slot in held if slot in slots][:1]
            for slot in held:
                if slot not in keep:  # out of range (fewer nodes wanted), or a second one
                    await self._release(etcd, job, slot)
            if not keep and job not in self.refused and self._may_run(job):
                taken = await self._claim(etcd, lease, job, slots)
                keep = [taken] if taken is not None else []
            if not keep:
                self._stop(job)
            elif not self._run(job, spec):
                for slot in keep:  # a slot held by a node that cannot run it: let it go
                    await self._release(etcd, job, slot)
        for job in [job for job in self.running if job not in self.desired]:
            self._stop(job)
            for slot, node in list(self.claims.get(job, {}).items()):
                if node == self.node:
                    await self._release(etcd, job, slot)

    def _may_run(self, job: str) -> bool:
        """A job of that name loaded here by other means (the API, the ini file) wins."""
        if job in self.running or job not in self.manager.jobs():
            return True
        if job not in self.refused:
            logger.error(
                "cluster: %s has its own job %s: it takes no instance of the cluster job",
                self.node,
                job,
            )
            self.refused.add(job)
        return False

    def _slots(self, spec: dict[str, Any]) -> list[str]:
        if spec.get("per_node"):
            return [self.node]
        return [str(index) for index in range(int(spec.get("nodes", 0)))]

    async def _claim(self, etcd: Etcd, lease: int, job: str, slots: list[str]) -> str | None:
        """Take one free slot (starting at a place of this node's own, so that nodes do
        not all race for slot 0); None when none is free or others were faster."""
        claims = self.claims.get(job, {})
        free = [slot for slot in slots if slot not in claims]
        if not free:
            return None
        start = zlib.crc32(self.node.encode()) % len(free)
        for slot in free[start:] + free[:start]:
            key = self._claim_key(job, slot)
            value = records.encode({"node": self.node})
            done, _ = await etcd.txn([created(key, 0)], [put_op(key, value, lease)])
            if done:
                self.claims.setdefault(job, {})[slot] = self.node
                logger.info("cluster: %s claimed instance %s of %s", self.node, slot, job)
                return slot
        return None

    async def _release(self, etcd: Etcd, job: str, slot: str) -> None:
        key = self._claim_key(job, slot)
        mine = records.encode({"node": self.node})
        await etcd.txn([value_is(key, mine)], [delete_op(key)])  # only if still ours
        self.claims.get(job, {}).pop(slot, None)
        logger.info("cluster: %s released instance %s of %s", self.node, slot, job)

    def _claim_key(self, job: str, slot: str) -> str:
        return f"{self.layout.claims}{job}/{slot}"

    # -- the local jobs --------------------------------------------------------------------
    def _run(self, job: str, spec: dict[str, Any]) -> bool:
        """Run (or update) the local instance; False when it cannot be loaded here."""
        text = records.encode(spec["config"])
        if self.running.get(job) == text and job in self.manager.jobs():
            return True
        if job in self.running and job not in self.manager.jobs():
            del self.running[job]  # unloaded through the API: the declaration wins
        session, _, name = job.partition(".")
        try:
            config = ProcessConfig.from_dict({**spec["config"], "name": name})
            if job in self.running:
                self.manager.update(config, sessionid=session, start=True)
            else:
                self.manager.load(config, sessionid=session, start=True)
        except (ProcessError, ValueError) as exc:
            logger.error("cluster: %s cannot run its instance of %s: %s", self.node, job, exc)
            self.refused.add(job)  # not claimed again until it changes
            self._stop(job)
            return False
        self.running[job] = text
        logger.info("cluster: %s runs %s", self.node, job)
        return True

    def _stop(self, job: str) -> None:
        if self.running.pop(job, None) is None:
            return
        try:
            self.manager.unload(job)
        except ProcessError:
            pass  # unloaded meanwhile (through the API)
        logger.info("cluster: %s no longer runs %s", self.node, job)

    def fence(self) -> None:
        """The lease may have expired: the slots may be someone else's now."""
        for job in list(self.running):
            logger.warning(
                "cluster: %s lost etcd for longer than its lease: stopping %s", self.node, job
            )
            self._stop(job)
        self.claims = {}
        self.dirty = True


async def declare(
    etcd: Etcd, layout: records.Layout, job: str, config: dict[str, Any], **count: int
) -> None:
    """Declare (or change) a cluster job: ``nodes=N`` or ``per_node=1``."""
    await etcd.put(
        f"{layout.desired}{job}", records.encode({"job": job, "config": config, **count})
    )


async def withdraw(etcd: Etcd, layout: records.Layout, job: str) -> bool:
    """Withdraw a cluster job (every node stops its instance); False if it was not."""
    return await etcd.delete(f"{layout.desired}{job}") > 0


async def described(etcd: Etcd, layout: records.Layout) -> list[dict[str, Any]]:
    """Every cluster job with its claims: ``{"job", "nodes"|"per_node", "config",
    "instances": {slot: node}}``."""
    specs = {
        kv.key[len(layout.desired) :]: records.decode(kv.value)
        for kv in await etcd.range(layout.desired)
    }
    claims: dict[str, dict[str, str]] = {}
    for kv in await etcd.range(layout.claims):
        job, _, slot = kv.key[len(layout.claims) :].rpartition("/")
        node = (records.decode(kv.value) or {}).get("node")
        if isinstance(node, str):
            claims.setdefault(job, {})[slot] = node
    return [
        {**spec, "instances": dict(sorted(claims.get(job, {}).items()))}
        for job, spec in sorted(specs.items())
        if spec is not None
    ]
