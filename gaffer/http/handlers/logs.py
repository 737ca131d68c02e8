"""A job's recent output, line by line: ``/jobs/<sid>/<name>/logs`` and ``/logs`` (every
job the key may read).

``?lines=N`` (default 10; ``all``: every line kept), ``?stream=stdout|stderr|all``. Without
``follow``, the lines as one JSON document ``{"name", "lines": [...]}``; with ``follow=1``
(or a ``feed``) a feed of one line after another, the last N first, until the client goes
(or the job is unloaded): JSON lines (``feed=continuous``, the default) or Server-Sent
Events (``feed=eventsource``, ``event: log``). Each line is ``{"job", "pid", "os_pid",
"stream", "time", "line"}``; a client that does not keep up loses lines, and reads a
``{"event": "gaffer.dropped", "count": N}`` where they were.
"""

from __future__ import annotations

from typing import Any

from gaffer.http import commands
from gaffer.http.handlers.base import Op, RequestError
from gaffer.http.handlers.jobs import job_id
from gaffer.http.handlers.streams import FEED_PARAMS, FeedHandler, QueueSource, event_frame

DEFAULT_LINES = 10
LOG_FEEDS = ("continuous", "eventsource")
PARAMS = {
    "lines": f"the last N lines first (default {DEFAULT_LINES}; all: every line kept)",
    "stream": "stdout, stderr or all (default)",
    "follow": "1: then every new line, as a feed, until the client goes",
    "feed": "continuous (JSON lines, the default with follow) or eventsource",
    "heartbeat": FEED_PARAMS["heartbeat"],
}


class LogsHandler(FeedHandler):
    default_feed = "continuous"
    ops = {
        "get": Op(
            "The job's recent output (stdout and stderr, log_history lines kept), "
            "each line with its process and time; follow=1 follows it",
            params=PARAMS,
            permission="read",
            statuses=(200, 400, 403, 404),
        )
    }

    async def get(self, sid: str | None = None, name: str | None = None) -> None:
        job = None
        if sid is not None and name is not None:
            job = job_id(sid, name)
            self.authorize("read_logs", name=job)
        lines = self._lines()
        stream = self.get_query_argument("stream", "all")
        session = self.get_query_argument("session", None)
        select = self._selector(session) if job is None else None
        follow = self.get_query_argument("follow", "0").lower() in ("1", "true", "yes")
        if not follow and self.get_query_argument("feed", None) is None:
            found = self.manager.logs(job, lines, stream, select=select)
            self.write_json({"name": job, "lines": found})
            return
        feed, heartbeat = self.feed()
        if feed not in LOG_FEEDS:
            raise RequestError(400, "bad_request", f"feed must be one of {', '.join(LOG_FEEDS)}")
        if not follow:  # a feed of the lines kept, then the end
            found = self.manager.logs(job, lines, stream, select=select)
            await self.start_feed(feed)
            for line in found:
                if not await self.send(event_frame(feed, "log", line)):
                    return
            self.finish()
            return
        await self._follow(job, lines, stream, select, feed, heartbeat)

    async def _follow(
        self,
        job: str | None,
        lines: int | None,
        stream: str,
        select: Any,
        feed: str,
        heartbeat: float | None,
    ) -> None:
        source = QueueSource()

        def on_line(line: dict[str, Any]) -> None:
            source.push(line, len(line["line"]))

        def on_unload(evtype: str, msg: dict[str, Any]) -> None:
            if msg.get("name") == job:
                source.end()

        # 404 or 400 before the feed starts; the backlog is queued with the same call
        follower = self.manager.follow_logs(on_line, job, lines, stream, select=select)
        if job is not None:
            self.manager.events.subscribe("unload", on_unload)
        try:
            await self.start_feed(feed)
            await self.pump_events(source, feed, heartbeat, "log")
        finally:
            self.manager.unfollow_logs(follower)
            if job is not None:
                self.manager.events.unsubscribe("unload", on_unload)

    def _lines(self) -> int | None:
        text = self.get_query_argument("lines", str(DEFAULT_LINES)).strip().lower()
        if text == "all":
            return None
        if not (text.isascii() and text.isdigit()) or len(text) > 9:
            raise RequestError(
                400, "bad_request", f"lines must be a number >= 0 or all, got {text[:20]!r}"
            )
        return int(text)

    def _selector(self, session: str | None) -> Any:
        """The jobs of ``/logs``: those the key may read (of ``session`` if given)."""
        may_read = commands.reader(self.permissions)
        prefix = None if session is None else f"{session}."

        def select(job: str) -> bool:
            return (prefix is None or job.startswith(prefix)) and may_read(job)

        return select


class AllLogsHandler(LogsHandler):
    ops = {
        "get": Op(
            "Every job's recent output interleaved by time (the jobs the key may read; "
            "session=S: one session's), each line with its job, process and time; "
            "follow=1 follows it, jobs loaded later included",
            params={**PARAMS, "session": "only the jobs of this session"},
            permission="read (on each job shown)",
            statuses=(200, 400, 403),
        )
    }

    async def get(self) -> None:  # type: ignore[override]
        await super().get()
