"""gafferd's own log: to stderr, a file or syslog, written by a thread so that a slow
terminal or disk never blocks the loop; reopened on SIGUSR1 for logrotate."""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import sys

FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"


class DaemonLog:
    def __init__(self, target: str, level: str) -> None:
        self.target = target
        self._handler = _handler(target)
        self._handler.setFormatter(logging.Formatter(FORMAT))
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._listener = logging.handlers.QueueListener(self._queue, self._handler)
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(logging.handlers.QueueHandler(self._queue))
        self.set_level(level)
        self._listener.start()

    def set_level(self, level: str) -> None:
        logging.getLogger().setLevel(level.upper())
        logging.getLogger("tornado.access").setLevel(logging.WARNING)

    def reopen(self) -> None:
        """Reopen the log file at its path (after logrotate moved it)."""
        if isinstance(self._handler, logging.FileHandler):
            self._handler.acquire()
            try:
                self._handler.close()
                self._handler.stream = self._handler._open()
            finally:
                self._handler.release()

    def close(self) -> None:
        self._listener.stop()
        self._handler.close()


def _handler(target: str) -> logging.Handler:
    if target in ("-", ""):
        return logging.StreamHandler(sys.stderr)
    if target == "syslog":
        address = "/dev/log" if os.path.exists("/dev/log") else ("localhost", 514)
        handler = logging.handlers.SysLogHandler(address=address)
        handler.ident = "gafferd: "
        return handler
    directory = os.path.dirname(target)
    if directory:
        os.makedirs(directory, exist_ok=True)
    return logging.FileHandler(target, encoding="utf-8")
