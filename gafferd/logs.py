"""gafferd's own log: to stderr, a file or syslog, written by a thread so that a slow
terminal or disk never blocks the loop; reopened on SIGUSR1 for logrotate.

A log that cannot be written (disk full, file size limit, syslog gone) never stops
gafferd: the lines are counted and dropped, one notice a minute goes to stderr instead
of a traceback per line, and once the log can be written again it says how many lines
were lost."""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time

FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"
NOTICE_INTERVAL = 60.0  # seconds between two notices on stderr that lines are dropped


class DropCounting(logging.Handler):
    """A handler that counts the lines it fails to write instead of printing tracebacks.
    Mixed in before a concrete handler; used by the listener thread only."""

    dropped = 0
    _failed = False
    _counting = True
    _last_notice = float("-inf")

    def handle(self, record: logging.LogRecord) -> bool:
        if self.dropped:
            lost = self.dropped
            if not self._try_emit(self._lost_record(lost)):
                self.dropped += 1  # still failing: this line is lost as well
                return False
            self.dropped -= lost
        return bool(super().handle(record))

    def _try_emit(self, record: logging.LogRecord) -> bool:
        self._failed, self._counting = False, False
        try:
            super().handle(record)
        finally:
            self._counting = True
        return not self._failed

    @staticmethod
    def _lost_record(lost: int) -> logging.LogRecord:
        return logging.LogRecord(
            "gafferd",
            logging.WARNING,
            __file__,
            0,
            "%d log lines were lost: the log could not be written",
            (lost,),
            None,
        )

    def handleError(self, record: logging.LogRecord) -> None:
        self._failed = True
        if self._counting:
            self.dropped += 1
        now = time.monotonic()
        if now - self._last_notice < NOTICE_INTERVAL:
            return
        self._last_notice = now
        try:
            sys.stderr.write(
                f"gafferd: cannot write its log ({sys.exc_info()[1]}); dropping log lines, "
                "next notice in a minute\n"
            )
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # stderr is as unwritable as the log: nothing more to try


class _StreamHandler(DropCounting, logging.StreamHandler):
    pass


class _FileHandler(DropCounting, logging.FileHandler):
    pass


class Enqueue(logging.Handler):
    """Hands each record, its message and traceback already formatted (by the thread that
    logged it, as the arguments may change later), to the writer thread. What
    ``logging.handlers.QueueHandler`` does, without importing ``logging.handlers``, which
    loads pickle for its socket handlers (docs/design.md#memory)."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord | None]) -> None:
        super().__init__()
        self._records = records

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            copy = logging.makeLogRecord(record.__dict__)
            copy.message = copy.msg = message
            copy.args = copy.exc_info = copy.exc_text = copy.stack_info = None
            self._records.put_nowait(copy)
        except Exception:
            self.handleError(record)


class DaemonLog:
    def __init__(self, target: str, level: str) -> None:
        self.target = target
        self._handler = _handler(target)
        self._handler.setFormatter(logging.Formatter(FORMAT))
        self._queue: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(Enqueue(self._queue))
        self.set_level(level)
        self._start_writer()

    def _start_writer(self) -> None:
        self._writer = threading.Thread(target=self._write, name="gafferd-log", daemon=True)
        self._writer.start()

    def _stop_writer(self) -> None:
        self._queue.put(None)  # after every line logged so far
        self._writer.join()

    def _write(self) -> None:
        while (record := self._queue.get()) is not None:
            self._handler.handle(record)

    def set_level(self, level: str) -> None:
        logging.getLogger().setLevel(level.upper())
        logging.getLogger("tornado.access").setLevel(logging.WARNING)

    def reopen(self) -> None:
        """Reopen the log file at its path (after logrotate moved it)."""
        if isinstance(self._handler, logging.FileHandler):
            self._handler.acquire()
            try:
                try:
                    self._handler.close()
                except OSError:
                    pass  # unflushed lines of a full disk: counted as dropped already
                self._handler.stream = self._handler._open()
            finally:
                self._handler.release()

    def pause(self) -> None:
        """Write every line queued so far and stop writing (gafferd is about to exec)."""
        self._stop_writer()
        try:
            self._handler.flush()
        except OSError:
            pass

    def resume(self) -> None:
        self._start_writer()

    def close(self) -> None:
        self._stop_writer()
        try:
            self._handler.close()
        except OSError:
            pass  # the last lines could not be flushed: they were counted already


def _handler(target: str) -> logging.Handler:
    if target in ("-", ""):
        return _StreamHandler(sys.stderr)
    if target == "syslog":
        import logging.handlers  # here: only a log to syslog needs it

        class SysLogHandler(DropCounting, logging.handlers.SysLogHandler):
            pass

        address = "/dev/log" if os.path.exists("/dev/log") else ("localhost", 514)
        handler = SysLogHandler(address=address)
        handler.ident = "gafferd: "
        return handler
    directory = os.path.dirname(target)
    if directory:
        os.makedirs(directory, exist_ok=True)
    # backslashreplace: a lone surrogate in a message must not cost the whole line
    return _FileHandler(target, encoding="utf-8", errors="backslashreplace")
