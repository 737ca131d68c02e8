"""The user's settings for the gaffer command: ``$GAFFER_CONFIG`` or
``~/.gaffer/gaffer.ini``, one section per gafferd::

    [node "http://127.0.0.1:5000"]
    key = gk_...
    cacert = /etc/gaffer/ca.pem

``gaffer login`` saves the key there. The file holds secrets: it is written with mode 0600.
"""

from __future__ import annotations

import configparser
import os

FIELDS = ("key", "certfile", "keyfile", "cacert")


def path() -> str:
    return os.environ.get("GAFFER_CONFIG") or os.path.expanduser("~/.gaffer/gaffer.ini")


def _section(url: str) -> str:
    return f'node "{url}"'


def read(url: str) -> dict[str, str]:
    """The settings saved for the gafferd at ``url`` (empty when none)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path())
    name = _section(url)
    if not parser.has_section(name):
        return {}
    return {key: value for key, value in parser.items(name) if key in FIELDS}


def save(url: str, **values: str) -> str:
    """Set ``values`` for ``url``; returns the file written."""
    target = path()
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(target)
    name = _section(url)
    if not parser.has_section(name):
        parser.add_section(name)
    for key, value in values.items():
        parser.set(name, key, value)
    directory = os.path.dirname(target)
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        parser.write(handle)
    os.chmod(target, 0o600)
    return target
