"""Detaching from the terminal: the classic double fork.

Done before the event loop and any thread exist (forking a threaded process is unsafe),
and after the sockets are bound, so that bind errors still reach the terminal.
"""

from __future__ import annotations

import os
import sys


def daemonize() -> None:
    if os.fork():
        os._exit(0)  # the parent returns to the shell
    os.setsid()  # no controlling terminal
    if os.fork():
        os._exit(0)  # the session leader exits: the daemon can never get a terminal back
    os.chdir("/")
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)
