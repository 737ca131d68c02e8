"""The Manager's commands on single processes: by internal pid, from any thread.

Mixed into ``Manager`` (manager.py), which provides the registry (``_get_job``,
``running``, ``_jobs``, ``_table``) and ``_publish``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from gaffer.core.names import as_pid, parse_signal
from gaffer.core.onloop import on_loop
from gaffer.core.process import Process
from gaffer.errors import ProcessNotFound, StreamNotFound

if TYPE_CHECKING:
    from gaffer.core.manager import Manager


class ProcessCommands:
    """``pids``, ``get_process``, ``kill``, ``send``, ``stop_process``, ``walk``."""

    @on_loop
    def pids(self, name: str | None = None) -> list[int]:
        """Every running pid (one-off included), or the kept-alive pids of a job."""
        if name is None:
            return list(self.running)
        return self._get_job(name).pids

    @on_loop
    def get_process(self, pid: int) -> Process:
        try:
            return self.running[as_pid(pid)]
        except KeyError:
            raise ProcessNotFound(f"no running process with pid {pid}") from None

    @on_loop
    def kill(self, pid: int, sig: int | str) -> None:
        proc = self.get_process(pid)
        signum = parse_signal(sig)
        proc.kill(signum)
        self._publish(
            f"proc.{proc.pid}.kill", {"name": proc.name, "pid": proc.pid, "signum": signum}
        )

    @on_loop
    def send(
        self, pid: int, data: bytes | str | Iterable[bytes | str], stream: str | None = None
    ) -> None:
        """Write ``data`` (or a list of lines) to stdin, or to a custom stream."""
        proc = self.get_process(pid)
        if stream in (None, "stdin"):
            target: Any = proc
        else:
            target = proc.streams.get(stream)
            if target is None:
                raise StreamNotFound(f"pid {proc.pid} has no stream {stream!r}")
        if isinstance(data, bytes | bytearray | str):
            target.write(data)
        else:
            target.writelines(data)

    @on_loop
    def stop_process(self, pid: int | str) -> None:
        """Stop one process (an int pid); for a kept-alive job a new one replaces it.
        (A str names a job: the 0.4 ``stop_process(name)``, which stops the job.)"""
        if isinstance(pid, str) and not pid.isdigit():
            self.stop_job(pid)
            return
        proc = self.get_process(pid)
        runner = self._jobs.get(proc.name)
        if runner is not None:
            runner.stop_one(proc)
        else:  # its job was unloaded meanwhile
            self._table.stop(proc)

    @on_loop
    def walk(self, callback: Callable[[Manager, Process], object], name: str | None = None) -> None:
        procs = list(self.running.values()) if name is None else self._get_job(name).processes
        for proc in procs:
            callback(self, proc)
