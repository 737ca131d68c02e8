"""The real gafferd, as a subprocess: jobs, reload, stop, pidfile, binds, plugins, logs."""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import psutil
import pytest

from tests.gafferd.harness import ROOT, Gafferd, free_port, wait_gone
from tests.helpers import children_of, cmdline_of, wait_until_sync

pytestmark = pytest.mark.timeout(90)

TWO_JOBS = """
    [job:alpha]
    cmd = {child} sleep 1001
    numprocesses = 2

    [job:beta]
    cmd = {child} sleep 1002
"""


@pytest.fixture
def gafferd_factory(tmp_path):
    started: list[Gafferd] = []

    def make(ini: str = "", **kwargs) -> Gafferd:
        daemon = Gafferd(tmp_path, ini, **kwargs)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.kill()


def test_jobs_from_the_file_run_and_term_stops_every_child(gafferd_factory, tmp_path):
    pidfile = tmp_path / "gafferd.pid"
    daemon = gafferd_factory(f"""
        [gaffer]
        bind = unix:{tmp_path / "gafferd.sock"}
        pidfile = {pidfile}
        {TWO_JOBS}
    """).start()
    wait_until_sync(lambda: len(daemon.job_pids("sleep 1001")) == 2, what="alpha x2")
    wait_until_sync(lambda: len(daemon.job_pids("sleep 1002")) == 1, what="beta x1")
    children = daemon.job_pids("sleep 100")
    assert pidfile.read_text().strip() == str(daemon.pid)
    assert Path(daemon.socket).exists()
    assert daemon.stop() == 0
    wait_gone(children)
    assert not pidfile.exists()
    assert not Path(daemon.socket).exists()
    assert "SIGTERM: stopping" in daemon.log_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT])
def test_int_and_quit_stop_gracefully_too(gafferd_factory, sig):
    daemon = gafferd_factory(TWO_JOBS).start()
    wait_until_sync(lambda: len(daemon.job_pids("sleep 100")) == 3, what="3 children")
    children = daemon.job_pids("sleep 100")
    daemon.signal(sig)
    assert daemon.proc.wait(20) == 0
    wait_gone(children)


def test_hup_applies_exactly_the_difference(gafferd_factory):
    daemon = gafferd_factory(
        TWO_JOBS
        + """
        [job:gamma]
        cmd = {child} sleep 1003
    """
    ).start()
    wait_until_sync(lambda: len(daemon.job_pids("sleep 100")) == 4, what="4 children")
    alpha, beta, gamma = (daemon.job_pids(f"sleep 100{n}") for n in (1, 2, 3))
    daemon.write("""
        [job:alpha]
        cmd = {child} sleep 1001
        numprocesses = 2

        [job:beta]
        cmd = {child} sleep 1012

        [job:delta]
        cmd = {child} sleep 1004
    """)
    daemon.signal(signal.SIGHUP)
    wait_until_sync(
        lambda: (
            daemon.job_pids("sleep 1004")
            and daemon.job_pids("sleep 1012")
            and not daemon.job_pids("sleep 1003")
            and not daemon.job_pids("sleep 1002")
        ),
        what="the reload applied",
    )
    assert daemon.job_pids("sleep 1001") == alpha  # unchanged: untouched, same pids
    wait_gone(beta | gamma)
    # gafferd's log is written by a thread of its own: a line may follow what it says
    for line in ("unloaded default.gamma", "updated default.beta", "loaded default.delta"):
        daemon.wait_log(f"reload: {line}")
    assert "default.alpha" not in daemon.log_text().split("SIGHUP")[-1]
    assert daemon.stop() == 0


