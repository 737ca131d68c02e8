"""dev:start, dev:run, export: the Procfile app, locally.

dev:start and dev:run embed a Manager: they import the engine when they run, so that
the other commands of ``gaffer`` start without it."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import sys

from gaffer.cli.commands import arg, command
from gaffer.cli.commands.jobs import CONCURRENCY, FLAPPING
from gaffer.cli.context import Context, UsageError
from gaffer.cli.procfile import to_ini, to_json, to_systemd


async def _until_signal() -> int:
    """Wait for SIGINT or SIGTERM; the signal's number."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[int] = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda s=sig: received.done() or received.set_result(s))
    try:
        return await received
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@command(
    "dev:start",
    arg("jobs", nargs="*", metavar="JOB", help="only these entries"),
    CONCURRENCY,
    FLAPPING,
    arg("--port", type=int, help="the first port (default $PORT or 5000)"),
)
async def dev_start(context: Context) -> int:
    """Run the Procfile app here, foreman style; Ctrl-C stops everything.

    Every entry (or those named) is restarted when it exits, unless it crashes in a
    loop (see --flapping); its output is shown prefixed with the entry and pid."""
    from gaffer.console import ConsoleOutput
    from gaffer.core.config import ProcessConfig
    from gaffer.core.manager import Manager

    app = context.app()
    jobs = app.jobs(
        context.concurrency(),
        base_port=context.args.port,
        only=context.args.jobs or None,
        flapping=context.flapping(),
    )
    manager = Manager(guard=True, subreaper=True)  # nothing outlives a killed `gaffer`
    console = ConsoleOutput(colors=False if context.args.no_color else None, logs=True)
    manager.start(apps=[console])
    try:
        for job in jobs:
            manager.load(ProcessConfig.from_dict(job), sessionid=app.name)
        await _until_signal()
    finally:
        manager.stop()
        await manager.wait_stopped()
    return 0


@command(
    "dev:run",
    arg("cmd", nargs=argparse.REMAINDER, metavar="COMMAND"),
    arg("-n", "--count", type=int, default=1, help="run it N times at once"),
)
async def dev_run(context: Context) -> int:
    """Run a command here once, with the Procfile app's environment.

    Its output is shown; gaffer exits with its exit code."""
    from gaffer.console import ConsoleOutput
    from gaffer.core.config import ProcessConfig
    from gaffer.core.manager import Manager

    if not context.args.cmd:
        raise UsageError("give the command to run")
    env = dict(os.environ)
    cwd = os.getcwd()
    if context.procfile_path(required=False) is not None:
        env.update(context.app().env)
        cwd = context.app().root
    command_line = shlex.join(context.args.cmd)
    name = os.path.basename(context.args.cmd[0]) or "run"
    manager = Manager(guard=True, subreaper=True)
    manager.start(apps=[ConsoleOutput(colors=False if context.args.no_color else None, logs=True)])
    statuses: list[int] = []
    done = asyncio.get_running_loop().create_future()

    def on_exit(evtype: str, msg: dict) -> None:
        statuses.append(
            msg["exit_status"] or (128 + msg["term_signal"] if msg["term_signal"] else 0)
        )
        if len(statuses) == context.args.count and not done.done():
            done.set_result(None)

    manager.events.subscribe("exit", on_exit)
    try:
        manager.load(
            ProcessConfig(
                name,
                command_line,
                shell=True,
                env=env,
                cwd=cwd,
                numprocesses=0,
                redirect_output=["out", "err"],
            ),
            sessionid="run",
        )
        for _ in range(context.args.count):
            manager.commit(f"run.{name}")
        waiter = asyncio.ensure_future(_until_signal())
        await asyncio.wait({done, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        manager.stop()
        await manager.wait_stopped()
    return max(statuses) if len(statuses) == context.args.count else 130


@command(
    "export",
    arg("--format", choices=("ini", "json", "systemd"), default="ini"),
    arg(
        "-o",
        "--out",
        metavar="PATH",
        help="a file (ini, json) or a directory (systemd); default: standard output",
    ),
    arg("--user", help="systemd: the user the services run as"),
    CONCURRENCY,
    FLAPPING,
    arg("--port", type=int, help="the first port (default $PORT or 5000)"),
)
async def export(context: Context) -> int:
    """Export the Procfile app as a gafferd ini, JSON jobs, or systemd units.

    The ini is what gafferd loads as it is; the JSON is for 'gaffer load'."""
    app = context.app()
    concurrency = context.concurrency()
    port = context.args.port
    if context.args.format == "systemd":
        if not context.args.out:
            raise UsageError("systemd export writes several files: give a directory with -o")
        os.makedirs(context.args.out, exist_ok=True)
        units = to_systemd(
            app, concurrency, port, user=context.args.user, flapping=context.flapping()
        )
        for name, text in units.items():
            with open(os.path.join(context.args.out, name), "w") as handle:
                handle.write(text)
        context.out.write(f"{len(units)} units written to {context.args.out}")
        if context.args.user is None:
            print(
                "gaffer: warning: the services run as root: give --user NAME to run them "
                "as a user of their own",
                file=sys.stderr,
            )
        return 0
    text = (to_ini if context.args.format == "ini" else to_json)(
        app, concurrency, port, flapping=context.flapping()
    )
    if context.args.out:
        with open(context.args.out, "w") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")
        context.out.write(f"{context.args.format} written to {context.args.out}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
