"""A Python client for gafferd's HTTP API, blocking (``Server``) or asyncio
(``AsyncServer``), over TCP, TLS or a unix socket.

::

    from gaffer.client import Server, NotFound

    server = Server("unix:/run/gaffer/gafferd.sock", api_key="gk_...")
    job = server.load({"name": "web", "cmd": "python -m http.server", "numprocesses": 2})
    print(job.info()["running"])
"""

from gaffer.client.aio import AsyncJob, AsyncKeys, AsyncProcess, AsyncServer, AsyncUsers
from gaffer.client.sync import Job, Keys, Process, Server, Users
from gaffer.client.transport import DEFAULT_URL, Endpoint
from gaffer.errors import (
    ApiError,
    BadRequest,
    ClientError,
    Conflict,
    Forbidden,
    NotFound,
    ServerError,
    TooLarge,
    Unauthorized,
    Unreachable,
)

__all__ = [
    "DEFAULT_URL",
    "ApiError",
    "AsyncJob",
    "AsyncKeys",
    "AsyncProcess",
    "AsyncServer",
    "AsyncUsers",
    "BadRequest",
    "ClientError",
    "Conflict",
    "Endpoint",
    "Forbidden",
    "Job",
    "Keys",
    "NotFound",
    "Process",
    "Server",
    "ServerError",
    "TooLarge",
    "Unauthorized",
    "Unreachable",
    "Users",
]
