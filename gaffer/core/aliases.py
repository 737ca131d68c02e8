"""The 0.4 names of the original's overview, kept as thin aliases of the Manager's own."""

from __future__ import annotations

from typing import Any

from gaffer.core.config import ProcessConfig


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
