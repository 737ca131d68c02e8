"""One process: ``/<pid>``, ``/<pid>/signal``, ``/<pid>/stats``."""

from __future__ import annotations

from gaffer.http.handlers.base import BaseHandler, Op, as_pid


class ProcessHandler(BaseHandler):
    ops = {
        "head": Op("Whether the process runs", permission="read on its job", statuses=(200, 404)),
        "get": Op(
            "The process's info (a key other than admin sees its job's own environment, "
            "redacted, and how many variables it inherited)",
            permission="read on its job",
            statuses=(200, 404),
        ),
        "delete": Op(
            "Stop the process (a kept-alive job gets a new one)",
            permission="manage on its job",
            statuses=(202, 404),
        ),
    }

    def head(self, pid: str) -> None:
        self.call("process_exists", pid=as_pid(pid))
        self.set_status(200)
        self.finish()

    def get(self, pid: str) -> None:
        self.write_json(self.call("process_info", pid=as_pid(pid)))

    def delete(self, pid: str) -> None:
        self.call("stop_process", pid=as_pid(pid))
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
        call = self.authorize("kill", pid=as_pid(pid))
        body = self.json_body("Signal")
        self.execute("kill", call, sig=body["signal"])
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
        self.write_json({"stats": await self.call("process_stats", pid=as_pid(pid))})
