"""The route table of the HTTP API, declared once.

Each route is an OpenAPI path template (``/jobs/{sid}/{name}``) and its handler; the
Tornado pattern is derived from the template, and ``/openapi.json`` from the templates
and the handlers' ``ops``.

A handler may be named ``"module:Class"`` instead of given: its module is then imported
by the first request it serves (``Deferred`` stands in for it in Tornado's table, app.py
resolves it), so that a gafferd asked for its jobs does not load the WebSocket, the
streams, the key store or the OpenAPI document (docs/design.md#memory).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import tornado.web

from gaffer.http.handlers import jobs, misc, processes

LATER = "gaffer.http.handlers."  # the package of the handlers imported at first use

# what each path parameter may hold
PARAMS = {
    "pid": r"[0-9]+",
    "sid": r"[^/.]+",
    "name": r"[^/]+",
    "label": r"[^/]+",
    "stream": r"[^/]+",
    "key": r"[^/]+",
    "username": r"[^/]+",
    "a": r"[^/]+",
    "b": r"[^/]+",
    "c": r"[^/]+",
    "path": r".*",
}


@dataclass(frozen=True)
class Route:
    template: str
    target: type[tornado.web.RequestHandler] | str  # a class, or "module:Class"
    kwargs: dict[str, Any] = field(default_factory=dict)
    documented: bool = True

    @property
    def handler(self) -> type[tornado.web.RequestHandler]:
        """The handler class (its module imported now if it was named)."""
        return resolve(self.target)

    @property
    def name(self) -> str:
        """Its handler as ``"module:Class"``, without importing it (telemetry.py)."""
        return self.target if isinstance(self.target, str) else handler_name(self.target)

    @property
    def table_target(self) -> type[tornado.web.RequestHandler]:
        """What Tornado's table holds: the class, or a ``Deferred`` standing in for it."""
        return self.target if isinstance(self.target, type) else stand_in(self.target)

    @property
    def pattern(self) -> str:
        def param(match: re.Match[str]) -> str:
            name = match.group(1)
            return f"(?P<{name}>{PARAMS[name]})"

        return re.sub(r"\{(\w+)\}", param, self.template)

    @property
    def params(self) -> tuple[str, ...]:
        """The names of its path parameters."""
        return tuple(re.findall(r"\{(\w+)\}", self.template))


class Deferred(tornado.web.RequestHandler):
    """Stands in Tornado's table for the handler ``target`` (``"module:Class"``), imported
    when the first request for it comes (``Application.get_handler_delegate``)."""

    target = ""

    @classmethod
    def load(cls) -> type[tornado.web.RequestHandler]:
        return resolve(cls.target)


_stand_ins: dict[str, type[Deferred]] = {}


def stand_in(target: str) -> type[Deferred]:
    if target not in _stand_ins:
        name = "Deferred" + target.rpartition(":")[2]
        _stand_ins[target] = type(name, (Deferred,), {"target": target})
    return _stand_ins[target]


def handler_name(handler: type) -> str:
    return f"{handler.__module__}:{handler.__qualname__}"


def resolve(target: type[tornado.web.RequestHandler] | str) -> type[tornado.web.RequestHandler]:
    if isinstance(target, type):
        return target
    module, _, name = target.partition(":")
    handler: type[tornado.web.RequestHandler] = getattr(importlib.import_module(module), name)
    return handler


def api_routes() -> list[Route]:
    return [
        Route("/", misc.WelcomeHandler),
        Route("/ping", misc.PingHandler),
        Route("/version", misc.VersionHandler),
        Route("/openapi.json", LATER + "openapi:OpenAPIHandler"),
        Route("/sessions", jobs.SessionsHandler),
        Route("/jobs", jobs.JobsHandler),
        Route("/pids", jobs.PidsHandler),
        Route("/jobs/{sid}", jobs.SessionHandler),
        Route("/jobs/{sid}/{name}", jobs.JobHandler),
        Route("/jobs/{sid}/{name}/stats", jobs.JobStatsHandler),
        Route("/jobs/{sid}/{name}/pids", jobs.JobPidsHandler),
        Route("/jobs/{sid}/{name}/state", jobs.JobStateHandler),
        Route("/jobs/{sid}/{name}/numprocesses", jobs.JobNumprocessesHandler),
        Route("/jobs/{sid}/{name}/signal", jobs.JobSignalHandler),
        Route("/jobs/{sid}/{name}/commit", jobs.JobCommitHandler),
        Route("/jobs/{sid}/{name}/logs", LATER + "logs:LogsHandler"),
        Route("/logs", LATER + "logs:AllLogsHandler"),
        Route("/watch", LATER + "streams:WatchHandler"),
        Route("/watch/{a}", LATER + "streams:WatchHandler"),
        Route("/watch/{a}/{b}", LATER + "streams:WatchHandler"),
        Route("/watch/{a}/{b}/{c}", LATER + "streams:WatchHandler"),
        Route("/stats/{sid}/{name}", LATER + "streams:StatsStreamHandler"),
        Route("/streams/{pid}/stdin", LATER + "streams:StdinHandler"),
        Route("/streams/{pid}/{label}", LATER + "streams:OutputStreamHandler"),
        Route("/channel", LATER + "channel:ChannelHandler"),
        Route("/daemon/restart", LATER + "daemon:DaemonRestartHandler"),
        Route("/daemon/state", LATER + "daemon:DaemonStateHandler"),
        Route("/metrics", LATER + "observe:MetricsHandler"),
        Route("/overview", LATER + "observe:OverviewHandler"),
        Route("/dashboard", LATER + "observe:DashboardRedirectHandler"),
        Route("/dashboard/{path}", LATER + "observe:DashboardHandler"),
        Route("/cluster/nodes", LATER + "cluster:ClusterNodesHandler"),
        Route("/cluster/jobs", LATER + "cluster:ClusterJobsHandler"),
        Route("/cluster/jobs/{sid}/{name}", LATER + "cluster:ClusterJobHandler"),
        Route("/{pid}", processes.ProcessHandler),
        Route("/{pid}/signal", processes.ProcessSignalHandler),
        Route("/{pid}/stats", processes.ProcessStatsHandler),
        Route("/{pid}/channel", LATER + "pidchannel:PidChannelHandler"),
        Route("/{pid}/channel/{stream}", LATER + "pidchannel:PidChannelHandler"),
        Route("/auth", LATER + "accounts:AuthHandler"),
        Route("/keys", LATER + "accounts:KeysHandler"),
        Route("/keys/{key}", LATER + "accounts:KeyHandler"),
        Route("/users", LATER + "accounts:UsersHandler"),
        Route("/users/{username}", LATER + "accounts:UserHandler"),
        Route("/users/{username}/password", LATER + "accounts:UserPasswordHandler"),
        Route("/users/{username}/key", LATER + "accounts:UserKeyHandler"),
    ]


def routes(plugin_sites: Mapping[str, str]) -> list[Any]:
    table: list[Any] = [(route.pattern, route.table_target, route.kwargs) for route in api_routes()]
    for name, directory in plugin_sites.items():
        table.append(
            (
                rf"/_plugin/{re.escape(name)}/(.*)",
                misc.SiteHandler,
                {"path": directory, "default_filename": "index.html"},
            )
        )
        table.append(
            (
                rf"/_plugin/{re.escape(name)}",
                tornado.web.RedirectHandler,
                {"url": f"/_plugin/{name}/"},
            )
        )
    table.append((r".*", misc.NotFoundHandler))
    return table
