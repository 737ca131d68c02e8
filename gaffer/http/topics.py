"""Topics of the ``/channel`` WebSocket: what a client subscribes to, and who may.

A topic is ``SOURCE[:target]``; the source is case-insensitive, the target keeps its case
(the original lower-cased it, so jobs with capitals could not be watched):

=========================  ==========================================  ====================
topic                      delivers                                    the key needs
=========================  ==========================================  ====================
``EVENTS``                 every manager event                         read on the job of
``EVENTS:<pattern>``       the events matching a dotted pattern        each event (others
                           (``exit``, ``job.default.web``...)          are left out)
``JOB:<session.name>``     the job's ``job.<id>.*`` events, prefix     read on the job
                           stripped (``start``, ``spawn``, ``exit``)
``PROCESS:<pid>``          the process's ``proc.<pid>.*`` events,      read on its job
                           prefix stripped (``exit``, ``kill``...)
``STATS:<pid>``,           ``stat`` messages every monitor interval    read on the job
``STATS:<session.name>``   (0.1 s) for the process or each of the
                           job's processes
``STREAM:<pid>``           the output of every output label of the     read on its job
                           process (stdout and stderr when captured)
``STREAM:<pid>.<label>``   the output of one label or custom stream    read on its job
=========================  ==========================================  ====================

A bare job name means session ``default``. Each subscription is an object with ``start()``
(which raises ``ProcessError``: 400 bad topic, 403 forbidden, 404 unknown pid, job or
label) and ``stop()``; it calls ``deliver(payload, size)`` on the loop with the ``data`` of
a ``gaffer:event``: ``{"event": <evtype>, "topic": <topic>, ...the payload}``. Output is
decoded as UTF-8 (invalid bytes replaced, characters split across chunks kept whole) and
delivered as ``{"event": label, "topic", "name", "pid", "os_pid", "label", "data": text}``.
"""

from __future__ import annotations

import codecs
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from gaffer.core.topics import Topic, TopicError, parse_topic  # noqa: F401 - its API
from gaffer.errors import ProcessError, StreamNotRedirected
from gaffer.http import commands
from gaffer.http.auth import Permissions

Deliver = Callable[[dict[str, Any], int], object]


def subscription(
    topic: Topic, manager: Any, permissions: Permissions, deliver: Deliver
) -> Subscription:
    """A (not yet started) subscription of ``topic``."""
    kind = {
        "EVENTS": EventsSubscription,
        "JOB": JobSubscription,
        "PROCESS": ProcessSubscription,
        "STATS": StatsSubscription,
        "STREAM": StreamSubscription,
    }[topic.source]
    return kind(topic, manager, permissions, deliver)


class Subscription(ABC):
    """What one channel subscription listens to; each kind of topic says how it starts
    listening (``start``) and stops (``stop``)."""

    def __init__(
        self, topic: Topic, manager: Any, permissions: Permissions, deliver: Deliver
    ) -> None:
        self.topic = topic
        self.name = topic.name
        self.manager = manager
        self.permissions = permissions
        self.deliver = deliver
        self.active = False

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def process(self, command: str = "process_info") -> Any:
        """The process of a pid topic, once the key may run ``command`` (a read of the
        one table, gaffer/http/commands.py) on it (404, 403)."""
        values = {"pid": self.topic.pid}
        return commands.authorize(command, self.manager, self.permissions, values).proc

    def job_target(self, command: str, job: str) -> str:
        """``job``, once the key may run ``command`` on it (403)."""
        return commands.authorize(command, self.manager, self.permissions, {"name": job}).job

    def event(self, evtype: str, msg: Any) -> dict[str, Any]:
        payload = dict(msg) if isinstance(msg, dict) else {"value": msg}
        payload["event"] = evtype
        payload["topic"] = self.name
        return payload


class EventsSubscription(Subscription):
    """Manager events, each filtered by the key's read right on its job."""

    def start(self) -> None:
        self.pattern = self.topic.target or "."
        self.manager.events.subscribe(self.pattern, self._on_event)
        self.active = True

    def stop(self) -> None:
        self.active = False
        self.manager.events.unsubscribe(self.pattern, self._on_event)

    def _on_event(self, evtype: str, msg: Any) -> None:
        if not self.active:
            return
        if commands.may_see_event(self.permissions, msg):
            self.deliver(self.event(evtype, msg), 0)


