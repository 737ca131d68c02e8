"""A small etcd v3 client over etcd's JSON gateway, through tornado's HTTP client.

etcd serves its gRPC API as JSON over HTTP on the client port (``POST /v3/kv/put``,
``/v3/kv/range``, ``/v3/kv/txn``, ``/v3/lease/grant``, ``/v3/lease/keepalive``,
``/v3/watch``...): keys and values are base64, 64-bit integers are strings. That costs
gafferd no dependency (tornado is already there) and about 1 MiB of memory where a gRPC
client costs 18 MiB (docs/design.md has the measurements).

Several endpoints may be given: a request goes to the last one that answered and moves
on to the next when it cannot be reached or has no leader. ``EtcdUnavailable`` says that
none could serve it; ``EtcdError`` is an answer with an error (a lease not found...).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import tornado.httpclient
import tornado.iostream

from gaffer.errors import GafferError

logger = logging.getLogger(__name__)

DEFAULT_PORT = 2379
MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
# gRPC status codes etcd answers with (in the gateway's error bodies)
NOT_FOUND = 5
UNAVAILABLE = 14


class EtcdError(GafferError):
    """etcd answered a request with an error; ``code`` is the gRPC status code."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class EtcdUnavailable(EtcdError):
    """No endpoint could serve the request (refused, timed out, no leader)."""


def parse_endpoints(text: str) -> list[str]:
    """``etcd://host:port[,host:port]`` to the HTTP base URLs of the endpoints.

    The port defaults to 2379; ``etcd://`` may be repeated before each host. Raises
    ValueError saying what is wrong."""
    value = str(text).strip()
    if not value.startswith("etcd://"):
        raise ValueError("expected etcd://host:port[,host:port]")
    endpoints = []
    for item in value[len("etcd://") :].split(","):
        item = item.strip()
        if item.startswith("etcd://"):
            item = item[len("etcd://") :]
        if not item:
            raise ValueError("an empty host in the list: expected etcd://host:port[,host:port]")
        if "/" in item or "@" in item or "?" in item:
            raise ValueError(f"{item!r}: expected host:port (no path, user or query)")
        try:
            parts = urlsplit(f"http://{item}")
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"{item!r}: the port must be a number from 1 to 65535") from None
        if not parts.hostname or port < 1:
            raise ValueError(f"{item!r}: expected host:port")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        endpoints.append(f"http://{host}:{port}")
    return endpoints


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str | None) -> str:
    return base64.b64decode(text or "").decode(errors="replace")


def prefix_end(prefix: str) -> str:
    """The end of the range of keys starting with ``prefix`` (its last byte plus one)."""
    raw = prefix.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode() if raw else "\0"


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: str
    lease: int
    create_revision: int
    mod_revision: int

    @classmethod
    def of(cls, data: dict[str, Any]) -> KeyValue:
        return cls(
            _unb64(data.get("key")),
            _unb64(data.get("value")),
            int(data.get("lease", 0)),
            int(data.get("create_revision", 0)),
            int(data.get("mod_revision", 0)),
        )


