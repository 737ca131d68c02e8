"""How the command line shows things: tables, key/values, colours, durations, sizes.

Colours only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

COLORS = ("36", "33", "32", "35", "34", "31")


def use_colors(stream: IO[str], forced_off: bool = False) -> bool:
    if forced_off or os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Output:
    """Everything a command prints goes through here (so --json and colours apply)."""

    def __init__(
        self, json_output: bool = False, no_color: bool = False, stream: IO[str] | None = None
    ) -> None:
        self.stream = stream or sys.stdout
        self.json = json_output
        self.colors = use_colors(self.stream, no_color)
        self._palette: dict[str, str] = {}

    def write(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def data(self, value: Any) -> None:
        """Machine output: JSON, one document per call."""
        self.write(json.dumps(value, default=str))

    def color(self, text: str, key: str | None = None, code: str | None = None) -> str:
        if not self.colors:
            return text
        if code is None:
            key = key or text
            code = self._palette.setdefault(key, COLORS[len(self._palette) % len(COLORS)])
        return f"\x1b[{code}m{text}\x1b[0m"

    def bold(self, text: str) -> str:
        return self.color(text, code="1")

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None
    ) -> None:
        """A table fitting the terminal: columns are dropped from the right when it is
        too narrow (the first two always stay). Piped into another program (no terminal,
        no COLUMNS), every column is kept."""
        cells = [[str(cell) for cell in row] for row in rows]
        widths = [
            max([len(headers[i])] + [len(row[i]) for row in cells]) for i in range(len(headers))
        ]
        limit = width or terminal_width(self.stream)
        shown = len(headers)
        while shown > 2 and sum(widths[:shown]) + 2 * (shown - 1) > limit:
            shown -= 1
        self.write(
            self.bold(
                "  ".join(
                    h.ljust(w) for h, w in zip(headers[:shown], widths, strict=False)
                ).rstrip()
            )
        )
        for row in cells:
            self.write(
                "  ".join(c.ljust(w) for c, w in zip(row[:shown], widths, strict=False)).rstrip()
            )

    def pairs(self, values: dict[str, Any]) -> None:
        width = max((len(key) for key in values), default=0)
        for key, value in values.items():
            if isinstance(value, dict | list):
                value = json.dumps(value)
            self.write(f"{key.ljust(width)}  {value}")


def terminal_width(stream: IO[str] | None = None) -> float:
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    try:
        if stream is not None and not stream.isatty():
            return float("inf")  # a pipe or a file: a script wants every column
    except (AttributeError, ValueError):
        pass
    return shutil.get_terminal_size((100, 24)).columns


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def uptime(create_time: float | None) -> str:
    return duration(None if create_time is None else time.time() - create_time)


def size(count: float | None) -> str:
    if count is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if count < 1024 or unit == "G":
            return f"{count:.0f}{unit}" if unit == "B" else f"{count:.1f}{unit}"
        count /= 1024
    return f"{count:.1f}T"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"
