"""A real gafferd on 127.0.0.1:<port> and on its unix socket, and raw HTTP to it: the
requests a browser, an attacker or a careless client would send, headers and all."""

from __future__ import annotations

import base64
import http.client
import json
import re
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


def configured(
    directory: Path, gaffer: str = "", jobs: str = "", **kwargs: Any
) -> tuple[Gafferd, int]:
    """gafferd (not started) bound to a TCP port and to its unix socket; ``gaffer``: more
    [gaffer] keys."""
    port = free_port()
    ini = f"""
        [gaffer]
        bind = 127.0.0.1:{port} unix:{directory / "gafferd.sock"}
        {gaffer}

        {jobs}
    """
    return Gafferd(directory, ini, **kwargs), port


def start(directory: Path, gaffer: str = "", jobs: str = "", **kwargs: Any) -> tuple[Gafferd, int]:
    daemon, port = configured(directory, gaffer, jobs, **kwargs)
    return daemon.start(), port


def keyed(directory: Path, gaffer: str = "", jobs: str = "") -> tuple[Gafferd, int, str]:
    """A started gafferd requiring keys, and the key of its admin user ``admin``/``pw``."""
    daemon, port = configured(directory, "require_key = true\n" + gaffer, jobs)
    created = daemon.run("--create-admin-user", "--username", "admin", "--password", "pw")
    assert created.returncode == 0, created.stderr
    match = re.search(r"API key \(shown once, keep it\): (gk_\S+)", created.stdout)
    assert match, created.stdout
    return daemon.start(), port, match.group(1)


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def tcp(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
    key: str | None = None,
    source: str | None = None,
) -> Answer:
    """One request on a new connection to 127.0.0.1:port (from the loopback address
    ``source``); ``headers`` may replace Host. A dict or list ``body`` is sent as JSON."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=timeout, source_address=(source, 0) if source else None
    )
    headers = dict(headers or {})
    if key is not None:
        headers["X-Api-Key"] = key
    try:
        data = body
        if body is not None and not isinstance(body, bytes | str):
            data = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=headers)
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
