"""0.5's ``Manager.subscribe(topic)``: a channel per topic, with ``bind``/``unbind``.

=========================  ==========================================================
topic                      the channel calls ``callback(evtype, msg)`` with
=========================  ==========================================================
``EVENTS[:pattern]``       every manager event (or those matching the pattern)
``JOB:<session.name>``     the job's ``job.<id>.*`` events, the prefix stripped
``PROCESS:<pid>``          the process's ``proc.<pid>.*`` events, the prefix stripped
``STATS:<pid|job>``        ``("stat", stats)`` every monitor interval
``STREAM:<pid>[.label]``   ``(label, {"data": bytes, ...})``: the process's output
=========================  ==========================================================

``bind(event, callback)`` receives one event name (``exit``), ``bind_all(callback)``
every event of the channel; ``unbind`` and ``unbind_all`` undo them, and ``close()`` (or
``manager.unsubscribe(topic, channel)``) ends the subscription.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gaffer.core.topics import Topic

if TYPE_CHECKING:
    from gaffer.core.manager import Manager

logger = logging.getLogger(__name__)

Callback = Callable[[str, Any], object]
ALL = "*"


class Channel:
    """A subscription to one topic, delivering to the callbacks bound to it."""

    def __init__(self, manager: Manager, topic: Topic) -> None:
        self.manager = manager
        self.topic = topic
        self._callbacks: dict[str, list[Callback]] = {}
        self._listener = self._deliver  # bound once: the same object to unsubscribe
        self.closed = False
        self._start()

    # -- 0.5's API --------------------------------------------------------------------------
    def bind(self, event: str, callback: Callback) -> None:
        callbacks = self._callbacks.setdefault(event, [])
        if callback not in callbacks:
            callbacks.append(callback)

    def bind_all(self, callback: Callback) -> None:
        self.bind(ALL, callback)

    def unbind(self, event: str, callback: Callback) -> None:
        callbacks = self._callbacks.get(event, [])
        if callback in callbacks:
            callbacks.remove(callback)

    def unbind_all(self, callback: Callback) -> None:
        self.unbind(ALL, callback)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._stop()
            self._callbacks.clear()

    # -- the source ---------------------------------------------------------------------------
    def _start(self) -> None:
        source = self.topic.source
        if source in ("EVENTS", "JOB", "PROCESS"):
            self.manager.events.subscribe(self._pattern, self._listener)
        elif source == "STATS":
            self.manager.monitor(self._listener, self._stats_target)
        else:
            proc = self.manager.get_process(self.topic.pid)
            proc.monitor_io(self.topic.label or ".", self._listener)

    def _stop(self) -> None:
        source = self.topic.source
        if source in ("EVENTS", "JOB", "PROCESS"):
            self.manager.events.unsubscribe(self._pattern, self._listener)
        elif source == "STATS":
            self.manager.unmonitor(self._listener, self._stats_target)
        else:
            proc = self.manager.running.get(self.topic.pid)
            if proc is not None:
                proc.unmonitor_io(self.topic.label or ".", self._listener)

    @property
    def _pattern(self) -> str:
        source, target = self.topic.source, self.topic.target
        if source == "JOB":
            return f"job.{target}"
        if source == "PROCESS":
            return f"proc.{target}"
        return target or "."

    @property
    def _stats_target(self) -> str | int:
        target = self.topic.target or ""
        return int(target) if target.isdigit() else target

    def _deliver(self, evtype: str, msg: Any) -> None:
        if self.topic.source in ("JOB", "PROCESS"):
            evtype = evtype[len(self._pattern) + 1 :]  # "job.default.web.exit" -> "exit"
        for callback in [*self._callbacks.get(evtype, ()), *self._callbacks.get(ALL, ())]:
            try:
                callback(evtype, msg)
            except Exception:
                logger.exception("channel %s: callback %r failed", self.topic.name, callback)
