"""logs, recv, send: events and process input/output."""

from __future__ import annotations

import datetime
import sys
from typing import Any

from gaffer.cli.commands import arg, command
from gaffer.cli.context import Context, UsageError

SKIP = {"event", "name", "pid", "os_pid"}


def event_line(context: Context, event: dict[str, Any]) -> str:
    now = datetime.datetime.now().strftime("%H:%M:%S")
    name = event.get("name", "")
    who = f"{name}.{event['pid']}" if event.get("pid") is not None else name
    details = " ".join(f"{key}={value}" for key, value in event.items() if key not in SKIP)
    return f"{now} {context.out.color(who.ljust(20), key=name)} {event.get('event')} {details}"


@command(
    "logs",
    arg("--ps", metavar="JOB", help="only this job's events"),
    arg("-n", "--count", type=int, metavar="N", help="stop after N events"),
)
async def logs(context: Context) -> int:
    """Follow events as they happen; Ctrl-C stops.

    Those of the app with --app or a Procfile, else all of them."""
    app = context.args.app or (
        context.app().name if context.procfile_path(required=False) else None
    )
    if context.args.ps:
        pattern = f"job.{context.job_id(context.args.ps)}"
    elif app:
        pattern = f"job.{app}"
    else:
        pattern = "."
    seen = 0
    async for event in context.server().watch(pattern):
        if context.out.json:
            context.out.data(event)
        else:
            context.out.write(event_line(context, event))
        seen += 1
        if context.args.count and seen >= context.args.count:
            break
    return 0


def _pid_and_stream(text: str, stream: str | None) -> tuple[int, str | None]:
    pid, _, label = text.partition(".")
    if not pid.isdigit():
        raise UsageError(f"bad pid {text!r}: expected PID or PID.STREAM")
    return int(pid), stream or label or None


@command("recv", arg("pid", metavar="PID[.STREAM]"), arg("stream", nargs="?"))
async def recv(context: Context) -> int:
    """Copy a process's output to stdout as it comes, until it exits.

    All of it, or one label, or one custom stream; Ctrl-C stops."""
    pid, stream = _pid_and_stream(context.args.pid, context.args.stream)
    process = context.server().process(pid)
    info = await process.info()
    out = sys.stdout.buffer
    if stream is not None and stream in info.get("custom_streams", []):
        channel = await process.channel(mode=1, stream=stream)
        channel.on_data(lambda data: (out.write(data), out.flush()))
        await channel.closed.wait()
        return 0
    async for chunk in process.output(stream or "."):
        out.write(chunk)
        out.flush()
    return 0


@command(
    "send",
    arg("-s", "--stream", help="a custom stream instead of stdin"),
    arg("pid", metavar="PID[.STREAM]"),
    arg(
        "data",
        nargs="+",
        help="words sent as one line; '-' sends stdin's lines "
        "(until EOF or a line holding just '.')",
    ),
)
async def send(context: Context) -> int:
    """Write a line to a process's stdin (or to one of its custom streams)."""
    pid, stream = _pid_and_stream(context.args.pid, context.args.stream)
    server = context.server()
    if context.args.data == ["-"]:
        lines = []
        for line in sys.stdin:
            if line.rstrip("\n") == ".":
                break
            lines.append(line if line.endswith("\n") else line + "\n")
        payload = "".join(lines)
    else:
        payload = " ".join(context.args.data) + "\n"
    if stream in (None, "stdin"):
        await server.process(pid).send(payload)
    else:
        channel = await server.socket()
        try:
            await channel.command("send", pid, payload, stream)
        finally:
            await channel.close()
    if not context.out.json:
        context.out.write(
            f"sent {len(payload.encode())} bytes to {pid}" + (f".{stream}" if stream else "")
        )
    return 0
