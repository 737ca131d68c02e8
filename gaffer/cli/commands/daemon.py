"""daemon:restart and daemon:state: gafferd itself (an admin key)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gaffer.cli.commands import arg, command
from gaffer.cli.context import Context
from gaffer.errors import ClientError

WAIT = 60.0  # seconds daemon:restart waits for the new gafferd


@command(
    "daemon:restart",
    arg("--no-wait", action="store_true", help="return once gafferd accepted the restart"),
)
async def daemon_restart(context: Context) -> int:
    """Restart gafferd in place, keeping every process running.

    gafferd first checks that its new code and configuration would start (else nothing
    changes: exit 1 with the reason), then hands everything over to a new gafferd (the
    code installed now) in the same process: same pids, same output pipes, same API
    sockets. Waits until the new gafferd answers, and says how long the hand-over took."""
    server = context.server()
    accepted = await server.daemon_restart()
    if context.args.no_wait:
        if context.out.json:
            context.out.data(accepted)
        else:
            context.out.write(
                f"gafferd (pid {accepted['pid']}) restarts, keeping {accepted['processes']} "
                "process(es)"
            )
        return 0
    state = await _new_life(server, accepted["handovers"])
    if context.out.json:
        context.out.data(state)
        return 0
    last = state.get("last_handover") or {}
    context.out.write(
        f"gafferd restarted in place (pid {state['pid']}): {last.get('processes', 0)} "
        f"process(es) of {last.get('jobs', 0)} job(s) kept; hand-over "
        f"{last.get('duration_ms', 0):.0f} ms"
    )
    return 0


async def _new_life(server: Any, handovers: int) -> dict[str, Any]:
    """The state of the new gafferd once it answers (polling: the old one is gone)."""
    deadline = time.monotonic() + WAIT
    while True:
        await asyncio.sleep(0.05)
        try:
            state = await server.daemon_state()
        except ClientError:
            state = None  # between the two gafferds: connections wait or fail, try again
        if state is not None and state.get("handovers", 0) > handovers:
            return state
        if time.monotonic() > deadline:
            raise ClientError(f"gafferd did not come back within {WAIT:.0f} s")


@command("daemon:state")
async def daemon_state(context: Context) -> int:
    """What gafferd records of the operator's requests, and gafferd itself.

    The state file keeps what was asked through the API since the ini file (jobs
    loaded, scaled or stopped; detached processes), so that gafferd comes back to it
    after a restart (gafferd --fresh does not read it)."""
    state = await context.server().daemon_state()
    if context.out.json:
        context.out.data(state)
        return 0
    out = context.out
    last = state.get("last_handover") or {}
    out.pairs(
        {
            "pid": state["pid"],
            "processes": state["processes"],
            "hand-overs": f"{state['handovers']}"
            + (f" (the last took {last['duration_ms']:.0f} ms)" if last else ""),
            "on_daemon_crash": state["on_daemon_crash"],
            "state file": state.get("state_file") or "off",
        }
    )
    recorded = state.get("state") or {}
    rows = []
    for job, entry in sorted((recorded.get("jobs") or {}).items()):
        what = []
        if "session" in entry:
            what.append("loaded through the API")
        elif "config" in entry:
            what.append("config changed through the API")
        if "started" in entry:
            what.append("started" if entry["started"] else "stopped")
        if "numprocesses" in entry:
            what.append(f"{entry['numprocesses']} process(es)")
        rows.append((job, ", ".join(what)))
    rows += [(job, "unloaded") for job in recorded.get("unloaded") or ()]
    rows += [
        (entry["job"], f"detached process {entry['os_pid']}")
        for entry in recorded.get("detached") or ()
    ]
    out.write()
    if rows:
        out.table(("JOB", "RECORDED"), rows)
    else:
        out.write("nothing recorded: every job is as the ini file says")
    return 0
