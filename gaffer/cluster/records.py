"""Where a cluster keeps what in etcd, and what each record holds.

Under the prefix (``/gaffer/`` by default)::

    nodes/<node>          one per live gafferd, on its lease: name, API addresses,
                          version, pid, start time, TTL
    jobs/<node>/<job>     one per job of that node, on its lease: node, job, state,
                          processes (running), numprocesses (the target)
    desired/<job>         a cluster job (gaffer.cluster.placement), no lease
    claims/<job>/<slot>   an instance of it, claimed by a node, on that node's lease

Every key of a node is attached to the node's lease, so all of them go when the node's
lease expires (it died, or lost etcd for longer than the TTL) or is revoked (a graceful
stop). Values are JSON objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

DEFAULT_PREFIX = "/gaffer/"


def check_node_name(name: str) -> str:
    """A node name is part of keys: no ``/``, no spaces or control characters."""
    value = str(name).strip()
    if not value:
        raise ValueError("expected a non-empty name")
    if any(char in value for char in "/\\") or not value.isprintable() or " " in value:
        raise ValueError("a node name may not hold '/', '\\', spaces or control characters")
    if len(value) > 200:
        raise ValueError("a node name is at most 200 characters")
    return value


def check_prefix(text: str) -> str:
    """A key prefix: starts and ends with ``/`` (``/gaffer/``, ``/prod/gaffer/``)."""
    value = str(text).strip()
    if not value.startswith("/") or not value.endswith("/"):
        raise ValueError("expected a path that starts and ends with '/', like /gaffer/")
    if not value.isprintable() or " " in value:
        raise ValueError("a key prefix may not hold spaces or control characters")
    return value


class Layout:
    """The keys of a cluster under ``prefix``."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = check_prefix(prefix)

    @property
    def nodes(self) -> str:
        return f"{self.prefix}nodes/"

    def node(self, node: str) -> str:
        return f"{self.nodes}{node}"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}jobs/"

    def jobs_of(self, node: str) -> str:
        return f"{self.jobs}{node}/"

    def job(self, node: str, job: str) -> str:
        return f"{self.jobs_of(node)}{job}"

    @property
    def desired(self) -> str:
        """Cluster jobs (docs/cluster.md): ``desired/<job>``."""
        return f"{self.prefix}desired/"

    @property
    def claims(self) -> str:
        """Their instances: ``claims/<job>/<slot>``."""
        return f"{self.prefix}claims/"


def job_record(node: str, job: str, info: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "node": node,
        "job": job,
        "state": info["state"],
        "processes": int(info.get("running", 0)),
        "numprocesses": int(info.get("numprocesses", 0)),
    }


def encode(record: Mapping[str, Any]) -> str:
    """Compact, sorted JSON: equal records have equal text, so unchanged jobs are not
    written again."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def decode(text: str) -> dict[str, Any] | None:
    """A record, or None for a value that is not a JSON object (written by someone
    else under our prefix): skipped rather than failing a whole listing."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
