"""gafferd restarting in place: its jobs keep running, the same code or newer.

On SIGUSR2 (or ``gaffer daemon:restart``, ``POST /daemon/restart``) gafferd first checks
that a new gafferd would start (the same command line with ``--check-config``, run in a
subprocess: the installed code imports, the configuration is valid), then:

1. stops accepting HTTP connections: the listening sockets stay open, so a client
   connecting meanwhile waits in their backlog for the next gafferd rather than being
   refused; the requests in progress finish (at most ``DRAIN_TIMEOUT``), then every
   connection is closed (WebSockets with 1012, "service restart");
2. freezes the manager (gaffer/core/handover.py): nothing more is read from the pipes,
   what was read is in the log files, and everything is described as plain data;
3. writes that description to a memfd, lets every descriptor it names survive the exec
   (pipes, pidfds, the guard's pipe or the keeper's socket, the listening sockets, the
   pidfile and its lock), blocks the signals gafferd handles (they stay pending across
   the exec instead of killing the new gafferd before it handles them), and
4. ``exec``-s the same command line: the same pid, so the processes stay its children.

The new gafferd finds ``GAFFERD_HANDOVER_FD`` in its environment (``receive``), adopts
everything before it starts, unblocks the signals, then reads its configuration file
again as SIGHUP does. If the exec itself fails, everything is undone and gafferd goes on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from gaffer.core.config import ProcessConfig
from gaffer.errors import HandoverError
from gafferd.config import JobSpec

if TYPE_CHECKING:
    from gafferd.server import Gafferd

logger = logging.getLogger("gafferd")

ENV = "GAFFERD_HANDOVER_FD"
FORMAT = 1
DRAIN_TIMEOUT = 1.0  # seconds the HTTP requests in progress have to finish
CHECK_TIMEOUT = 60.0  # seconds the check of the new gafferd may take
# pending across the exec, handled by the new gafferd once it is ready
HANDLED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def command_line() -> list[str]:
    """How this gafferd was started: the interpreter, its options, the script or module
    and the arguments (an exec of it runs the code installed now)."""
    return [sys.executable, *sys.orig_argv[1:]]


class Restarter:
    """The hand-over of one gafferd to the next (see the module docstring)."""

    def __init__(self, server: Gafferd) -> None:
        self.server = server
        self.busy = False
        self.handovers = 0  # hand-overs this gafferd came through (its lives minus one)
        self.started_at = time.time()  # when the first of its lives started
        self.last: dict[str, Any] | None = None  # the last hand-over: its timings

    async def restart(self) -> dict[str, Any]:
        """Check the new gafferd, then hand over (soon after the answer is sent).
        Raises HandoverError when the check fails or a hand-over is under way."""
        if self.busy:
            raise HandoverError("a restart is already under way")
        self.busy = True
        try:
            await self.check()
        except BaseException:
            self.busy = False
            raise
        manager = self.server.manager
        assert manager is not None
        # after the answer of the request that asked (the next loop turns send it)
        manager.loop.call_later(0.05, lambda: manager.loop.create_task(self.hand_over()))
        return {"pid": os.getpid(), "processes": len(manager.running), "handovers": self.handovers}

    def state(self) -> dict[str, Any]:
        """What ``GET /daemon/state`` shows."""
        server = self.server
        manager = server.manager
        return {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "handovers": self.handovers,
            "last_handover": self.last,
            "processes": len(manager.running) if manager is not None else 0,
            "on_daemon_crash": server.effective.values.get("on_daemon_crash", "stop"),
            **server.recorded_state(),
        }

    def on_signal(self) -> None:
        """SIGUSR2."""
        manager = self.server.manager
        assert manager is not None

        async def run() -> None:
            logger.info("SIGUSR2: restarting gafferd in place, keeping its processes")
            try:
                await self.restart()
            except HandoverError as exc:
                logger.error("SIGUSR2: not restarted: %s", exc)

        manager.loop.create_task(run())

    async def check(self) -> None:
        """Run the new gafferd with ``--check-config``: its code must import and its
        configuration be valid, else nothing is handed over."""
        import asyncio  # here: gafferd decides on ssl before asyncio loads (withoutssl.py)

        env = {key: value for key, value in os.environ.items() if key != ENV}
        try:
            proc = await asyncio.create_subprocess_exec(
                *command_line(),
                "--check-config",
                "--lenient",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            raise HandoverError(f"cannot run the new gafferd: {exc}") from None
        try:
            _, err = await asyncio.wait_for(proc.communicate(), CHECK_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise HandoverError(
                f"the new gafferd did not check its configuration within {CHECK_TIMEOUT:g} s"
            ) from None
        if proc.returncode != 0:
            reason = err.decode(errors="replace").strip().splitlines()
            raise HandoverError(
                f"the new gafferd refuses to start (exit {proc.returncode}): "
                f"{reason[-1] if reason else 'no message'}"
            )

    async def hand_over(self) -> None:
        from gaffer.core.handover import inheritable  # here: it imports asyncio

        server = self.server
        manager = server.manager
        assert manager is not None
        began = time.monotonic()
        http = server.http
        fds: list[int] = []
        frozen = False
        try:
            if server.recorder is not None:
                server.recorder.flush()  # what the operator asked just now is on disk
            if http is not None:
                await http.hand_over(DRAIN_TIMEOUT)
            frozen_at = time.monotonic()
            state, fds = manager.freeze()
            frozen = True
            description = self.describe(state, began, frozen_at)
            fds += description["gafferd"]["fds"]
            memfd = _write(description)
            fds.append(memfd)
            inheritable(fds)
            logger.info(
                "handing over to a new gafferd: %d job(s), %d process(es)",
                len(state["jobs"]),
                len(manager.running),
            )
            signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
            if server._log is not None:
                server._log.pause()  # every line written before the exec
            # the moment of the exec rides along: the new gafferd tells where time went
            env = {**os.environ, ENV: f"{memfd}:{time.monotonic()!r}"}
            os.execve(sys.executable, command_line(), env)
        except Exception as exc:  # the exec failed: this gafferd goes on
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
            if server._log is not None:
                server._log.resume()
            logger.error("hand-over failed, gafferd goes on: %s", exc)
            inheritable(fds, False)
            if frozen:
                manager.thaw()
            if http is not None:
                http.resume()
            self.busy = False

    def describe(self, manager_state: dict[str, Any], began: float, frozen_at: float) -> dict:
        """The whole description: the manager's, and gafferd's own."""
        server = self.server
        sockets = list(server._sockets)
        fds = [sock.fileno() for sock in sockets]
        pidfile_fd = server.pidfile.fd if server.pidfile is not None else -1
        if pidfile_fd >= 0:
            fds.append(pidfile_fd)
        from gaffer.http import binding

        return {
            "format": FORMAT,
            "manager": manager_state,
            "gafferd": {
                "handovers": self.handovers + 1,
                "started_at": self.started_at,
                "began": began,
                "frozen_at": frozen_at,
                "sockets": [[sock.fileno(), binding.bound_address(sock)] for sock in sockets],
                "pidfile": [server.effective.pidfile, pidfile_fd],
                "file_jobs": [_spec(spec) for spec in server.file_jobs.values()],
                # the cluster's lease goes on: the node keeps its name and claims
                "cluster_lease": getattr(server.cluster, "_lease", 0) if server.cluster else 0,
                "settings": [dict(server.effective.values), dict(server.effective.origins)],
                "config": [server.config.path, server.config.directory],
                "fds": fds,
            },
        }


def _spec(spec: JobSpec) -> dict[str, Any]:
    return {
        "session": spec.session,
        "config": spec.config.to_dict(),
        "start": spec.start,
        "origin": spec.origin,
    }


def file_jobs(records: list[dict[str, Any]]) -> dict[str, JobSpec]:
    specs = [
        JobSpec(r["session"], ProcessConfig.from_dict(r["config"]), r["start"], r["origin"])
        for r in records
    ]
    return {spec.id: spec for spec in specs}


def _write(description: dict[str, Any]) -> int:
    data = json.dumps(description, separators=(",", ":")).encode()
    fd = os.memfd_create("gafferd-handover", 0)  # no MFD_CLOEXEC: it crosses the exec
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def receive() -> dict[str, Any] | None:
    """In a new gafferd: the description its previous life left (None: a plain start).
    The variable is removed, so that nothing gafferd starts inherits it."""
    text = os.environ.pop(ENV, None)
    if text is None:
        return None
    fd_text, _, exec_at = text.partition(":")
    try:
        with os.fdopen(int(fd_text), "rb") as handle:
            description = json.loads(handle.read())
    except (OSError, ValueError) as exc:
        raise HandoverError(f"cannot read the hand-over of the previous gafferd: {exc}") from None
    if description.get("format") != FORMAT:
        raise HandoverError(f"unknown hand-over format {description.get('format')!r}")
    if exec_at:
        description["timings"] = {"exec": float(exec_at)}
    return description


def unblock_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)


def adopt_sockets(records: list[list[Any]], effective: Any) -> list[socket.socket]:
    """The listening sockets of the previous gafferd, for the addresses ``bind`` still
    names (a port 0 keeps the port it got); addresses new to ``bind`` are bound now,
    sockets of addresses it no longer names are closed. Errors are logged: this gafferd
    must go on with what it has."""
    from gaffer.http import binding

    inherited: dict[str, socket.socket] = {}
    for fd, address in records:
        sock = socket.socket(fileno=fd)
        sock.set_inheritable(False)
        inherited[address] = sock
    sockets = []
    for text in effective.bind:
        address = binding.parse_address(text)
        key = str(address)
        if address.kind == "tcp" and not address.port:  # "any port": the one it got
            prefix = key[: key.rindex(":") + 1]
            key = next((name for name in inherited if name.startswith(prefix)), key)
        sock = inherited.pop(key, None)
        if sock is None:
            try:
                sock = binding.bind(address, effective.backlog)
            except OSError as exc:
                logger.error("cannot bind %s: %s", text, exc.strerror or exc)
                continue
        sockets.append(sock)
    for sock in inherited.values():  # no longer in bind
        binding.close(sock)
    return sockets
