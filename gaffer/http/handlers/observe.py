"""Looking at gafferd: ``/metrics`` (Prometheus), ``/overview`` (what ``gaffer top`` and the
dashboard show) and ``/dashboard/`` (the page, static files shipped in the package).

Both data routes show the jobs the key may read, and the serving process's own figures
only to a key that may read everything. With the ``metrics_without_key = loopback``
setting, /metrics answers requests from loopback addresses and unix sockets without a key;
it also takes the key as ``Authorization: Bearer <key>``, as Prometheus sends it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path
from typing import Any

import tornado.web

import gaffer
from gaffer.core.names import split_job_id
from gaffer.errors import InvalidArgument, ProcessNotFound
from gaffer.http import commands
from gaffer.http.auth import LOCAL
from gaffer.http.handlers.base import BaseHandler, Op, RequestError
from gaffer.http.handlers.misc import SiteHandler
from gaffer.http.metrics import CONTENT_TYPE, exposition

DASHBOARD_DIR = str(Path(__file__).resolve().parent.parent / "dashboard")
METRICS_WITHOUT_KEY = ("never", "loopback")
_FILE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def is_local(family: Any, address: str | None) -> bool:
    """A request from this host: a unix socket, or a loopback address (127.0.0.0/8, ::1).
    Behind a reverse proxy on the same host every request looks local: do not use
    ``metrics_without_key`` there."""
    if family == socket.AF_UNIX:
        return True
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


class ObserveHandler(BaseHandler):
    def compute_etag(self) -> None:
        """No ETag: the figures change at every request, and hashing 300 KB costs."""
        return None

    @property
    def telemetry(self) -> Any:
        return self.settings.get("telemetry")


class MetricsHandler(ObserveHandler):
    ops = {
        "get": Op(
            "Prometheus metrics (text format 0.0.4): the jobs the key may read and their "
            "processes; gafferd's own with a key that may read everything",
            permission="read",
            statuses=(200, 401, 403),
            response="text/plain",
        )
    }

    async def prepare(self) -> None:
        context = getattr(self.request.connection, "context", None)
        local = is_local(getattr(context, "address_family", None), self.request.remote_ip)
        if local and self.settings.get("metrics_without_key") == "loopback":
            self._cors()
            self.permissions = LOCAL
            return
        # Prometheus sends credentials as "Authorization: Bearer <key>" (its
        # `authorization` or `bearer_token_file` settings): taken here like X-Api-Key
        scheme, _, bearer = self.request.headers.get("Authorization", "").partition(" ")
        auth = self.settings.get("auth")
        if scheme.lower() == "bearer" and "X-Api-Key" not in self.request.headers and auth:
            self._cors()
            self.permissions, self.key_id = await auth.identify(bearer.strip() or None)
            return
        await super().prepare()

    async def get(self) -> None:
        usage = await self.call("usage")
        everything = commands.sees_everything(self.permissions)
        text = exposition(
            usage,
            self.telemetry if everything else None,
            self.manager.events.published if everything else None,
        )
        self.set_header("Content-Type", CONTENT_TYPE)
        self.set_header("Cache-Control", "no-cache")
        self.finish(text)


class OverviewHandler(ObserveHandler):
    ops = {
        "get": Op(
            "Every job the key may read (or those of ?job=) with its state, CPU and memory "
            "totals, and per process its stats, open descriptors and uptime; gafferd's own "
            "figures with a key that may read everything (what gaffer top and the "
            "dashboard show)",
            permission="read",
            statuses=(200, 400, 403, 404),
            params={
                "job": "a job id (session.name, or a name of session default); repeat it "
                "for several; default: every job the key may read",
                "children": "1: also the stats of each process's descendants (a scan of "
                "/proc); default 0",
            },
        )
    }

    async def get(self) -> None:
        children = self._flag("children")
        names = list(dict.fromkeys(self._job_id(text) for text in self.get_query_arguments("job")))
        data = await self.call("overview", names=names, children=children)
        own = data.pop("self")
        daemon = None
        if commands.sees_everything(self.permissions):
            daemon = {**(own or {}), "version": gaffer.__version__}
            if self.telemetry is not None:
                daemon.update(self.telemetry.snapshot())
            daemon["events_published"] = self.manager.events.published
        data["daemon"] = daemon
        self.write_json(data)

    def _job_id(self, text: str) -> str:
        try:
            session, name = split_job_id(text)
        except (InvalidArgument, ValueError) as exc:
            raise RequestError(400, "bad_request", f"job={text[:80]!r}: {exc}") from None
        return f"{session}.{name}"

    def _flag(self, name: str) -> bool:
        value = self.get_query_argument(name, "0").strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise RequestError(400, "bad_request", f"{name} must be 0 or 1, got {value[:20]!r}")


class DashboardRedirectHandler(BaseHandler):
    ops = {"get": Op("Redirects to /dashboard/", statuses=(301,), response="text/html")}

    async def prepare(self) -> None:
        self._cors()

    def get(self) -> None:
        self.redirect("/dashboard/", permanent=True)


class DashboardHandler(SiteHandler):
    """The dashboard's files. No key is needed for them (they hold no data: the page asks
    the API for everything, with the user's key); errors are the API's JSON."""

    op = Op("The dashboard (docs/observability.md): its HTML, CSS and JS", statuses=(200, 404))
    ops = {"get": op, "head": Op(op.summary, statuses=op.statuses)}

    def initialize(self, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(path=DASHBOARD_DIR, default_filename="index.html")

    def parse_url_path(self, url_path: str) -> str:
        # the dashboard is a few files side by side: any other name (a sub-directory,
        # "..", a NUL byte, which os.path cannot take) is simply not one of them
        if url_path and (url_path.startswith(".") or not _FILE_NAME.fullmatch(url_path)):
            raise tornado.web.HTTPError(404)
        return super().parse_url_path(url_path)

    def set_extra_headers(self, path: str) -> None:
        # the page loads nothing but its own files and talks only to this gafferd
        self.set_header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        )
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-cache")

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError | ProcessNotFound):
            return
        super().log_exception(typ, value, tb)
