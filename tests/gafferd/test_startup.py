"""What gafferd loads before its first client, and what the first requests load.

gafferd binds its addresses, spawns its jobs and runs without loading its HTTP server:
tornado, the handlers and the key store are imported when the first client connects,
and the handlers of the WebSocket, the streams, the accounts and the OpenAPI document at
their first request (docs/design.md#memory). Read from ``python -X importtime``'s log
(``PYTHONPROFILEIMPORTTIME``), which lists every module a process imported, in order.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.gafferd.harness import Gafferd
from tests.helpers import wait_until_sync

JOB = "[job:web]\ncmd = {child} sleep 1001\nnumprocesses = 2\n"

# imported when used, never at start
SERVER = {
    "gaffer.http.app",
    "gaffer.http.commands",
    "gaffer.http.connections",
    "gaffer.http.identity",
    "gaffer.http.keystore",
    "gaffer.http.routes",
    "gafferd.webhooks",
    "sqlite3",
    "hashlib",  # the key store's
    "pickle",  # logging.handlers'
    "logging.handlers",
    "secrets",
}
# imported by the request that needs them (the WebSocket, the OpenAPI document...), not by
# the first request
LATER_HANDLERS = {
    "tornado.websocket",
    "tornado.httpclient",
    "gaffer.http.controller",
    "gaffer.http.outbox",
    "gaffer.http.topics",
    "gaffer.http.keystore",
    "gaffer.wire",
    "sqlite3",
}


def imported(daemon: Gafferd) -> set[str]:
    modules = {
        line.rsplit("|", 1)[-1].strip()
        for line in daemon.output().splitlines()
        if line.startswith("import time:")
    }
    assert "gaffer.core.runner" in modules, "the import log is missing"
    return modules


def test_a_gafferd_no_client_talks_to_never_loads_its_http_server(tmp_path: Path) -> None:
    daemon = Gafferd(tmp_path, JOB, env={"PYTHONPROFILEIMPORTTIME": "1"}).start(wait=False)
    daemon.wait_log("gafferd started")
    wait_until_sync(lambda: len(daemon.job_pids("sleep 1001")) == 2, what="the 2 processes")
    assert Path(daemon.socket).exists()  # bound all along: a client would wait, not fail
    assert daemon.stop() == 0
    modules = imported(daemon)
    assert "gaffer.http.deferred" in modules
    # the bare package is read for its version (gafferd/withoutssl.py), nothing of it runs
    assert {name for name in modules if name.startswith("tornado.")} == set()
    assert modules & SERVER == set()
    assert not Path(daemon.socket).exists()  # removed at stop, as by the server


def test_a_client_connecting_before_the_server_is_loaded_is_answered(tmp_path: Path) -> None:
    daemon = Gafferd(tmp_path, JOB, env={"PYTHONPROFILEIMPORTTIME": "1"}).start(wait=False)
    daemon.wait_log("gafferd started")
    assert "tornado.web" not in imported(daemon)
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(daemon.socket)
        client.sendall(b"GET /pids HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b'{"pids": [1, 2]}')
    assert daemon.stop() == 0
    assert "tornado.web" in imported(daemon)


def test_the_first_requests_load_only_the_handlers_they_use(tmp_path: Path) -> None:
    daemon = Gafferd(tmp_path, JOB, env={"PYTHONPROFILEIMPORTTIME": "1"}).start()
    assert daemon.request("GET", "/pids") == (200, {"pids": [1, 2]})
    status, info = daemon.request("GET", "/jobs/default/web")
    assert status == 200 and info["numprocesses"] == 2
    before = imported(daemon)
    assert {"tornado.web", "gaffer.http.app", "gaffer.http.handlers.jobs"} <= before
    assert before & LATER_HANDLERS == set()
    # the OpenAPI document imports every handler, to describe them
    status, spec = daemon.request("GET", "/openapi.json")
    assert status == 200 and "/channel" in spec["paths"]
    assert daemon.stop() == 0
    # (the log leaves out what importlib.import_module imports, the handler modules named
    # in the route table, but lists the modules they import)
    assert {"tornado.websocket", "gaffer.http.controller", "gaffer.http.keystore"} <= imported(
        daemon
    )


def test_a_hand_over_before_any_client_then_the_first_client_is_answered(
    tmp_path: Path,
) -> None:
    daemon = Gafferd(tmp_path, JOB).start(wait=False)
    try:
        daemon.wait_log("gafferd started")
        wait_until_sync(lambda: len(daemon.job_pids("sleep 1001")) == 2, what="the 2 processes")
        os_pids = daemon.job_pids("sleep 1001")
        daemon.signal(signal.SIGUSR2)  # the HTTP server was never loaded
        wait_until_sync(
            lambda: "restarted in place" in daemon.log_text(),
            timeout=30,
            what=f"the hand-over in gafferd's log:\n{daemon.log_text()}",
        )
        assert "handing over to a new gafferd: 1 job(s), 2 process(es)" in daemon.log_text()
        assert daemon.request("GET", "/pids") == (200, {"pids": [1, 2]})
        assert daemon.job_pids("sleep 1001") == os_pids
        status, body = daemon.request("GET", "/metrics")  # loaded at its first request
        assert status == 200
        assert 'gaffer_job_processes_running{session="default",job="web"} 2' in body
        assert daemon.stop() == 0
    finally:
        daemon.kill()
