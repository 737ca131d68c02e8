"""``/cluster/nodes`` and ``/cluster/jobs``: every node's registration and jobs, read
from etcd, so any node answers for all of them; ``POST /cluster/jobs`` and ``DELETE
/cluster/jobs/<sid>/<name>``: cluster jobs, whose instances the nodes claim.

The registry (``gaffer.cluster.registry.ClusterRegistry``) comes in the application's
settings as ``cluster``; without it (no ``cluster`` setting) these routes answer 404
``no_cluster``. When etcd cannot answer: 503 ``cluster_unavailable``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gaffer.errors import GafferError, ProcessError
from gaffer.http import commands
from gaffer.http.handlers.base import BaseHandler, Op, RequestError
from gaffer.http.handlers.jobs import job_id

STATUSES = (200, 401, 403, 404, 503)


class ClusterHandler(BaseHandler):
    def registry(self) -> Any:
        registry = self.settings.get("cluster")
        if registry is None:
            raise RequestError(
                404,
                "no_cluster",
                "this gafferd is not in a cluster: set cluster = etcd://host:port in [gaffer]",
            )
        return registry

    async def ask(self, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await call()
        except ProcessError:
            raise
        except GafferError as exc:  # etcd did not answer, or answered an error
            raise RequestError(503, "cluster_unavailable", str(exc)) from None


class ClusterNodesHandler(ClusterHandler):
    ops = {
        "get": Op(
            "Every node of the cluster (name, API addresses, version, pid, start time), "
            "and this node's own registration state",
            permission="read",
            statuses=STATUSES,
        )
    }

    async def get(self) -> None:
        # any key that may read something may know the nodes (their addresses are what a
        # client needs to act on its jobs there)
        self.authorize("cluster_nodes")
        registry = self.registry()
        nodes = await self.ask(registry.nodes)
        self.write_json({**registry.status(), "nodes": nodes})


class ClusterJobsHandler(ClusterHandler):
    ops = {
        "get": Op(
            "Every job of every node the key may read (node, job, state, processes, "
            "numprocesses), and the cluster jobs with the node of each instance (declared)",
            permission="read (the jobs listed)",
            statuses=STATUSES,
            params={"node": "only the jobs of this node"},
        ),
        "post": Op(
            "Declare a cluster job: run it on `nodes` nodes, or on every node (`per_node`: "
            "1); replaces the declaration of a job of that name",
            body="ClusterJob",
            permission="manage on the session",
            statuses=(201, 400, 401, 403, 404, 503),
        ),
    }

    async def get(self) -> None:
        self.authorize("cluster_jobs")
        registry = self.registry()
        node = self.get_query_argument("node", None)
        jobs = [
            job
            for job in commands.readable(self.permissions, await self.ask(registry.jobs))
            if node is None or job.get("node") == node
        ]
        declared = commands.readable(self.permissions, await self.ask(registry.cluster_jobs))
        self.write_json({"node": registry.node, "jobs": jobs, "declared": declared})

    async def post(self) -> None:
        registry = self.registry()
        body = self.json_body("ClusterJob")
        session = body.pop("session", "default")
        call = self.authorize("cluster_declare", sessionid=session)
        count = {key: body.pop(key) for key in ("nodes", "per_node") if key in body}
        if len(count) != 1:
            raise RequestError(400, "bad_request", "give either nodes = N or per_node = 1")
        body.pop("start", None)  # a cluster job always runs where it is placed
        try:
            config = commands.job_config(call, body)
        except ValueError as exc:
            raise RequestError(400, "bad_config", str(exc)) from None
        job = f"{session}.{config.name}"
        await self.ask(lambda: registry.declare(job, body, **count))
        self.write_json({"job": job, **count}, 201)


class ClusterJobHandler(ClusterHandler):
    ops = {
        "delete": Op(
            "Withdraw a cluster job: every node stops its instance",
            permission="manage",
            statuses=(200, 401, 403, 404, 503),
        )
    }

    async def delete(self, sid: str, name: str) -> None:
        registry = self.registry()
        job = job_id(sid, name)
        self.authorize("cluster_withdraw", name=job)
        if not await self.ask(lambda: registry.withdraw(job)):
            raise RequestError(404, "not_found", f"no cluster job {job}")
        self.write_json({"ok": True})
