"""Memory: a process that is gone is freed at once, by reference counting.

A dead `Process` kept in a reference cycle (its exit handle calling back into it, its pipe
readers calling back into their route to it) waits for the garbage collector's full
pass; under a burst of restarts hundreds of them piled up, and the allocator's arenas
they spread over stayed (gafferd held 9 MiB more after 10,000 restarts, a high-water
mark; docs/design.md#memory). Real processes, output captured, in a fresh Python."""

from __future__ import annotations

import pytest

from tests.helpers import run_script

pytestmark = pytest.mark.timeout(60)


def test_replaced_processes_leave_no_cycles_for_the_garbage_collector():
    result = run_script("""
        import gc
        from gaffer.core.process import Process

        async def main():
            async with Manager() as manager:
                events = EventRecorder(manager)
                manager.load(ProcessConfig(
                    "chatty", "sh", args=["-c", "echo hello; echo world >&2; exec sleep 600"],
                    numprocesses=3, start_secs=0, backoff=None, flapping=None,
                ))
                await events.wait_count("spawn", 3)
                gc.collect()
                gc.disable()
                try:
                    for replaced in range(12):
                        proc = manager.get_process(manager.pids("chatty")[0])
                        os.kill(proc.os_pid, 9)
                        await events.wait_count("spawn", 4 + replaced)
                        del proc
                    await wait_until(lambda: len(manager.pids("chatty")) == 3, 10, "3 again")
                    await asyncio.sleep(0.2)  # the last exits' output drained
                    alive = sum(1 for obj in gc.get_objects() if type(obj) is Process)
                    unreachable = gc.collect()
                finally:
                    gc.enable()
            print(json.dumps({"alive": alive, "unreachable": unreachable}))

        asyncio.run(main())
    """)
    assert result["alive"] == 3, "dead processes kept alive by reference cycles"
    assert result["unreachable"] == 0, "restarts left cyclic garbage behind"
