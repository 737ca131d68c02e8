"""gafferd restarting in place, and after a SIGKILL with ``on_daemon_crash = keep``, at
1,000 processes.

A real gafferd (as ``make run`` starts it, on a unix socket) runs one job of N ``sleep``
processes; once all run:

* SIGUSR2: the hand-over, measured by gafferd itself from the freeze of the old gafferd
  to the first turn of the new one's loop (every process adopted, the API serving:
  ``last_handover.frozen_ms`` of ``/daemon/state``), and from the signal to the first
  ``/ping`` answered by the new gafferd, outside (the check of the new gafferd, a
  ``--check-config`` subprocess run before anything stops, included);
* with ``on_daemon_crash = keep``: SIGKILL of gafferd, then the time until the new
  gafferd lists the same N processes (same OS pids);
* for scale: the start-up of a bare Python and the import of what gafferd imports, on
  the same machine in the same minute (an exec pays for them again).

Every figure is the median of RUNS runs, with the spread.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import table

ROOT = Path(__file__).resolve().parents[1]
SLEEP = shutil.which("sleep") or "/bin/sleep"
RUNS = 3
COUNT = 1000


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self._path)


def _get(path: str, route: str) -> dict | str | None:
    conn = _Unix(path)
    try:
        conn.request("GET", route)
        response = conn.getresponse()
        raw = response.read()
    except OSError:
        return None
    finally:
        conn.close()
    if response.status != 200:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


def _until(predicate, timeout: float = 120.0, step: float = 0.002):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(step)


def _env() -> dict[str, str]:
    """gafferd as installed: its bytecode cached (an environment that forbids writing
    .pyc files would have every exec compile gaffer from source)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": str(ROOT)}


def warm_up() -> None:
    subprocess.run(
        [sys.executable, "-c", "import gafferd.main, gafferd.server"], env=_env(), check=True
    )


def _start(directory: Path, count: int, keep: bool) -> tuple[subprocess.Popen, str]:
    sock = str(directory / "gafferd.sock")
    (directory / "gafferd.ini").write_text(
        f"[gaffer]\nbind = unix:{sock}\nstate_file = off\n"
        + ("on_daemon_crash = keep\n" if keep else "")
        + f"\n[job:sleepers]\ncmd = {SLEEP} 100000\nnumprocesses = {count}\n"
    )
    env = _env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gafferd", "-c", str(directory / "gafferd.ini"),
         "--error-log", str(directory / "gafferd.log")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _until(lambda: len((_get(sock, "/pids") or {}).get("pids", [])) == count)
    _until(lambda: (_get(sock, "/jobs/default/sleepers") or {}).get("state") == "running")
    return proc, sock


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)


def handover_once(count: int) -> tuple[dict, float]:
    """(gafferd's own account of the hand-over, SIGUSR2 -> the first /ping answered by
    the new gafferd in seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, sock = _start(Path(tmp), count, keep=False)
        try:
            sent = time.monotonic()
            proc.send_signal(signal.SIGUSR2)
            state = _until(lambda: _state_after(sock, 1))
            served = time.monotonic() - sent
            assert state["last_handover"]["processes"] == count, state
            return state["last_handover"], served
        finally:
            _stop(proc)


def _state_after(sock: str, handovers: int) -> dict | None:
    state = _get(sock, "/daemon/state")
    return state if isinstance(state, dict) and state["handovers"] >= handovers else None


def crash_once(count: int) -> float:
    """SIGKILL of gafferd under the keeper -> the new gafferd lists every process."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, sock = _start(Path(tmp), count, keep=True)
        try:
            first = _get(sock, "/daemon/state")["pid"]
            os.kill(first, signal.SIGKILL)
            killed = time.monotonic()

            def adopted() -> bool:
                state = _get(sock, "/daemon/state")
                return (
                    isinstance(state, dict)
                    and state["pid"] != first
                    and (state["processes"] == count)
                )

            _until(adopted)
            return time.monotonic() - killed
        finally:
            _stop(proc)


def python_start() -> tuple[float, float]:
    """(a bare ``python -c pass``, ``python -c 'import gafferd.main, gafferd.server'``)."""
    env = _env()

    def timed(code: str) -> float:
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        return time.perf_counter() - began

    bare = statistics.median(timed("pass") for _ in range(5))
    imports = statistics.median(timed("import gafferd.main, gafferd.server") for _ in range(5))
    return bare, imports


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f}"


def main() -> None:
    from bench.engine import raise_fd_limit

    raise_fd_limit()
    warm_up()
    accounts, served, crashes = [], [], []
    for _ in range(RUNS):
        account, outside = handover_once(COUNT)
        accounts.append(account)
        served.append(outside)
        crashes.append(crash_once(COUNT))
    bare, imports = python_start()

    def part(key: str) -> list[float]:
        return [account[key] / 1000 for account in accounts]

    def spread(values: list[float]) -> str:
        return f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f}"

    frozen = part("frozen_ms")
    described, exec_ = part("described_ms"), part("exec_ms")
    imported, restore = part("imported_ms"), part("restore_ms")

    def between(first: list[float], then: list[float]) -> str:
        return _fmt([b - a for a, b in zip(first, then, strict=True)])

    rows = [
        (
            f"hand-over in place, {COUNT:,} processes (ms)",
            _fmt(frozen),
            f"freeze of the old gafferd to the new one serving, every process adopted; "
            f"{RUNS} runs {spread(frozen)}; target < 300",
        ),
        (
            "  of which: describe / exec + interpreter / imports / restore / the rest (ms)",
            f"{_fmt(described)} / {between(described, exec_)} / {between(exec_, imported)}"
            f" / {_fmt(restore)} / "
            + _fmt([f - i - r for f, i, r in zip(frozen, imported, restore, strict=True)]),
            "gafferd's own clock (last_handover of /daemon/state); the rest: settings, "
            "plugins, the HTTP server, the first turn of the loop",
        ),
        (
            "SIGUSR2 to the first /ping of the new gafferd (ms)",
            _fmt(served),
            f"the check of the new gafferd (a --check-config run) included; {spread(served)}",
        ),
        (
            f"SIGKILL to every process adopted, keep, {COUNT:,} (ms)",
            _fmt(crashes),
            f"the keeper starts gafferd again; {spread(crashes)}; target < 2,000",
        ),
        (
            "python start-up: bare / gafferd's imports (ms)",
            f"{bare * 1000:.0f} / {imports * 1000:.0f}",
            "what any exec of gafferd pays first, same machine, same minute",
        ),
    ]
    print(table("Restart in place and after a crash", ("workload", "gaffer", "notes"), rows))


if __name__ == "__main__":
    main()