class _PrefixSubscription(Subscription):
    """The events under ``<prefix>.`` of one job or process, the prefix stripped."""

    prefix = ""

    def start(self) -> None:
        self.manager.events.subscribe(self.prefix, self._on_event)
        self.active = True

    def stop(self) -> None:
        self.active = False
        self.manager.events.unsubscribe(self.prefix, self._on_event)

    def _on_event(self, evtype: str, msg: Any) -> None:
        if not self.active or not evtype.startswith(self.prefix + "."):
            return
        if not self.accepts(msg):
            return
        self.deliver(self.event(evtype[len(self.prefix) + 1 :], msg), 0)

    def accepts(self, msg: Any) -> bool:
        return True


class JobSubscription(_PrefixSubscription):
    def start(self) -> None:
        self.job = self.topic.target or ""
        # permission first: a key learns nothing of jobs it may not read. The job may be
        # loaded later: its events (load, start, spawn...) come then.
        self.job_target("info", self.job)
        self.prefix = f"job.{self.job}"
        super().start()

    def accepts(self, msg: Any) -> bool:
        # job "web.x" publishes job.default.web.x.*, which job.default.web also matches
        return not isinstance(msg, dict) or msg.get("name") in (None, self.job)


class ProcessSubscription(_PrefixSubscription):
    def start(self) -> None:
        proc = self.process()
        self.prefix = f"proc.{proc.pid}"
        super().start()


class StatsSubscription(Subscription):
    """``stat`` messages of one process or of every process of a job."""

    def start(self) -> None:
        target = self.topic.target or ""
        if target.isdigit():
            self.proc = self.process("process_stats")
            self.job = None
            self.proc.monitor(self._on_stat)
            # the monitor would keep ticking for a pid that is gone: let go at its exit
            self.exit_event = f"proc.{self.proc.pid}.exit"
            self.manager.events.subscribe(self.exit_event, self._on_exit)
        else:
            self.proc = None
            self.job = target
            self.job_target("stats", target)
            self.manager.monitor(self._on_stat, target)  # 404 for an unknown job
        self.active = True

    def stop(self) -> None:
        self.active = False
        if self.proc is not None:
            self.proc.unmonitor(self._on_stat)
            self.manager.events.unsubscribe(self.exit_event, self._on_exit)
        else:
            try:
                self.manager.unmonitor(self._on_stat, self.job)
            except ProcessError:  # unloaded since: the monitor forgot it already
                pass

    def _on_exit(self, evtype: str, msg: Any) -> None:
        if self.proc is not None:
            self.proc.unmonitor(self._on_stat)

    def _on_stat(self, evtype: str, msg: Any) -> None:
        if self.active:
            self.deliver(self.event("stat", msg), 0)


class StreamSubscription(Subscription):
    """The output of a process, decoded as UTF-8 text."""

    def start(self) -> None:
        proc = self.process("read_output")
        label = self.topic.label
        if label is None:
            labels = list(dict.fromkeys(x for x in proc.output_labels if x))
            if not labels:
                raise StreamNotRedirected(
                    f"pid {proc.pid} ({proc.name}) has no redirected output: "
                    "load the job with redirect_output"
                )
        else:
            labels = [label]
        self.proc = proc
        self.labels: list[str] = []
        self.decoders = {x: codecs.getincrementaldecoder("utf-8")("replace") for x in labels}
        try:
            for x in labels:
                proc.monitor_io(x, self._on_output)  # 404 stream_not_found
                self.labels.append(x)
        except ProcessError:
            self.stop()
            raise
        self.exit_event = f"proc.{proc.pid}.exit"
        self.manager.events.subscribe(self.exit_event, self._on_exit)
        self.active = True

    def stop(self) -> None:
        self.active = False
        for label in self.labels:
            self.proc.unmonitor_io(label, self._on_output)
        self.labels = []
        if hasattr(self, "exit_event"):
            self.manager.events.unsubscribe(self.exit_event, self._on_exit)

    def _on_output(self, label: str, msg: dict[str, Any]) -> None:
        if not self.active:
            return
        data = msg["data"]
        decoder = self.decoders.get(label)
        text = data.decode(errors="replace") if decoder is None else decoder.decode(data)
        if text:
            self._send(label, text, len(data))

    def _on_exit(self, evtype: str, msg: Any) -> None:
        """The last output came before the exit: flush a character cut at the end."""
        if not self.active:
            return
        for label, decoder in self.decoders.items():
            rest = decoder.decode(b"", final=True)
            if rest:
                self._send(label, rest, len(rest))

    def _send(self, label: str, text: str, size: int) -> None:
        proc = self.proc
        payload = {
            "event": label,
            "topic": self.name,
            "name": proc.name,
            "pid": proc.pid,
            "os_pid": proc.os_pid,
            "label": label,
            "data": text,
        }
        self.deliver(payload, size)
