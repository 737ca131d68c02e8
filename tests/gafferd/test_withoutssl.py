"""gafferd loads ssl only when something configured may use TLS (gafferd/withoutssl.py)."""

from __future__ import annotations

import _ssl
import http.client
import os
import signal
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from gaffer.errors import ConfigError
from gafferd import withoutssl
from tests.gafferd.harness import ROOT, Gafferd, free_ports
from tests.gafferd.test_daemon import https_status, make_certificate
from tests.helpers import wait_until_sync

pytestmark = pytest.mark.timeout(60)


def loads_ssl(pid: int) -> bool:
    """True if the process mapped libssl (or the ssl extension module, where it links
    OpenSSL statically)."""
    with open(f"/proc/{pid}/maps") as handle:
        maps = handle.read()
    extension = getattr(_ssl, "__file__", None)
    return "libssl" in maps or (extension is not None and extension in maps)


def test_this_python_maps_libssl_with_ssl():
    assert loads_ssl(os.getpid())  # the check above can see what it looks for


def test_the_stand_in_has_what_ssl_has_under_the_same_names():
    fake = withoutssl.stand_in()
    for name, number in withoutssl.ERROR_NUMBERS.items():
        assert getattr(fake, name) == number == getattr(ssl, name), name
    for name in ("SSLZeroReturnError", "SSLWantReadError", "SSLWantWriteError"):
        assert issubclass(getattr(fake, name), fake.SSLError)
        assert issubclass(getattr(ssl, name), ssl.SSLError)
    for name in ("SSLSyscallError", "SSLEOFError", "SSLCertVerificationError"):
        assert issubclass(getattr(fake, name), fake.SSLError)
    assert issubclass(fake.SSLError, OSError) and issubclass(ssl.SSLError, OSError)
    assert fake.CertificateError is fake.SSLCertVerificationError
    assert issubclass(fake.CertificateError, ValueError)
    assert issubclass(ssl.CertificateError, ValueError)


def test_the_stand_in_refuses_tls_saying_how_to_have_it():
    fake = withoutssl.stand_in()
    for make in (fake.SSLContext, fake.SSLSocket, fake.MemoryBIO, fake.create_default_context):
        with pytest.raises(ConfigError, match="gaffer daemon:restart keeps the jobs running"):
            make()
    assert not hasattr(fake, "PROTOCOL_TLS_CLIENT")
    with pytest.raises(AttributeError, match="did not load the ssl module"):
        fake.wrap_bio  # noqa: B018


def test_install_keeps_an_imported_ssl():
    assert withoutssl.install() is False  # pytest's process imported the real one
    assert sys.modules["ssl"] is ssl and not withoutssl.active()


NONE = (None, {})


@pytest.mark.parametrize(
    ("settings", "webhooks", "plugins", "reason", "at_reload"),
    [
        ({}, (), NONE, None, False),
        ({}, (("exit", "http://hooks.example/x"),), NONE, None, False),
        ({"certfile": "/c.pem"}, (), NONE, "certfile/keyfile", True),
        ({"keyfile": "/k.pem"}, (), NONE, "certfile/keyfile", True),
        ({}, (("exit", "HTTPS://hooks.example/x"),), NONE, "webhook", True),
        ({"cluster": "etcd://127.0.0.1:2379"}, (), NONE, "cluster", False),
        ({}, (), ("/etc/gaffer/plugins", {}), "plugins", False),
        ({}, (), (None, {"mine": {}}), "plugins", False),
    ],
)
def test_what_needs_tls(settings, webhooks, plugins, reason, at_reload):
    effective = SimpleNamespace(**{"certfile": None, "keyfile": None, "cluster": None, **settings})
    config = SimpleNamespace(webhooks=webhooks, plugins=plugins[1])
    found = withoutssl.tls_reason(effective, config, plugins[0])
    assert (found is None) if reason is None else (reason in found)
    # a reload rebuilds the binds and the webhooks; plugins and the cluster wait for a start
    again = withoutssl.reload_reason(effective, config)
    assert (again == found) if at_reload else (again is None)


