"""How the client talks to gafferd: HTTP(S) over TCP or a unix socket, and WebSockets.

Built on Tornado's asynchronous HTTP and WebSocket clients; a unix socket is reached
through a resolver that answers every host with the socket's path. Errors: an answer
``{"error", "reason"}`` becomes the ``ApiError`` subclass of its status (NotFound,
Conflict...); a gafferd that cannot be reached becomes ``Unreachable`` with a one-line
reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import tornado.httpclient
import tornado.iostream
import tornado.netutil
import tornado.websocket

from gaffer.errors import ApiError, Unreachable

DEFAULT_URL = "http://127.0.0.1:5000"
USER_AGENT = "gaffer-client"


def to_json(value: Any) -> str:
    """JSON of a request body. A value with ``to_dict()`` (a ``ProcessConfig``, a
    ``FlappingInfo``) is sent as that; an open file or socket as its descriptor number,
    which gafferd refuses with a 400 that says why (it cannot cross HTTP)."""
    return json.dumps(value, default=_plain)


def _plain(value: Any) -> Any:
    if callable(getattr(value, "to_dict", None)):
        return value.to_dict()
    if callable(getattr(value, "fileno", None)):
        return value.fileno()
    raise TypeError(f"cannot send a {type(value).__name__} as JSON: {value!r}")


class _UnixResolver(tornado.netutil.Resolver):
    def initialize(self, path: str) -> None:  # type: ignore[override]
        self.path = path

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[Any]:
        return [(socket.AF_UNIX, self.path)]


@dataclass(frozen=True)
class Endpoint:
    """Where gafferd listens: ``http(s)://host:port``, ``host:port`` or ``unix:/path``."""

    url: str
    base: str  # what request URLs start with
    unix: str | None = None

    @property
    def tls(self) -> bool:
        return self.base.startswith("https:")

    @classmethod
    def parse(cls, url: str | None) -> Endpoint:
        url = (url or DEFAULT_URL).strip()
        if url.startswith("unix:"):
            path = url[len("unix:") :]
            if path.startswith("//"):
                path = path[2:]
            if not path:
                raise ValueError(f"bad gafferd address {url!r}: unix: needs a path")
            return cls(url, "http://gafferd", path)
        if "://" not in url:
            url = f"http://{url}"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"bad gafferd address {url!r}: expected http(s)://host:port or unix:/path"
            )
        return cls(url, f"{parts.scheme}://{parts.netloc}")


