"""One process: ``/<pid>``, ``/<pid>/signal``, ``/<pid>/stats``."""

from __future__ import annotations

from typing import Any

from gaffer.http.handlers.base import BaseHandler, Op, as_pid


def process_of(handler: BaseHandler, pid: str, right: str) -> Any:
    """The process once the key may ``right`` its job (404 for an unknown pid)."""
    proc = handler.manager.get_process(as_pid(pid))
    handler.require(right, proc.name)
    return proc


class ProcessHandler(BaseHandler):
    ops = {
        "head": Op("Whether the process runs", permission="read on its job", statuses=(200, 404)),
        "get": Op("The process's info", permission="read on its job", statuses=(200, 404)),
        "delete": Op(
            "Stop the process (a kept-alive job gets a new one)",
            permission="manage on its job",
            statuses=(202, 404),
        ),
    }

    def head(self, pid: str) -> None:
        process_of(self, pid, "read")
        self.set_status(200)
        self.finish()

    def get(self, pid: str) -> None:
        info = process_of(self, pid, "read").info
        info["env"] = self.redact(info["env"])
        self.write_json(info)

    def delete(self, pid: str) -> None:
        proc = process_of(self, pid, "manage")
        self.manager.stop_process(proc.pid)
        self.write_json({"ok": True}, 202)


class ProcessSignalHandler(BaseHandler):
    ops = {
        "post": Op(
            "Send a signal to the process",
            body="Signal",
            permission="manage on its job",
            statuses=(202, 400, 404),
        )
    }

    def post(self, pid: str) -> None:
        proc = process_of(self, pid, "manage")
        body = self.json_body("Signal")
        self.manager.kill(proc.pid, body["signal"])
        self.write_json({"ok": True}, 202)


class ProcessStatsHandler(BaseHandler):
    ops = {
        "get": Op(
            "CPU and memory of the process and its children",
            permission="read on its job",
            statuses=(200, 404),
        )
    }

    async def get(self, pid: str) -> None:
        proc = process_of(self, pid, "read")
        self.write_json({"stats": await self.manager.aprocess_stats(proc.pid)})
