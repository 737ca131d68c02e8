"""What every command gets: the options, the output, the server, the Procfile app."""

from __future__ import annotations

import os
import sys
from typing import Any

from gaffer.cli import userconfig
from gaffer.cli.render import Output
from gaffer.client.aio import AsyncServer
from gaffer.client.transport import DEFAULT_URL, Endpoint
from gaffer.crashloop import FlappingInfo
from gaffer.errors import UsageError

APP_DEFAULT = "default"


class Context:
    def __init__(self, args: Any) -> None:
        if getattr(args, "app", None) == ".":
            args.app = None  # "." is the Procfile directory's name: the default
        self.args = args
        self.out = Output(json_output=args.json, no_color=args.no_color)
        self._server: AsyncServer | None = None
        self._others: dict[str, AsyncServer] = {}  # the nodes of a cluster, by URL
        self._app: Any = None

    # -- gafferd ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return Endpoint.parse(self.args.url or os.environ.get("GAFFER_ADDRESS") or DEFAULT_URL).url

    def server(self) -> AsyncServer:
        if self._server is None:
            self._server = self._connect(self.url)
        return self._server

    def server_at(self, url: str) -> AsyncServer:
        """Another gafferd (a node of the cluster), with the same key and TLS rules: the
        options given, else what was saved for that node, else for the main address."""
        if url not in self._others:
            self._others[url] = self._connect(Endpoint.parse(url).url, fallback=self.url)
        return self._others[url]

    def _connect(self, url: str, fallback: str | None = None) -> AsyncServer:
        saved = userconfig.read(url) or (userconfig.read(fallback) if fallback else {})
        key = self.args.api_key or os.environ.get("GAFFER_API_KEY") or saved.get("key")
        tls = {
            name: getattr(self.args, name) or saved.get(name)
            for name in ("certfile", "keyfile", "cacert")
        }
        return AsyncServer(url, key, **{k: v for k, v in tls.items() if v})

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for server in self._others.values():
            server.close()

    # -- the Procfile app ------------------------------------------------------------------
    def procfile_path(self, required: bool = True) -> str | None:
        path = self.args.procfile or "Procfile"
        if os.path.exists(path):
            return os.path.abspath(path)
        if required or self.args.procfile:
            raise UsageError(f"no Procfile at {os.path.abspath(path)} (give one with -f)")
        return None

    def app(self) -> Any:
        """The Procfile app (Procfile, .env next to it, then the -e files)."""
        if self._app is None:
            from gaffer.cli.procfile import App

            self._app = App.load(
                self.procfile_path(),
                env_files=self.args.env or None,
                name=self.args.app,
                environ=os.environ,
            )
        return self._app

    def app_name(self) -> str:
        """The session to act on: --app, else the Procfile's app, else ``default``."""
        if self.args.app:
            return self.args.app
        if self.procfile_path(required=False) is not None:
            return self.app().name
        return APP_DEFAULT

    def concurrency(self) -> dict[str, int]:
        """The ``-c web=2`` options; a malformed one is a usage error (exit 2)."""
        from gaffer.cli.procfile import parse_concurrency

        try:
            return parse_concurrency(self.args.concurrency)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def flapping(self) -> FlappingInfo | None:
        """The ``--flapping`` option (the Procfile default when not given); a malformed
        one is a usage error (exit 2)."""
        from gaffer.cli.procfile import CRASH_LOOP

        if self.args.flapping is None:
            return CRASH_LOOP
        try:
            return FlappingInfo.coerce(self.args.flapping)
        except ValueError as exc:
            raise UsageError(f"--flapping {self.args.flapping!r}: {exc}") from None

    def job_id(self, name: str) -> str:
        """``web`` is a job of the app; ``session.name`` is taken as it is."""
        return name if "." in name else f"{self.app_name()}.{name}"

    # -- talking to the user ---------------------------------------------------------------
    def confirm(self, question: str) -> bool:
        if getattr(self.args, "yes", False):
            return True
        if not sys.stdin.isatty():
            raise UsageError(f"{question} Pass --yes to confirm without a terminal")
        answer = input(f"{question} [y/N] ").strip().lower()
        return answer in ("y", "yes")
