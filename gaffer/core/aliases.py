"""The names of the original's that gaffer's own replace: 0.4's overview (``add_process``,
``ttin``...) and 0.5's (``list``, ``manage``, ``subscribe``), kept with their semantics."""

from __future__ import annotations

import warnings
from typing import Any

from gaffer.core.channels import Channel
from gaffer.core.config import ProcessConfig
from gaffer.core.onloop import on_loop
from gaffer.core.topics import parse_topic


class Aliases04:
    """Mixed into ``Manager``: ``add_process``, ``ttin``, ``send_signal``..."""

    def add_process(self, name: str, cmd: str, **settings: Any) -> None:
        start = settings.pop("start", True)
        self.load(ProcessConfig(name, cmd, **settings), start=start)  # type: ignore[attr-defined]

    def remove_process(self, name: str) -> None:
        self.unload(name)  # type: ignore[attr-defined]

    def start_process(self, name: str) -> None:
        self.start_job(name)  # type: ignore[attr-defined]

    def restart_process(self, name: str) -> None:
        self.reload(name)  # type: ignore[attr-defined]

    def ttin(self, name: str, n: int = 1) -> int:
        return self.scale(name, n)  # type: ignore[attr-defined]

    def ttou(self, name: str, n: int = 1) -> int:
        return self.scale(name, -n)  # type: ignore[attr-defined]

    def send_signal(self, name_or_pid: str | int, sig: int | str) -> None:
        if (isinstance(name_or_pid, int) and not isinstance(name_or_pid, bool)) or (
            isinstance(name_or_pid, str) and name_or_pid.isdigit()
        ):
            self.kill(name_or_pid, sig)  # type: ignore[attr-defined]
        else:
            self.killall(name_or_pid, sig)  # type: ignore[attr-defined]

    def get_process_info(self, name: str) -> dict[str, Any]:
        return self.get(name).to_dict(with_channels=False)  # type: ignore[attr-defined]

    def get_process_status(self, name: str) -> dict[str, Any]:
        info = self.info(name)  # type: ignore[attr-defined]
        return {key: info[key] for key in ("active", "running", "max_processes")}


class Aliases05:
    """Mixed into ``Manager``: 0.5's ``list``, ``manage``, ``subscribe``, ``unsubscribe``."""

    @on_loop
    def list(self, name: str | None = None) -> list[Any]:
        """0.5: the running processes (Process objects, one-off ones included), or the
        kept-alive processes of a job. Deprecated: ``pids`` and ``get_process``."""
        warnings.warn(
            "Manager.list() is gaffer 0.5's; use pids() and get_process()",
            DeprecationWarning,
            stacklevel=3,
        )
        if name is None:
            return [*self.running.values()]  # type: ignore[attr-defined]
        return [*self._get_job(name).running]  # type: ignore[attr-defined]

    @on_loop
    def manage(self, name: str) -> None:
        """0.5: reconcile the job with its target now (a job loaded with ``start=False`` and
        never stopped is started, as 0.5 did)."""
        self._get_job(name).reconcile_now()  # type: ignore[attr-defined]

    @on_loop
    def subscribe(self, topic: str) -> Channel:
        """0.5: a channel on ``topic`` (``EVENTS[:pattern]``, ``JOB:s.n``, ``PROCESS:pid``,
        ``STATS:pid|s.n``, ``STREAM:pid[.label]``; core/channels.py)."""
        return Channel(self, parse_topic(topic))  # type: ignore[arg-type]

    @on_loop
    def unsubscribe(self, topic: str, channel: Channel) -> None:
        """0.5: end a channel ``subscribe(topic)`` gave."""
        if parse_topic(topic).name != channel.topic.name:
            raise ValueError(f"this channel is subscribed to {channel.topic.name}, not {topic}")
        channel.close()