def test_hup_with_only_numprocesses_changed_scales_the_job(gafferd_factory):
    """Scale survives: 2 -> 4 in the file adds 2 processes and keeps the 2 running; 4 -> 1
    reaps 3. The job's config follows (a later start goes back to the file's number)."""
    daemon = gafferd_factory(TWO_JOBS).start()
    wait_until_sync(lambda: len(daemon.job_pids("sleep 1001")) == 2, what="2 alpha")
    before = daemon.job_pids("sleep 1001")
    daemon.write(TWO_JOBS.replace("numprocesses = 2", "numprocesses = 4"))
    daemon.signal(signal.SIGHUP)
    wait_until_sync(lambda: len(daemon.job_pids("sleep 1001")) == 4, what="4 alpha")
    assert before <= daemon.job_pids("sleep 1001")  # the first two were kept
    daemon.write(TWO_JOBS.replace("numprocesses = 2", "numprocesses = 1"))
    daemon.signal(signal.SIGHUP)
    wait_until_sync(lambda: len(daemon.job_pids("sleep 1001")) == 1, what="1 alpha")
    status, info = daemon.request("GET", "/jobs/default/alpha")
    assert status == 200 and (info["numprocesses"], info["config"]["numprocesses"]) == (1, 1)
    assert daemon.stop() == 0


def test_a_broken_file_on_hup_keeps_everything_running(gafferd_factory):
    daemon = gafferd_factory(TWO_JOBS).start()
    wait_until_sync(lambda: len(daemon.job_pids("sleep 100")) == 3, what="3 children")
    before = daemon.job_pids("sleep 100")
    daemon.write("""
        [job:alpha]
        cmd = {child} sleep 1001
        numprocesses = lots
    """)
    daemon.signal(signal.SIGHUP)
    daemon.wait_log("configuration not reloaded")
    assert "numprocesses = lots: expected an integer" in daemon.log_text()
    assert daemon.job_pids("sleep 100") == before
    assert daemon.request("GET", "/ping")[0] == 200
    assert daemon.stop() == 0


def test_a_second_gafferd_with_the_same_pidfile_refuses_to_start(gafferd_factory, tmp_path):
    pidfile = tmp_path / "gafferd.pid"
    first = gafferd_factory(f"[gaffer]\nbind = unix:{tmp_path / 'a.sock'}\npidfile = {pidfile}\n")
    first.socket = str(tmp_path / "a.sock")
    first.start()
    (tmp_path / "second").mkdir()
    second = Gafferd(tmp_path / "second", "")
    second.write(f"[gaffer]\nbind = unix:{tmp_path / 'b.sock'}\npidfile = {pidfile}\n")
    result = second.run()
    assert result.returncode == 1
    assert f"already running with pid {first.pid}" in result.stderr
    assert pidfile.read_text().strip() == str(first.pid)
    assert first.stop() == 0


def test_a_stale_pidfile_is_replaced(gafferd_factory, tmp_path):
    pidfile = tmp_path / "gafferd.pid"
    pidfile.write_text("999999\n")  # nobody holds it
    daemon = gafferd_factory(
        f"[gaffer]\nbind = unix:{tmp_path / 'gafferd.sock'}\npidfile = {pidfile}\n"
    ).start()
    assert pidfile.read_text().strip() == str(daemon.pid)
    assert daemon.stop() == 0


def test_tcp_and_unix_binds_at_once(gafferd_factory, tmp_path):
    port = free_port()
    daemon = gafferd_factory(
        f"[gaffer]\nbind = unix:{tmp_path / 'gafferd.sock'} 127.0.0.1:{port} [::1]:{port}\n"
    ).start()
    import http.client

    for host in ("127.0.0.1", "::1"):
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", "/version")
        assert conn.getresponse().status == 200
        conn.close()
    assert oct(os.stat(daemon.socket).st_mode & 0o777) == "0o600"
    assert daemon.stop() == 0


def test_a_stale_unix_socket_is_replaced(gafferd_factory, tmp_path):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "gafferd.sock"))
    stale.close()  # the file stays, nobody listens
    daemon = gafferd_factory("").start()
    assert daemon.request("GET", "/ping")[0] == 200
    assert daemon.stop() == 0


