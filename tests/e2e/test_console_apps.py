"""A tenant admin drives the apps pages in Chromium (no model needed): creates an app from
an industry template with the form (a bad name first: refused inline, nothing made), sees
it listed and its detail as the API shows them, publishes an older version, and opens the
chat playground; another tenant's session gets 404 for the app's pages and lists nothing.
The playground's streamed answer, with a real model, is in
tests/integration/test_console_apps_live.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from console_support import ConsoleUser, open_user

from conftest import Server

APP = "console-tutor"


@pytest.fixture(scope="module")
def admin(browser: Any, server: Server, demo_key: str) -> Iterator[ConsoleUser]:
    user = open_user(browser, server.url, demo_key)
    user.login()
    yield user
    user.context.close()


@pytest.fixture(scope="module")
def made(admin: ConsoleUser) -> str:
    """The app made from the education template through the form (after a refused name)."""
    admin.goto("/console/apps")
    admin.page.select_option("[data-testid=template]", "education-tutor")
    admin.page.fill("[data-testid=app-name]", "Bad Name")
    admin.page.click("[data-testid=create-app]")
    assert admin.page.locator("[data-error-for=name]").count() == 1
    admin.expected(422)
    assert all(a["name"] != "Bad Name" for a in admin.api("/api/v1/apps"))
    admin.page.fill("[data-testid=app-name]", APP)
    admin.page.click("[data-testid=create-app]")
    admin.page.wait_for_selector("[data-testid=created]")
    return APP


def test_the_app_made_from_the_form_is_listed_and_shown_as_the_api_has_it(
    admin: ConsoleUser, made: str
) -> None:
    api = admin.api(f"/api/v1/apps/{made}")
    assert api["template"] == "education-tutor"
    assert [b["name"] for b in api["bases"]] == [f"{made}-kb"]
    assert admin.text("[data-testid=published]") == str(api["published_version"])
    admin.goto("/console/apps")
    row = admin.page.locator(f"tr[data-app='{made}']")
    assert row.get_attribute("data-sharing") == "app_shared_all"
    assert row.locator("[data-col=published]").inner_text() == str(api["published_version"])
    admin.assert_clean()


def test_publish_an_older_version_from_the_page(
    admin: ConsoleUser, made: str, server: Server, demo_key: str
) -> None:
    changed = httpx.patch(
        f"{server.url}/api/v1/apps/{made}",
        json={"top_k": 2},
        headers={"Authorization": f"Bearer {demo_key}"},
        timeout=10,
    )
    assert changed.status_code == 200, changed.text
    admin.goto(f"/console/apps/{made}")
    versions = admin.api(f"/api/v1/apps/{made}/versions")
    assert admin.page.locator("[data-testid=versions] tbody tr").count() == len(versions) == 2
    admin.page.locator("tr[data-version='1'] [data-testid=publish]").click()
    admin.page.wait_for_selector("tr[data-version='2'] [data-testid=publish]")
    assert admin.api(f"/api/v1/apps/{made}")["published_version"] == 1
    assert admin.text("[data-testid=published]") == "1"
    admin.goto(f"/console/apps/{made}/chat")
    assert admin.page.locator("[data-testid=chat-form]").count() == 1
    assert admin.page.get_attribute("[data-testid=answer]", "data-state") == "idle"
    admin.assert_clean()


def test_another_tenant_gets_404_and_lists_nothing(
    browser: Any, server: Server, operator_key: str, made: str
) -> None:
    operator = {"Authorization": f"Bearer {operator_key}"}
    tenant = httpx.post(
        f"{server.url}/api/v1/tenants", json={"name": "apps-rival"}, headers=operator, timeout=10
    )
    assert tenant.status_code == 201, tenant.text
    body = {"tenant": "apps-rival", "scope": "tenant-admin"}
    key = httpx.post(f"{server.url}/api/v1/keys", json=body, headers=operator, timeout=10)
    assert key.status_code == 201, key.text
    rival = open_user(browser, server.url, key.json()["key"], lang="en")
    rival.login()
    for path in (f"/console/apps/{made}", f"/console/apps/{made}/chat"):
        assert rival.goto(path).status == 404, path
    rival.expected(404)
    rival.goto("/console/apps")
    assert rival.page.locator(f"tr[data-app='{made}']").count() == 0
    rival.assert_clean()
    rival.context.close()
