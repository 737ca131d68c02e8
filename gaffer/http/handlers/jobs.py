"""Sessions and jobs: ``/sessions``, ``/jobs``, ``/pids``, ``/jobs/<sid>[/<name>[/...]]``.

Lists show what the key may read. On a job, the permission is checked before the job is
looked up, so a key learns nothing of jobs it may not see.
"""

from __future__ import annotations

from typing import Any

from gaffer.core.config import ProcessConfig
from gaffer.core.names import validate_session
from gaffer.errors import InvalidArgument, ProcessNotFound
from gaffer.http.handlers.base import ApiError, BaseHandler, Op
from gaffer.http.schema import config_json

READ, WRITE, MANAGE = "read", "write", "manage"


class SessionsHandler(BaseHandler):
    ops = {"get": Op("Sessions with at least one job the key may read")}

    def get(self) -> None:
        manager = self.manager
        sessions = [
            sid
            for sid in manager.sessions
            if any(self.permissions.can_read(job) for job in manager.jobs(sid))
        ]
        self.write_json({"sessions": sessions})


class JobsHandler(BaseHandler):
    ops = {"get": Op("Every job the key may read, as session.name ids")}

    def get(self) -> None:
        jobs = [job for job in self.manager.jobs() if self.permissions.can_read(job)]
        self.write_json({"jobs": jobs})


class PidsHandler(BaseHandler):
    ops = {"get": Op("Every running pid (one-off processes included) of jobs the key may read")}

    def get(self) -> None:
        running = self.manager.running
        pids = [pid for pid, proc in list(running.items()) if self.permissions.can_read(proc.name)]
        self.write_json({"pids": pids})


class SessionHandler(BaseHandler):
    ops = {
        "get": Op(
            "The jobs of a session", permission="read on the session's jobs", statuses=(200, 404)
        ),
        "post": Op(
            "Load a job in the session (`start` defaults to true)",
            body="JobConfig",
            permission="manage on the session",
            statuses=(200, 400, 403, 409),
        ),
    }

    def get(self, sid: str) -> None:
        jobs = self.manager.jobs(sid)  # 404 for an unknown session
        readable = [job for job in jobs if self.permissions.can_read(job)]
        if jobs and not readable:
            self.require(READ, sid)
        self.write_json({"sessionid": sid, "jobs": readable})

    def post(self, sid: str) -> None:
        _valid_session(sid)
        self.require(MANAGE, sid)
        body = self.json_body("JobConfig")
        if "name" not in body:
            raise ApiError(400, "bad_request", "body.name: required")
        start = body.pop("start", True)
        self.manager.load(job_config(self, body), sessionid=sid, start=start)
        self.write_json({"ok": True})


class JobHandler(BaseHandler):
    ops = {
        "head": Op("Whether the job exists", permission="read", statuses=(200, 404)),
        "get": Op(
            "The job's info: state, processes, config", permission="read", statuses=(200, 404)
        ),
        "put": Op(
            "Give the job a new config: its processes are replaced",
            body="JobConfig",
            permission="manage",
            statuses=(201, 400, 404),
        ),
        "delete": Op(
            "Unload the job, stopping its processes", permission="manage", statuses=(200, 404)
        ),
    }

    def head(self, sid: str, name: str) -> None:
        job = self.job_id(sid, name, READ)
        self.manager.get(job)
        self.set_status(200)
        self.finish()

    def get(self, sid: str, name: str) -> None:
        info = self.manager.info(self.job_id(sid, name, READ))
        info["config"] = config_json(info["config"])
        info["config"]["env"] = self.redact(info["config"]["env"])
        self.write_json(info)

    def put(self, sid: str, name: str) -> None:
        job = self.job_id(sid, name, MANAGE)
        body = self.json_body("JobConfig")
        if body.setdefault("name", name) != name:
            raise ApiError(
                400,
                "bad_request",
                f"body.name {body['name']!r} is not the job of the path, {name!r}",
            )
        start = body.pop("start", False)
        self.manager.get(job)  # 404 before anything changes
        self.manager.update(job_config(self, body), sessionid=sid, start=start)
        self.write_json({"ok": True}, 201)

    def delete(self, sid: str, name: str) -> None:
        self.manager.unload(self.job_id(sid, name, MANAGE))
        self.write_json({"ok": True})

    def job_id(self, sid: str, name: str, right: str) -> str:
        return job_id(self, sid, name, right)