BAD_START = [
    (
        "unknown key",
        "[job:web]\ncmd = sleep 1\nnumproceses = 2\n",
        r"gafferd.ini:6: \[job:web\] numproceses = 2: unknown key",
    ),
    (
        "bad int",
        "[job:web]\ncmd = sleep 1\nnumprocesses = x\n",
        r"gafferd.ini:6: \[job:web\] numprocesses = x: expected an integer",
    ),
    (
        "bad flapping",
        "[job:web]\ncmd = sleep 1\nflapping = 1 2 3\n",
        r"gafferd.ini:6: \[job:web\] flapping = 1 2 3: flapping: expected 4 values",
    ),
    ("missing cmd", "[job:web]\nnumprocesses = 1\n", r"\[job:web\] has no cmd"),
    (
        "include of a missing file",
        "[job:web]\ncmd = sleep 1\n[gaffer_]\n",
        r"\[gaffer_\] unknown section",
    ),
]


@pytest.mark.parametrize(
    ("case", "text", "message"), BAD_START, ids=[case for case, _, _ in BAD_START]
)
def test_bad_config_exits_78_with_the_precise_message(gafferd_factory, case, text, message):
    daemon = gafferd_factory(text)
    result = daemon.run()
    assert result.returncode == 78, result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback


def test_an_include_of_a_missing_file_exits_78(gafferd_factory, tmp_path):
    daemon = gafferd_factory()
    daemon.ini.write_text(f"[gaffer]\nbind = unix:{daemon.socket}\ninclude = nope.ini\n")
    result = daemon.run()
    assert result.returncode == 78
    assert re.search(r"gafferd.ini:3: include = nope.ini: .*nope.ini does not exist", result.stderr)


def test_an_unreadable_config_exits_78(gafferd_factory, tmp_path):
    (tmp_path / "unreadable.ini").mkdir()  # root reads any file, but not a directory
    daemon = gafferd_factory()
    daemon.ini.write_text(f"[gaffer]\nbind = unix:{daemon.socket}\ninclude = unreadable.ini\n")
    result = daemon.run()
    assert result.returncode == 78
    assert re.search(
        r"gafferd.ini:3: include = unreadable.ini: cannot read .*unreadable.ini", result.stderr
    )


def test_binding_a_port_in_use_exits_78(gafferd_factory):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        daemon = gafferd_factory(f"[gaffer]\nbind = 127.0.0.1:{port}\n")
        result = daemon.run()
    assert result.returncode == 78
    assert f"cannot bind 127.0.0.1:{port}: Address already in use" in result.stderr


def test_a_bad_environment_value_exits_78(gafferd_factory):
    daemon = gafferd_factory("", env={"GAFFERD_BACKLOG": "many"})
    result = daemon.run()
    assert result.returncode == 78
    assert "environment GAFFERD_BACKLOG: backlog = 'many': expected an integer" in result.stderr


def test_a_public_bind_without_keys_is_refused(gafferd_factory):
    daemon = gafferd_factory("[gaffer]\nbind = 0.0.0.0:0\n")
    result = daemon.run()
    assert result.returncode == 78
    assert "refusing to bind 0.0.0.0:0" in result.stderr and "require_key" in result.stderr
    daemon.write("[gaffer]\nbind = 0.0.0.0:0\ninsecure = true\n")
    assert daemon.run("--check-config").returncode == 0


def test_a_job_log_that_cannot_be_opened_stops_the_start_with_78(gafferd_factory, tmp_path):
    (tmp_path / "file").write_text("")
    daemon = gafferd_factory(
        f"[job:web]\ncmd = sleep 1\nstdout_logfile = {tmp_path / 'file' / 'web.log'}\n"
    )
    daemon.start(wait=False)
    assert daemon.proc.wait(20) == 78
    assert "cannot open log file" in daemon.log_text()


def test_check_config_and_print_config(gafferd_factory):
    daemon = gafferd_factory(TWO_JOBS, env={"GAFFERD_LOG_LEVEL": "debug"})
    result = daemon.run("--check-config")
    assert result.returncode == 0
    assert "configuration OK" in result.stdout and "2 job(s)" in result.stdout
    printed = daemon.run("--print-config", "--backlog", "64").stdout
    assert re.search(r"^backlog = 64 +; command line --backlog$", printed, re.M)
    assert re.search(r"^log_level = debug +; environment GAFFERD_LOG_LEVEL$", printed, re.M)
    assert re.search(r"^bind = unix:.*gafferd.sock +; .*gafferd.ini:2$", printed, re.M)
    assert "# job default.alpha" in printed