# -- the operations of a transaction ---------------------------------------------------------
def put_op(key: str, value: str, lease: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        body["lease"] = str(lease)
    return {"request_put": body}


def delete_op(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": _b64(key)}}


def range_op(key: str) -> dict[str, Any]:
    return {"request_range": {"key": _b64(key)}}


def created(key: str, revision: int = 0) -> dict[str, Any]:
    """Compare: the key's create revision is ``revision`` (0: the key does not exist)."""
    return {
        "target": "CREATE",
        "key": _b64(key),
        "create_revision": str(revision),
        "result": "EQUAL",
    }


def leased(key: str, lease: int) -> dict[str, Any]:
    """Compare: the key is attached to ``lease``."""
    return {"target": "LEASE", "key": _b64(key), "lease": str(lease), "result": "EQUAL"}


def value_is(key: str, value: str) -> dict[str, Any]:
    return {"target": "VALUE", "key": _b64(key), "value": _b64(value), "result": "EQUAL"}


class Etcd:
    """Requests to an etcd cluster. Create and use it on one event loop.

    Args:
        endpoints: base URLs (``parse_endpoints``).
        timeout: seconds a request may take (connecting included) on one endpoint.
    """

    def __init__(self, endpoints: Iterable[str], timeout: float = 5.0) -> None:
        self.endpoints = list(endpoints)
        if not self.endpoints:
            raise ValueError("no etcd endpoint")
        self.timeout = timeout
        self._current = 0
        self._http: tornado.httpclient.AsyncHTTPClient | None = None

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to first (the last one that answered)."""
        return self.endpoints[self._current]

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    async def call(self, path: str, body: dict[str, Any], within: float | None = None) -> Any:
        """POST ``body`` to ``/v3<path>`` on the first endpoint that can serve it (each
        try may take ``within`` seconds, default ``timeout``)."""
        if self._http is None:
            self._http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
        errors = []
        timeout = within or self.timeout
        for step in range(len(self.endpoints)):
            index = (self._current + step) % len(self.endpoints)
            endpoint = self.endpoints[index]
            try:
                response = await self._http.fetch(
                    f"{endpoint}/v3{path}",
                    method="POST",
                    body=json.dumps(body),
                    headers={"Content-Type": "application/json"},
                    connect_timeout=timeout,
                    request_timeout=timeout,
                    raise_error=False,
                )
            except (
                OSError,
                tornado.iostream.StreamClosedError,
                tornado.httpclient.HTTPClientError,  # a timeout (599), even so
            ) as exc:
                errors.append(f"{endpoint}: {getattr(exc, 'strerror', None) or exc}")
                continue
            if response.code == 599:  # no answer: refused, reset or timed out
                errors.append(f"{endpoint}: {response.error}")
                continue
            data = _json(response.body)
            error = data.get("error") if isinstance(data, dict) else None
            if isinstance(error, dict):  # a stream's error ({"error": {...}})
                data, error = error, error.get("message")
            if response.code != 200 or error is not None:
                code = data.get("code") if isinstance(data, dict) else None
                message = (data.get("message") if isinstance(data, dict) else None) or str(error)
                if code == UNAVAILABLE or response.code == 503:  # this member cannot serve
                    errors.append(f"{endpoint}: {message}")
                    continue
                raise EtcdError(f"etcd {endpoint}: {message}", code)
            self._current = index
            return data.get("result", data) if isinstance(data, dict) else data
        raise EtcdUnavailable("etcd unavailable: " + "; ".join(errors))

    # -- keys --------------------------------------------------------------------------------
    async def put(self, key: str, value: str, lease: int = 0) -> int:
        """Set ``key``; returns the revision of the change."""
        answer = await self.call("/kv/put", put_op(key, value, lease)["request_put"])
        return int(answer.get("header", {}).get("revision", 0))

    async def get(self, key: str) -> KeyValue | None:
        answer = await self.call("/kv/range", {"key": _b64(key)})
        kvs = answer.get("kvs") or []
        return KeyValue.of(kvs[0]) if kvs else None

    async def range(self, prefix: str, keys_only: bool = False) -> list[KeyValue]:
        """Every key starting with ``prefix``, in key order."""
        body = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}
        if keys_only:
            body["keys_only"] = True
        answer = await self.call("/kv/range", body)
        return [KeyValue.of(kv) for kv in answer.get("kvs") or []]

    async def read(self, prefixes: list[str]) -> tuple[list[list[KeyValue]], int]:
        """The keys under each prefix, all read at one revision (in one transaction), and
        that revision (to watch from the next one)."""
        ops = [
            {"request_range": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}}
            for prefix in prefixes
        ]
        answer = await self.call("/kv/txn", {"compare": [], "success": ops, "failure": []})
        found = [
            [KeyValue.of(kv) for kv in response.get("response_range", {}).get("kvs") or []]
            for response in answer.get("responses") or []
        ]
        return found, int(answer.get("header", {}).get("revision", 0))

    async def delete(self, key: str, prefix: bool = False) -> int:
        """Delete ``key`` (every key under it with ``prefix``); returns how many."""
        body = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(key))
        answer = await self.call("/kv/deleterange", body)
        return int(answer.get("deleted", 0))

    async def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]] | None = None,
    ) -> tuple[bool, list[dict[str, Any]]]:
        """If every comparison holds, do ``success``, else ``failure``, atomically.
        Returns (whether they held, the responses of the operations done)."""
        answer = await self.call(
            "/kv/txn", {"compare": compare, "success": success, "failure": failure or []}
        )
        return bool(answer.get("succeeded")), answer.get("responses") or []

    async def apply(self, ops: list[dict[str, Any]]) -> None:
        """Do ``ops`` in transactions of at most MAX_TXN_OPS operations each."""
        for start in range(0, len(ops), MAX_TXN_OPS):
            await self.txn([], ops[start : start + MAX_TXN_OPS])

    # -- leases ------------------------------------------------------------------------------
    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease; returns (its id, the TTL etcd granted, which may be longer)."""
        answer = await self.call("/lease/grant", {"TTL": str(ttl)})
        return int(answer["ID"]), int(answer.get("TTL", ttl))

    async def keepalive(self, lease: int) -> int:
        """Renew the lease; returns its TTL, 0 when etcd no longer knows it."""
        answer = await self.call("/lease/keepalive", {"ID": str(lease)})
        return int(answer.get("TTL", 0))

    async def revoke(self, lease: int, within: float | None = None) -> bool:
        """Revoke the lease (its keys go with it); False if it was already gone."""
        try:
            await self.call("/lease/revoke", {"ID": str(lease)}, within=within)
        except EtcdError as exc:
            if exc.code == NOT_FOUND:
                return False
            raise
        return True

    # -- watches -----------------------------------------------------------------------------
    async def watch(
        self,
        prefix: str,
        start_revision: int,
        on_events: Callable[[list[dict[str, Any]]], None],
    ) -> None:
        """Call ``on_events`` with the changes of the keys under ``prefix`` from
        ``start_revision`` on (each change: ``{"type": "PUT"|"DELETE", "kv": KeyValue}``),
        until the connection ends (EtcdUnavailable) or the task is cancelled."""
        request = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _b64(prefix_end(prefix)),
                "start_revision": str(start_revision),
            }
        }
        buffer = b""
        failure: list[str] = []

        def on_chunk(chunk: bytes) -> None:
            nonlocal buffer
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                data = _json(line)
                if not isinstance(data, dict):
                    continue
                if "error" in data:
                    failure.append(str(data["error"]))
                    continue
                result = data.get("result") or {}
                if result.get("canceled"):
                    failure.append(result.get("cancel_reason") or "watch cancelled by etcd")
                events = [
                    {"type": event.get("type", "PUT"), "kv": KeyValue.of(event.get("kv", {}))}
                    for event in result.get("events") or []
                ]
                if events:
                    on_events(events)

        endpoint = self.endpoint
        try:
            await _stream(
                endpoint, "/v3/watch", json.dumps(request).encode(), on_chunk, self.timeout
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise EtcdUnavailable(f"etcd {endpoint}: watch ended: {reason}") from None
        raise EtcdUnavailable(
            f"etcd {endpoint}: watch ended: {failure[0] if failure else 'the stream closed'}"
        )


async def _stream(
    endpoint: str, path: str, body: bytes, on_chunk: Callable[[bytes], None], within: float
) -> None:
    """POST ``body`` and pass the answer's body to ``on_chunk`` as it comes, until it ends.

    On plain asyncio streams rather than tornado's client: a watch is cancelled when its
    session ends, and cancelling a tornado fetch leaves its connection to fail later
    ("Exception after Future was cancelled" in the log); here the connection is closed
    by the ``finally``, at once."""
    parts = urlsplit(endpoint)
    async with asyncio.timeout(within):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        status = await reader.readline()
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if status.split(b" ")[1:2] != [b"200"]:
            raise ValueError(f"answered {status.decode('latin-1').strip()!r}")
        if "chunked" not in headers.get("transfer-encoding", ""):
            while data := await reader.read(65536):
                on_chunk(data)
            return
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return
            on_chunk(await reader.readexactly(size))
            await reader.readexactly(2)  # the CRLF after each chunk
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


def _json(raw: bytes | None) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None
