"""gafferd's own log when it cannot be written: lines are counted, not tracebacks."""

from __future__ import annotations

import errno
import io
import logging

import pytest

from gafferd import logs


class Disk(io.StringIO):
    """A stream that fails like a full disk while ``full`` is set."""

    full = False

    def write(self, text: str) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(text)


@pytest.fixture
def handler():
    handler = logs._StreamHandler(Disk())
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def _record(text: str) -> logging.LogRecord:
    return logging.LogRecord("gafferd", logging.INFO, __file__, 0, text, (), None)


def test_lines_that_cannot_be_written_are_counted_and_reported_once_possible(handler, capsys):
    disk = handler.stream
    handler.handle(_record("before"))
    disk.full = True
    for index in range(5):
        handler.handle(_record(f"lost {index}"))
    assert handler.dropped == 5
    # one notice on stderr, not one traceback per line
    stderr = capsys.readouterr().err
    assert stderr.count("gafferd: cannot write its log (") == 1
    assert "Traceback" not in stderr
    disk.full = False
    handler.handle(_record("after"))
    assert disk.getvalue().splitlines() == [
        "before",
        "5 log lines were lost: the log could not be written",
        "after",
    ]
    assert handler.dropped == 0


def test_a_line_logged_while_the_notice_still_fails_is_counted_too(handler):
    handler.stream.full = True
    handler.handle(_record("one"))
    handler.handle(_record("two"))  # the notice for "one" fails first: both are lost
    assert handler.dropped == 2
    handler.stream.full = False
    handler.handle(_record("three"))
    assert handler.stream.getvalue().splitlines() == [
        "2 log lines were lost: the log could not be written",
        "three",
    ]