def test_an_installed_plugin_distribution_needs_tls(tmp_path, monkeypatch):
    nothing = SimpleNamespace(certfile=None, keyfile=None, cluster=None)
    config = SimpleNamespace(webhooks=(), plugins={})
    assert withoutssl.tls_reason(nothing, config) is None
    declared = tmp_path / "someplugin-1.0.dist-info"
    declared.mkdir()
    (declared / "entry_points.txt").write_text("[gaffer.apps]\nmine = someplugin:app\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "entry points" in withoutssl.tls_reason(nothing, config)


def test_the_stand_in_has_a_spec():
    assert withoutssl.stand_in().__spec__.name == "ssl"


PROGRAM = """
import sys
from gafferd import withoutssl
assert withoutssl.install()
import asyncio, uvloop, tornado.web, tornado.httpserver, tornado.websocket
from tornado.httpclient import AsyncHTTPClient

class Hello(tornado.web.RequestHandler):
    def get(self):
        self.write("hello")

async def main():
    server = tornado.httpserver.HTTPServer(tornado.web.Application([("/", Hello)]))
    server.listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/")
    print(response.body.decode(), "_ssl" in sys.modules)
    server.stop()

uvloop.run(main())
"""


def test_asyncio_uvloop_and_tornado_serve_http_on_the_stand_in():
    """The libraries as installed import and serve with the stand-in: a new release that
    reads another name of ssl's at import fails here, not in gafferd."""
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(PROGRAM)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hello", "False"]


def plain_http_status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_gafferd_without_tls_never_maps_ssl(tmp_path: Path):
    port = free_ports(1)

    def ini(hooks: str = "", more: str = "") -> str:
        return f"""
            [gaffer]
            bind = unix:{tmp_path / "gafferd.sock"} 127.0.0.1:{port}
            webhook_retries = 0
            [webhooks]
            spawn = http://127.0.0.1:9/hook
            {hooks}
            [job:web]
            cmd = {{child}} sleep
            {more}
        """

    daemon = Gafferd(tmp_path, ini()).start()
    try:
        wait_until_sync(lambda: daemon.request("GET", "/pids")[1]["pids"], what="web up")
        assert plain_http_status(port, "/metrics") == 200
        daemon.wait_log("could not deliver event spawn")  # the HTTP client ran
        assert not loads_ssl(daemon.pid)

        # a reload that would use TLS is refused whole: the file's new job is not loaded
        another_job = "[job:more]\ncmd = {child} sleep"
        daemon.write(ini("exit = https://127.0.0.1:9/", another_job))
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("it needs TLS (the webhook https://127.0.0.1:9/)")
        assert daemon.request("GET", "/jobs")[1]["jobs"] == ["default.web"]

        # what a reload does not start (a plugin section) does not stop it
        daemon.write(ini(more=f"[plugin:absent]\n{another_job}"))
        daemon.signal(signal.SIGHUP)
        wait_until_sync(
            lambda: (
                set(daemon.request("GET", "/jobs")[1]["jobs"]) == {"default.more", "default.web"}
            ),
            what="the reload applied",
        )
        assert not loads_ssl(daemon.pid)
    finally:
        assert daemon.stop() == 0


def test_a_restart_in_place_loads_ssl_when_the_file_turns_tls_on(tmp_path: Path):
    cert, key = make_certificate(tmp_path)
    port = free_ports(1)
    plain = f"""
        [gaffer]
        bind = unix:{tmp_path / "gafferd.sock"} 127.0.0.1:{port}
        [job:web]
        cmd = {{child}} sleep
    """
    daemon = Gafferd(tmp_path, plain).start()
    try:
        before = wait_pids(daemon)
        daemon.write(f"{plain}\n[ssl]\ncertfile = {cert}\nkeyfile = {key}\n")
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("it needs TLS (certfile/keyfile")
        assert plain_http_status(port, "/version") == 200  # still plain HTTP
        assert not loads_ssl(daemon.pid)

        # restarted in place, gafferd reads the file again and loads ssl: HTTPS answers
        daemon.signal(signal.SIGUSR2)
        wait_until_sync(
            lambda: "restarted in place" in daemon.log_text(), timeout=30, what="hand-over"
        )
        assert https_status(port, cert, "/version") == 200
        assert loads_ssl(daemon.pid)
        assert daemon.request("GET", "/pids")[1]["pids"] == before
    finally:
        assert daemon.stop() == 0


def wait_pids(daemon: Gafferd) -> list[int]:
    wait_until_sync(lambda: daemon.request("GET", "/pids")[1]["pids"], what="processes up")
    return daemon.request("GET", "/pids")[1]["pids"]


def test_gafferd_with_an_https_webhook_loads_ssl(tmp_path: Path):
    daemon = Gafferd(tmp_path, "[webhooks]\nexit = https://127.0.0.1:9/hook\n").start()
    try:
        assert loads_ssl(daemon.pid)
    finally:
        assert daemon.stop() == 0
