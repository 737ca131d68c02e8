"""Issue 11.7: bad input gets a clear JSON answer, never a 500, a forged log line, nor a
connection left in a state nobody can tell. Session ids are names (400 bad_name), JSON is
nested at most 32 deep (400 invalid_json), bodies over the limit get a JSON 413 whatever
their size, 405 says Allow, 404 and 405 leave the connection usable or say
``Connection: close``, and plugin sites answer JSON errors."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.helpers import child_cmd
from tests.security.site import start, tcp

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def site(tmp_path: Path):
    plugins = tmp_path / "plugins" / "mysite" / "_site"
    plugins.mkdir(parents=True)
    (plugins / "index.html").write_text("<html>hello</html>")
    daemon, port = start(tmp_path, gaffer=f"plugin_dir = {tmp_path / 'plugins'}")
    try:
        yield daemon, port
    finally:
        daemon.stop()


@pytest.mark.parametrize("sid", ["a%0Ab", "a%0D%0A2026-01-01%20forged", "x" * 201, "a%00b"])
def test_a_session_id_that_is_no_name_is_a_400_bad_name(site, sid):
    daemon, port = site
    body = {"name": "web", "cmd": child_cmd("sleep")}
    answer = tcp(port, "POST", f"/jobs/{sid}", body)
    assert answer.status == 400 and answer.json["error"] == "bad_name", answer
    for method, path in (("GET", f"/jobs/{sid}"), ("GET", f"/jobs/{sid}/web")):
        answer = tcp(port, method, path)
        assert answer.status == 400 and answer.json["error"] == "bad_name", (path, answer)
    assert daemon.request("GET", "/sessions")[1] == {"sessions": []}
    assert "forged" not in daemon.log_text().replace("%20forged", "")


@pytest.mark.parametrize("depth", [33, 100, 100_000])
def test_json_nested_too_deep_is_a_400_invalid_json(site, depth):
    _, port = site
    body = "[" * depth + "]" * depth
    answer = tcp(port, "POST", "/jobs/default", body, JSON)
    assert answer.status == 400, answer
    assert answer.json["error"] == "invalid_json"
    assert "nested deeper than 32" in answer.json["reason"]
    nested: object = {"name": "deep", "cmd": "true"}
    for _ in range(40):
        nested = {"a": nested}
    answer = tcp(port, "POST", "/jobs/default", {"name": "x", "cmd": "true", "env": nested})
    assert answer.status == 400 and answer.json["error"] == "invalid_json", answer


def _exchange(port: int, head: bytes, chunks: list[bytes] = ()) -> bytes:
    """Send a head (and chunks while the server reads them); every byte answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
            head_end = received.find(b"\r\n\r\n")
            if head_end >= 0 and b"content-length:" in received[:head_end].lower():
                length = int(
                    received[:head_end].lower().split(b"content-length:")[1].split(b"\r\n")[0]
                )
                if len(received) >= head_end + 4 + length:
                    break
        return received


def _json_answer(received: bytes) -> tuple[int, dict]:
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body[:length])


def test_a_body_far_over_the_limit_gets_a_json_413(site):
    _, port = site
    head = (
        b"POST /jobs/default HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n"
    )
    received = _exchange(port, head)
    status, answer = _json_answer(received)
    assert (status, answer["error"]) == (413, "too_large")
    assert b"\r\nconnection: close\r\n" in received.lower()  # its body is not read
    chunked = (
        b"POST /jobs/default HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b" " * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 400  # 26 MB that would never end
    status, answer = _json_answer(_exchange(port, chunked, chunks))
    assert (status, answer["error"]) == (413, "too_large")


def test_a_405_says_allow(site):
    _, port = site
    answer = tcp(port, "DELETE", "/ping")
    assert answer.status == 405 and answer.json["error"] == "method_not_allowed"
    assert answer.headers["Allow"] == "GET, OPTIONS"
    answer = tcp(port, "GET", "/jobs/default/web/signal")
    assert answer.status == 405 and answer.headers["Allow"] == "POST, OPTIONS"


def _requests_on_one_connection(port: int, first: bytes) -> list[bytes]:
    """``first``, then GET /ping, on one kept-alive connection: the answers' heads."""
    ping = b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(first)
        received = b""
        while received.count(b"HTTP/1.1 ") < 1 or not received.endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                return [received]
            received += data
        if b"connection: close" in received.lower():
            return [received]
        try:
            sock.sendall(ping)
            second = b""
            while not second.endswith(b"OK"):
                data = sock.recv(65536)
                if not data:
                    break
                second += data
        except (BrokenPipeError, ConnectionResetError):
            second = b""
        return [received, second]


@pytest.mark.parametrize(
    "first",
    [
        b"POST /nosuch HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}",
        b"POST /ping HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}",
        b"FROB /ping HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}",
        b"GET /nosuch HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ],
)
def test_404_and_405_keep_the_connection_usable_or_say_close(site, first):
    _, port = site
    answers = _requests_on_one_connection(port, first)
    assert answers[0].split(b" ", 2)[1] in (b"404", b"405"), answers[0]
    if len(answers) == 1:  # the server closes: it must have said so
        assert b"connection: close" in answers[0].lower(), answers[0]
    else:
        assert answers[1].startswith(b"HTTP/1.1 200") and answers[1].endswith(b"OK"), answers


def test_plugin_site_errors_are_json(site):
    _, port = site
    assert b"hello" in tcp(port, "GET", "/_plugin/mysite/").raw
    answer = tcp(port, "GET", "/_plugin/mysite/nosuch.html")
    assert answer.status == 404 and answer.headers["Content-Type"] == "application/json"
    assert answer.json["error"] == "not_found"
    answer = tcp(port, "DELETE", "/_plugin/mysite/index.html")
    assert answer.status == 405 and answer.json["error"] == "method_not_allowed"
    assert "GET" in answer.headers["Allow"]
