"""``/channel``: the pub/sub + RPC WebSocket of JSON text messages.

Client -> server (each a text message):

* ``AUTH:<key>`` (raw text, optional, first): who the client is, when no ``X-Api-Key``
  header came with the handshake. With ``require_key`` and no key, the first other message
  is answered ``{"event": "gaffer:error", "data": {"error": "AUTH_REQUIRED", ...}}`` and the
  socket closes; a wrong key too. A right one is answered ``gaffer:auth_success``.
* ``{"event": "NOP"}``: a heartbeat, not answered.
* ``{"event": "SUB"|"UNSUB", "data": {"topic": "<topic>"}}`` (topics: gaffer/http/topics.py),
  ref-counted per connection; answered ``gaffer:subscription_success`` ``{"topic",
  "action", "count"}`` or ``gaffer:subscription_error`` ``{"topic", "reason", "errno",
  "message"}`` (both also carry ``topic`` beside ``data``, as the original's did).
* ``{"event": "CMD", "data": {"identity": <id>, "name": <command>, "args": [...],
  "kwargs": {...}}}`` (commands: gaffer/http/controller.py); answered
  ``gaffer:command_success`` ``{"id", "result"}`` or ``gaffer:command_error`` ``{"id",
  "error": {"errno", "reason", "message"}}``.

Server -> client, besides the answers: ``{"event": "gaffer:event", "data": {"event":
<evtype>, "topic": <topic>, ...payload}}`` for each event of a subscription, and
``{"event": "gaffer:dropped", "data": {"count": n}}`` where a client too slow to read lost
``n`` messages. A message that cannot be understood is answered ``{"event":
"gaffer:error", "data": {"error": "invalid_msg", "reason": <code>, "message": <text>}}``
(codes: ``binary_frame``, ``invalid_json``, ``not_an_object``, ``event_missing``,
``unknown_event``, ``data_missing``, ``topic_missing``, ``cmd_identity_missing``,
``cmd_name_missing``, ``auth_not_first``) and the connection stays usable. A message over
1 MiB closes the connection (1009).

Each connection has one bounded outgoing queue (outbox.Outbox): events a slow client cannot
take are dropped and counted, never buffered without end, and never make the loop or the
other clients wait. Answers to the client's own requests get twice the room.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import tornado.web
import tornado.websocket

from gaffer.http.auth import LOCAL, Permissions
from gaffer.http.controller import Controller, command_error
from gaffer.http.handlers.base import Op, RequestError, error_status, parse_json
from gaffer.http.outbox import Outbox
from gaffer.http.topics import Subscription, parse_topic, subscription

logger = logging.getLogger("gaffer.http")

MAX_MESSAGE_BYTES = 1024 * 1024
MAX_TOPICS = 256  # distinct subscriptions of one connection
CLOSE_DRAIN_SECONDS = 5.0  # to write the last messages before closing on our side
POLICY_VIOLATION = 1008


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode(errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, default=jsonable)


class WebSocketBase(tornado.websocket.WebSocketHandler):
    """What both channels share: who is asking, origins, errors of the handshake."""

    ops: dict[str, Op] = {}

    def initialize(self, **kwargs: Any) -> None:
        self.permissions: Permissions = LOCAL
        self.key_id: str | None = None
        self.identified = False  # a key (or none needed) is known
        self.closing = False
        self.outbox: Outbox | None = None
        self.writer: asyncio.Future[None] | None = None
        self.closer: asyncio.Future[None] | None = None

    @property
    def manager(self) -> Any:
        return self.settings["manager"]

    @property
    def max_message_size(self) -> int:
        return MAX_MESSAGE_BYTES

    def check_origin(self, origin: str) -> bool:
        """The server's own origin, or one of ``cors_origins``: the rule of every request
        (gaffer/http/sameorigin.py), which refused any other before routing."""
        host = self.request.headers.get("Host", "")
        return self.settings["origin_policy"].origin_ok(origin, host)

    async def prepare(self) -> None:
        """A key in the X-Api-Key header is checked now (a wrong one: 403, no upgrade).
        Without one, the client may still send ``AUTH:<key>`` first."""
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            raise RequestError(
                426,
                "upgrade_required",
                f"{self.request.path} is a WebSocket: connect with 'Upgrade: websocket'",
                headers={"Upgrade": "websocket", "Connection": "Upgrade"},
            )
        auth = self.settings.get("auth")
        if auth is None:
            self.identified = True
            return
        key = self.request.headers.get("X-Api-Key")
        if key:
            self.permissions, self.key_id = await auth.identify(key)
            self.identified = True
            return
        try:
            self.permissions, self.key_id = await auth.identify(None)
            self.identified = True
        except RequestError as exc:
            if exc.status != 401:
                raise  # 401: a key is required, the AUTH message may still bring it

    async def identify(self, key: str) -> RequestError | None:
        """Authenticate with ``key``; the error when it fails."""
        auth = self.settings.get("auth")
        if auth is None:  # keys are off: every client acts with the local permissions
            self.identified = True
            return None
        try:
            self.permissions, self.key_id = await auth.identify(key or None)
        except RequestError as exc:
            return exc
        self.identified = True
        return None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A refused handshake gets the API's JSON error body."""
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            status, code, reason = error_status(exc_info[1])
            for name, value in (getattr(exc_info[1], "headers", None) or {}).items():
                self.set_header(name, value)
        else:
            status, code, reason = status_code, "error", self._reason
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": code, "reason": reason}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError):
            return  # an answered error
        logger.error(
            "%s %s failed", self.request.method, self.request.uri, exc_info=(typ, value, tb)
        )

    # -- writing ---------------------------------------------------------------------------
    def start_writer(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.writer = asyncio.ensure_future(outbox.run())
        self.settings["websockets"].add(self)  # HttpHandler.stop() closes what is open

    async def _send(self, payload: str | bytes) -> None:
        await self.write_message(payload, binary=isinstance(payload, bytes))

    def close_after_writes(self, code: int | None = None, reason: str | None = None) -> None:
        """Write what is queued (for a few seconds at most), then close."""
        if self.closing:
            return
        self.closing = True
        self.closer = asyncio.ensure_future(self._close_later(code, reason))

    async def _close_later(self, code: int | None, reason: str | None) -> None:
        if self.outbox is not None and self.writer is not None:
            self.outbox.end()
            try:
                await asyncio.wait_for(asyncio.shield(self.writer), CLOSE_DRAIN_SECONDS)
            except (TimeoutError, asyncio.CancelledError):
                pass
        self.close(code, reason)

    def stop_writer(self) -> None:
        self.settings["websockets"].discard(self)
        self.closing = True
        if self.outbox is not None:
            self.outbox.stop()
        if self.writer is not None and not self.writer.done():
            self.writer.cancel()


class ChannelHandler(WebSocketBase):
    ops = {
        "get": Op(
            "The pub/sub + RPC channel: a WebSocket of JSON text messages (AUTH:<key>, NOP, "
            "SUB and UNSUB of EVENTS[:pattern], JOB:<id>, PROCESS:<pid>, STATS:<pid|id>, "
            "STREAM:<pid>[.<label>] topics, CMD of the RPC commands)",
            permission="read on what a topic shows; per command (controller.py); a key in "
            "X-Api-Key or an AUTH:<key> first message when keys are required",
            statuses=(101, 400, 403, 426),
        )
    }

    def initialize(self, **kwargs: Any) -> None:
        super().initialize(**kwargs)
        self.first = True
        self.subscriptions: dict[str, list[Any]] = {}  # topic -> [Subscription, count]

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.start_writer(Outbox(self._send, self._gap))

    def on_close(self) -> None:
        self.stop_writer()
        subscriptions, self.subscriptions = self.subscriptions, {}
        for sub, _count in subscriptions.values():
            self._stop(sub)

    @staticmethod
    def _gap(count: int, size: int) -> str:
        return dumps({"event": "gaffer:dropped", "data": {"count": count}})

    # -- sending ---------------------------------------------------------------------------
    def send(self, event: str, data: dict[str, Any], **extra: Any) -> None:
        """An answer to the client (urgent: it gets the extra room of the queue)."""
        if self.outbox is not None:
            message = {"event": event, **extra, "data": data}
            self.outbox.offer(lambda: dumps(message), urgent=True)

    def deliver(self, payload: dict[str, Any], size: int) -> None:
        """An event of a subscription (dropped when the client is too far behind)."""
        if self.outbox is not None and not self.closing:
            self.outbox.offer(lambda: dumps({"event": "gaffer:event", "data": payload}), size)

    def invalid(self, reason: str, message: str) -> None:
        self.send("gaffer:error", {"error": "invalid_msg", "reason": reason, "message": message})

    def refuse(self, exc: RequestError) -> None:
        """Auth failed: say so, then close."""
        self.send(
            "gaffer:error",
            {
                "error": "AUTH_REQUIRED",
                "reason": exc.code,
                "errno": exc.status,
                "message": exc.api_reason,
            },
        )
        self.close_after_writes(POLICY_VIOLATION, "AUTH_REQUIRED")

    # -- receiving -------------------------------------------------------------------------
    async def on_message(self, message: str | bytes) -> None:
        if self.closing:
            return
        first, self.first = self.first, False
        try:
            await self._on_message(message, first)
        except Exception:  # a bug here must not take the connection down without a word
            logger.exception("channel message failed")
            self.invalid("internal_error", "internal error: see gafferd's log")

    async def _on_message(self, message: str | bytes, first: bool) -> None:
        if isinstance(message, str) and message.startswith("AUTH:"):
            if not first:
                self.invalid("auth_not_first", "AUTH:<key> is only accepted as the first message")
                return
            error = await self.identify(message[5:].strip())
            if error is not None:
                self.refuse(error)
            else:
                self.send("gaffer:auth_success", {"key_id": self.key_id})
            return
        if not self.identified:
            self.refuse(
                RequestError(
                    401,
                    "unauthorized",
                    "this gafferd requires an API key: send AUTH:<key> as the first "
                    "message, or the X-Api-Key header",
                )
            )
            return
        if isinstance(message, bytes):
            self.invalid("binary_frame", "this channel speaks JSON text messages, not binary")
            return
        try:
            msg = parse_json(message, "the message")
        except RequestError as exc:
            self.invalid(exc.code, exc.api_reason)
            return
        if not isinstance(msg, dict):
            self.invalid("not_an_object", "a message is a JSON object {event, data}")
            return
        event = msg.get("event")
        if not isinstance(event, str) or not event:
            self.invalid("event_missing", "the message has no event")
            return
        kind = event.upper()
        if kind == "NOP":
            return
        if kind not in ("SUB", "UNSUB", "CMD"):
            self.invalid(
                "unknown_event", f"unknown event {event[:40]!r}: expected NOP, SUB, UNSUB or CMD"
            )
            return
        data = msg.get("data")
        if not isinstance(data, dict):
            self.invalid("data_missing", f"{kind} needs data (an object)")
            return
        if kind == "CMD":
            await self.command(data)
            return
        topic = data.get("topic")
        if not isinstance(topic, str) or not topic.strip():
            self.invalid("topic_missing", f"{kind} needs data.topic (a string)")
            return
        if kind == "SUB":
            self.subscribe(topic)
        else:
            self.unsubscribe(topic)

    # -- subscriptions ---------------------------------------------------------------------
    def subscribe(self, text: str) -> None:
        try:
            topic = parse_topic(text)
        except Exception as exc:
            self.subscription_error(text, exc)
            return
        name = topic.name
        entry = self.subscriptions.get(name)
        if entry is not None:
            entry[1] += 1
        else:
            if len(self.subscriptions) >= MAX_TOPICS:
                self.subscription_error(
                    name,
                    RequestError(
                        400, "too_many_topics", f"at most {MAX_TOPICS} topics per connection"
                    ),
                )
                return
            sub = subscription(topic, self.manager, self.permissions, self.deliver)
            try:
                sub.start()
            except Exception as exc:
                self.subscription_error(name, exc)
                return
            entry = self.subscriptions[name] = [sub, 1]
        self.send(
            "gaffer:subscription_success",
            {"topic": name, "action": "SUB", "count": entry[1]},
            topic=name,
        )

    def unsubscribe(self, text: str) -> None:
        try:
            name = parse_topic(text).name
        except Exception as exc:
            self.subscription_error(text, exc)
            return
        entry = self.subscriptions.get(name)
        if entry is None:
            self.subscription_error(
                name,
                RequestError(404, "not_subscribed", f"this connection is not subscribed to {name}"),
            )
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self.subscriptions[name]
            self._stop(entry[0])
        self.send(
            "gaffer:subscription_success",
            {"topic": name, "action": "UNSUB", "count": max(entry[1], 0)},
            topic=name,
        )

    def subscription_error(self, topic: str, exc: BaseException) -> None:
        status, code, message = error_status(exc)
        if status >= 500:
            logger.error("subscription to %s failed", topic, exc_info=exc)
        self.send(
            "gaffer:subscription_error",
            {"topic": topic, "reason": code, "errno": status, "message": message},
            topic=topic,
        )

    @staticmethod
    def _stop(sub: Subscription) -> None:
        try:
            sub.stop()
        except Exception:
            logger.exception("stopping the subscription to %s failed", sub.name)

    # -- commands --------------------------------------------------------------------------
    async def command(self, data: dict[str, Any]) -> None:
        identity = data.get("identity")
        if isinstance(identity, bool) or not isinstance(identity, str | int) or identity == "":
            self.invalid("cmd_identity_missing", "CMD needs data.identity (a string or number)")
            return
        name = data.get("name")
        if not isinstance(name, str) or not name:
            self.invalid("cmd_name_missing", "CMD needs data.name (the command)")
            return
        controller = Controller(self.manager, self.permissions, self.settings.get("policy"))
        try:
            result = await controller.run(name, data.get("args"), data.get("kwargs"))
        except Exception as exc:
            self.send("gaffer:command_error", {"id": identity, "error": command_error(exc)})
            return
        self.send("gaffer:command_success", {"id": identity, "result": result})