def test_version_and_help(gafferd_factory):
    daemon = gafferd_factory()
    import gaffer

    assert daemon.run("--version").stdout.strip() == f"gafferd {gaffer.__version__}"
    help_text = daemon.run("--help").stdout
    for flag in (
        "--bind",
        "--daemon",
        "--pidfile",
        "--error-log",
        "--log-level",
        "--require-key",
        "--certfile",
        "--keyfile",
        "--plugin-dir",
        "--loop",
        "--check-config",
        "--print-config",
        "--apps",
        "--plugins",
        "--version",
    ):
        assert flag in help_text, flag
    assert daemon.run("--no-such-flag").returncode == 2


def test_usr1_reopens_the_job_logs(gafferd_factory, tmp_path):
    log = tmp_path / "echo.log"
    daemon = gafferd_factory(f"""
        [job:ticker]
        cmd = /bin/sh -c 'while true; do echo tick; sleep 0.05; done'
        stdout_logfile = {log}
    """).start()
    wait_until_sync(lambda: log.exists() and "tick" in log.read_text(), what="first ticks")
    log.rename(tmp_path / "echo.log.1")
    daemon.signal(signal.SIGUSR1)
    wait_until_sync(lambda: log.exists() and "tick" in log.read_text(), what="new log file")
    daemon.wait_log("SIGUSR1: reopening log files")
    assert daemon.stop() == 0


def test_verbose_prints_events_and_output(gafferd_factory):
    daemon = gafferd_factory(
        """
        [job:hello]
        cmd = {child} print hello from the job
        redirect_output = out
        numprocesses = 0
        [job:sleeper]
        cmd = {child} sleep 1001
    """,
        args=("-vv",),
    ).start()
    wait_until_sync(lambda: "sleeper.1 spawned" in daemon.output(), what="spawn line")
    assert daemon.stop() == 0
    assert re.search(r"\d\d:\d\d:\d\d gaffer +\| sleeper.1 spawned \(os pid \d+\)", daemon.output())


def test_daemon_mode_detaches_and_stops_by_pidfile(tmp_path):
    pidfile = tmp_path / "gafferd.pid"
    daemon = Gafferd(
        tmp_path,
        f"""
        [gaffer]
        bind = unix:{tmp_path / "gafferd.sock"}
        pidfile = {pidfile}
        daemon = true
        [job:alpha]
        cmd = {{child}} sleep 1001
    """,
    )
    result = daemon.run()  # returns at once: the daemon runs on its own
    assert result.returncode == 0, result.stderr
    wait_until_sync(lambda: pidfile.exists() and pidfile.read_text().strip(), what="pidfile")
    pid = int(pidfile.read_text())
    try:
        proc = psutil.Process(pid)
        assert proc.ppid() != os.getpid()  # really detached
        wait_until_sync(
            lambda: any("sleep 1001" in cmdline_of(child) for child in children_of(pid)),
            what="its job",
        )
        children = proc.children()
        os.kill(pid, signal.SIGTERM)
        psutil.wait_procs([proc], timeout=20)
        wait_gone({child.pid for child in children})
        assert not pidfile.exists()
    finally:
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)


PLUGINS = ROOT / "tests" / "fixtures" / "plugins"


