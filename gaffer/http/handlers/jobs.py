"""Sessions and jobs: ``/sessions``, ``/jobs``, ``/pids``, ``/jobs/<sid>[/<name>[/...]]``.

Every verb runs a command of the one table (gaffer/http/commands.py), which checks the
key's right before the job is looked up: a key learns nothing of jobs it may not see.
"""

from __future__ import annotations

from gaffer.core.names import validate_session
from gaffer.errors import ProcessNotFound
from gaffer.http.handlers.base import BaseHandler, Op, RequestError


class SessionsHandler(BaseHandler):
    ops = {"get": Op("Sessions with at least one job the key may read")}

    def get(self) -> None:
        self.write_json({"sessions": self.call("sessions")})


class JobsHandler(BaseHandler):
    ops = {"get": Op("Every job the key may read, as session.name ids")}

    def get(self) -> None:
        self.write_json({"jobs": self.call("jobs")})


class PidsHandler(BaseHandler):
    ops = {"get": Op("Every running pid (one-off processes included) of jobs the key may read")}

    def get(self) -> None:
        self.write_json({"pids": self.call("pids")})


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
        jobs = self.call("jobs", sessionid=session_id(sid))
        self.write_json({"sessionid": sid, "jobs": jobs})

    def post(self, sid: str) -> None:
        # the right first, then the body: a key that may not load learns nothing more
        call = self.authorize("load", sessionid=session_id(sid))
        body = self.json_body("JobConfig")
        if "name" not in body:
            raise RequestError(400, "bad_request", "body.name: required")
        start = body.pop("start", True)
        self.execute("load", call, config=body, start=start)
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
        self.call("exists", name=job_id(sid, name))
        self.set_status(200)
        self.finish()

    def get(self, sid: str, name: str) -> None:
        self.write_json(self.call("info", name=job_id(sid, name)))

    def put(self, sid: str, name: str) -> None:
        job = job_id(sid, name)
        call = self.authorize("update", name=job)
        body = self.json_body("JobConfig")
        if body.setdefault("name", name) != name:
            raise RequestError(
                400,
                "bad_request",
                f"body.name {body['name']!r} is not the job of the path, {name!r}",
            )
        start = body.pop("start", False)
        self.execute("update", call, config=body, start=start)
        self.write_json({"ok": True}, 201)

    def delete(self, sid: str, name: str) -> None:
        self.call("unload", name=job_id(sid, name))
        self.write_json({"ok": True})


class JobStatsHandler(BaseHandler):
    ops = {
        "get": Op(
            "CPU and memory of the job's processes, with totals",
            permission="read",
            statuses=(200, 404),
        )
    }

    async def get(self, sid: str, name: str) -> None:
        self.write_json(await self.call("stats", name=job_id(sid, name)))


class JobPidsHandler(BaseHandler):
    ops = {
        "get": Op(
            "The pids of the job's kept-alive processes", permission="read", statuses=(200, 404)
        )
    }

    def get(self, sid: str, name: str) -> None:
        self.write_json({"pids": self.call("job_pids", name=job_id(sid, name))})


class JobStateHandler(BaseHandler):
    body_types = ("application/json", "application/octet-stream")
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
        info = self.call("info", name=job_id(sid, name))
        self.write_text("1" if info["active"] else "0")

    def post(self, sid: str, name: str) -> None:
        job = job_id(sid, name)
        self.authorize("start_job", name=job)
        text = self.body.decode(errors="replace").strip().strip('"')
        command = {
            "1": "start_job",
            "start": "start_job",  # also a fatal job: its history is reset
            "0": "stop_job",
            "stop": "stop_job",
            "2": "reload",
            "reload": "reload",
        }.get(text.lower())
        if command is None:
            raise RequestError(
                400,
                "bad_request",
                f"the state must be 1 or start, 0 or stop, 2 or reload, got {text[:20]!r}",
            )
        self.call(command, name=job)
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
        info = self.call("info", name=job_id(sid, name))
        self.write_json({"numprocesses": info["numprocesses"]})

    def post(self, sid: str, name: str) -> None:
        job = job_id(sid, name)
        call = self.authorize("scale", name=job)
        body = self.json_body("Scale")
        self.write_json({"numprocesses": self.execute("scale", call, n=body["scale"])})


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
        job = job_id(sid, name)
        call = self.authorize("killall", name=job)
        body = self.json_body("Signal")
        self.execute("killall", call, sig=body["signal"])
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
        job = job_id(sid, name)
        call = self.authorize("commit", name=job)
        body = self.json_body("Commit")
        pid = self.execute(
            "commit", call, graceful_timeout=body.get("graceful_timeout"), env=body.get("env")
        )
        self.write_json({"pid": pid})


def session_id(sid: str) -> str:
    """The session id of a path: one with a dot (``%2E``) is no route (404), one that is
    no name (control characters, too long) is a 400 ``bad_name``."""
    if "." in sid or "/" in sid:
        raise ProcessNotFound(f"no route for session {sid[:40]!r}: session ids hold no '.'")
    return validate_session(sid)


def job_id(sid: str, name: str) -> str:
    """The job id ``sid.name`` of a path."""
    return f"{session_id(sid)}.{name}"
