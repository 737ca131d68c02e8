"""50 API clients at once for 30 seconds, loading, scaling, stopping and unloading jobs.

Each client owns a job and keeps a ledger of what it asked: at the end gafferd must hold
exactly that. Every client also raises and lowers a few shared jobs (+1 then -1, so they
must end where they started). Every request must be answered, none with a 5xx.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from tests.gafferd.harness import Gafferd, UnixHTTPConnection
from tests.helpers import wait_until_sync

pytestmark = pytest.mark.timeout(150)

CLIENTS = 50
SECONDS = float(os.environ.get("GAFFER_SOAK_SECONDS", "30"))
SHARED_JOBS = 5
SHARED_START = 2


@dataclass
class Ledger:
    """What one client asked for its own job, and what it saw."""

    loaded: bool = False
    started: bool = False
    numprocesses: int = 0
    configured: int = 0  # numprocesses of the loaded config: a start comes back to it
    stopped: bool = False  # by a command (a job only loaded unstarted is not stopped)
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


class Client:
    def __init__(self, daemon: Gafferd, index: int, sleep: str) -> None:
        self.socket = daemon.socket
        self.job = f"c{index}"
        self.sleep = sleep
        self.random = random.Random(index)
        self.ledger = Ledger()
        self._conn: UnixHTTPConnection | None = None

    def call(self, method: str, path: str, body: object = None, expect: int = 200) -> object:
        """One request on a kept-alive connection; an unexpected answer is recorded."""
        data = None if body is None else body if isinstance(body, str) else json.dumps(body)
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = UnixHTTPConnection(self.socket, timeout=30)
            try:
                headers = {} if data is None else {"Content-Type": "application/json"}
                self._conn.request(method, path, body=data, headers=headers)
                response = self._conn.getresponse()
                raw = response.read()
                break
            except (ConnectionError, TimeoutError, OSError) as exc:
                self._conn.close()
                self._conn = None
                if attempt == 2:  # a closed kept-alive connection may be retried once
                    self.ledger.failures.append(f"{method} {path}: {exc!r}")
                    return None
        self.ledger.requests += 1
        self.ledger.statuses[response.status] += 1
        if response.status != expect:
            self.ledger.failures.append(f"{method} {path}: {response.status} {raw[:200]!r}")
        return json.loads(raw) if raw and raw[:1] in b"{[" else raw

    def run(self, until: float) -> None:
        ledger, path = self.ledger, f"/jobs/soak/{self.job}"
        while time.monotonic() < until:
            roll = self.random.random()
            if not ledger.loaded:
                n = self.random.randint(0, 2)
                start = self.random.random() < 0.8
                self.call(
                    "POST",
                    "/jobs/soak",
                    {
                        "name": self.job,
                        "cmd": self.sleep,
                        "args": ["1000"],
                        "numprocesses": n,
                        "graceful_timeout": 1,
                        "start": start,
                    },
                )
                ledger.loaded, ledger.started, ledger.numprocesses = True, start, n
                ledger.configured, ledger.stopped = n, False
            elif roll < 0.35:
                n = self.random.randint(0, 3)
                answer = self.call("POST", f"{path}/numprocesses", {"scale": f"={n}"})
                ledger.numprocesses = n
                if not ledger.stopped:  # a job loaded unstarted starts when scaled (0.5)
                    ledger.started = True
                if isinstance(answer, dict) and answer.get("numprocesses") != n:
                    ledger.failures.append(f"scale ={n} answered {answer}")
            elif roll < 0.5:
                state = self.random.choice(["0", "1"])
                self.call("POST", f"{path}/state", state, expect=202)
                # a stop sets the target to 0; starting a stopped job restores the config's
                if state == "0":
                    ledger.numprocesses = 0
                elif not ledger.started:
                    ledger.numprocesses = ledger.configured
                ledger.started, ledger.stopped = state == "1", state == "0"
            elif roll < 0.6:
                self.call("DELETE", path)
                ledger.loaded = False
            elif roll < 0.8:
                shared = f"/jobs/soak/shared{self.random.randrange(SHARED_JOBS)}/numprocesses"
                self.call("POST", shared, {"scale": "+1"})
                self.call("POST", shared, {"scale": "-1"})
            else:
                info = self.call("GET", path)
                if isinstance(info, dict) and info.get("numprocesses") != ledger.numprocesses:
                    ledger.failures.append(
                        f"info says {info.get('numprocesses')} processes, "
                        f"the last scale asked {ledger.numprocesses}"
                    )
        if self._conn is not None:
            self._conn.close()


def test_fifty_clients_for_thirty_seconds(tmp_path):
    sleep = shutil.which("sleep")
    assert sleep is not None
    shared = "\n".join(
        f"[job:soak.shared{k}]\ncmd = {sleep} 1000\nnumprocesses = {SHARED_START}\n"
        for k in range(SHARED_JOBS)
    )
    daemon = Gafferd(tmp_path, shared).start()
    try:
        clients = [Client(daemon, index, sleep) for index in range(CLIENTS)]
        until = time.monotonic() + SECONDS
        threads = [threading.Thread(target=c.run, args=(until,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(SECONDS + 60)
        assert not any(thread.is_alive() for thread in threads), "a client hung"

        statuses = sum((c.ledger.statuses for c in clients), Counter())
        failures = [f"{c.job}: {f}" for c in clients for f in c.ledger.failures]
        assert not [s for s in statuses if s >= 500], f"server errors: {statuses}"
        assert not failures, f"{len(failures)} unexpected answers: {failures[:10]}"
        assert sum(statuses.values()) > CLIENTS * 10, f"too few requests: {statuses}"
        print(f"{sum(statuses.values())} requests: {dict(statuses)}")

        # the final state is the last thing each client asked
        for client in clients:
            ledger, path = client.ledger, f"/jobs/soak/{client.job}"
            status, info = daemon.request("GET", path)
            if not ledger.loaded:
                assert status == 404, f"{client.job} was unloaded, yet: {status} {info}"
                continue
            assert status == 200 and info["numprocesses"] == ledger.numprocesses, (client.job, info)
            running = ledger.numprocesses if ledger.started else 0
            wait_until_sync(
                lambda path=path, running=running: (
                    len(daemon.request("GET", f"{path}/pids")[1]["pids"]) == running
                ),
                timeout=20,
                what=f"{client.job} running {running}",
            )
        for k in range(SHARED_JOBS):
            path = f"/jobs/soak/shared{k}"
            assert daemon.request("GET", f"{path}/numprocesses")[1]["numprocesses"] == SHARED_START
            wait_until_sync(
                lambda path=path: (
                    len(daemon.request("GET", f"{path}/pids")[1]["pids"]) == SHARED_START
                ),
                timeout=20,
                what=f"shared{k} back to {SHARED_START} processes",
            )
        assert daemon.proc.poll() is None
        assert " 500 " not in daemon.log_text()
    finally:
        assert daemon.stop(timeout=60) == 0
