"""``/``, ``/ping``, ``/version``, plugin sites, and the 404 of unknown paths."""

from __future__ import annotations

import tornado.web

import gaffer
from gaffer.http.handlers.base import BaseHandler, Op, RequestError


class PublicHandler(BaseHandler):
    """Answers without a key (probes, version checks)."""

    async def prepare(self) -> None:
        self._cors()


class WelcomeHandler(PublicHandler):
    ops = {"get": Op("Welcome: the name and version")}

    def get(self) -> None:
        self.write_json({"welcome": "gaffer", "version": gaffer.__version__})


class PingHandler(PublicHandler):
    ops = {"get": Op("OK (text): the daemon answers", response="text/plain")}

    def get(self) -> None:
        self.write_text("OK")


class VersionHandler(PublicHandler):
    ops = {"get": Op("The name and version")}

    def get(self) -> None:
        self.write_json({"name": "gaffer", "version": gaffer.__version__})


class SiteHandler(tornado.web.StaticFileHandler):
    """A plugin's static site."""


class NotFoundHandler(BaseHandler):
    async def prepare(self) -> None:
        raise RequestError(404, "not_found", f"no route for {self.request.path}")
