"""The route table of the HTTP API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tornado.web

from gaffer.http.handlers import misc


def routes(plugin_sites: Mapping[str, str]) -> list[Any]:
    table: list[Any] = [
        (r"/", misc.WelcomeHandler),
        (r"/ping", misc.PingHandler),
        (r"/version", misc.VersionHandler),
    ]
    for name, directory in plugin_sites.items():
        table.append(
            (
                rf"/_plugin/{name}/(.*)",
                misc.SiteHandler,
                {"path": directory, "default_filename": "index.html"},
            )
        )
        table.append(
            (rf"/_plugin/{name}", tornado.web.RedirectHandler, {"url": f"/_plugin/{name}/"})
        )
    table.append((r".*", misc.NotFoundHandler))
    return table