def test_an_entry_point_plugin_is_listed_and_started_and_a_site_served(gafferd_factory, tmp_path):
    marker = tmp_path / "recorder.txt"
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{PLUGINS / 'site-packages'}"}
    daemon = gafferd_factory(
        f"""
        [gaffer]
        bind = unix:{tmp_path / "gafferd.sock"}
        plugin_dir = {PLUGINS / "plugin_dir"}
        [plugin:recorder]
        marker = {marker}
    """,
        env=env,
    )
    apps = daemon.run("--apps")
    assert apps.returncode == 0, apps.stderr
    assert "testapp" in apps.stdout and "recorder" in apps.stdout
    listing = daemon.run("--plugins").stdout
    assert "entry point" in listing and "gaffer-test-plugin" in listing
    assert "broken" in listing and "ERROR" in listing
    daemon.start()
    wait_until_sync(
        lambda: marker.exists() and "on_start" in marker.read_text(), what="the plugin started"
    )
    status, body = daemon.request("GET", "/_plugin/recorder/")
    assert status == 200 and "html" in str(body).lower()
    assert daemon.request("GET", "/_plugin/static/")[0] == 200
    assert daemon.request("GET", "/_plugin/nope/")[0] == 404
    assert daemon.stop() == 0
    calls = marker.read_text()
    assert (
        calls.index("initialize")
        < calls.index("start")
        < calls.index("on_start")
        < calls.index("stop")
        < calls.index("on_shutdown")
    )


def test_webhooks_from_the_file_are_posted(gafferd_factory, tmp_path):
    import http.server
    import json
    import threading

    received = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        daemon = gafferd_factory(f"""
            [webhooks]
            load = {url}
            job.default.web.spawn = {url}
            [job:web]
            cmd = {{child}} sleep 1001
        """).start()
        wait_until_sync(
            lambda: {m["event"] for m in received} >= {"load", "job.default.web.spawn"},
            what="both hooks",
        )
        assert all(m["name"] == "default.web" for m in received)
        assert daemon.stop() == 0
    finally:
        server.shutdown()
        server.server_close()


def test_error_log_to_a_file_and_log_level(gafferd_factory):
    daemon = gafferd_factory(
        "[job:web]\ncmd = {child} sleep 1001\n", args=("--log-level", "debug")
    ).start()
    daemon.wait_log("gafferd started")
    assert re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \[\d+\] \[INFO\] gafferd: ", daemon.log_text(), re.M
    )
    assert daemon.stop() == 0
    assert "gafferd stopped" in daemon.log_text()  # the log is complete after the stop


def make_certificate(directory: Path) -> tuple[Path, Path]:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def https_status(port: int, cert: Path, path: str) -> int:
    """The status of ``GET path`` over HTTPS on 127.0.0.1, trusting ``cert``."""
    import http.client
    import ssl

    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_tls_serves_https_on_tcp_binds(gafferd_factory, tmp_path):
    import http.client

    cert, key = make_certificate(tmp_path)
    port = free_port()
    daemon = gafferd_factory(f"""
        [gaffer]
        bind = unix:{tmp_path / "gafferd.sock"} 127.0.0.1:{port}
        [ssl]
        certfile = {cert}
        keyfile = {key}
    """).start()
    assert https_status(port, cert, "/version") == 200
    plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    plain.request("GET", "/version")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        plain.getresponse()  # plain HTTP on a TLS port: the server drops it
    plain.close()
    assert daemon.request("GET", "/ping")[0] == 200  # the unix socket stays plain HTTP
    assert daemon.stop() == 0


def test_a_bad_certificate_exits_78(gafferd_factory, tmp_path):
    (tmp_path / "bad.pem").write_text("not a certificate")
    daemon = gafferd_factory(
        f"[gaffer]\nbind = unix:{tmp_path / 'g.sock'}\ncertfile = {tmp_path / 'bad.pem'}\n"
    )
    result = daemon.run()
    assert result.returncode == 78
    assert "cannot load TLS certificate" in result.stderr


def test_hup_applies_a_new_bind(gafferd_factory, tmp_path):
    import http.client

    port = free_port()
    daemon = gafferd_factory("").start()
    daemon.write(f"[gaffer]\nbind = unix:{daemon.socket} 127.0.0.1:{port}\n")
    daemon.signal(signal.SIGHUP)

    def answers() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/ping")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    wait_until_sync(answers, what="the new TCP bind answering")
    assert daemon.request("GET", "/ping")[0] == 200  # the kept unix socket still answers
    assert Path(daemon.socket).exists()
    assert daemon.stop() == 0
    assert not Path(daemon.socket).exists()


