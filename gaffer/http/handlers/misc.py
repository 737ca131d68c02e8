"""``/``, ``/ping``, ``/version``, plugin sites, and the 404 of unknown paths."""

from __future__ import annotations

import tornado.web

import gaffer
from gaffer.http.handlers.base import BaseHandler


class WelcomeHandler(BaseHandler):
    def get(self) -> None:
        self.write_json({"welcome": "gaffer", "version": gaffer.__version__})


class PingHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.finish("OK")


class VersionHandler(BaseHandler):
    def get(self) -> None:
        self.write_json({"name": "gaffer", "version": gaffer.__version__})


class SiteHandler(tornado.web.StaticFileHandler):
    """A plugin's static site."""


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        self.send_error_json(404, "not_found", f"no route for {self.request.path}")
