"""recv, send: a process's raw output and its input."""

from __future__ import annotations

import sys

from gaffer.cli.commands import arg, command
from gaffer.cli.context import Context, UsageError


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
