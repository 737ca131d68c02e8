"""``/``, ``/ping``, ``/version``, plugin sites, and the 404 of unknown paths."""

from __future__ import annotations

import tornado.web

import gaffer
from gaffer.http.handlers.base import ApiError, BaseHandler, Op


class WelcomeHandler(BaseHandler):
    ops = {"get": Op("Welcome: the name and version")}

    def get(self) -> None:
        self.write_json({"welcome": "gaffer", "version": gaffer.__version__})


class PingHandler(BaseHandler):
    ops = {"get": Op("OK (text): the daemon answers", response="text/plain")}

    async def prepare(self) -> None:  # no key needed: monitoring probes use it
        self._cors()

    def get(self) -> None:
        self.write_text("OK")


class VersionHandler(BaseHandler):
    ops = {"get": Op("The name and version")}

    def get(self) -> None:
        self.write_json({"name": "gaffer", "version": gaffer.__version__})


class SiteHandler(tornado.web.StaticFileHandler):
    """A plugin's static site."""


class NotFoundHandler(BaseHandler):
    async def prepare(self) -> None:
        raise ApiError(404, "not_found", f"no route for {self.request.path}")
