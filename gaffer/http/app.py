"""``HttpHandler``: serves the HTTP API of a manager on one or more addresses.

An application of the Manager (``start(loop, manager)``, ``stop()``, ``restart()``), so it
can be embedded::

    manager.start(apps=[HttpHandler(bind=["127.0.0.1:5000", "unix:/run/gaffer.sock"])])

gafferd binds its sockets itself (to report errors before it detaches) and passes them
with ``sockets=``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.web

from gaffer.errors import ConfigError
from gaffer.http import binding
from gaffer.http.accesslog import access_log
from gaffer.http.connections import ConnectionLimits, Connections, Server
from gaffer.http.handlers.base import HARD_BODY_LIMIT
from gaffer.http.handlers.misc import RefusedHandler
from gaffer.http.routes import Deferred, routes
from gaffer.http.sameorigin import OriginPolicy
from gaffer.http.telemetry import Telemetry
from gaffer.http.throttle import LoginThrottle

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


class HttpHandler:
    """Serve the API of the manager it is started with.

    Args:
        bind: addresses (``host:port``, ``[v6]:port``, ``unix:/path``) to bind at start.
        sockets: already bound listening sockets (gafferd's way); closed at stop.
        certfile, keyfile: serve HTTPS on the TCP sockets.
        limits: the cap on connections and their timeouts (connections.py).
        plugin_sites: ``{name: directory}`` served at ``/_plugin/<name>/``.
        settings: more options for the handlers: ``auth`` (an ``Identity``: keys; None:
            no keys, everyone acts with LOCAL permissions), ``cors_origins`` (origins
            allowed to call the API from a browser; none by default), ``allowed_hosts``
            (names the ``Host`` header may give besides the server's addresses and
            ``localhost``; see sameorigin.py), ``policy`` (a ``commands.Policy``:
            ``log_root``), ``login_throttle`` (a ``LoginThrottle``: failed logins),
            ``telemetry`` (a ``Telemetry`` to count in, kept across handlers; default: a
            new one), ``metrics_without_key`` (``"loopback"``: /metrics needs no key from
            loopback addresses and unix sockets; default ``"never"``).
    """

    def __init__(
        self,
        bind: Iterable[str] | None = None,
        sockets: Iterable[socket.socket] | None = None,
        backlog: int = 128,
        certfile: str | None = None,
        keyfile: str | None = None,
        plugin_sites: Mapping[str, str] | None = None,
        settings: Mapping[str, Any] | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self._addresses = [binding.parse_address(address) for address in bind or ()]
        self._sockets = list(sockets or ())
        self._backlog = backlog
        self._ssl = _ssl_context(certfile, keyfile)
        self._plugin_sites = dict(plugin_sites or {})
        self.announce = True  # log the addresses at start (info); debug when loaded late
        self._settings = dict(settings or {})
        self.telemetry: Telemetry = self._settings.pop("telemetry", None) or Telemetry()
        self._attached = False  # to the telemetry's loop-lag timer
        self._servers: list[tornado.httpserver.HTTPServer] = []
        self._handed_over: set[int] = set()  # sockets now served by a successor
        self._websockets: set[Any] = set()  # open WebSocket connections
        self.connections = Connections(limits or ConnectionLimits(), self._websockets)
        self.manager: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.application: tornado.web.Application | None = None

    @property
    def addresses(self) -> list[str]:
        """Where it listens (port 0 resolved to the port the system chose)."""
        return [binding.bound_address(sock) for sock in self._sockets]

    def start(self, loop: asyncio.AbstractEventLoop, manager: Any) -> None:
        self.loop, self.manager = loop, manager
        for address in self._addresses:  # bound now: an error is raised to the caller
            self._sockets.append(binding.bind(address, self._backlog))
        self._addresses = []
        settings = {
            "cors_origins": (),
            "allowed_hosts": (),
            "login_throttle": LoginThrottle(),
            **self._settings,
        }
        self.application = Application(
            routes(self._plugin_sites),
            origin_policy=OriginPolicy(settings["allowed_hosts"], settings["cors_origins"]),
            manager=manager,
            handler=self,
            log_function=self._log_request,
            websockets=self._websockets,
            telemetry=self.telemetry,
            **{
                "max_body_bytes": MAX_BODY_BYTES,
                "auth": None,
                "metrics_without_key": "never",
                **settings,
            },
        )
        if not self._attached:
            self.telemetry.attach(loop)
            self._attached = True
        try:
            running = asyncio.get_running_loop() is loop
        except RuntimeError:
            running = False
        if running:
            self._serve()
        else:  # the blocking API: start() comes before run(); serve once the loop runs
            loop.call_soon(self._serve)

    def _serve(self) -> None:
        tcp = [s for s in self._sockets if s.family != socket.AF_UNIX]
        unix = [s for s in self._sockets if s.family == socket.AF_UNIX]
        for group, ssl_options in ((tcp, self._ssl), (unix, None)):
            if not group:
                continue
            server = Server(
                self.application,
                connections=self.connections,
                ssl_options=ssl_options,
                xheaders=False,
                # bodies over MAX_BODY_BYTES get a JSON 413 from the handlers; this is
                # the hard cap beyond which the connection is simply closed
                max_body_size=HARD_BODY_LIMIT,
            )
            server.add_sockets(group)
            self._servers.append(server)
        # loaded at the first connection (deferred.py), the API was announced at the start
        log = logger.info if self.announce else logger.debug
        log("HTTP API on %s", ", ".join(self.addresses))

    def _log_request(self, handler: tornado.web.RequestHandler) -> None:
        self.telemetry.count(handler)
        access_log(handler)

    def release_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """These sockets were duplicated for a successor: at stop, close our descriptor
        but leave the unix socket file in place."""
        self._handed_over.update(sock.fileno() for sock in sockets)

    async def hand_over(self, drain: float) -> None:
        """A new gafferd takes over (gafferd/handover.py): stop accepting, the listening
        sockets left open (a client connecting meanwhile waits in their backlog for the
        next gafferd: no connection is refused), let the requests in progress finish
        (``drain`` seconds at most), then close every connection (feeds and WebSockets end;
        their clients connect again)."""
        for server in self._servers:
            for remove in server._handlers.values():
                remove()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain
        # requests end deep in tornado, which signals nothing: look every 2 ms
        while self.connections.in_progress() and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        for connection in list(self._websockets):
            connection.close(1012, "gafferd is restarting")
        self.connections.stop()
        self.connections.close_all()

    def resume(self) -> None:
        """The hand-over failed: accept again."""
        for server in self._servers:
            server.add_sockets(list(server._sockets.values()))

    async def stop(self) -> None:
        if self._attached:
            self.telemetry.detach()
            self._attached = False
        servers, self._servers = self._servers, []
        sockets, self._sockets = self._sockets, []
        # read the unix paths before anything closes the sockets
        paths = [binding.unix_path(s) for s in sockets if s.fileno() not in self._handed_over]
        for connection in list(self._websockets):  # close_all_connections misses these
            connection.close(1001, "gafferd is stopping")
        self.connections.stop()
        for server in servers:
            server.stop()  # closes every socket it serves
        for sock in sockets:
            sock.close()
        for path in paths:
            binding.remove_unix_file(path)
        for server in servers:
            try:
                await asyncio.wait_for(server.close_all_connections(), 5)
            except TimeoutError:
                logger.warning("some HTTP connections did not close within 5 s")

    def restart(self) -> None:
        """Nothing to do: the handlers read the manager as it is."""


class Application(tornado.web.Application):
    """The route table, behind the checks every request passes first (sameorigin.py)."""

    def find_handler(self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        refused = self.settings["origin_policy"].refusal(request)
        if refused is not None:
            return self.get_handler_delegate(request, RefusedHandler, {"error": refused})
        return super().find_handler(request, **kwargs)

    def get_handler_delegate(
        self,
        request: tornado.httputil.HTTPServerRequest,
        target_class: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if issubclass(target_class, Deferred):  # its module is imported now (routes.py)
            target_class = target_class.load()
        return super().get_handler_delegate(request, target_class, *args, **kwargs)


def _ssl_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    if not certfile:
        if keyfile:
            raise ConfigError("keyfile given without certfile")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load TLS certificate {certfile!r}"
            f"{f' with key {keyfile!r}' if keyfile else ''}: {exc}"
        ) from None
    return context
