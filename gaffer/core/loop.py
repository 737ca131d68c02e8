"""Which event loop gaffer runs on: uvloop (libuv) by default, the stdlib loop on request.

``GAFFER_LOOP=asyncio`` (or ``gafferd --loop asyncio``) selects the stdlib loop; both run
the same asyncio code.
"""

from __future__ import annotations

import asyncio
import os

LOOP_KINDS = ("uvloop", "asyncio")
DEFAULT_LOOP = "uvloop"


def loop_kind(kind: str | None = None) -> str:
    kind = (kind or os.environ.get("GAFFER_LOOP") or DEFAULT_LOOP).strip().lower()
    if kind not in LOOP_KINDS:
        raise ValueError(f"unknown event loop {kind!r}: expected one of {', '.join(LOOP_KINDS)}")
    if kind == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
            return "asyncio"
    return kind


def new_event_loop(kind: str | None = None) -> asyncio.AbstractEventLoop:
    if loop_kind(kind) == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()
