"""examples/webapp.ini runs as its comments say: the database first, the web app once it
is ready, the worker after both (its ports moved to free ones, its API to a socket)."""

from __future__ import annotations

from pathlib import Path

from tests.gafferd.harness import ROOT, Gafferd, free_port
from tests.helpers import wait_until_sync


def test_the_webapp_example_starts_in_dependency_order(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "webapp.ini").read_text()
    db_port, web_port = free_port(), free_port()
    text = text.replace("5432", str(db_port)).replace("port = 8000", f"port = {web_port}")
    text = text.replace("bind = 127.0.0.1:5000", f"bind = unix:{tmp_path}/gafferd.sock")
    daemon = Gafferd(tmp_path)
    daemon.ini.write_text(text)
    daemon.start()
    try:
        states: dict[str, str] = {}

        def all_up() -> bool:
            for job in ("db", "web", "worker"):
                status, info = daemon.request("GET", f"/jobs/default/{job}")
                assert status == 200, info
                states[job] = info["state"]
            return states == {"db": "ready", "web": "ready", "worker": "running"}

        status, web = daemon.request("GET", "/jobs/default/web")
        assert status == 200, web
        assert web["state"] == "waiting" and web["waiting_for"] == ["default.db (starting)"]
        wait_until_sync(all_up, timeout=20, what=f"every job up: {states}")
        moves = daemon.log_text()
        assert "cannot" not in moves
    finally:
        assert daemon.stop() == 0
