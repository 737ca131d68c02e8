"""Job options as text (an ini file, a command line) to Python values: each converter takes
the text and the directory relative paths are read from, and raises ValueError saying
what it expected. options.py names which converter each option uses.
"""

from __future__ import annotations

import math
import os

from gaffer.core.flapping import OFF


def text_bool(value: str, base: str = "") -> bool:
    word = value.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def text_int(value: str, base: str = "") -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError("expected an integer") from None


def text_seconds(value: str, base: str = "") -> float:
    try:
        seconds = float(value.strip())
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("expected a number of seconds >= 0")
    return seconds


def text_words(value: str, base: str = "") -> list[str]:
    return [word for word in value.replace(",", " ").split() if word]


def text_path(value: str, base: str = "") -> str:
    return os.path.join(base, os.path.expanduser(value.strip()))


def text_logfile(value: str, base: str = "") -> str:
    value = value.strip()
    return value if value == "-" or value.startswith("syslog") else text_path(value, base)


def as_is(value: str, base: str = "") -> str:
    return value


def off_or_text(value: str, base: str = "") -> str | None:
    return None if not value.strip() or value.strip().lower() in OFF else value


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE_SUFFIXES = {"", "b", *(unit + tail for unit in "kmg" for tail in ("", "b", "ib"))}


def text_size(value: str, base: str = "") -> int:
    """``1048576``, ``512KB``, ``50 MiB``, ``1G``: bytes (K, M, G are powers of 1024)."""
    text = value.strip().lower().replace(" ", "")
    digits = text.rstrip("kmgib")
    unit = text[len(digits) :]
    if not digits.isdigit() or unit not in _SIZE_SUFFIXES:
        raise ValueError("expected a size in bytes, like 1048576, 512KB or 50MB")
    return int(digits) * _SIZE_UNITS[unit[:1]]


def text_rlimits(value: str, base: str = "") -> dict[str, str]:
    """``nofile=4096, core=0, as=unlimited``."""
    limits = {}
    for item in text_words(value):
        name, sep, amount = item.partition("=")
        if not sep:
            raise ValueError(f"expected NAME=VALUE pairs (nofile=4096, core=0), got {item!r}")
        limits[name.strip()] = amount.strip()
    return limits


def text_size_or_off(value: str, base: str = "") -> int:
    """A size, or ``off`` (0: no limit)."""
    return 0 if value.strip().lower() in OFF else text_size(value)
