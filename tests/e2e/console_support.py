"""Playwright helpers for the console tests: one Chromium per test session (Debian's
/usr/bin/chromium, never a downloaded browser), a fresh context (cookie jar) per user, and
a page that records console errors so every test can assert there were none."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 15_000


def launch_browser() -> Iterator[Any]:
    """Chromium for the whole session (skipped where Playwright or Chromium is missing)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium fonts-noto-cjk)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class ConsoleUser:
    """One browser context logged in (or not) as one key, and the API as that key."""

    page: Any
    context: Any
    base_url: str
    key: str
    errors: list[str] = field(default_factory=list)

    def api(self, path: str, **params: Any) -> Any:
        answer = httpx.get(
            f"{self.base_url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()

    def goto(self, path: str) -> Any:
        return self.page.goto(f"{self.base_url}{path}")

    def login(self) -> None:
        self.goto("/console/login")
        self.page.fill("[data-testid=key]", self.key)
        self.page.click("[data-testid=login]")
        self.page.wait_for_selector("[data-testid=who]")

    def text(self, selector: str) -> str:
        return str(self.page.text_content(selector) or "").strip()

    def expected(self, status: int) -> None:
        """Forget Chromium's report of a page answered with ``status`` on purpose (a form
        refused with 422 is an error to the browser, not to the test)."""
        self.errors = [e for e in self.errors if f"status of {status} " not in e]

    def assert_clean(self) -> None:
        assert not self.errors, f"console errors: {self.errors}"


def open_user(browser: Any, base_url: str, key: str, lang: str = "zh") -> ConsoleUser:
    context = browser.new_context(locale="zh-CN" if lang == "zh" else "en-US")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    user = ConsoleUser(page, context, base_url, key)
    page.on(
        "console",
        lambda m: (
            user.errors.append(f"{m.text} ({m.location.get('url')})") if m.type == "error" else None
        ),
    )
    page.on("pageerror", lambda e: user.errors.append(str(e)))
    return user
