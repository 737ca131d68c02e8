"""Webhooks: POST manager events as JSON to HTTP URLs.

``WebHooks`` is an application of the Manager (``start(loop, manager)``, ``stop()``,
``restart()``)::

    hooks = WebHooks(hooks=[("exit", "http://127.0.0.1:8080/exits"), (".", "http://log/all")])
    manager.start(apps=[hooks])

Matching: a hook's event is an exact event name (``"load"``, ``"job.default.web.exit"``,
no prefix matching) or ``"."`` for every event. An event is posted once to each URL
registered for its name or for ``"."``, even when the URL is registered for both.

Body: the event dict (it always holds ``"event"`` and ``"name"``) as JSON, with
``Content-Type: application/json``. The body is encoded once, when the event happens.
Values the JSON encoder cannot take are converted rather than crash it: ``bytes`` (and
``bytearray``/``memoryview``) become text, decoded as UTF-8 with invalid bytes replaced by
U+FFFD; tuples and sets become lists; dict keys become strings; anything else becomes
``str(value)``.

Delivery never blocks the loop: requests go through tornado's ``AsyncHTTPClient`` on the
manager's loop, each bounded by ``timeout`` seconds (connect and whole request).
Redirects are not followed; a status below 400 counts as delivered. A failed delivery
(connection error, timeout, status >= 400) is retried up to ``retries`` times after
``backoff``, ``2 * backoff``, ``4 * backoff``... seconds (loop timers); the final failure
is logged as a warning naming the URL, the event and the reason.

Each URL has its own queue with one request in flight at a time: deliveries to a URL keep
the order of the events, and a slow or dead receiver only delays its own URL. At most
``max_pending`` events wait per URL (besides the one in flight or waiting for a retry);
beyond that the oldest are dropped and a warning says how many.

``register_hook`` / ``unregister_hook`` change the hooks at run time (they take effect for
later events; deliveries already queued still go out); ``hooks`` lists the (event, url)
pairs (call them on the manager's loop, like the app's other methods). The app listens
to the manager's events only while it has hooks. ``restart()``
keeps everything as it is (gafferd builds a new app on reload).

``stop()`` stops listening, cancels pending retries (an event waiting for a retry is given
up, with a warning), sends what is already queued once each without retrying, and closes
the HTTP client. All of that is bounded by ``timeout`` seconds: what is still queued then
is dropped with a warning. It returns None when nothing is in flight, else an awaitable
that completes when it is done (the manager awaits it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

import gaffer
from gaffer.errors import ConfigError

logger = logging.getLogger(__name__)

ALL_EVENTS = "."
USER_AGENT = f"gaffer-webhooks/{gaffer.__version__}"
# How long stop() waits beyond ``timeout`` for tornado's own timeout callbacks to fire.
STOP_SLACK = 0.5
# Enough concurrent connections for one request in flight per URL without tornado
# queueing requests (its queue wait would add to the request timeout).
MAX_CLIENTS = 256


@dataclass
class _Target:
    """Delivery state of one URL: its queue and the worker task draining it."""

    url: str
    queue: deque[tuple[str, bytes]] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    dropped: int = 0  # overflow drops not yet reported
    busy: bool = False  # an event is in flight or waiting for its retry
    retry_timer: asyncio.TimerHandle | None = None
    retry_wait: asyncio.Future[bool] | None = None


class WebHooks:
    """POST manager events to URLs (see the module docstring)."""

    def __init__(
        self,
        hooks: Iterable[tuple[str, str]] = (),
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_pending: int = 1000,
    ) -> None:
        if not _positive_number(timeout):
            raise ConfigError(f"timeout must be a number > 0, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries must be an int >= 0, got {retries!r}")
        if not _positive_number(backoff, allow_zero=True):
            raise ConfigError(f"backoff must be a number >= 0, got {backoff!r}")
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ConfigError(f"max_pending must be an int >= 1, got {max_pending!r}")
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.max_pending = max_pending
        # event -> URLs, both in registration order (dicts as ordered sets)
        self._hooks: dict[str, dict[str, None]] = {}
        pairs = []
        for pair in hooks:
            try:
                event, url = pair
            except (TypeError, ValueError):
                raise ConfigError(f"a hook is an (event, url) pair, got {pair!r}") from None
            pairs.append(_check_hook(event, url))
        for event, url in pairs:
            self._hooks.setdefault(event, {})[url] = None
        self._targets: dict[str, _Target] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._manager: Any = None
        self._client: AsyncHTTPClient | None = None
        self._subscribed = False
        self._stopping = False
        self._deadline = 0.0
        self._stop_task: asyncio.Task[None] | None = None

    # -- hooks ---------------------------------------------------------------------------
    @property
    def hooks(self) -> list[tuple[str, str]]:
        """The (event, url) pairs, in registration order."""
        return [(event, url) for event, urls in self._hooks.items() for url in urls]

    @property
    def pending(self) -> dict[str, int]:
        """Undelivered events per URL (queued, in flight or waiting for a retry)."""
        return {
            url: len(target.queue) + target.busy
            for url, target in self._targets.items()
            if target.queue or target.busy
        }

    def register_hook(self, event: str, url: str) -> None:
        """POST ``event`` (an exact name, or ``"."`` for all) to ``url`` from now on.
        Registering a pair twice is a no-op."""
        event, url = _check_hook(event, url)
        self._hooks.setdefault(event, {})[url] = None
        self._update_subscription()

    def unregister_hook(self, event: str, url: str) -> bool:
        """Stop posting ``event`` to ``url``; returns False when the pair was not
        registered. Deliveries already queued still go out."""
        urls = self._hooks.get(event)
        if urls is None or url not in urls:
            return False
        del urls[url]
        if not urls:
            del self._hooks[event]
        self._update_subscription()
        return True

    # -- application interface -----------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop, manager: Any) -> None:
        if self._manager is not None:
            raise RuntimeError("WebHooks already started")
        if self._stop_task is not None and not self._stop_task.done():
            raise RuntimeError("WebHooks is still stopping: await what stop() returned")
        self._loop = loop
        self._manager = manager
        self._stopping = False
        self._update_subscription()

    def restart(self) -> None:
        """Nothing to do: hooks, queues and the client stay as they are."""

    def stop(self) -> asyncio.Future[None] | None:
        if self._manager is None:
            return None
        self._unsubscribe()
        self._manager = None
        self._stopping = True
        loop = self._loop
        assert loop is not None
        self._deadline = loop.time() + self.timeout
        for target in self._targets.values():
            # a pending retry is given up at once; its worker logs it and moves on
            self._end_retry_wait(target, False)
        workers = [t.task for t in self._targets.values() if t.task is not None]
        if not workers:
            self._close()
            return None
        self._stop_task = loop.create_task(self._finish_stop(workers), name="gaffer-webhooks-stop")
        return self._stop_task

    async def _finish_stop(self, workers: list[asyncio.Task[None]]) -> None:
        try:
            # Requests carry their own timeouts, all ending by the deadline; the slack
            # only lets tornado's timeout callbacks run.
            _, late = await asyncio.wait(workers, timeout=self.timeout + STOP_SLACK)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        finally:
            self._close()

    def _close(self) -> None:
        for target in self._targets.values():
            if target.queue:
                logger.warning(
                    "webhook %s: %d event(s) dropped at stop", target.url, len(target.queue)
                )
        self._targets.clear()
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- events --------------------------------------------------------------------------
    def _update_subscription(self) -> None:
        # listen only while there is something to post, as the original did
        if self._manager is None:
            return
        if self._hooks and not self._subscribed:
            self._manager.events.subscribe(ALL_EVENTS, self._on_event)
            self._subscribed = True
        elif not self._hooks and self._subscribed:
            self._unsubscribe()

    def _unsubscribe(self) -> None:
        if self._subscribed and self._manager is not None:
            self._manager.events.unsubscribe(ALL_EVENTS, self._on_event)
        self._subscribed = False

    def _on_event(self, evtype: str, msg: Any) -> None:
        if self._stopping:
            return
        # exact name first, then ".", one delivery per URL
        urls = dict.fromkeys([*self._hooks.get(evtype, ()), *self._hooks.get(ALL_EVENTS, ())])
        if not urls:
            return
        body = encode_event(evtype, msg)
        for url in urls:
            self._enqueue(url, evtype, body)

    def _enqueue(self, url: str, evtype: str, body: bytes) -> None:
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _Target(url)
        target.queue.append((evtype, body))
        if len(target.queue) > self.max_pending:
            target.queue.popleft()
            if not target.dropped:
                # one warning per burst: events arrive in batches within one callback
                assert self._loop is not None
                self._loop.call_soon(self._report_drops, target)
            target.dropped += 1
        if target.task is None:
            assert self._loop is not None
            target.task = self._loop.create_task(self._worker(target), name=f"gaffer-webhook {url}")

    def _report_drops(self, target: _Target) -> None:
        count, target.dropped = target.dropped, 0
        if count:
            logger.warning(
                "webhook %s: more than %d events pending, dropped the %d oldest",
                target.url,
                self.max_pending,
                count,
            )

    # -- delivery ------------------------------------------------------------------------
    async def _worker(self, target: _Target) -> None:
        """Deliver ``target``'s queue in order, one request at a time."""
        assert self._loop is not None
        try:
            while target.queue:
                if self._stopping and self._loop.time() >= self._deadline:
                    break  # _close() reports what is left
                evtype, body = target.queue.popleft()
                target.busy = True
                try:
                    await self._deliver(target, evtype, body)
                finally:
                    target.busy = False
        finally:
            target.task = None
            if not target.queue and self._targets.get(target.url) is target:
                self._report_drops(target)
                # forget idle URLs so that unregistered ones do not accumulate
                del self._targets[target.url]

    async def _deliver(self, target: _Target, evtype: str, body: bytes) -> None:
        attempt = 0
        while True:
            attempt += 1
            reason = await self._post(target.url, body)
            if reason is None:
                return
            if attempt > self.retries or self._stopping:
                break
            delay = self.backoff * 2 ** (attempt - 1)
            if not await self._wait_retry(target, delay):
                reason += " (retry cancelled by stop)"
                break
        logger.warning(
            "webhook %s: could not deliver event %s after %d attempt(s): %s",
            target.url,
            evtype,
            attempt,
            reason,
        )

    async def _wait_retry(self, target: _Target, delay: float) -> bool:
        """Wait ``delay`` seconds on a loop timer; False when stop() cut it short."""
        assert self._loop is not None
        waiter: asyncio.Future[bool] = self._loop.create_future()
        target.retry_wait = waiter
        target.retry_timer = self._loop.call_later(delay, self._end_retry_wait, target, True)
        try:
            return await waiter
        finally:
            if target.retry_timer is not None:
                target.retry_timer.cancel()
            target.retry_timer = target.retry_wait = None

    @staticmethod
    def _end_retry_wait(target: _Target, result: bool) -> None:
        if target.retry_timer is not None:
            target.retry_timer.cancel()
            target.retry_timer = None
        if target.retry_wait is not None and not target.retry_wait.done():
            target.retry_wait.set_result(result)

    async def _post(self, url: str, body: bytes) -> str | None:
        """POST ``body`` to ``url``; None when delivered, else why not."""
        assert self._loop is not None
        timeout = self.timeout
        if self._stopping:
            timeout = min(timeout, self._deadline - self._loop.time())
            if timeout <= 0.001:  # tornado reads a 0 timeout as "no timeout"
                return "no time left before stop"
        if self._client is None:
            # created here, on the running loop: tornado binds it to IOLoop.current()
            self._client = AsyncHTTPClient(force_instance=True, max_clients=MAX_CLIENTS)
        request = HTTPRequest(
            url,
            method="POST",
            body=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
            connect_timeout=timeout,
            request_timeout=timeout,
            follow_redirects=False,
        )
        try:
            response = await self._client.fetch(request, raise_error=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # timeouts, refused connections, DNS, TLS...
            return f"{type(exc).__name__}: {exc}"
        if response.code >= 400:
            return f"HTTP {response.code} {response.reason}"
        return None


def encode_event(evtype: str, msg: Any) -> bytes:
    """The JSON body for an event: ``msg`` (a dict, ``"event"`` added if missing) with
    bytes decoded as UTF-8 (invalid bytes replaced) and other odd values made JSON-able."""
    if isinstance(msg, dict):
        payload = msg if "event" in msg else {"event": evtype, **msg}
    else:
        payload = {"event": evtype, "data": msg}
    # ensure_ascii keeps the body plain ASCII whatever the strings hold (lone surrogates
    # included, which UTF-8 could not encode)
    return json.dumps(_jsonable(payload)).encode("ascii")


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {_key(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _key(key: Any) -> str | int | float | bool | None:
    if key is None or isinstance(key, str | int | float | bool):
        return key
    if isinstance(key, bytes | bytearray | memoryview):
        return bytes(key).decode("utf-8", errors="replace")
    return str(key)


def _check_hook(event: Any, url: Any) -> tuple[str, str]:
    if not isinstance(event, str) or not event.strip():
        raise ConfigError(f"a webhook event must be a non-empty string, got {event!r}")
    if not isinstance(url, str):
        raise ConfigError(f"a webhook URL must be a string, got {url!r}")
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(f"invalid webhook URL {url!r}: expected http://host/... or https://")
    return event, url


def _positive_number(value: Any, allow_zero: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return value >= 0 if allow_zero else value > 0
