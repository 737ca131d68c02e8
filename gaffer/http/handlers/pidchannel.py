"""``/<pid>/channel[/<stream>]?mode=N``: a process's input and output over a WebSocket.

Frames are binary, ``V1 <type> <id>\\0<body>`` (gaffer/wire.py). ``mode`` is a
bitmask: 1 readable, 2 writable, 3 both (the default).

* Without a stream, the channel reads the process's first output label and writes its
  stdin. With a stream: one of its output labels (read it; writes go to stdin), a custom
  stream (read and write it), or ``stdin`` (write only).
* The key needs read on the job to read, write on the job to write. When keys are
  required and the handshake had no ``X-Api-Key`` header, the first frame is
  ``AUTH:<key>``.
* The client's ``message`` frames are written to the target and answered with a
  ``response`` frame of the same id, body ``OK``. Output comes as ``message`` frames (raw
  bytes, a new id each).
* Errors are ``error`` frames, body ``{"error": CODE, "errno": N, "reason": TEXT}``, id
  the request's or ``gaffer_error``: 400 ``EINVAL`` (bad mode, bad frame), 401
  ``AUTH_REQUIRED``, 403 ``FORBIDDEN`` (the key), 403 ``EPERM`` (a mode the target does
  not allow: reading a process without captured output, writing without stdin, or a write
  on a read-only channel), 404 ``ENOENT`` (no such pid or stream), 500 ``EIO`` (the write
  failed). The errors of opening close the channel; those of a write do not.
* The channel closes (1000) when the process exits, after its last output. A client too
  slow to read loses the newer output and gets an error frame, id ``gaffer_dropped``, body
  ``{"error": "dropped", "bytes": n, "frames": n}`` where the gap is.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from gaffer.errors import GafferError, PermissionDenied, ProcessError
from gaffer.http.commands import authorize
from gaffer.http.handlers.base import Op, RequestError, as_pid
from gaffer.http.handlers.channel import POLICY_VIOLATION, WebSocketBase
from gaffer.http.outbox import Outbox
from gaffer.wire import DROPPED_ID, ERROR_ID, FrameError, decode_frame, encode_frame, new_id

logger = logging.getLogger("gaffer.http")

READABLE, WRITABLE = 1, 2
NORMAL_CLOSURE = 1000


class ChannelError(GafferError):
    def __init__(self, errno: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.errno, self.code, self.reason = errno, code, reason


class PidChannelHandler(WebSocketBase):
    ops = {
        "get": Op(
            "A process's output and input over a WebSocket of binary frames "
            "'V1 <message|response|error> <id>\\0<body>'; it closes when the process exits",
            permission="read on its job to read, write to write; a key in X-Api-Key or an "
            "AUTH:<key> first frame when keys are required",
            statuses=(101, 400, 403, 426),
            params={"mode": "1 readable, 2 writable, 3 both (default)"},
        )
    }

    def initialize(self, **kwargs: Any) -> None:
        super().initialize(**kwargs)
        self.proc: Any = None
        self.read_label: str | None = None
        self.write_to: str | None = None  # "stdin", a custom stream label, or None
        self.listening: str | None = None
        self.exit_event: str | None = None
        self.ready = False
        self.first = True

    # -- life ------------------------------------------------------------------------------
    async def prepare(self) -> None:
        await super().prepare()
        pid = self.path_kwargs.get("pid") or (self.path_args[0] if self.path_args else "")
        as_pid(pid)  # a pid no int can hold: 404 before the upgrade

    async def open(self, pid: str, stream: str | None = None) -> None:
        self.pid, self.stream_name = int(pid), stream  # checked by prepare
        self.start_writer(Outbox(self._send, self._gap))
        if self.identified:
            self.setup()

    def on_close(self) -> None:
        self.stop_writer()
        self.teardown()

    def setup(self) -> None:
        try:
            self._setup()
        except ChannelError as exc:
            self.teardown()
            self.error_frame(exc.errno, exc.code, exc.reason)
            self.close_after_writes(POLICY_VIOLATION, exc.code)
            return
        self.ready = True

    def _setup(self) -> None:
        mode = self._mode()
        try:
            proc = self.manager.get_process(self.pid)
        except ProcessError:
            raise ChannelError(404, "ENOENT", f"no running process with pid {self.pid}") from None
        for command, bit in (("read_output", READABLE), ("send", WRITABLE)):
            if mode & bit:  # the rights of the one table (gaffer/http/commands.py)
                try:
                    authorize(command, self.manager, self.permissions, {"pid": proc.pid})
                except PermissionDenied as exc:
                    raise ChannelError(403, "FORBIDDEN", str(exc)) from None
        read_label, write_to = self._targets(proc)
        explicit = self.get_query_argument("mode", None) is not None
        if mode & READABLE and read_label is None:
            if explicit or not write_to:
                raise ChannelError(403, "EPERM", self._why_not("read", proc))
            mode &= ~READABLE
        if mode & WRITABLE and write_to is None:
            if explicit or not read_label:
                raise ChannelError(403, "EPERM", self._why_not("write", proc))
            mode &= ~WRITABLE
        self.proc, self.mode = proc, mode
        self.read_label = read_label if mode & READABLE else None
        self.write_to = write_to if mode & WRITABLE else None
        self.exit_event = f"proc.{proc.pid}.exit"
        self.manager.events.subscribe(self.exit_event, self._on_exit)
        if self.read_label is not None:
            proc.monitor_io(self.read_label, self._on_output)
            self.listening = self.read_label
        if proc.pid not in self.manager.running:  # it exited before we listened
            self._on_exit("exit", {})

    def _mode(self) -> int:
        text = self.get_query_argument("mode", "3")
        if text not in ("1", "2", "3"):
            raise ChannelError(
                400, "EINVAL", f"mode must be 1 (read), 2 (write) or 3 (both), got {text[:20]!r}"
            )
        return int(text)

    def _targets(self, proc: Any) -> tuple[str | None, str | None]:
        """(the label to read, where writes go) for the stream of the path."""
        outputs = [label for label in proc.output_labels if label]
        stdin = "stdin" if proc.config.redirect_input else None
        stream = self.stream_name
        if stream is None:
            return (outputs[0] if outputs else None), stdin
        if stream in outputs:
            return stream, stdin
        if stream in proc.config.custom_streams:
            return stream, stream
        if stream == "stdin":
            return None, stdin
        known = [*outputs, *proc.config.custom_streams] + (["stdin"] if stdin else [])
        raise ChannelError(
            404,
            "ENOENT",
            f"pid {proc.pid} has no stream {stream!r}; it has {', '.join(known) or 'none'}",
        )

    def _why_not(self, what: str, proc: Any) -> str:
        if what == "read":
            return (
                f"pid {proc.pid} ({proc.name}) has no captured output to read"
                + (f" on {self.stream_name!r}" if self.stream_name else "")
                + ": load it with redirect_output, or open the channel with mode=2"
            )
        return (
            f"pid {proc.pid} ({proc.name}) has no stdin to write: load it with "
            "redirect_input, or open the channel with mode=1"
        )

    def teardown(self) -> None:
        if self.proc is not None and self.listening is not None:
            self.proc.unmonitor_io(self.listening, self._on_output)
            self.listening = None
        if self.exit_event is not None:
            self.manager.events.unsubscribe(self.exit_event, self._on_exit)
            self.exit_event = None

    def _on_exit(self, evtype: str, msg: Any) -> None:
        """The process is gone (its last output was delivered before): close once written."""
        self.teardown()
        self.close_after_writes(NORMAL_CLOSURE, "process exited")

    # -- frames ----------------------------------------------------------------------------
    @staticmethod
    def _gap(count: int, size: int) -> bytes:
        body = json.dumps({"error": "dropped", "bytes": size, "frames": count})
        return encode_frame("error", DROPPED_ID, body)

    def _on_output(self, label: str, msg: dict[str, Any]) -> None:
        if self.outbox is None or self.closing:
            return
        data = msg["data"]
        self.outbox.offer(lambda: encode_frame("message", new_id(), data), len(data))

    def error_frame(self, errno: int, code: str, reason: str, frame_id: str = ERROR_ID) -> None:
        if self.outbox is not None:
            body = json.dumps({"error": code, "errno": errno, "reason": reason})
            self.outbox.offer(lambda: encode_frame("error", frame_id, body), urgent=True)

    async def on_message(self, message: str | bytes) -> None:
        if self.closing:
            return
        data = message.encode() if isinstance(message, str) else message
        first, self.first = self.first, False
        if first and self.identified and data.startswith(b"AUTH:"):
            # a client that always sends its key: who it is may change what it may do
            self.identified = False
            self.teardown()
            self.ready = False
        if not self.identified:
            if data.startswith(b"AUTH:"):
                error = await self.identify(data[5:].decode(errors="replace").strip())
            else:
                error = RequestError(
                    401,
                    "unauthorized",
                    "this gafferd requires an API key: send AUTH:<key> as the first frame",
                )
            if error is not None:
                code = "AUTH_REQUIRED" if error.status == 401 else "FORBIDDEN"
                self.error_frame(error.status, code, error.api_reason)
                self.close_after_writes(POLICY_VIOLATION, code)
                return
            self.setup()
            return
        if not self.ready:
            return
        try:
            frame = decode_frame(data)
        except FrameError as exc:
            self.error_frame(400, "EINVAL", f"not a frame: {exc}")
            return
        if frame.type != "message":
            self.error_frame(400, "EINVAL", f"expected a message frame, got {frame.type}", frame.id)
            return
        self.write_input(frame.id, frame.body)

    def write_input(self, frame_id: str, body: bytes) -> None:
        if self.write_to is None:
            self.error_frame(403, "EPERM", "this channel is not writable (mode)", frame_id)
            return
        proc = self.proc
        try:
            if self.write_to == "stdin":
                proc.write(body)
            else:
                stream = proc.streams.get(self.write_to)
                if stream is None:
                    raise BrokenPipeError(f"stream {self.write_to!r} is closed")
                stream.write(body)
        except (OSError, ProcessError) as exc:
            self.error_frame(500, "EIO", f"cannot write to {self.write_to}: {exc}", frame_id)
            return
        if self.outbox is not None:
            self.outbox.offer(lambda: encode_frame("response", frame_id, b"OK"), urgent=True)
