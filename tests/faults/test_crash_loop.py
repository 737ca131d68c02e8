"""10,000 crash and respawn cycles: no zombie, no descriptor and no memory left behind.

Run in a fresh Python so that its memory and descriptors are the manager's alone. The
figures are taken after 1,000 cycles (imports, caches and pools have settled) and again
after 10,000; the bound on memory growth is the issue's, 5 MB.
"""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import run_script

pytestmark = pytest.mark.timeout(240)

CYCLES = 10_000
WARMUP = 1_000
RSS_GROWTH_LIMIT = 5 * 1024 * 1024


def test_ten_thousand_crashes_leave_no_zombie_no_descriptor_and_no_memory():
    crash = shutil.which("false")
    assert crash is not None
    result = run_script(
        f"""
        import psutil

        def snapshot():
            me = psutil.Process()
            return {{"rss": me.memory_info().rss, "fds": len(os.listdir("/proc/self/fd")),
                     "threads": me.num_threads()}}

        async def main():
            manager = Manager(guard=True, subreaper=True)
            loop = asyncio.get_running_loop()
            warm, done = loop.create_future(), loop.create_future()
            exits = 0

            def on_exit(evtype, msg):
                nonlocal exits
                exits += 1
                if exits == {WARMUP} and not warm.done():
                    warm.set_result(None)
                if exits == {CYCLES} and not done.done():
                    done.set_result(None)

            async with manager:
                manager.events.subscribe("exit", on_exit)
                manager.load(ProcessConfig(
                    "crash", {crash!r}, numprocesses=4,
                    flapping=None, backoff=None, start_retries=10**9,
                ))
                await warm
                before = snapshot()
                await done
                manager.stop_job("crash")
                await wait_until(lambda: not manager.pids("crash")
                                 and not manager._table.stopping, 10, "the job stopped")
                after = snapshot()
                children = psutil.Process().children()
                zombies = zombie_children()
                others = [c.pid for c in children if c.pid != manager._table.guard.pid]
            print(json.dumps({{"before": before, "after": after, "zombies": zombies,
                               "others": others, "exits": exits}}))

        asyncio.run(main())
        """,
        timeout=200,
    )
    before, after = result["before"], result["after"]
    assert result["exits"] >= CYCLES
    assert result["zombies"] == [], "a crashed process was left unreaped"
    assert result["others"] == [], "a process outlived its stopped job"
    assert after["fds"] <= before["fds"], f"descriptors grew: {before} -> {after}"
    # worker pools start on first use (one thread each, a handful in all), never one a cycle
    assert after["threads"] <= before["threads"] + 3, f"threads grew: {before} -> {after}"
    growth = after["rss"] - before["rss"]
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.1f} MiB over 9,000 crashes"
