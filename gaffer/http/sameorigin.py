"""Which requests may reach the API at all: the ``Host`` they name and the ``Origin`` of
the page that sent them. Checked once per request, before routing, for every route
(WebSocket handshakes and plugin sites included).

The threat is a web page the operator visits. Its scripts may send requests to
``127.0.0.1:5000`` (a browser sends a cross-site POST with a ``text/plain`` body without
asking anything first), or a name of the attacker's that resolves to 127.0.0.1 a second
after the page loaded (DNS rebinding: the page is then "same-origin" with gafferd, for
the browser). So:

* **Host** (TCP connections; a browser cannot reach a unix socket): it must name the
  server, as an IP address the connection was made to, ``localhost``, or a name of the
  ``allowed_hosts`` setting (``*``: any). Otherwise 421 ``misdirected``, whatever the
  route. A rebinding page always sends its own name.
* **Origin** (sent by browsers with every cross-origin request, every POST and every
  WebSocket handshake): the server's own (its host and port are the ``Host`` of the
  request), or one of ``cors_origins``; otherwise 403 ``cross_origin``. Requests without
  an ``Origin`` come from programs, not from pages, and pass.

Bodies must be JSON (``BaseHandler`` answers 415 otherwise): the types a page may send
without a CORS pre-flight (``text/plain``, forms) are never accepted.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import tornado.httputil

#: Hosts accepted on every bind (the IP the connection was made to is accepted too).
LOCAL_NAMES = frozenset({"localhost"})
_CACHE_LIMIT = 256  # (host, local address) pairs remembered as accepted


class OriginPolicy:
    def __init__(self, allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = ()) -> None:
        hosts = {host.strip().lower().rstrip(".") for host in allowed_hosts if host.strip()}
        self.any_host = "*" in hosts
        self.hosts = frozenset(hosts | LOCAL_NAMES)
        self.origins = frozenset(origin.strip().rstrip("/") for origin in cors_origins)
        self.any_origin = "*" in self.origins
        self._accepted: set[tuple[str, str]] = set()

    def refusal(self, request: tornado.httputil.HTTPServerRequest) -> tuple[int, str, str] | None:
        """(status, code, reason) when the request may not reach the API, else None."""
        headers = request.headers
        host = headers.get("Host", "")
        if not self.any_host:
            local = local_address(request)
            if local is not None and (host, local) not in self._accepted:
                if not self._host_ok(host, local):
                    return (
                        421,
                        "misdirected",
                        f"Host {host[:80]!r} does not name this server: use its address, "
                        "localhost, or add the name to the allowed_hosts setting",
                    )
                if len(self._accepted) < _CACHE_LIMIT:
                    self._accepted.add((host, local))
        origin = headers.get("Origin")
        if origin is not None and not self.origin_ok(origin, host):
            return (
                403,
                "cross_origin",
                f"requests from the web page {origin[:80]!r} are refused: add its origin to "
                "the cors_origins setting to allow it",
            )
        return None

    def _host_ok(self, host: str, local: str) -> bool:
        name = _host_name(host)
        if name in self.hosts:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        return str(_unmapped(address)) == local

    def origin_ok(self, origin: str, host: str) -> bool:
        origin = origin.strip()
        if self.any_origin or origin.rstrip("/") in self.origins:
            return True
        _, sep, netloc = origin.partition("://")
        return bool(sep) and bool(host) and netloc.rstrip("/").lower() == host.lower()


def _host_name(host: str) -> str:
    """``Host`` without its port, lower-case, IPv6 brackets removed."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0].rstrip(".") if host.count(":") <= 1 else host


def _unmapped(address: Any) -> Any:
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def local_address(request: tornado.httputil.HTTPServerRequest) -> str | None:
    """The IP address a TCP connection was made to (None for a unix socket)."""
    stream = getattr(request.connection, "stream", None)
    if stream is None:
        return None
    local = getattr(stream, "gaffer_local", "")
    if local == "":
        local = None
        sock = stream.socket
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                name = sock.getsockname()[0]
                local = str(_unmapped(ipaddress.ip_address(name.split("%", 1)[0])))
            except (OSError, ValueError):
                local = None
        stream.gaffer_local = local
    return local
