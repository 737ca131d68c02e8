"""The route table of the HTTP API, declared once.

Each route is an OpenAPI path template (``/jobs/{sid}/{name}``) and its handler; the
Tornado pattern is derived from the template, and ``/openapi.json`` from the templates
and the handlers' ``ops``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import tornado.web

from gaffer.http.handlers import (
    channel,
    cluster,
    daemon,
    jobs,
    misc,
    observe,
    pidchannel,
    processes,
)

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
    handler: type[tornado.web.RequestHandler]
    kwargs: dict[str, Any] = field(default_factory=dict)
    documented: bool = True

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


def api_routes() -> list[Route]:
    from gaffer.http.handlers import accounts, logs, openapi, streams

    return [
        Route("/", misc.WelcomeHandler),
        Route("/ping", misc.PingHandler),
        Route("/version", misc.VersionHandler),
        Route("/openapi.json", openapi.OpenAPIHandler),
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
        Route("/jobs/{sid}/{name}/logs", logs.LogsHandler),
        Route("/logs", logs.AllLogsHandler),
        Route("/watch", streams.WatchHandler),
        Route("/watch/{a}", streams.WatchHandler),
        Route("/watch/{a}/{b}", streams.WatchHandler),
        Route("/watch/{a}/{b}/{c}", streams.WatchHandler),
        Route("/stats/{sid}/{name}", streams.StatsStreamHandler),
        Route("/streams/{pid}/stdin", streams.StdinHandler),
        Route("/streams/{pid}/{label}", streams.OutputStreamHandler),
        Route("/channel", channel.ChannelHandler),
        Route("/daemon/restart", daemon.DaemonRestartHandler),
        Route("/daemon/state", daemon.DaemonStateHandler),
        Route("/metrics", observe.MetricsHandler),
        Route("/overview", observe.OverviewHandler),
        Route("/dashboard", observe.DashboardRedirectHandler),
        Route("/dashboard/{path}", observe.DashboardHandler),
        Route("/cluster/nodes", cluster.ClusterNodesHandler),
        Route("/cluster/jobs", cluster.ClusterJobsHandler),
        Route("/cluster/jobs/{sid}/{name}", cluster.ClusterJobHandler),
        Route("/{pid}", processes.ProcessHandler),
        Route("/{pid}/signal", processes.ProcessSignalHandler),
        Route("/{pid}/stats", processes.ProcessStatsHandler),
        Route("/{pid}/channel", pidchannel.PidChannelHandler),
        Route("/{pid}/channel/{stream}", pidchannel.PidChannelHandler),
        Route("/auth", accounts.AuthHandler),
        Route("/keys", accounts.KeysHandler),
        Route("/keys/{key}", accounts.KeyHandler),
        Route("/users", accounts.UsersHandler),
        Route("/users/{username}", accounts.UserHandler),
        Route("/users/{username}/password", accounts.UserPasswordHandler),
        Route("/users/{username}/key", accounts.UserKeyHandler),
    ]


def routes(plugin_sites: Mapping[str, str]) -> list[Any]:
    table: list[Any] = [(route.pattern, route.handler, route.kwargs) for route in api_routes()]
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
