"""``/``, ``/ping``, ``/version``, plugin sites, the 404 of unknown paths, and the
answer to requests refused before routing (gaffer/http/sameorigin.py)."""

from __future__ import annotations

import json
from typing import Any

import tornado.web

import gaffer
from gaffer.http.handlers.base import BaseHandler, Op, RequestError, allowed_methods, error_status


class PublicHandler(BaseHandler):
    """Answers without a key (probes, version checks)."""

    async def prepare(self) -> None:
        self._cors()
        try:
            self.check_body()
        except RequestError as exc:
            self.refuse(exc)


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
    """A plugin's static site; its errors are the API's JSON errors."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if exc_info is not None and not isinstance(exc_info[1], tornado.web.HTTPError):
            status, code, reason = error_status(exc_info[1])
        else:
            status, code = (
                status_code,
                {404: "not_found", 405: "method_not_allowed"}.get(status_code, "error"),
            )
            reason = f"{self.request.method} {self.request.path}: {self._reason}"
        if status == 405:
            self.set_header("Allow", ", ".join(allowed_methods(type(self))))
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": code, "reason": reason}))


class RefusedHandler(BaseHandler):
    """Every request refused before its route is known: answered (after its body, which
    is read and dropped) with the error it was given."""

    def initialize(self, error: tuple[int, str, str] = (404, "not_found", ""), **kw: Any) -> None:
        super().initialize(**kw)
        self.error = RequestError(*error)

    async def prepare(self) -> None:
        self._cors()
        self.refuse(self.error)

    def _answer(self, *args: Any, **kwargs: Any) -> None:
        raise self.error

    get = head = post = put = delete = patch = options = _answer


class NotFoundHandler(RefusedHandler):
    def initialize(self, **kwargs: Any) -> None:
        super().initialize(**kwargs)
        self.error = RequestError(404, "not_found", f"no route for {self.request.path}")
