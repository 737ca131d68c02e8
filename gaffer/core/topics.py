"""Topics: ``SOURCE[:target]``, what 0.5's ``Manager.subscribe(topic)`` and the
``/channel`` WebSocket subscribe to (``EVENTS[:pattern]``, ``JOB:session.name``,
``PROCESS:pid``, ``STATS:pid|session.name``, ``STREAM:pid[.label]``), parsed once here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gaffer.core.names import job_id
from gaffer.errors import InvalidArgument, ProcessError

SOURCES = ("EVENTS", "JOB", "PROCESS", "STATS", "STREAM")
MAX_TOPIC_LENGTH = 512


class TopicError(InvalidArgument):
    reason = "bad_topic"


@dataclass(frozen=True)
class Topic:
    """A parsed topic: ``source`` upper-case, ``target`` as given (job ids in full)."""

    source: str
    target: str | None = None

    @property
    def name(self) -> str:
        """The canonical form, used as the key of the subscription and in messages."""
        return self.source if self.target is None else f"{self.source}:{self.target}"

    @property
    def pid(self) -> int:
        text = self.target or ""
        return int(text.split(".", 1)[0])

    @property
    def label(self) -> str | None:
        if self.source != "STREAM" or self.target is None or "." not in self.target:
            return None
        return self.target.split(".", 1)[1]


def parse_topic(text: Any) -> Topic:
    """Parse ``SOURCE[:target]``; raise TopicError (400 ``bad_topic``) saying why not."""
    if not isinstance(text, str) or not text.strip():
        raise TopicError("the topic must be a non-empty string")
    if len(text) > MAX_TOPIC_LENGTH:
        raise TopicError(f"the topic is longer than {MAX_TOPIC_LENGTH} characters")
    source, sep, target = text.strip().partition(":")
    source = source.upper()
    if source not in SOURCES:
        raise TopicError(f"unknown topic source {source!r}: expected one of {', '.join(SOURCES)}")
    if not sep or not target:
        if source == "EVENTS":
            return Topic("EVENTS")
        example = {"JOB": "session.name", "PROCESS": "pid", "STATS": "pid or session.name"}
        raise TopicError(f"{source} needs a target: {source}:<{example.get(source, 'pid')}>")
    if any(ch.isspace() for ch in target):
        raise TopicError(f"the target {target!r} holds spaces")
    if source == "EVENTS":
        pattern = target.rstrip(".") or "."
        return Topic("EVENTS", None if pattern == "." else pattern)
    if source == "JOB":
        return Topic("JOB", _job(target))
    if source == "PROCESS":
        return Topic("PROCESS", str(_pid(target)))
    if source == "STATS":
        if target.isascii() and target.isdigit():
            return Topic("STATS", str(_pid(target)))
        return Topic("STATS", _job(target))
    pid_text, dot, label = target.partition(".")
    if dot and not label:
        raise TopicError(f"STREAM:{target}: the label after the dot is empty")
    return Topic("STREAM", f"{_pid(pid_text)}.{label}" if dot else str(_pid(pid_text)))


def _job(text: str) -> str:
    try:
        return job_id(text)
    except ProcessError:
        raise TopicError(f"bad job id {text!r}: expected session.name or a name") from None


def _pid(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise TopicError(f"bad pid {text!r}: expected a positive integer")
    return int(text)