class Transport:
    """Requests to one gafferd. Create and use it on one event loop."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        cacert: str | None = None,
        verify: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.endpoint = Endpoint.parse(url)
        self.api_key = api_key
        self.timeout = timeout
        self._ssl = _ssl_context(self.endpoint, certfile, keyfile, cacert, verify)
        self._client: tornado.httpclient.AsyncHTTPClient | None = None

    @property
    def url(self) -> str:
        return self.endpoint.url

    def _http(self) -> tornado.httpclient.AsyncHTTPClient:
        if self._client is None:
            kwargs: dict[str, Any] = {"force_instance": True}
            if self.endpoint.unix:
                kwargs["resolver"] = _UnixResolver(path=self.endpoint.unix)
            self._client = tornado.httpclient.AsyncHTTPClient(**kwargs)
        return self._client

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, **(extra or {})}
        if self.api_key:
            headers["X-Api-Key"] = self.api_key
        return headers

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send a request; the answer's JSON (or text). Raises ApiError or Unreachable."""
        data: bytes | None = raw
        extra = dict(headers or {})
        if body is not None:
            data = to_json(body).encode()
            extra.setdefault("Content-Type", "application/json")
        elif raw is not None:  # never text/plain: gafferd refuses what a web page may send
            extra.setdefault("Content-Type", "application/octet-stream")
        if data is None and method in ("POST", "PUT"):
            data = b""
        response = await self._fetch(
            tornado.httpclient.HTTPRequest(
                self.endpoint.base + path,
                method=method,
                body=data,
                headers=self._headers(extra),
                connect_timeout=self.timeout,
                request_timeout=self.timeout,
                ssl_options=self._ssl,
                allow_nonstandard_methods=True,
            )
        )
        return _decode(response)

    async def head(self, path: str) -> bool:
        """True for 2xx, False for 404; other errors raise."""
        try:
            await self.request("HEAD", path)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def stream(self, path: str, on_chunk: Callable[[bytes], None]) -> None:
        """GET a feed and call ``on_chunk`` with each piece of its body as it comes, until
        the answer ends. Cancelling it simply closes the connection."""
        reader, writer = await self._open()
        try:
            head = [
                f"GET {path} HTTP/1.1",
                f"Host: {self._host_header()}",
                "Connection: close",
                *(f"{k}: {v}" for k, v in self._headers().items()),
            ]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
            await writer.drain()
            status, headers = await _read_head(reader)
            chunked = "chunked" in headers.get("transfer-encoding", "")
            if status >= 400:
                body = await _read_body(reader, headers, chunked)
                raise _error_of(status, body, headers)
            if chunked:
                while (chunk := await _read_chunk(reader)) is not None:
                    if chunk:
                        on_chunk(chunk)
            else:
                while data := await reader.read(65536):
                    on_chunk(data)
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise self._unreachable(exc) from None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            if self.endpoint.unix:
                return await asyncio.wait_for(
                    asyncio.open_unix_connection(self.endpoint.unix), self.timeout
                )
            parts = urlsplit(self.endpoint.base)
            port = parts.port or (443 if self.endpoint.tls else 80)
            return await asyncio.wait_for(
                asyncio.open_connection(
                    parts.hostname,
                    port,
                    ssl=self._ssl,
                    server_hostname=parts.hostname if self._ssl else None,
                ),
                self.timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise self._unreachable(exc) from None

    def _host_header(self) -> str:
        return "gafferd" if self.endpoint.unix else urlsplit(self.endpoint.base).netloc

    async def _fetch(self, request: tornado.httpclient.HTTPRequest) -> Any:
        with self._errors_mapped():
            return await self._http().fetch(request)

    @contextlib.contextmanager
    def _errors_mapped(self) -> Iterator[None]:
        """gafferd's error answers as ApiError, no answer at all as Unreachable."""
        try:
            yield
        except tornado.httpclient.HTTPClientError as exc:
            if exc.response is None or exc.code == 599:
                raise self._unreachable(exc) from None
            raise _api_error(exc.response) from None
        except (OSError, tornado.iostream.StreamClosedError, ssl.SSLError) as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: BaseException) -> Unreachable:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if isinstance(exc, tornado.httpclient.HTTPClientError) and exc.code == 599:
            reason = str(exc.message or "timeout")
        return Unreachable(f"cannot reach gafferd at {self.url}: {reason}")

    async def websocket(
        self, path: str, binary: bool = False, on_message: Callable[[Any], None] | None = None
    ) -> tornado.websocket.WebSocketClientConnection:
        base = self.endpoint.base.replace("http", "ws", 1)
        request = tornado.httpclient.HTTPRequest(
            base + path,
            headers=self._headers(),
            connect_timeout=self.timeout,
            ssl_options=self._ssl,
        )
        resolver = _UnixResolver(path=self.endpoint.unix) if self.endpoint.unix else None
        with self._errors_mapped():
            return await tornado.websocket.websocket_connect(
                request,
                on_message_callback=on_message,
                resolver=resolver,
                max_message_size=16 * 1024 * 1024,
            )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    try:
        status = int(status_line.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise OSError(f"not an HTTP answer: {status_line[:60]!r}") from None
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_chunk(reader: asyncio.StreamReader) -> bytes | None:
    """The next chunk of a chunked body; None at its end."""
    size_line = await reader.readline()
    if not size_line:
        return None
    size = int(size_line.split(b";")[0].strip() or b"0", 16)
    if size == 0:
        await reader.readline()
        return None
    data = await reader.readexactly(size)
    await reader.readexactly(2)
    return data


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], chunked: bool) -> bytes:
    if chunked:
        parts = []
        while (chunk := await _read_chunk(reader)) is not None:
            parts.append(chunk)
        return b"".join(parts)
    length = headers.get("content-length")
    if length and length.isdigit():
        return await reader.readexactly(int(length))
    return await reader.read()


def _error_of(status: int, body: bytes, headers: dict[str, str]) -> ApiError:
    code, reason = "error", f"HTTP {status}"
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        code, reason = str(data.get("error", code)), str(data.get("reason", reason))
    return ApiError.of(status, code, reason)


def _decode(response: tornado.httpclient.HTTPResponse) -> Any:
    body = response.body or b""
    if not body:
        return None
    content_type = response.headers.get("Content-Type", "")
    if "json" in content_type:
        return json.loads(body)
    return body.decode(errors="replace")


def _api_error(response: tornado.httpclient.HTTPResponse) -> ApiError:
    code, reason = "error", response.reason or ""
    try:
        data = json.loads(response.body or b"")
    except ValueError:
        data = None
    if isinstance(data, dict):
        code = str(data.get("error", code))
        reason = str(data.get("reason", reason))
    return ApiError.of(response.code, code, reason)


def _ssl_context(
    endpoint: Endpoint, certfile: str | None, keyfile: str | None, cacert: str | None, verify: bool
) -> ssl.SSLContext | None:
    if not endpoint.tls:
        return None
    context = ssl.create_default_context(cafile=cacert)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    return context
