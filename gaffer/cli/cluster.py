"""``gaffer --cluster``: the jobs of every node, and actions sent to the nodes.

The gafferd of ``-g`` says, from etcd, which nodes there are and which jobs each runs
(``/cluster/nodes``, ``/cluster/jobs``); an action goes to the HTTP API of each node
concerned, at the first of its registered addresses that answers, with the same API key
and TLS options as ``-g`` (a key saved by ``gaffer login`` for that node's address wins).

Which nodes: those named with ``--node`` (repeatable), else every node that runs the job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gaffer.cli.commands import arg
from gaffer.cli.context import Context, UsageError
from gaffer.client.aio import AsyncServer
from gaffer.errors import NotFound, Unreachable

NODE = arg(
    "--node",
    action="append",
    default=[],
    metavar="NODE",
    help="with --cluster: act on this node (repeatable; default: every node running the job)",
)
HEADERS = ("NODE", "JOB", "STATE", "PROCESSES", "TARGET")
DONE = {"start": "started", "stop": "stopped"}


def wanted(context: Context) -> bool:
    """Whether the command acts on the cluster: --cluster, or --node given."""
    return bool(getattr(context.args, "cluster", False) or getattr(context.args, "node", None))


def require_nodes(context: Context, what: str) -> None:
    if not context.args.node:
        raise UsageError(f"with --cluster, say where to {what} with --node NODE")


async def nodes(context: Context) -> dict[str, dict[str, Any]]:
    """Every node of the cluster, by name."""
    try:
        answer = await context.server().cluster_nodes()
    except NotFound as exc:
        if exc.code == "no_cluster":
            raise UsageError(f"{context.url} is not in a cluster: {exc.reason}") from None
        raise
    return {node["name"]: node for node in answer["nodes"]}


async def jobs(context: Context) -> list[dict[str, Any]]:
    try:
        return await context.server().cluster_jobs()
    except NotFound as exc:
        if exc.code == "no_cluster":
            raise UsageError(f"{context.url} is not in a cluster: {exc.reason}") from None
        raise


async def node_server(context: Context, node: dict[str, Any]) -> AsyncServer:
    """The node's API at the first of its addresses that answers."""
    failures = []
    for url in node.get("addresses") or []:
        server = context.server_at(url)
        try:
            await server.ping()
        except Unreachable as exc:
            failures.append(str(exc))
            continue
        return server
    raise Unreachable(
        f"node {node['name']}: no address answers"
        + (f" ({'; '.join(failures)})" if failures else " (it registered none)")
    )


async def targets(context: Context, job_ids: list[str]) -> list[tuple[str, str]]:
    """(node, job) pairs to act on: each job on the --node nodes, else on every node that
    runs it. A job no node runs is an error (nothing is done)."""
    chosen = context.args.node
    running: dict[str, list[str]] = {}
    if not chosen:
        for record in await jobs(context):
            running.setdefault(record["job"], []).append(record["node"])
    pairs = []
    for job_id in job_ids:
        on = chosen or running.get(job_id)
        if not on:
            raise NotFound(404, "not_found", f"no node of the cluster runs {job_id}")
        pairs += [(node, job_id) for node in on]
    return pairs


async def each_node(
    context: Context,
    names: list[str],
    action: Callable[[str, AsyncServer], Awaitable[None]],
) -> None:
    """Call ``action(node, server)`` for each node of ``names`` (unknown nodes are an error
    before anything is done)."""
    known = await nodes(context)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(
            f"no node {', '.join(map(repr, unknown))} in the cluster "
            f"(nodes: {', '.join(sorted(known)) or 'none'})"
        )
    for name in names:
        await action(name, await node_server(context, known[name]))


async def ps(context: Context) -> int:
    """``gaffer --cluster ps``: every node's jobs (those named, those of --node)."""
    wanted_jobs = {context.job_id(name) for name in context.args.jobs}
    rows = [
        record
        for record in await jobs(context)
        if (not wanted_jobs or record["job"] in wanted_jobs)
        and (not context.args.node or record["node"] in context.args.node)
        and (not context.args.app or record["job"].split(".", 1)[0] == context.args.app)
    ]
    out = context.out
    if out.json:
        out.data(rows)
    elif not rows:
        out.write("no job")
    else:
        out.table(
            HEADERS,
            [
                (r["node"], out.color(r["job"]), r["state"], r["processes"], r["numprocesses"])
                for r in rows
            ],
        )
    return 0


async def scale(context: Context, plan: list[tuple[str, str]]) -> int:
    """``ps:scale`` on the nodes of each job."""
    results: dict[str, dict[str, int]] = {}
    pairs = await targets(context, [job for job, _ in plan])
    operations = dict(plan)
    by_node: dict[str, list[str]] = {}
    for node, job in pairs:
        by_node.setdefault(node, []).append(job)

    async def act(node: str, server: AsyncServer) -> None:
        for job in by_node[node]:
            now = await server.job(job).scale(operations[job])
            results.setdefault(node, {})[job] = now
            if not context.out.json:
                context.out.write(f"{node}: scaling {job} processes... done, now running {now}")

    await each_node(context, list(by_node), act)
    if context.out.json:
        context.out.data(results)
    return 0


async def start_stop(context: Context, what: str) -> int:
    """``ps:start`` / ``ps:stop`` of named jobs (or pids, with one --node) on their nodes."""
    names = context.args.targets
    if not names:
        raise UsageError(f"with --cluster, name the jobs to {what}")
    pids = [name for name in names if name.isdigit()]
    if pids and len(context.args.node) != 1:
        raise UsageError("a pid is a process of one node: give exactly one --node")
    pairs = [(node, pid) for pid in pids for node in context.args.node]
    pairs += await targets(context, [context.job_id(name) for name in names if not name.isdigit()])
    by_node: dict[str, list[str]] = {}
    for node, target in pairs:
        by_node.setdefault(node, []).append(target)

    async def act(node: str, server: AsyncServer) -> None:
        for target in by_node[node]:
            if target.isdigit():
                await server.process(int(target)).stop()
                context.out.write(f"{node}: process {target} stopped")
                continue
            job = server.job(target)
            await (job.start() if what == "start" else job.stop())
            context.out.write(f"{node}: {target} {DONE[what]}")

    await each_node(context, list(by_node), act)
    return 0


async def load(
    context: Context,
    load_into: Callable[[AsyncServer, str], Awaitable[tuple[list[str], int]]],
) -> int:
    """``load --node N``: the jobs go to each node named."""
    require_nodes(context, "load")
    results: dict[str, dict[str, Any]] = {}

    async def act(node: str, server: AsyncServer) -> None:
        loaded, failed = await load_into(server, node)
        results[node] = {"loaded": loaded, "failed": failed}

    await each_node(context, context.args.node, act)
    if context.out.json:
        context.out.data(results)
    return 1 if any(result["failed"] for result in results.values()) else 0
