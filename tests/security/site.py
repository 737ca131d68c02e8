"""A real gafferd on 127.0.0.1:<port> and on its unix socket, and raw HTTP to it: the
requests a browser, an attacker or a careless client would send, headers and all."""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.gafferd.harness import Gafferd, free_port

WS_HEADERS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    def __repr__(self) -> str:
        return f"<Answer {self.status} {self.raw[:300]!r}>"


def start(directory: Path, gaffer: str = "", jobs: str = "", **kwargs: Any) -> tuple[Gafferd, int]:
    """gafferd bound to a TCP port and to its unix socket; ``gaffer``: more [gaffer] keys."""
    port = free_port()
    ini = f"""
        [gaffer]
        bind = 127.0.0.1:{port} unix:{directory / "gafferd.sock"}
        {gaffer}

        {jobs}
    """
    return Gafferd(directory, ini, **kwargs).start(), port


def tcp(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> Answer:
    """One request on a new connection to 127.0.0.1:port; ``headers`` may replace Host."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body if body is None or isinstance(body, bytes | str) else json.dumps(body)
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


def handshake(port: int, path: str, headers: dict[str, str]) -> int:
    """The status of a WebSocket handshake (101: upgraded)."""
    sent = {"Host": f"127.0.0.1:{port}", **WS_HEADERS, **headers}
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in sent.items())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall((head + "\r\n").encode())
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1])
