"""A process's descriptors: its stdio pipes, custom streams and channels, made at spawn.

``make_stdio`` builds everything a child gets at fd 0, 1, 2, 3... and the ends gaffer
keeps, recording each descriptor as soon as it exists so that a failure half-way (no
descriptors left) closes all of them. ``Stream`` is a custom stream of a running process.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gaffer.core.config import ProcessConfig
from gaffer.core.logfile import Writer
from gaffer.core.pipes import PipeReader, PipeWriter, capture_pipe, release_capture_pipes

if TYPE_CHECKING:
    from gaffer.core.process import Process

IOListener = Callable[[str, dict], object]


@dataclass
class Stdio:
    """What one spawn needs: the child's descriptors and the ends gaffer reads and writes."""

    stdin: int | None = None  # None: /dev/null
    stdout: int | None = None  # None: gaffer's own
    stderr: int | None = None
    stdin_w: int = -1  # our end of the stdin pipe
    extra: list[int] = field(default_factory=list)  # the child's fd 3, 4, ...
    mapped: list[tuple[int, int]] = field(default_factory=list)  # (the child's fd N, ours)
    ready_read: int = -1  # our end of the ``ready = fd:N`` pipe
    child: list[int] = field(default_factory=list)  # closed here once the child has them
    # to read: (label, our end, log writer, "stdout" or "stderr")
    outputs: list[tuple[str, int, Writer | None, str]] = field(default_factory=list)
    sockets: list[tuple[str, int, socket.socket, socket.socket]] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)  # every descriptor made, for failures
    enlarged: int = 0  # capture pipes given a bigger buffer (a global budget)

    def close_all(self) -> None:
        """A spawn that failed: close everything made for it."""
        close_fds(self.opened)
        self.close_sockets()

    def close_sockets(self) -> None:
        for _, _, ours, theirs in self.sockets:
            ours.close()
            theirs.close()
        release_capture_pipes(self.enlarged)
        self.enlarged = 0


def make_stdio(
    config: ProcessConfig,
    labels: tuple[str | None, str | None],
    writers: tuple[Writer | None, Writer | None],
) -> Stdio:
    """The descriptors of a process of ``config`` whose stdout/stderr are captured under
    ``labels`` (None: inherited) and logged by ``writers``. Raises OSError (EMFILE...),
    having closed whatever it made."""
    stdio = Stdio()
    try:
        _fill(stdio, config, labels, writers)
    except BaseException:
        stdio.close_all()
        raise
    return stdio


def _fill(
    stdio: Stdio,
    config: ProcessConfig,
    labels: tuple[str | None, str | None],
    writers: tuple[Writer | None, Writer | None],
) -> None:
    opened = stdio.opened
    if config.redirect_input:
        read_fd, stdio.stdin_w = os.pipe()
        opened += [read_fd, stdio.stdin_w]
        stdio.stdin = read_fd
        stdio.child.append(read_fd)
    out_label, err_label = labels
    out_writer, err_writer = writers
    if out_label is not None:
        read_fd, stdio.stdout, enlarged = capture_pipe()
        opened += [read_fd, stdio.stdout]
        stdio.enlarged += enlarged
        stdio.child.append(stdio.stdout)
        stdio.outputs.append((out_label, read_fd, out_writer, "stdout"))
    if err_label is not None and err_label == out_label:
        stdio.stderr = stdio.stdout  # the same label twice: stderr merged into stdout
    elif err_label is not None:
        read_fd, stdio.stderr, enlarged = capture_pipe()
        opened += [read_fd, stdio.stderr]
        stdio.enlarged += enlarged
        stdio.child.append(stdio.stderr)
        stdio.outputs.append((err_label, read_fd, err_writer, "stderr"))
    if config.detach:  # no pipe may tie a detached process to gaffer: it writes its logs
        for key, path in (("stdout", config.stdout_logfile), ("stderr", config.stderr_logfile)):
            if path is not None:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                opened.append(fd)
                stdio.child.append(fd)
                setattr(stdio, key, fd)
    for index, label in enumerate(config.custom_streams):
        ours, theirs = socket.socketpair()
        stdio.sockets.append((label, 3 + index, ours, theirs))
        stdio.extra.append(theirs.fileno())
    stdio.extra.extend(ch if isinstance(ch, int) else ch.fileno() for ch in config.custom_channels)
    if config.ready is not None and config.ready.kind == "fd":  # s6's readiness: a newline
        read_fd, write_fd = os.pipe()
        opened += [read_fd, write_fd]
        stdio.ready_read = read_fd
        stdio.mapped.append((int(config.ready.target), write_fd))
        stdio.child.append(write_fd)


def close_fds(fds: Iterable[int]) -> None:
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass  # already closed by a reader or writer that took it


def output_labels(
    config: ProcessConfig, writers: tuple[Writer | None, Writer | None]
) -> tuple[str | None, str | None]:
    """The labels of stdout and stderr when they are captured (None: inherited).

    Captured when ``redirect_output`` names them, or when a log file wants them (then
    labelled ``stdout`` / ``stderr``). The same label twice merges stderr into stdout.
    """
    labels = config.redirect_output
    out = labels[0] if labels else ("stdout" if writers[0] is not None else None)
    if len(labels) == 2:
        err = labels[1]
    else:
        err = "stderr" if writers[1] is not None else None
    return out, err


def to_bytes(data: bytes | str) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"expected bytes or str, got {type(data).__name__}")


class Stream:
    """A custom stream of a process: a bidirectional channel at fd 3, 4, ... in the child."""

    def __init__(self, process: Process, label: str, child_fd: int, sock: socket.socket):
        self.label = label
        self.id = child_fd
        self._process = process
        self._sock = sock
        loop = process.loop
        self._writer = PipeWriter(loop, sock.fileno(), owns_fd=False)
        self._reader = PipeReader(
            loop,
            sock.fileno(),
            lambda data: process.dispatch(label, data),
            self._closed,
            owns_fd=False,
        )

    def write(self, data: bytes | str) -> None:
        self._process.call_on_loop(self._write, to_bytes(data))

    def writelines(self, lines: Iterable[bytes | str]) -> None:
        self.write(b"".join(to_bytes(line) for line in lines))

    def _write(self, data: bytes) -> None:
        if self._writer.closed:
            raise BrokenPipeError(f"stream {self.label!r} of pid {self._process.pid} is closed")
        self._writer.write(data)

    def subscribe(self, listener: IOListener) -> None:
        self._process.monitor_io(self.label, listener)

    def unsubscribe(self, listener: IOListener) -> None:
        self._process.unmonitor_io(self.label, listener)

    def _closed(self) -> None:
        # both ends stop watching the shared descriptor before the socket closes it
        self._writer.close()
        self._sock.close()

    def close(self) -> None:
        if not self._reader.closed:
            self._reader.drain()
