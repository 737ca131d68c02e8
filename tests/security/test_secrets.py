"""Issue 11.9: a key that is not admin does not see gafferd's own environment in a
process's info: only the job's variables, secrets redacted (by name, and URLs holding a
password), and how many it inherited."""

from __future__ import annotations

import os
from pathlib import Path

from gaffer.http.auth import REDACTED, redact_env
from tests.security.site import keyed, tcp

GAFFERD_ENV = {
    "AWS_SECRET_ACCESS_KEY": "s3cr3t-of-gafferd",
    "BACKUP_URL": "sftp://backup:hunter2@vault.example/",
    "HOSTILE_PLAIN": "visible-to-whom",
}


def test_redaction_is_linear_in_the_size_of_values():
    huge = {"A": "a" * 2_000_000, "B": "://" * 500_000, "C": "x://" + "y" * 1_000_000}
    assert redact_env(huge) == huge  # at once: no backtracking over 2 MB


def test_url_credentials_are_redacted_whatever_the_name():
    env = {
        "DATABASE": "postgres://app:pw@db/app",
        "CACHE": "redis://:pw@cache:6379/0",
        "HOMEPAGE": "https://user@example.com/#x",
        "PLAIN": "a:b@c",
    }
    assert redact_env(env) == {
        "DATABASE": REDACTED,
        "CACHE": REDACTED,
        "HOMEPAGE": "https://user@example.com/#x",
        "PLAIN": "a:b@c",
    }


def test_a_read_only_key_sees_the_jobs_own_env_not_gafferds(tmp_path: Path, monkeypatch):
    for name, value in GAFFERD_ENV.items():
        monkeypatch.setenv(name, value)  # inherited by gafferd, then by its jobs (os_env)
    daemon, port, admin = keyed(
        tmp_path,
        jobs="""
            [job:web]
            cmd = {child} sleep
            env:OWN = mine
            env:DATABASE_URL = postgres://app:pw-of-the-job@db/app
            env:API_TOKEN = t0k3n
        """,
    )
    try:
        created = tcp(port, "POST", "/keys", {"permissions": {"read": ["default"]}}, key=admin)
        reader = created.json["api_key"]
        [pid] = tcp(port, "GET", "/jobs/default/web/pids", key=reader).json["pids"]
        answer = tcp(port, "GET", f"/{pid}", key=reader)
        assert answer.status == 200
        info = answer.json
        assert info["env"] == {
            "OWN": "mine",
            "DATABASE_URL": REDACTED,
            "API_TOKEN": REDACTED,
            "GAFFER_JOB": "default.web",
        }
        inherited = {k for k in os.environ if k not in info["env"]}
        assert info["inherited_env_count"] >= len(GAFFERD_ENV) and inherited
        for secret in ("s3cr3t", "hunter2", "visible-to-whom", "pw-of-the-job", "t0k3n"):
            assert secret.encode() not in answer.raw, secret
        job = tcp(port, "GET", "/jobs/default/web", key=reader)
        assert job.json["config"]["env"]["DATABASE_URL"] == REDACTED
        # an admin key sees what the process really has
        full = tcp(port, "GET", f"/{pid}", key=admin).json
        assert full["env"]["HOSTILE_PLAIN"] == "visible-to-whom"
        assert full["env"]["DATABASE_URL"] == "postgres://app:pw-of-the-job@db/app"
    finally:
        daemon.stop()
