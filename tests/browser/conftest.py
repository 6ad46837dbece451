"""A real Chromium (Debian's ``chromium``, installed by ``scripts/setup-browser.sh``) driven by
Playwright through its ``executable_path``; no browser is downloaded.

``LNGATE_REQUIRE_BROWSER=1`` (``scripts/test.sh`` sets it) turns a missing browser into a
failure instead of a skip. Screenshots go to ``test-artifacts/`` on every run; the ones the
README shows are copied to ``docs/screenshots/`` with ``LNGATE_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}  # a common phone's CSS viewport
MIN_SCREENSHOT_BYTES = 8_000  # a blank page of this size compresses to far less


def chromium_path() -> str | None:
    return os.environ.get("LNGATE_CHROMIUM") or shutil.which("chromium")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    if path is None:
        if os.environ.get("LNGATE_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium not found: run scripts/setup-browser.sh")
        pytest.skip("chromium not installed (scripts/setup-browser.sh)")
    async with async_playwright() as playwright:
        # --no-sandbox: the test machine runs as root, where Chromium's sandbox cannot start.
        launched = await playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


def page_problems(page: Page) -> list[str]:
    """What goes wrong in ``page`` from now on: CSP violations, console errors, uncaught
    exceptions (a test ends asserting the list is empty)."""
    found: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or message.type == "error":
            found.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: found.append(str(error)))
    return found


async def screenshot(page: Page, name: str, *, readme: bool = False) -> Path:
    """Save a full-page PNG as a test artifact (and for the README); refuse a blank one."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    png = await page.screenshot(path=str(path), full_page=True)
    assert len(png) > MIN_SCREENSHOT_BYTES, f"{name}: the screenshot looks blank"
    if readme and os.environ.get("LNGATE_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
    return path


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Pages read through the same use cases on either database (the HTTP tests run both):
    the browser tests look at the pages once, on the embedded default."""
    return f"sqlite:///{tmp_path / 'lngate.sqlite3'}"
