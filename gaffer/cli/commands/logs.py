"""logs, events: what the jobs print, and what happens to them."""

from __future__ import annotations

import datetime
import json
from collections import deque
from typing import Any

from gaffer.cli.commands import arg, command
from gaffer.cli.context import Context, UsageError

DROPPED = "gaffer.dropped"
STREAMS = ("stdout", "stderr", "all")


def display_name(job: str) -> str:
    """``default.web`` shows as ``web``; other sessions keep their prefix (as gafferd's
    console and ``dev:start`` show them)."""
    return job[len("default.") :] if job.startswith("default.") else job


class LinePrinter:
    """``web.3 | text``: names padded to the widest seen, one colour per process."""

    def __init__(self, context: Context, timestamps: bool) -> None:
        self.out = context.out
        self.timestamps = timestamps
        self.width = 0

    def fit(self, lines: list[dict[str, Any]]) -> None:
        for line in lines:
            self.width = max(self.width, len(self._who(line)))

    def show(self, line: dict[str, Any]) -> None:
        if self.out.json:
            self.out.data(line)
            return
        if line.get("event") == DROPPED:
            self.out.write(self.out.color(f"[gaffer: {line.get('count')} lines dropped]", code="1"))
            return
        who = self._who(line)
        self.width = max(self.width, len(who))
        prefix = self.out.color(f"{who.ljust(self.width)} |", key=f"{line['job']}.{line['pid']}")
        if self.timestamps:
            when = datetime.datetime.fromtimestamp(line["time"])
            prefix = f"{when.isoformat(timespec='milliseconds')} {prefix}"
        self.out.write(f"{prefix} {line['line']}")

    @staticmethod
    def _who(line: dict[str, Any]) -> str:
        return f"{display_name(line['job'])}.{line['pid']}"


@command(
    "logs",
    arg("job", nargs="?", metavar="JOB", help="a job (web, or session.web); none: every job"),
    arg("-n", "--lines", type=int, default=10, metavar="N", help="the last N lines (default 10)"),
    arg("-f", "--follow", action="store_true", help="then every new line, until Ctrl-C"),
    arg("--stream", choices=STREAMS, default="all", help="stdout, stderr or all (default)"),
    arg("--timestamps", action="store_true", help="the time each line was read"),
)
async def logs(context: Context) -> int:
    """Show what a job printed: the last lines of each of its processes, then follow.

    Each line is prefixed with its process (web.3 |). Without JOB, every job's output
    (those of --app if given), interleaved in time. gafferd keeps log_history lines a job
    (1,000 by default), whatever its log files."""
    args = context.args
    if args.lines < 0:
        raise UsageError(f"-n must be >= 0, got {args.lines}")
    printer = LinePrinter(context, args.timestamps)
    server = context.server()
    session = None
    if args.job is None:
        session = args.app or (
            context.app().name if context.procfile_path(required=False) else None
        )
    job = server.job(context.job_id(args.job)) if args.job is not None else None
    if not args.follow:
        if job is not None:
            found = await job.logs(args.lines, args.stream)
        else:
            found = await server.logs(args.lines, args.stream, session)
        printer.fit(found)
        for line in found:
            printer.show(line)
        return 0
    if job is not None:
        feed = job.follow_logs(args.lines, args.stream)
    else:
        feed = server.follow_logs(args.lines, args.stream, session)
    async for line in feed:
        printer.show(line)
    return 0


# -- events ------------------------------------------------------------------------------------
SKIP = {"event", "name", "pid", "os_pid"}


def event_line(context: Context, evtype: str, event: dict[str, Any]) -> str:
    now = datetime.datetime.now().strftime("%H:%M:%S")
    name = event.get("name", "")
    who = f"{name}.{event['pid']}" if event.get("pid") is not None else name
    details = " ".join(f"{key}={value}" for key, value in event.items() if key not in SKIP)
    return f"{now} {context.out.color(who.ljust(20), key=name)} {evtype} {details}".rstrip()


class Once:
    """gafferd publishes most events twice or three times: ``exit``, then
    ``job.<id>.exit`` and ``proc.<pid>.exit`` with the same payload, for subscribers of a
    job or a process. This shows each once: a ``job.*``/``proc.*`` event whose payload was
    just seen under its short name is a twin; the others (``job.<id>.kill``...) show
    under their short name."""

    def __init__(self) -> None:
        self._seen: deque[tuple[str, str]] = deque(maxlen=256)

    def first(self, event: dict[str, Any]) -> str | None:
        """The name to show the event under, or None for a twin of one shown."""
        name = str(event.get("event", ""))
        short = name
        if name.startswith(("job.", "proc.")):
            short = name.rsplit(".", 1)[-1]
        payload = json.dumps({k: v for k, v in event.items() if k != "event"}, sort_keys=True)
        if short != name and (short, payload) in self._seen:
            return None
        self._seen.append((short, payload))
        return short


def _matches(name: str, pattern: str) -> bool:
    return pattern == "." or name == pattern or name.startswith(pattern + ".")


@command(
    "events",
    arg("pattern", nargs="?", metavar="PATTERN", help="exit, job.default.web, proc.3... (all)"),
    arg("--ps", metavar="JOB", help="only this job's events"),
    arg("-n", "--count", type=int, metavar="N", help="stop after N events"),
    arg("--all", action="store_true", help="also the job.*/proc.* twins of each event"),
)
async def events(context: Context) -> int:
    """Follow gafferd's events as they happen, each once; Ctrl-C stops.

    Those matching PATTERN, else those of --ps JOB, of the app (--app or a Procfile), or
    all of them."""
    args = context.args
    app = args.app or (context.app().name if context.procfile_path(required=False) else None)
    if args.pattern:
        pattern = args.pattern
    elif args.ps:
        pattern = f"job.{context.job_id(args.ps)}"
    elif app:
        pattern = f"job.{app}"
    else:
        pattern = "."
    once = Once()
    seen = 0
    async for event in context.server().watch(pattern):
        name = str(event.get("event", ""))
        if name != DROPPED and not _matches(name, pattern):  # /watch takes 3 parts of a pattern
            continue
        if args.all:
            shown: str | None = name
        else:
            shown = once.first(event)
            if shown is None:
                continue
        if context.out.json:
            context.out.data(event)
        else:
            context.out.write(event_line(context, shown, event))
        seen += 1
        if args.count and seen >= args.count:
            break
    return 0
