"""A small HTTP client for the REST API tests: a real gafferd, on its unix socket or on a
TCP port, raw bytes and headers kept (the harness's ``request`` parses bodies and drops the
headers), plus the helpers both test modules share."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tests.gafferd.harness import Gafferd, UnixHTTPConnection, free_port
from tests.helpers import child_argv, exec_done, wait_until_sync

#: gafferd processes that live for a whole test module (their jobs are not leaks).
LONG_LIVED: set[int] = set()

_UNSET: Any = object()


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def text(self) -> str:
        return self.raw.decode()

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return f"<Response {self.status} {self.raw[:300]!r}>"


class Api:
    """Requests to one gafferd, over its unix socket or (``tcp=True``) 127.0.0.1:port,
    with an optional ``X-Api-Key``."""

    def __init__(
        self,
        socket_path: str,
        port: int | None = None,
        key: str | None = None,
        tcp: bool = False,
    ) -> None:
        assert port is not None or not tcp, "this gafferd has no TCP bind"
        self.socket_path, self.port, self.key, self.tcp = socket_path, port, key, tcp

    def with_key(self, key: str | None) -> Api:
        return Api(self.socket_path, self.port, key, self.tcp)

    def over(self, transport: str) -> Api:
        """The same gafferd over "unix" or "tcp"."""
        return Api(self.socket_path, self.port, self.key, transport == "tcp")

    @property
    def transport(self) -> str:
        return "tcp" if self.tcp else "unix"

    def connection(self, timeout: float = 10) -> http.client.HTTPConnection:
        if not self.tcp:
            return UnixHTTPConnection(self.socket_path, timeout=timeout)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def headers(self, extra: dict[str, str] | None = None, key: Any = _UNSET) -> dict[str, str]:
        key = self.key if key is _UNSET else key
        out = {} if key is None else {"X-Api-Key": key}
        out.update(extra or {})
        return out

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        key: Any = _UNSET,
        timeout: float = 10,
    ) -> Response:
        if body is None or isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        conn = self.connection(timeout)
        sent = self.headers(headers, key)
        if data is not None and not any(name.lower() == "content-type" for name in sent):
            sent["Content-Type"] = "application/json"  # gafferd takes no other body
        try:
            try:
                conn.request(method, path, body=data, headers=sent)
            except (BrokenPipeError, ConnectionResetError):
                # gafferd answers a request it refuses before reading (no key, too large)
                # at once and closes: read that answer, as curl does
                pass
            response = conn.getresponse()
            raw = response.read()
            return Response(response.status, response.headers, raw)
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> Response:
        return self.request("HEAD", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return self.request("POST", path, body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return self.request("PUT", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Response:
        return self.request("DELETE", path, **kwargs)

    @contextmanager
    def open_stream(
        self, path: str, timeout: float = 10, key: Any = _UNSET
    ) -> Iterator[http.client.HTTPConnection]:
        """A GET sent, its response still to read (``conn.getresponse()``): a feed sends
        its headers with its first item."""
        conn = self.connection(timeout)
        try:
            conn.request("GET", path, headers=self.headers(None, key))
            yield conn
        finally:
            conn.close()

    def in_background(self, path: str, timeout: float = 10) -> Background:
        return Background(self, path, timeout)

    # -- jobs ------------------------------------------------------------------------------
    def load(
        self,
        name: str,
        *mode: object,
        sid: str = "default",
        expect: int = 200,
        **settings: Any,
    ) -> Response:
        """Load a job running the fixture program in ``mode``."""
        argv = child_argv(*mode)
        response = self.post(
            f"/jobs/{sid}", {"name": name, "cmd": argv[0], "args": argv[1:], **settings}
        )
        assert response.status == expect, response
        return response

    def info(self, job: str) -> dict[str, Any]:
        response = self.get(f"/jobs/{job.replace('.', '/', 1)}")
        assert response.status == 200, response
        return response.json

    def pids(self, job: str) -> list[int]:
        response = self.get(f"/jobs/{job.replace('.', '/', 1)}/pids")
        assert response.status == 200, response
        return response.json["pids"]

    def wait_pids(self, job: str, count: int, timeout: float = 10) -> list[int]:
        """Wait until the job has ``count`` kept-alive processes that really run (an OS
        pid each, whose exec is done: /proc shows their own command line)."""
        found: list[int] = []

        def ready() -> bool:
            nonlocal found
            found = self.pids(job)
            if len(found) != count:
                return False
            os_pids = [self.get(f"/{pid}").json.get("os_pid") for pid in found]
            return all(os_pid and exec_done(os_pid) for os_pid in os_pids)

        wait_until_sync(ready, timeout=timeout, what=f"{count} processes of {job}: {found}")
        return found


class Background:
    """A GET whose whole response is read in a thread (a feed that ends on its own)."""

    def __init__(self, api: Api, path: str, timeout: float = 10) -> None:
        self.response: Response | None = None
        self.error: BaseException | None = None
        self.sent = threading.Event()  # the request is on its way (not yet read by gafferd)
        self._thread = threading.Thread(target=self._run, args=(api, path, timeout), daemon=True)
        self._thread.start()

    def _run(self, api: Api, path: str, timeout: float) -> None:
        try:
            with api.open_stream(path, timeout) as conn:
                self.sent.set()
                response = conn.getresponse()
                self.response = Response(response.status, response.headers, response.read())
        except BaseException as exc:  # given to the test by result()
            self.error = exc
        finally:
            self.sent.set()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float = 10) -> Response:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the response did not end"
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


# -- raw exchanges (bodies the server refuses before reading them) ----------------------------


def raw_exchange(api: Api, head: bytes, body_chunks: list[bytes], timeout: float = 10) -> bytes:
    """Send a request's head then its body, tolerating a server that answers and closes
    before reading the whole body; return every byte it answered."""
    if not api.tcp:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: Any = api.socket_path
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = ("127.0.0.1", api.port)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
        sock.sendall(head)
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
            if _complete(received):
                break
        return received
    finally:
        sock.close()


def _complete(received: bytes) -> bool:
    head, sep, body = received.partition(b"\r\n\r\n")
    if not sep:
        return False
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return match is not None and len(body) >= int(match.group(1))


def parse_raw(received: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


# -- daemons ----------------------------------------------------------------------------------


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def start_gafferd(directory: Path, extra: str = "", tcp: bool = False) -> tuple[Gafferd, Api]:
    """A gafferd on ``directory/gafferd.sock`` (and a free loopback port with ``tcp``)."""
    sock = directory / "gafferd.sock"
    port = free_port() if tcp else None
    binds = f"unix:{sock}" + (f" 127.0.0.1:{port}" if port else "")
    daemon = Gafferd(directory, f"[gaffer]\nbind = {binds}\n{extra}")
    return daemon, Api(str(sock), port)


def admin_key_of(output: str) -> str:
    match = re.search(r"API key \(shown once, keep it\): (gk_\S+)", output)
    assert match, output
    return match.group(1)


def leftover_children(ignore: set[int]) -> list[psutil.Process]:
    """Live children (or zombies) of the test runner, but the ``ignore`` daemons and every
    process they started."""
    me = psutil.Process()
    found = []
    for child in me.children(recursive=True):
        try:
            child.status()
            lineage = {child.pid, *(parent.pid for parent in child.parents())}
        except psutil.NoSuchProcess:
            continue
        if not lineage & ignore:
            found.append(child)
    return found


def check_no_leftovers(ignore: set[int], timeout: float = 5) -> None:
    """The ``no_leaked_children`` check of tests/conftest.py, for modules that keep a
    gafferd across tests."""
    try:
        wait_until_sync(lambda: not leftover_children(ignore), timeout=timeout, interval=0.02)
    except AssertionError:
        leftovers = leftover_children(ignore)
        for child in leftovers:
            try:
                os.kill(child.pid, 9)
            except OSError:
                pass
        raise AssertionError(f"test left processes behind: {leftovers}") from None


def read_file_text(path: Path) -> str:
    return path.read_text() if path.exists() else ""
