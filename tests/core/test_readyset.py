"""The loop's ready set (readyset.py): many descriptors behind one reader of the loop.
Real pipes on the real loop."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from gaffer.core.readyset import ReadySet, ready_set
from tests.helpers import open_fds, wait_until

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pipes():
    made: list[int] = []

    def make() -> tuple[int, int]:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        made.extend((read_fd, write_fd))
        return read_fd, write_fd

    yield make
    for fd in made:
        try:
            os.close(fd)
        except OSError:
            pass


async def test_callbacks_run_while_readable_and_stop_once_removed(pipes):
    loop = asyncio.get_running_loop()
    ready = ready_set(loop)
    assert ready_set(loop) is ready  # one per loop
    (a_read, a_write), (b_read, b_write) = pipes(), pipes()
    seen: list[tuple[str, bytes]] = []

    def take(name: str, fd: int) -> None:
        seen.append((name, os.read(fd, 1)))  # one byte a turn: the rest wakes it again

    ready.add(a_read, take, "a", a_read)
    ready.add(b_read, take, "b", b_read)
    os.write(a_write, b"xyz")
    os.write(b_write, b"1")
    await wait_until(lambda: len(seen) == 4, 5, "four bytes read")
    assert [data for name, data in seen if name == "a"] == [b"x", b"y", b"z"]
    assert ("b", b"1") in seen
    ready.remove(a_read)
    os.write(a_write, b"left")
    os.write(b_write, b"2")
    await wait_until(lambda: ("b", b"2") in seen, 5, "b read again")
    assert all(name == "b" for name, _ in seen[4:]), "a removed descriptor was read"
    ready.remove(b_read)
    assert len(ready) == 0


async def test_the_set_closes_with_its_last_descriptor(pipes):
    loop = asyncio.get_running_loop()
    ready = ReadySet(loop)
    read_fd, _ = pipes()
    before = open_fds()
    ready.add(read_fd, lambda: None)
    assert open_fds() == before + 1  # the epoll set
    ready.remove(read_fd)
    assert open_fds() == before
    ready.remove(read_fd)  # twice: nothing happens
    ready.add(read_fd, lambda: None)  # and it opens again
    assert read_fd in ready
    ready.close()
    assert open_fds() == before


async def test_a_descriptor_removed_by_an_earlier_callback_of_the_turn_is_not_called(pipes):
    loop = asyncio.get_running_loop()
    ready = ReadySet(loop)
    (a_read, a_write), (b_read, b_write) = pipes(), pipes()
    calls: list[str] = []

    def first_removes_the_other(name: str, fd: int, other: int) -> None:
        calls.append(name)
        os.read(fd, 10)
        ready.remove(other)

    ready.add(a_read, first_removes_the_other, "a", a_read, b_read)
    ready.add(b_read, first_removes_the_other, "b", b_read, a_read)
    os.write(a_write, b".")
    os.write(b_write, b".")
    await wait_until(lambda: calls, 5, "a callback")
    await asyncio.sleep(0.05)  # more turns of the loop: the other is never called
    assert len(calls) == 1
    assert len(ready) == 1  # the one called, still watched
    ready.close()


async def test_a_failing_callback_is_logged_and_stops_nothing(pipes, caplog):
    loop = asyncio.get_running_loop()
    ready = ReadySet(loop)
    (a_read, a_write), (b_read, b_write) = pipes(), pipes()
    drained: list[bytes] = []

    def fail() -> None:
        os.read(a_read, 10)
        raise RuntimeError("boom")

    ready.add(a_read, fail)
    ready.add(b_read, lambda: drained.append(os.read(b_read, 10)))
    with caplog.at_level(logging.ERROR, "gaffer.core.readyset"):
        os.write(a_write, b".")
        os.write(b_write, b"data")
        await wait_until(lambda: drained, 5, "the other descriptor read")
        await wait_until(lambda: "boom" in caplog.text, 5, "the failure logged")
    assert drained == [b"data"]
    assert f"callback for fd {a_read} failed" in caplog.text
    ready.close()
