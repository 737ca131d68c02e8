"""What the HTTP layer measures of the process serving it, for /metrics and /overview:
requests by route and status, and how late the event loop runs.

A ``Telemetry`` may outlive an ``HttpHandler``: gafferd makes one and hands it to every
handler it builds (a reload that changes the binds builds a new one), so a reload does not
reset the counters. Handlers ``attach`` it when they start and ``detach`` it when they
stop; the loop-lag timer runs while at least one is attached.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # gafferd makes its Telemetry before the HTTP server is loaded
    import tornado.web

LAG_INTERVAL = 0.1  # seconds between two loop-lag samples
LAG_WINDOW = 60.0  # the p99 and the maximum are of the samples of the last minute


class LoopLag:
    """How late the loop runs a timer, sampled every ``LAG_INTERVAL``: a loop busy for
    50 ms runs the next timer up to 50 ms late. The samples of the last ``LAG_WINDOW``
    seconds are kept (600 floats); uvloop's timers have a resolution of 1 ms, so lags
    under a millisecond read as 0 or 1 ms there."""

    def __init__(self, interval: float = LAG_INTERVAL, window: float = LAG_WINDOW) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=max(int(window / interval), 1))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    @property
    def running(self) -> bool:
        return self._timer is not None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None:
            self._loop = loop
            self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        assert self._loop is not None
        self._due = self._loop.time() + self.interval
        self._timer = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        self.samples.append(max(self._loop.time() - self._due, 0.0))
        self._schedule()

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of the window (nearest rank); None before the first sample."""
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        rank = min(max(int(q * len(ordered) + 0.5) - 1, 0), len(ordered) - 1)
        return ordered[rank]

    def maximum(self) -> float | None:
        return max(self.samples) if self.samples else None


class Telemetry:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}  # (route, status): count
        self.lag = LoopLag()
        self._attached = 0
        # (handler as "module:Class", path parameters): route template
        self._templates: dict[tuple[str, frozenset[str]], str] | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._attached += 1
        self.lag.start(loop)

    def detach(self) -> None:
        self._attached = max(self._attached - 1, 0)
        if not self._attached:
            self.lag.stop()

    def count(self, handler: tornado.web.RequestHandler) -> None:
        """Count a finished request by its route template (``/jobs/{sid}/{name}``, so the
        label set stays small) and status."""
        key = (self.route_of(handler), handler.get_status())
        self.requests[key] = self.requests.get(key, 0) + 1

    def route_of(self, handler: tornado.web.RequestHandler) -> str:
        if self._templates is None:
            from gaffer.http.routes import api_routes

            # by name: a handler loaded at its first request (routes.py) is not imported
            self._templates = {
                (route.name, frozenset(route.params)): route.template for route in api_routes()
            }
        from gaffer.http.routes import handler_name

        kwargs: Any = getattr(handler, "path_kwargs", None) or {}
        template = self._templates.get((handler_name(type(handler)), frozenset(kwargs)))
        if template is not None:
            return template
        from gaffer.http.handlers.misc import NotFoundHandler, RefusedHandler, SiteHandler

        if isinstance(handler, NotFoundHandler):
            return "unmatched"
        if isinstance(handler, RefusedHandler):
            return "refused"  # before routing: a Host or an Origin not allowed
        if isinstance(handler, SiteHandler):
            return "/_plugin/"
        return "other"

    def snapshot(self) -> dict[str, Any]:
        """The figures /overview shows of the serving process."""
        p99, worst = self.lag.quantile(0.99), self.lag.maximum()
        return {
            "loop_lag_p99": None if p99 is None else round(p99, 4),
            "loop_lag_max": None if worst is None else round(worst, 4),
            "http_requests": sum(self.requests.values()),
        }
