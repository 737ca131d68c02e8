"""The frames of a process's IO channel (``/<pid>/channel[/<stream>]``), as both ends
speak them::

    V1 <type> <id>\\0<body>

``type`` is ``message`` (data), ``response`` (the answer to a client's ``message``, body
``OK``) or ``error`` (body ``{"error": CODE, "errno": N, "reason": TEXT}``); ``id`` is a
word (a uuid4 hex by default) tying a response or an error to its request.

This module imports nothing of gaffer: the server (``gaffer.http``) and the client
(``gaffer.client``) share it without the client loading the server.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from gaffer.errors import ProtocolError

VERSION = b"V1"
FRAME_TYPES = ("message", "response", "error")
MAX_ID_LENGTH = 128

#: ids of the frames the server sends on its own (not in answer to a request)
ERROR_ID = "gaffer_error"
DROPPED_ID = "gaffer_dropped"


class FrameError(ProtocolError):
    """Bytes that are not a ``V1 <type> <id>\\0<body>`` frame."""


@dataclass(frozen=True)
class Frame:
    type: str
    id: str
    body: bytes = b""

    def encode(self) -> bytes:
        return encode_frame(self.type, self.id, self.body)


def new_id() -> str:
    return secrets.token_hex(16)


def encode_frame(kind: str, frame_id: str, body: bytes | str = b"") -> bytes:
    """``V1 <kind> <frame_id>\\0<body>``; ``body`` may be text (sent as UTF-8)."""
    if kind not in FRAME_TYPES:
        raise FrameError(f"unknown frame type {kind!r}")
    _check_id(frame_id)
    if isinstance(body, str):
        body = body.encode()
    return b"%s %s %s\0%s" % (VERSION, kind.encode(), frame_id.encode(), body)


def decode_frame(data: bytes | str) -> Frame:
    """Parse a frame; raise FrameError saying what is wrong."""
    if isinstance(data, str):
        data = data.encode()
    head, sep, body = data.partition(b"\0")
    if not sep:
        raise FrameError("no NUL byte between the header and the body")
    if len(head) > 2 * MAX_ID_LENGTH:
        raise FrameError("the header is too long")
    try:
        parts = head.decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise FrameError("the header is not ASCII") from None
    if len(parts) != 3:
        raise FrameError("the header must be 'V1 <type> <id>'")
    version, kind, frame_id = parts
    if version != VERSION.decode():
        raise FrameError(f"unknown version {version!r} (expected V1)")
    if kind not in FRAME_TYPES:
        raise FrameError(f"unknown frame type {kind!r} (expected {', '.join(FRAME_TYPES)})")
    _check_id(frame_id)
    return Frame(kind, frame_id, body)


def _check_id(frame_id: str) -> None:
    if (
        not frame_id
        or len(frame_id) > MAX_ID_LENGTH
        or not frame_id.isascii()
        or not frame_id.isprintable()
        or " " in frame_id
    ):
        raise FrameError(f"bad frame id {frame_id[:MAX_ID_LENGTH]!r}: a word of printable ASCII")
