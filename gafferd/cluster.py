"""gafferd in a cluster: the registry built from the settings (imported only when the
``cluster`` setting is set, so a gafferd without a cluster loads nothing of it)."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from gaffer.cluster.etcd import parse_endpoints
from gaffer.cluster.registry import ClusterRegistry
from gaffer.http import binding
from gafferd.settings import Effective

WILDCARDS = ("0.0.0.0", "[::]")


def node_name(effective: Effective) -> str:
    return effective.node_name or socket.gethostname()


def advertised(effective: Effective, sockets: Iterable[socket.socket]) -> list[str]:
    """The API's URLs for other nodes and clients: ``cluster_advertise`` when set, else
    one per bound address (TCP first: they reach across machines; a wildcard address
    becomes the host name)."""
    if effective.cluster_advertise:
        return list(effective.cluster_advertise)
    scheme = "https" if effective.certfile else "http"
    tcp, unix = [], []
    for sock in sockets:
        address = binding.bound_address(sock)
        if address.startswith("unix:"):
            unix.append(address)
            continue
        host, _, port = address.rpartition(":")
        if host in WILDCARDS:
            host = socket.gethostname()
        tcp.append(f"{scheme}://{host}:{port}")
    return tcp + unix


def make_registry(effective: Effective, sockets: Iterable[socket.socket]) -> ClusterRegistry:
    return ClusterRegistry(
        parse_endpoints(effective.cluster),
        node_name(effective),
        prefix=effective.cluster_prefix,
        ttl=effective.cluster_ttl,
        addresses=advertised(effective, sockets),
    )
