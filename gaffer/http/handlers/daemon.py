"""``/daemon/restart`` and ``/daemon/state``: gafferd itself, for admin keys.

Both run commands of the one table (gaffer/http/commands.py), which asks gafferd through
``Policy.daemon``; served by an embedded manager they answer 404.
"""

from __future__ import annotations

from gaffer.http.handlers.base import BaseHandler, Op


class DaemonRestartHandler(BaseHandler):
    ops = {
        "post": Op(
            "Restart gafferd in place (the same or newer installed code) keeping every "
            "process: the new gafferd is checked first, then handed everything; the answer "
            "comes before the hand-over",
            permission="admin",
            statuses=(202, 403, 404, 409),
        )
    }

    async def post(self) -> None:
        result = await self.call("daemon_restart")
        self.write_json({"ok": True, **result}, 202)


class DaemonStateHandler(BaseHandler):
    ops = {
        "get": Op(
            "gafferd's own state: pid, hand-overs, and what it records of the operator's "
            "requests (the state file: jobs loaded, scaled or stopped through the API)",
            permission="admin",
            statuses=(200, 403, 404),
        )
    }

    def get(self) -> None:
        self.write_json(self.call("daemon_state"))
