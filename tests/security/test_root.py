"""Issue 11.10: gafferd as root without keys serves a unix socket only (root alone can
connect), unless allow_root_without_keys says otherwise; and the systemd units run
gafferd (and what gaffer export writes) as a user of their own, or say why not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gaffer.cli.procfile import App, to_systemd
from gaffer.errors import SecurityError
from gafferd.main import check_root
from gafferd.settings import resolve
from tests.gafferd.harness import Gafferd, free_port

ROOT = Path(__file__).resolve().parents[2]
AS_ROOT = os.geteuid() == 0


def _effective(**values: str):
    return resolve({}, {f"GAFFERD_{k.upper()}": v for k, v in values.items()}, {})


def test_the_rule_for_root():
    with pytest.raises(SecurityError) as refused:
        check_root(_effective(bind="127.0.0.1:5000"), euid=0)
    message = str(refused.value)
    for fix in ("require_key = true", "unix:", "allow_root_without_keys = true", "gafferd.service"):
        assert fix in message, fix
    check_root(_effective(bind="unix:/run/g.sock"), euid=0)
    check_root(_effective(bind="127.0.0.1:5000", require_key="true"), euid=0)
    check_root(_effective(bind="127.0.0.1:5000", allow_root_without_keys="true"), euid=0)
    check_root(_effective(bind="127.0.0.1:5000"), euid=1000)  # not root: not this rule


@pytest.mark.skipif(not AS_ROOT, reason="gafferd runs as root only when the tests do")
def test_gafferd_as_root_without_keys_refuses_a_tcp_bind(tmp_path: Path):
    port = free_port()
    daemon = Gafferd(tmp_path, f"[gaffer]\nbind = 127.0.0.1:{port}\n")
    daemon.env.pop("GAFFERD_ALLOW_ROOT_WITHOUT_KEYS", None)
    refused = daemon.run()
    assert refused.returncode == 78, refused
    assert "refusing to run as root without keys on 127.0.0.1:" in refused.stderr
    daemon.write(f"[gaffer]\nbind = 127.0.0.1:{port}\nallow_root_without_keys = true\n")
    assert daemon.run("--check-config").returncode == 0
    daemon.write(f"[gaffer]\nbind = unix:{daemon.socket}\n")  # root alone reaches it (0600)
    daemon.start()
    try:
        assert daemon.request("GET", "/ping")[0] == 200
        assert os.stat(daemon.socket).st_mode & 0o777 == 0o600
    finally:
        daemon.stop()


def test_the_shipped_unit_runs_gafferd_as_its_own_user():
    unit = (ROOT / "etc" / "gafferd.service").read_text().splitlines()
    assert "User=gaffer" in unit and "Group=gaffer" in unit
    assert "NoNewPrivileges=yes" in unit


def test_exported_units_say_who_they_run_as(tmp_path: Path):
    (tmp_path / "Procfile").write_text("web: python -m http.server $PORT\n")
    app = App.load(str(tmp_path / "Procfile"), name="demo")
    unit = to_systemd(app)[f"{app.name}-web-1.service"].splitlines()
    assert "# runs as root: export with --user NAME to run it as NAME" in unit
    assert "User=deploy" in to_systemd(app, user="deploy")[f"{app.name}-web-1.service"]
