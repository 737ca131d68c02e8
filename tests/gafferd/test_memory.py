"""gafferd gives freed heap pages back to the system: right after its start, then now and
then (glibc's malloc_trim)."""

from __future__ import annotations

import asyncio
import ctypes
import platform

import pytest

from gafferd.memory import MemoryTrimmer, malloc_trim
from tests.helpers import wait_until

GLIBC = platform.libc_ver()[0] == "glibc"


def rss_kib() -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_malloc_trim_hands_freed_pages_back():
    trim = malloc_trim()
    assert trim is not None
    # 64 MiB in small blocks, then all freed but one at the top of the heap, which keeps
    # glibc from shrinking the heap by itself: only a trim gives the pages back
    blocks = [ctypes.create_string_buffer(4000) for _ in range(16_000)]
    for block in blocks:
        ctypes.memset(block, 1, 4000)
    keeper = ctypes.create_string_buffer(4000)
    before = rss_kib()
    del blocks
    trim()
    assert rss_kib() < before - 32 * 1024, (before, rss_kib())
    del keeper


async def test_the_trimmer_runs_first_then_periodically_until_stopped():
    trimmer = MemoryTrimmer(asyncio.get_running_loop(), first=0.01, every=0.01)
    if trimmer._trim is None:
        pytest.skip("no malloc_trim here")
    trimmer.start()
    await wait_until(lambda: trimmer.trims >= 3, 5, "three trims")
    trimmer.stop()
    done = trimmer.trims
    await asyncio.sleep(0.05)  # a timer left running would have trimmed again by now
    assert trimmer.trims == done
