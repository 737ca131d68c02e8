"""``on_daemon_crash = keep``: gafferd runs under a keeper (gaffer/core/keeper_main.py).

At its start gafferd binds its sockets (errors reach the terminal), detaches if asked,
then ``exec``-s the keeper in its own process: the keeper keeps the pid gafferd was
started with (the one systemd or a shell knows, which gets the signals: the keeper
passes them on) and starts gafferd again as its child, handing it the listening sockets
(``GAFFERD_LISTEN_FDS``) and a socket to itself (``GAFFER_KEEPER_FD``). See
gaffer/core/keeper.py for what goes over it, and docs/design.md for why the keeper is
gafferd's parent.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import gaffer.core
from gaffer.http import binding
from gafferd.handover import command_line

LISTEN_ENV = "GAFFERD_LISTEN_FDS"
LIVES_ENV = "GAFFER_KEEPER_LIVES"


# gaffer.core's guard and keeper import asyncio: here they are imported when used, so
# that gafferd decides on ssl before asyncio loads (gafferd/withoutssl.py)


def under_keeper() -> bool:
    from gaffer.core.keeper import ENV

    return ENV in os.environ


def launch(sockets: list[socket.socket]) -> None:
    """Become the keeper, which starts this gafferd again as its child. Returns only
    when the exec failed (OSError)."""
    from gaffer.core.guard import GRACE

    fds = [sock.fileno() for sock in sockets]
    for fd in fds:
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [
        sys.executable,
        "-I",
        "-S",
        # its path, not an import: gafferd never loads the keeper's module itself
        os.path.join(os.path.dirname(gaffer.core.__file__), "keeper_main.py"),
        str(GRACE),
        ",".join(map(str, fds)),
        "--",
        *command_line(),
    ]
    os.execv(sys.executable, argv)


def keeper_fd() -> int | None:
    """The socket to the keeper (taken from the environment: nothing gafferd starts
    inherits the variables)."""
    from gaffer.core.keeper import ENV

    os.environ.pop(LIVES_ENV, None)
    text = os.environ.pop(ENV, None)
    return int(text) if text else None


def inherited_sockets() -> list[list[Any]] | None:
    """``[fd, address]`` of the listening sockets the keeper passed (None: not under a
    keeper)."""
    text = os.environ.pop(LISTEN_ENV, None)
    if text is None:
        return None
    records = []
    for word in text.split(","):
        if word.strip().isdigit():
            sock = socket.socket(fileno=int(word))
            try:
                records.append([int(word), binding.bound_address(sock)])
            finally:
                sock.detach()
    return records