class JobStatsHandler(BaseHandler):
    ops = {
        "get": Op(
            "CPU and memory of the job's processes, with totals",
            permission="read",
            statuses=(200, 404),
        )
    }

    async def get(self, sid: str, name: str) -> None:
        self.write_json(await self.manager.astats(job_id(self, sid, name, READ)))


class JobPidsHandler(BaseHandler):
    ops = {
        "get": Op(
            "The pids of the job's kept-alive processes", permission="read", statuses=(200, 404)
        )
    }

    def get(self, sid: str, name: str) -> None:
        self.write_json({"pids": self.manager.pids(job_id(self, sid, name, READ))})


class JobStateHandler(BaseHandler):
    ops = {
        "get": Op(
            "1 when the job has live processes, else 0 (text)",
            permission="read",
            statuses=(200, 404),
            response="text/plain",
        ),
        "post": Op(
            "Text 1 (or start) starts the job, a fatal one too; 0 (stop) stops it; "
            "2 (reload) reloads it",
            body="text",
            permission="manage",
            statuses=(202, 400, 404),
        ),
    }

    def get(self, sid: str, name: str) -> None:
        info = self.manager.info(job_id(self, sid, name, READ))
        self.write_text("1" if info["active"] else "0")

    def post(self, sid: str, name: str) -> None:
        job = job_id(self, sid, name, MANAGE)
        text = self.body.decode(errors="replace").strip().strip('"')
        action = {
            "1": self.manager.start_job,
            "start": self.manager.start_job,  # also a fatal job: its history is reset
            "0": self.manager.stop_job,
            "stop": self.manager.stop_job,
            "2": self.manager.reload,
            "reload": self.manager.reload,
        }.get(text.lower())
        if action is None:
            raise ApiError(
                400,
                "bad_request",
                f"the state must be 1 or start, 0 or stop, 2 or reload, got {text[:20]!r}",
            )
        action(job)
        self.write_json({"ok": True}, 202)


class JobNumprocessesHandler(BaseHandler):
    ops = {
        "get": Op("The job's target number of processes", permission="read", statuses=(200, 404)),
        "post": Op(
            "Scale the job: n or +n adds, -n subtracts, =n sets",
            body="Scale",
            permission="manage",
            statuses=(200, 400, 404),
        ),
    }

    def get(self, sid: str, name: str) -> None:
        info = self.manager.info(job_id(self, sid, name, READ))
        self.write_json({"numprocesses": info["numprocesses"]})

    def post(self, sid: str, name: str) -> None:
        job = job_id(self, sid, name, MANAGE)
        body = self.json_body("Scale")
        self.write_json({"numprocesses": self.manager.scale(job, body["scale"])})


class JobSignalHandler(BaseHandler):
    ops = {
        "post": Op(
            "Send a signal to every process of the job",
            body="Signal",
            permission="manage",
            statuses=(202, 400, 404),
        )
    }

    def post(self, sid: str, name: str) -> None:
        job = job_id(self, sid, name, MANAGE)
        body = self.json_body("Signal")
        self.manager.killall(job, body["signal"])
        self.write_json({"ok": True}, 202)


class JobCommitHandler(BaseHandler):
    ops = {
        "post": Op(
            "Run one more process of the job, once; returns its pid",
            body="Commit",
            permission="manage",
            statuses=(200, 400, 404, 500),
        )
    }

    def post(self, sid: str, name: str) -> None:
        job = job_id(self, sid, name, MANAGE)
        body = self.json_body("Commit")
        pid = self.manager.commit(
            job, graceful_timeout=body.get("graceful_timeout"), env=body.get("env")
        )
        self.write_json({"pid": pid})


def job_id(handler: BaseHandler, sid: str, name: str, right: str) -> str:
    """``sid.name`` once the key may ``right`` it (403 before anything else)."""
    _valid_session(sid)
    job = f"{sid}.{name}"
    handler.require(right, job)
    return job


def job_config(handler: BaseHandler, body: dict[str, Any]) -> ProcessConfig:
    """A job config from a validated body; running as another user needs an admin key."""
    if (
        body.get("uid") is not None or body.get("gid") is not None
    ) and not handler.permissions.is_admin:
        raise ApiError(403, "forbidden", "only an admin key may set uid or gid")
    return ProcessConfig.from_dict(body)


def _valid_session(sid: str) -> None:
    try:
        validate_session(sid)
    except InvalidArgument as exc:
        raise ProcessNotFound(str(exc)) from None
