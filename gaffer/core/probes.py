"""Probes: is a process ready, is it healthy. ``tcp:PORT``, ``http:URL`` and
``exec:COMMAND``, each a coroutine bounded by its own timeout, so a probe that hangs costs
nothing but that timeout and never blocks the loop.

* ``tcp:PORT`` or ``tcp:HOST:PORT``: a TCP connection is accepted (host 127.0.0.1);
* ``http:URL``: ``GET URL`` answers 2xx (``http://`` is added when missing; plain HTTP);
* ``exec:COMMAND``: ``/bin/sh -c COMMAND`` exits 0 (in the process's directory and
  environment, in a process group of its own, killed with it at the timeout).

``$PORT`` and the process's other variables are replaced in the target first, so
``tcp:$PORT`` follows each instance's port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gaffer.core.probespec import ProbeSpec, tcp_address
from gaffer.core.spawn import Command, spawn, substitute
from gaffer.errors import SpawnError

MAX_REASON = 200  # characters of a reason kept (a probe's output can be anything)


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    reason: str


Watch = Callable[[int, Callable[[int, int], None]], object]  # (pid, on_exit) -> handle


async def run(
    spec: ProbeSpec,
    env: Mapping[str, str],
    cwd: str | None,
    seconds: float,
    watch: Watch,
    guard: Callable[[int, bool], None] | None = None,
) -> Result:
    """One probe, at most ``seconds`` long. ``watch`` reaps an exec probe's process
    (the manager's child watcher); ``guard(pgid, added)`` registers its group."""
    try:
        target = substitute(spec.target, env, spec.kind)
    except SpawnError as exc:
        return Result(False, str(exc))
    try:
        if spec.kind == "tcp":
            return await asyncio.wait_for(_tcp(target), seconds)
        if spec.kind == "http":
            return await asyncio.wait_for(_http(target), seconds)
        return await _exec(target, env, cwd, seconds, watch, guard)
    except TimeoutError:
        return Result(False, f"{spec.kind}: no answer within {seconds:g}s")
    except OSError as exc:
        return Result(False, f"{spec.kind}: {exc.strerror or exc}")


async def _tcp(target: str) -> Result:
    try:
        host, port = tcp_address(target)
    except ValueError as exc:
        return Result(False, str(exc))
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Result(True, f"tcp: {host}:{port} accepts connections")


async def _http(target: str) -> Result:
    import urllib.parse  # here: only an http probe needs it (docs/design.md#memory)

    url = target if "://" in target else f"http://{target}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return Result(False, f"http: expected http://host[:port]/path, got {target!r}")
    port = parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.open_connection(parts.hostname, port)
    try:
        host = parts.netloc.rpartition("@")[2]
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: gaffer-probe\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    words = line.decode("latin-1").split()
    if len(words) < 2 or not words[1].isdigit():
        return Result(False, f"http: not an HTTP answer: {line[:60]!r}")
    status = int(words[1])
    return Result(200 <= status < 300, f"http: GET {url} answered {status}")


async def _exec(
    command: str,
    env: Mapping[str, str],
    cwd: str | None,
    seconds: float,
    watch: Watch,
    guard: Callable[[int, bool], None] | None,
) -> Result:
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[tuple[int, int]] = loop.create_future()
    argv = ("/bin/sh", "-c", command)
    pid = spawn(
        Command("/bin/sh", argv, env, cwd, None, None, None),
        stdin=None,
        stdout=_devnull(),
        stderr=_devnull(),
    )
    watch(pid, lambda status, sig: exited.done() or exited.set_result((status, sig)))
    if guard is not None:
        guard(pid, True)
    try:
        status, sig = await asyncio.wait_for(asyncio.shield(exited), seconds)
    except TimeoutError:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        await exited  # reaped by the watcher: never a zombie
        return Result(False, f"exec: {command[:MAX_REASON]!r} still running after {seconds:g}s")
    except asyncio.CancelledError:  # its process stopped, or the manager: the probe goes too
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(exited), 1.0)
        raise
    finally:
        if guard is not None:
            guard(pid, False)
    if sig:
        return Result(False, f"exec: killed by signal {sig}")
    return Result(status == 0, f"exec: exit {status}")


_DEVNULL: int | None = None


def _devnull() -> int:
    """One descriptor on /dev/null for every probe's output (never closed)."""
    global _DEVNULL
    if _DEVNULL is None:
        _DEVNULL = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    return _DEVNULL
