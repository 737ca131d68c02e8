"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against a
real gafferd. Never skipped: without Chromium the tests fail and say how to install it
(``make test`` installs it first when it can).

Set ``GAFFER_DOCS_SCREENSHOT=docs/dashboard.png`` to also write the screenshot of the
docs there (``make docs-screenshot``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gafferd.harness import Gafferd
from tests.helpers import child_cmd, wait_until_sync
from tests.http.rest_helpers import Api, admin_key_of, start_gafferd

pytestmark = pytest.mark.timeout(120)

CHROMIUM = os.environ.get("GAFFER_CHROMIUM", "/usr/bin/chromium")
# no outside network here: without these, Chromium's background connections are refused
# over and over; as root it needs --no-sandbox
FLAGS = [
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    *(["--no-sandbox"] if os.geteuid() == 0 else []),
]
TIMEOUT_MS = 15_000
JOBS = f"""
[job:web]
cmd = {child_cmd("sleep")}
numprocesses = 2
graceful_timeout = 2

[job:app.worker]
cmd = {child_cmd("chatty", 5)}
redirect_output = stdout, stderr
graceful_timeout = 2
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A Chromium context with a new, empty profile; closed (with every process of it)
    at the end of the test."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"the dashboard's browser tests need Chromium at {CHROMIUM}: run "
            "'sudo apt-get install -y chromium' (make test does it when run as root)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need playwright: run 'make venv' (pip install -e .[dev])")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 860},
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


def open_dashboard(browser: Any, api: Api) -> Any:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.errors = errors
    page.goto(f"http://127.0.0.1:{api.port}/dashboard/")
    return page


def card(page: Any, job: str) -> Any:
    return page.locator(f'article[data-job="{job}"]')


def text_of(page: Any, job: str, field: str) -> Any:
    return card(page, job).locator(f'[data-field="{field}"]')


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Gafferd, Api]]:
    daemon, api = start_gafferd(tmp_path, JOBS, tcp=True)
    daemon.start()
    try:
        api.wait_pids("default.web", 2)
        api.wait_pids("app.worker", 1)
        yield daemon, api
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_dashboard_shows_the_jobs_and_scales_one(
    browser: Any, site: tuple[Gafferd, Api], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    _, api = site
    page = open_dashboard(browser, api)
    expect(card(page, "default.web")).to_be_visible()
    expect(card(page, "app.worker")).to_be_visible()
    expect(page.locator('section.session[data-session="app"] h2')).to_have_text("session app")
    expect(text_of(page, "default.web", "running")).to_have_text("2")
    expect(text_of(page, "default.web", "numprocesses")).to_have_text("2")
    expect(text_of(page, "default.web", "state")).to_have_text("running")
    expect(text_of(page, "app.worker", "running")).to_have_text("1")
    expect(card(page, "default.web").locator("table.processes tbody tr")).to_have_count(2)
    expect(page.locator('#daemon [data-field="pid"]')).to_have_text(str(site[0].pid))

    # the pids the page shows are the API's
    shown = card(page, "default.web").locator("table.processes tbody tr")
    expect(shown).to_have_count(2)
    pids = sorted(int(row.get_attribute("data-pid")) for row in shown.all())
    assert pids == sorted(api.pids("default.web"))

    # scale to 3: the page and the API agree
    card(page, "default.web").locator('[data-field="target"]').fill("3")
    card(page, "default.web").locator('button[data-action="scale"]').click()
    expect(page.locator("#message")).to_have_text("default.web: scaled to 3 processes")
    expect(text_of(page, "default.web", "numprocesses")).to_have_text("3")
    expect(text_of(page, "default.web", "running")).to_have_text("3")
    expect(card(page, "default.web").locator("table.processes tbody tr")).to_have_count(3)
    assert api.info("default.web")["numprocesses"] == 3
    assert len(api.wait_pids("default.web", 3)) == 3

    # the live output of the worker, in its Output panel; the charts have points
    card(page, "app.worker").locator("details.output summary").click()
    expect(text_of(page, "app.worker", "output")).to_contain_text("x" * 80)
    expect(card(page, "default.web").locator('svg[data-chart="rss"] polyline')).to_have_attribute(
        "points",
        re.compile(r"\d+(\.\d+)?,\d+(\.\d+)? \d"),  # two points at least
    )
    expect(text_of(page, "default.web", "rss")).to_contain_text("iB")
    expect(text_of(page, "default.web", "state")).to_have_text("running")
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    docs = os.environ.get("GAFFER_DOCS_SCREENSHOT")
    if docs:
        shutil.copyfile(shot, docs)

    # one less with the minus button
    card(page, "default.web").locator('button[data-action="less"]').click()
    expect(text_of(page, "default.web", "running")).to_have_text("2")
    wait_until_sync(lambda: len(api.pids("default.web")) == 2, what="2 processes of web")

    # stop and start
    card(page, "app.worker").locator('button[data-action="stop"]').click()
    expect(text_of(page, "app.worker", "state")).to_have_text("stopped")
    assert api.info("app.worker")["state"] == "stopped"
    card(page, "app.worker").locator('button[data-action="start"]').click()
    expect(text_of(page, "app.worker", "running")).to_have_text("1")
    api.wait_pids("app.worker", 1)
    assert page.errors == []


def test_dashboard_follows_jobs_loaded_and_unloaded(
    browser: Any, site: tuple[Gafferd, Api]
) -> None:
    from playwright.sync_api import expect

    _, api = site
    page = open_dashboard(browser, api)
    expect(card(page, "default.web")).to_be_visible()
    api.load("late", "sleep", sid="extra")
    expect(card(page, "extra.late")).to_be_visible()
    expect(text_of(page, "extra.late", "running")).to_have_text("1")
    assert api.delete("/jobs/extra/late").status == 200
    expect(card(page, "extra.late")).to_have_count(0)
    expect(page.locator('section.session[data-session="extra"]')).to_have_count(0)
    assert page.errors == []


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[Gafferd, Api, Api]]:
    daemon, api = start_gafferd(tmp_path, "require_key = true\n" + JOBS, tcp=True)
    created = daemon.run("--create-admin-user", "--username", "admin", "--password", "pw")
    assert created.returncode == 0, created.stderr
    daemon.start()
    try:
        admin = api.with_key(admin_key_of(created.stdout))
        admin.wait_pids("default.web", 2)
        yield daemon, api, admin
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def new_key(admin: Api, permissions: dict[str, Any]) -> str:
    response = admin.post("/keys", {"permissions": permissions})
    assert response.status == 201, response
    return response.json["api_key"]


def test_dashboard_with_keys_required(browser: Any, keyed: tuple[Gafferd, Api, Api]) -> None:
    from playwright.sync_api import expect

    _, api, admin = keyed
    read_only = new_key(admin, {"read": ["*"]})
    page = open_dashboard(browser, api)

    # asked once
    expect(page.locator("#key-form")).to_be_visible()
    expect(page.locator("#key-reason")).to_have_text("This gafferd requires an API key.")
    page.locator("#key-input").fill("gk_wrong")
    page.locator("#key-form button").click()
    expect(page.locator("#key-reason")).to_have_text(
        "This key cannot be used here: unknown or expired API key."
    )
    page.locator("#key-input").fill(read_only)
    page.locator("#key-form button").click()
    expect(page.locator("#key-form")).to_be_hidden()
    expect(text_of(page, "default.web", "running")).to_have_text("2")

    # a read key may not scale: the page says so, nothing changes
    card(page, "default.web").locator('button[data-action="more"]').click()
    message = page.locator("#message")
    expect(message).to_have_class("error")
    expect(message).to_have_text(
        "Not allowed: this key may not manage 'default.web'. To scale default.web, the key "
        "needs the manage permission on it (or on its session)."
    )
    assert admin.info("default.web")["numprocesses"] == 2

    # kept for the tab: a reload does not ask again
    page.reload()
    expect(text_of(page, "default.web", "running")).to_have_text("2")
    expect(page.locator("#key-form")).to_be_hidden()

    # forget it, give the admin's: the buttons work
    page.locator("#forget-key").click()
    expect(page.locator("#key-form")).to_be_visible()
    page.locator("#key-input").fill(admin.key)
    page.locator("#key-form button").click()
    card(page, "default.web").locator('button[data-action="more"]').click()
    expect(text_of(page, "default.web", "running")).to_have_text("3")
    assert admin.info("default.web")["numprocesses"] == 3
    # the live output comes through the WebSocket with the key
    card(page, "app.worker").locator("details.output summary").click()
    expect(text_of(page, "app.worker", "output")).to_contain_text("x" * 80)
    # the failed requests of the wrong key are the only errors the console saw
    assert all("401" in error or "403" in error for error in page.errors), page.errors
