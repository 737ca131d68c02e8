"""The asyncio client: ``AsyncServer`` and the objects it gives (jobs, processes, keys,
users), mirroring the original gaffer client (reference section 5.6).

::

    async with AsyncServer("unix:/run/gaffer/gafferd.sock") as server:
        job = await server.load({"name": "web", "cmd": "python -m http.server"})
        await job.scale("+1")
        print(await job.info())
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from gaffer.client.transport import Transport
from gaffer.errors import NotFound


def _job(name: str, sessionid: str | None = None) -> tuple[str, str]:
    """``(session, name)`` of a job id (``web`` is ``default.web``)."""
    if sessionid is not None:
        return sessionid, name
    session, dot, bare = name.partition(".")
    return (session, bare) if dot else ("default", name)


def _config_body(config: Any) -> dict[str, Any]:
    """The JSON body of a job config: a dict as it is, a ``ProcessConfig`` as its
    ``to_dict()``, as the original client sent it."""
    to_dict = getattr(config, "to_dict", None)
    return dict(to_dict() if callable(to_dict) else config)


def _q(part: str | int) -> str:
    return quote(str(part), safe="")


def _logs_query(lines: int | None, stream: str, **more: Any) -> str:
    """The query of a logs request: ``lines`` None is every line kept."""
    query = {"lines": "all" if lines is None else str(lines), "stream": stream}
    query.update({key: str(value) for key, value in more.items() if value is not None})
    return urlencode(query)


class AsyncServer:
    """A gafferd, over HTTP(S) or a unix socket.

    Args:
        url: ``http(s)://host:port``, ``host:port`` or ``unix:/path`` (default
            ``http://127.0.0.1:5000``).
        api_key: sent as X-Api-Key.
        certfile, keyfile, cacert, verify: TLS client settings.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, **options: Any) -> None:
        self.transport = Transport(url, api_key, **options)

    @property
    def url(self) -> str:
        return self.transport.url

    @property
    def api_key(self) -> str | None:
        return self.transport.api_key

    async def __aenter__(self) -> AsyncServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    async def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        return await self.transport.request(method, path, body, **kwargs)

    # -- the daemon ------------------------------------------------------------------------
    async def version(self) -> str:
        return (await self.request("GET", "/version"))["version"]

    async def ping(self) -> bool:
        return (await self.request("GET", "/ping")) == "OK"

    async def authenticate(self, username: str, password: str) -> str:
        """Trade a user's credentials for a login key (kept for the next requests)."""
        import base64

        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        answer = await self.request("GET", "/auth", headers={"Authorization": f"Basic {token}"})
        self.transport.api_key = answer["api_key"]
        return answer["api_key"]

    # -- jobs ------------------------------------------------------------------------------
    async def sessions(self) -> list[str]:
        return (await self.request("GET", "/sessions"))["sessions"]

    async def jobs(self, sessionid: str | None = None) -> list[str]:
        if sessionid is None:
            return (await self.request("GET", "/jobs"))["jobs"]
        return (await self.request("GET", f"/jobs/{_q(sessionid)}"))["jobs"]

    async def pids(self) -> list[int]:
        return (await self.request("GET", "/pids"))["pids"]

    running = pids

    async def overview(
        self, jobs: Iterable[str] | None = None, children: bool = False
    ) -> dict[str, Any]:
        """Every job the key may read (or the ``jobs`` named: ``web``, ``app.web``) with
        its state, totals and per-process stats (``GET /overview``, what ``gaffer top``
        and the dashboard show). ``children``: also each process's descendants."""
        query = [("job", job) for job in jobs or ()]
        if children:
            query.append(("children", "1"))
        return await self.request("GET", "/overview" + (f"?{urlencode(query)}" if query else ""))

    async def job_exists(self, name: str, sessionid: str | None = None) -> bool:
        session, bare = _job(name, sessionid)
        return await self.transport.head(f"/jobs/{_q(session)}/{_q(bare)}")

    async def get_job(self, name: str, sessionid: str | None = None) -> AsyncJob:
        """The job (NotFound if it is not loaded)."""
        job = AsyncJob(self, *_job(name, sessionid))
        if not await self.job_exists(job.id):
            raise NotFound(404, "not_found", f"no job {job.id}")
        return job

    def job(self, name: str, sessionid: str | None = None) -> AsyncJob:
        """A handle on a job, without checking it exists."""
        return AsyncJob(self, *_job(name, sessionid))

    async def load(
        self,
        config: Any,
        sessionid: str | None = None,
        start: bool = True,
        force: bool = False,
    ) -> AsyncJob:
        """Load a job from a config: a dict, or a ``ProcessConfig`` (what its ``to_dict()``
        gives is sent); ``force`` updates it when it exists (Conflict otherwise).
        ``config["name"]`` may be ``session.name``."""
        body = _config_body(config)
        session, name = _job(body["name"], sessionid)
        body["name"] = name
        job = AsyncJob(self, session, name)
        if force and await self.job_exists(job.id):
            await self.request("PUT", f"/jobs/{_q(session)}/{_q(name)}", {**body, "start": start})
        else:
            await self.request("POST", f"/jobs/{_q(session)}", {**body, "start": start})
        return job

    async def unload(self, name: str, sessionid: str | None = None) -> None:
        await self.job(name, sessionid).unload()

    async def reload(self, name: str, sessionid: str | None = None) -> None:
        await self.job(name, sessionid).reload()

    async def jobs_walk(self, callback: Any, sessionid: str | None = None) -> None:
        for name in await self.jobs(sessionid):
            await callback(self, self.job(name))

    # -- processes -------------------------------------------------------------------------
    async def get_process(self, pid: int) -> AsyncProcess:
        process = AsyncProcess(self, int(pid))
        if not await process.active():
            raise NotFound(404, "not_found", f"no running process with pid {pid}")
        return process

    def process(self, pid: int) -> AsyncProcess:
        return AsyncProcess(self, int(pid))

    # -- feeds -----------------------------------------------------------------------------
    async def watch(self, pattern: str = ".") -> AsyncIterator[dict[str, Any]]:
        """Events matching ``pattern`` as they come (until the caller stops iterating)."""
        path = "/watch" + (
            ""
            if pattern in (".", "")
            else "/" + "/".join(_q(part) for part in pattern.split(".")[:3])
        )
        # aclosing: a consumer that stops early closes the feed now, not at some garbage
        # collection on a loop that may never run again (the blocking client's)
        async with contextlib.aclosing(
            self._lines(path + "?feed=continuous&heartbeat=30")
        ) as lines:
            async for line in lines:
                yield json.loads(line)

    async def logs(
        self, lines: int | None = 10, stream: str = "all", session: str | None = None
    ) -> list[dict[str, Any]]:
        """The last ``lines`` lines (None: all kept) of every job's output the key may
        read (of one session), interleaved by time: ``{"job", "pid", "os_pid", "stream",
        "time", "line"}`` each."""
        query = _logs_query(lines, stream, session=session)
        return (await self.request("GET", f"/logs?{query}"))["lines"]

    async def follow_logs(
        self, lines: int | None = 10, stream: str = "all", session: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The last ``lines`` lines, then every new line of every job (those loaded later
        too) as it is written; ``{"event": "gaffer.dropped", "count"}`` where lines were
        lost to a slow reader."""
        query = _logs_query(lines, stream, session=session, follow=1, heartbeat=30)
        async with contextlib.aclosing(self._lines(f"/logs?{query}")) as found:
            async for line in found:
                yield json.loads(line)

    async def _lines(self, path: str) -> AsyncIterator[bytes]:

        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        buffer = b""

        def on_chunk(chunk: bytes) -> None:
            nonlocal buffer
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    queue.put_nowait(line)

        async def fetch() -> None:
            try:
                await self.transport.stream(path, on_chunk)
            finally:
                queue.put_nowait(None)

        task = asyncio.ensure_future(fetch())
        try:
            while True:
                line = await queue.get()
                if line is None:
                    break
                yield line
            await task  # raises what the request raised
        finally:
            await _cancelled(task)

    async def socket(self) -> Any:
        """The /channel WebSocket: subscriptions and commands (gaffer.client.channel)."""
        from gaffer.client.channel import GafferSocket

        channel = GafferSocket(self.transport)
        await channel.connect()
        return channel

    # -- gafferd itself ------------------------------------------------------------------
    async def daemon_restart(self) -> dict[str, Any]:
        """Restart gafferd in place keeping every process (an admin key): its new code and
        configuration are checked first (Conflict ``handover_failed`` when they would not
        start). Answers before the hand-over: ``{"ok", "pid", "processes", "handovers"}``."""
        return await self.request("POST", "/daemon/restart")

    async def daemon_state(self) -> dict[str, Any]:
        """gafferd's own state (an admin key): pid, hand-overs, and what its state file
        records of the operator's requests."""
        return await self.request("GET", "/daemon/state")

    # -- the cluster -----------------------------------------------------------------------
    async def cluster_nodes(self) -> dict[str, Any]:
        """The nodes of gafferd's cluster, from etcd: ``{"node", "state", "nodes": [...]}``
        (NotFound with code ``no_cluster`` when it is in none)."""
        return await self.request("GET", "/cluster/nodes")

    async def cluster_jobs(self, node: str | None = None) -> list[dict[str, Any]]:
        """Every job of every node (or of ``node``): node, job, state, processes..."""
        query = f"?node={_q(node)}" if node is not None else ""
        return (await self.request("GET", f"/cluster/jobs{query}"))["jobs"]

    # -- accounts --------------------------------------------------------------------------
    @property
    def keys(self) -> AsyncKeys:
        return AsyncKeys(self)

    @property
    def users(self) -> AsyncUsers:
        return AsyncUsers(self)


class AsyncJob:
    """A job of a gafferd: ``session.name``."""

    def __init__(self, server: AsyncServer, sessionid: str, name: str) -> None:
        self.server, self.sessionid, self.name = server, sessionid, name

    @property
    def id(self) -> str:
        return f"{self.sessionid}.{self.name}"

    @property
    def path(self) -> str:
        return f"/jobs/{_q(self.sessionid)}/{_q(self.name)}"

    def __repr__(self) -> str:
        return f"<Job {self.id}>"

    async def info(self) -> dict[str, Any]:
        return await self.server.request("GET", self.path)

    async def config(self) -> dict[str, Any]:
        return (await self.info())["config"]

    async def stats(self) -> dict[str, Any]:
        return await self.server.request("GET", f"{self.path}/stats")

    async def pids(self) -> list[int]:
        return (await self.server.request("GET", f"{self.path}/pids"))["pids"]

    async def numprocesses(self) -> int:
        return (await self.server.request("GET", f"{self.path}/numprocesses"))["numprocesses"]

    async def active(self) -> bool:
        return (await self.server.request("GET", f"{self.path}/state")) == "1"

    async def _state(self, state: str) -> None:
        await self.server.request("POST", f"{self.path}/state", raw=state.encode())

    async def start(self) -> None:
        await self._state("1")

    async def stop(self) -> None:
        await self._state("0")

    async def reload(self) -> None:
        await self._state("2")

    restart = reload

    async def scale(self, n: int | str) -> int:
        answer = await self.server.request("POST", f"{self.path}/numprocesses", {"scale": n})
        return answer["numprocesses"]

    async def kill(self, sig: int | str) -> None:
        await self.server.request("POST", f"{self.path}/signal", {"signal": sig})

    async def commit(
        self, graceful_timeout: float | None = None, env: Mapping[str, str] | None = None
    ) -> int:
        body: dict[str, Any] = {}
        if graceful_timeout is not None:
            body["graceful_timeout"] = graceful_timeout
        if env:
            body["env"] = dict(env)
        return (await self.server.request("POST", f"{self.path}/commit", body))["pid"]

    async def update(self, config: Any, start: bool = False) -> None:
        """Give the job a new config (a dict or a ``ProcessConfig``)."""
        body = {**_config_body(config), "name": self.name, "start": start}
        await self.server.request("PUT", self.path, body)

    async def unload(self) -> None:
        await self.server.request("DELETE", self.path)

    async def logs(self, lines: int | None = 10, stream: str = "all") -> list[dict[str, Any]]:
        """The last ``lines`` lines (None: all kept) of the job's output, oldest first:
        ``{"job", "pid", "os_pid", "stream", "time", "line"}`` each."""
        return (await self.server.request("GET", f"{self.path}/logs?{_logs_query(lines, stream)}"))[
            "lines"
        ]

    async def follow_logs(
        self, lines: int | None = 10, stream: str = "all"
    ) -> AsyncIterator[dict[str, Any]]:
        """The last ``lines`` lines, then each new line as it is written, until the job is
        unloaded (or the caller stops iterating)."""
        path = f"{self.path}/logs?{_logs_query(lines, stream, follow=1, heartbeat=30)}"
        async with contextlib.aclosing(self.server._lines(path)) as found:
            async for line in found:
                yield json.loads(line)

    async def stats_feed(self) -> AsyncIterator[dict[str, Any]]:
        """Stats of the job's processes, every 0.1 s."""
        path = f"/stats/{_q(self.sessionid)}/{_q(self.name)}?feed=continuous"
        async with contextlib.aclosing(self.server._lines(path)) as lines:
            async for line in lines:
                yield json.loads(line)


class AsyncProcess:
    def __init__(self, server: AsyncServer, pid: int) -> None:
        self.server, self.pid = server, pid

    def __repr__(self) -> str:
        return f"<Process {self.pid}>"

    async def active(self) -> bool:
        return await self.server.transport.head(f"/{self.pid}")

    async def info(self) -> dict[str, Any]:
        return await self.server.request("GET", f"/{self.pid}")

    async def stats(self) -> dict[str, Any]:
        return (await self.server.request("GET", f"/{self.pid}/stats"))["stats"]

    async def stop(self) -> None:
        await self.server.request("DELETE", f"/{self.pid}")

    async def kill(self, sig: int | str) -> None:
        await self.server.request("POST", f"/{self.pid}/signal", {"signal": sig})

    async def send(self, data: bytes | str) -> None:
        """Write to the process's stdin."""
        raw = data.encode() if isinstance(data, str) else data
        await self.server.request("POST", f"/streams/{self.pid}/stdin", raw=raw)

    async def output(self, label: str = ".") -> AsyncIterator[bytes]:
        """The process's output of ``label`` as it comes, until it exits."""

        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def fetch() -> None:
            try:
                await self.server.transport.stream(
                    f"/streams/{self.pid}/{_q(label)}?feed=continuous", queue.put_nowait
                )
            finally:
                queue.put_nowait(None)

        task = asyncio.ensure_future(fetch())
        try:
            while (chunk := await queue.get()) is not None:
                yield chunk
            await task
        finally:
            await _cancelled(task)

    async def channel(self, mode: int = 3, stream: str | None = None) -> Any:
        """The process's IO channel (gaffer.client.channel.IOChannel)."""
        from gaffer.client.channel import IOChannel

        channel = IOChannel(self.server.transport, self.pid, mode, stream)
        await channel.connect()
        return channel


class AsyncKeys:
    def __init__(self, server: AsyncServer) -> None:
        self.server = server

    async def all_keys(self) -> list[dict[str, Any]]:
        return (await self.server.request("GET", "/keys"))["keys"]

    async def create_key(
        self,
        permissions: Mapping[str, Any],
        label: str = "",
        parent: str | None = None,
        ttl: float | None = None,
    ) -> str:
        body: dict[str, Any] = {"permissions": dict(permissions), "label": label}
        if parent:
            body["parent"] = parent
        if ttl:
            body["ttl"] = ttl
        return (await self.server.request("POST", "/keys", body))["api_key"]

    async def get_key(self, key_id: str) -> dict[str, Any]:
        return await self.server.request("GET", f"/keys/{_q(key_id)}")

    async def has_key(self, key_id: str) -> bool:
        return await self.server.transport.head(f"/keys/{_q(key_id)}")

    async def delete_key(self, key_id: str) -> list[str]:
        return (await self.server.request("DELETE", f"/keys/{_q(key_id)}"))["deleted"]


class AsyncUsers:
    def __init__(self, server: AsyncServer) -> None:
        self.server = server

    async def all_users(self) -> list[dict[str, Any]]:
        return (await self.server.request("GET", "/users"))["users"]

    async def create_user(
        self,
        username: str,
        password: str,
        user_type: int = 1,
        key: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"username": username, "password": password, "user_type": user_type}
        if key:
            body["key"] = key
        if extra:
            body["extra"] = extra
        return (await self.server.request("POST", "/users", body))["user"]

    async def get_user(self, username: str) -> dict[str, Any]:
        return await self.server.request("GET", f"/users/{_q(username)}")

    async def has_user(self, username: str) -> bool:
        return await self.server.transport.head(f"/users/{_q(username)}")

    async def set_password(self, username: str, password: str) -> None:
        await self.server.request("PUT", f"/users/{_q(username)}/password", {"password": password})

    async def set_key(self, username: str, key: str | None) -> None:
        await self.server.request("PUT", f"/users/{_q(username)}/key", {"key": key})

    async def update_user(self, username: str, **changes: Any) -> dict[str, Any]:
        return (await self.server.request("PUT", f"/users/{_q(username)}", changes))["user"]

    async def delete_user(self, username: str) -> None:
        await self.server.request("DELETE", f"/users/{_q(username)}")


async def _cancelled(task: asyncio.Future[Any]) -> None:
    """Stop a request task and wait until it has closed its connection: a consumer that
    leaves a feed early must not leave a socket behind."""
    if not task.done():
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)
