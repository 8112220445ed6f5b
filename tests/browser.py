"""Browser test fixtures: the panel served on a free loopback port, driven by Debian's Chromium.

Playwright for Python drives ``/usr/bin/chromium`` (``apt-get install chromium``); it never
downloads a browser.  Without Chromium the browser tests skip; in CI (``CI=true``) they fail.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.conftest import PANEL_PASSWORDS, skip_or_fail

CHROMIUM = os.environ.get("CARE_EPISODES_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
]
# Screenshots land in a temporary directory, so a test run never changes the work tree; with
# CARE_EPISODES_SCREENSHOTS=1 they refresh the documentation's pictures in docs/screenshots/.
DOCS_SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


@pytest.fixture
def served(panel) -> Iterator[str]:
    """The panel on http://127.0.0.1:<free port>, in a thread, for the length of one test."""
    server = make_server("127.0.0.1", 0, panel, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture(scope="session")
def browser():
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not executable:
        skip_or_fail("Chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, served):
    context = browser.new_context(base_url=served, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)  # a wait for an element, not a limit on the test
    yield tab
    context.close()


def log_in(page, role: str) -> None:
    page.goto("/login")
    page.fill("#username", role)
    page.fill("#password", PANEL_PASSWORDS[role])
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def screenshots_directory() -> Path:
    if os.environ.get("CARE_EPISODES_SCREENSHOTS") == "1":
        return DOCS_SCREENSHOTS
    return Path(tempfile.gettempdir()) / f"care-episodes-screenshots-{os.getuid()}"


def screenshot(page, name: str) -> Path:
    """A full-page PNG of ``page`` named ``name`` (see ``screenshots_directory``)."""
    directory = screenshots_directory()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
