"""Converters of gafferd's settings: a string (ini file, environment, command line) to a
value; a ValueError says what is wrong (settings.py adds the setting and where it came
from)."""

from __future__ import annotations

import os
from collections.abc import Callable

from gaffer.http.binding import parse_address


def to_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def to_int(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise ValueError("expected an integer") from None


def to_count(text: str) -> int:
    value = to_int(text)
    if value < 0:
        raise ValueError("expected an integer >= 0")
    return value


def to_positive_int(text: str) -> int:
    value = to_int(text)
    if value < 1:
        raise ValueError("expected an integer >= 1")
    return value


def to_limit(text: str | int | None) -> int | None:
    """An integer >= 1, or no limit: ``0``, ``off``, ``none``."""
    if text is None or str(text).strip().lower() in ("0", "off", "none", "no", "false"):
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError("expected an integer >= 1, or 0 or off for no limit") from None
    if value < 0:
        raise ValueError("expected an integer >= 1, or 0 or off for no limit")
    return value


def to_seconds(text: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if value < 0 or value != value:
        raise ValueError("expected a number of seconds >= 0")
    return value


def to_path(text: str) -> str | None:
    value = str(text).strip()
    return os.path.expanduser(value) if value else None


def to_text(text: str) -> str:
    return str(text).strip()


def choice(*allowed: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        value = str(text).strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return convert


def to_words(text: str | list[str]) -> list[str]:
    """``a b``, ``a, b`` or a list (repeated flags) to a list of words."""
    if isinstance(text, list):
        words = [word for item in text for word in to_words(item)]
    else:
        words = [word for word in str(text).replace(",", " ").split() if word]
    return words


def to_binds(text: str | list[str]) -> list[str]:
    binds = to_words(text)
    if not binds:
        raise ValueError("expected at least one address")
    for bind in binds:
        parse_address(bind)  # raises ValueError naming what is wrong
    return binds


# the cluster's converters import gaffer.cluster only when a cluster setting is given
def to_cluster(text: str) -> str | None:
    value = str(text).strip()
    if not value:
        return None
    from gaffer.cluster.etcd import parse_endpoints

    parse_endpoints(value)  # raises ValueError saying what is wrong
    return value


def to_node_name(text: str) -> str | None:
    from gaffer.cluster.records import check_node_name

    return check_node_name(text) if str(text).strip() else None


def to_key_prefix(text: str) -> str:
    from gaffer.cluster.records import check_prefix

    return check_prefix(text)


def to_urls(text: str | list[str]) -> list[str]:
    """API addresses to advertise: http(s)://host:port or unix:/path."""
    urls = to_words(text)
    for url in urls:
        if not url.startswith(("http://", "https://", "unix:/")):
            raise ValueError(f"{url!r}: expected http(s)://host:port or unix:/path")
    return urls


def to_state_file(text: str) -> str | None:
    """A path, or ``off`` (nothing recorded); empty: the default place."""
    value = str(text).strip()
    if value.lower() in ("off", "none", "false", "no"):
        return "off"
    return os.path.expanduser(value) if value else None