def test_process_limit_refuses_what_goes_over_it_and_hup_changes_it(gafferd_factory, tmp_path):
    def limited(limit: int) -> str:
        return f"""
            [gaffer]
            bind = unix:{tmp_path / "gafferd.sock"}
            process_limit = {limit}

            [job:alpha]
            cmd = {{child}} sleep 1001
            numprocesses = 2
        """

    daemon = gafferd_factory(limited(3)).start()
    wait_until_sync(lambda: len(daemon.job_pids("sleep 1001")) == 2, what="2 children")
    status, body = daemon.request("POST", "/jobs/default/alpha/numprocesses", {"scale": "+5"})
    assert status == 409, body
    assert body["error"] == "process_limit"
    assert "over its limit of 3 (process_limit)" in body["reason"]
    assert daemon.request("GET", "/jobs/default/alpha/numprocesses") == (200, {"numprocesses": 2})
    load = {"name": "beta", "cmd": "sleep 1002", "numprocesses": 2}
    assert daemon.request("POST", "/jobs/default", load)[0] == 409
    assert daemon.request("GET", "/jobs/default/beta")[0] == 404
    # a reload raises the limit; the same requests now go through
    daemon.write(limited(10))
    daemon.signal(signal.SIGHUP)

    def scaled() -> bool:
        return daemon.request("POST", "/jobs/default/alpha/numprocesses", {"scale": "+5"}) == (
            200,
            {"numprocesses": 7},
        )

    wait_until_sync(scaled, what="the scale accepted after the reload")
    wait_until_sync(lambda: len(daemon.job_pids("sleep 1001")) == 7, what="7 children")
    assert daemon.stop() == 0


def test_check_config_refuses_jobs_over_the_process_limit(gafferd_factory):
    daemon = gafferd_factory("""
        [job:alpha]
        cmd = {child} sleep 1001
        numprocesses = 6000

        [job:beta]
        cmd = {child} sleep 1002
        numprocesses = 5000
    """)
    refused = daemon.run("--check-config")
    assert refused.returncode == 78, refused
    assert (
        f"the jobs of {daemon.ini} ask for 11000 processes, over process_limit = 10000 "
        "(from default)"
    ) in refused.stderr
    assert daemon.run("--check-config", "--process-limit", "off").returncode == 0
    raised = daemon.run("--check-config", "--process-limit", "20000")
    assert raised.returncode == 0, raised


def test_a_dependency_cycle_is_a_configuration_error(gafferd_factory):
    daemon = gafferd_factory("""
        [job:web]
        cmd = {child} sleep 1001
        requires = db

        [job:db]
        cmd = {child} sleep 1002
        requires = default.web
    """)
    refused = daemon.run("--check-config")
    assert refused.returncode == 78, refused
    line = daemon.ini.read_text().splitlines().index("requires = db") + 1
    assert f"{daemon.ini}:{line}: [job:default.web] requires = db: a dependency cycle: " in (
        refused.stderr
    ), refused.stderr
    assert "default.web -> default.db -> default.web" in refused.stderr


def test_jobs_start_in_dependency_order_and_stop_in_reverse(gafferd_factory, tmp_path):
    flag = tmp_path / "db-ready"
    daemon = gafferd_factory(f"""
        [job:web]
        cmd = {{child}} sleep 1001
        requires = db
        priority = 1

        [job:db]
        cmd = {{child}} sleep 1002
        ready = exec:test -e {flag}
        ready_interval = 0.05
        priority = 2
    """).start()
    wait_until_sync(lambda: daemon.job_pids("sleep 1002"), what="db spawned")

    def web_state() -> str:
        status, info = daemon.request("GET", "/jobs/default/web")
        assert status == 200, info
        return info["state"]

    assert web_state() == "waiting"
    assert not daemon.job_pids("sleep 1001")  # web has not started: db is not ready
    flag.touch()
    wait_until_sync(lambda: daemon.job_pids("sleep 1001"), what="web started")
    assert daemon.stop() == 0
