"""A tenant drives the console in Chromium: submits a local job from the form, watches it
finish and reads its logs, creates a key (shown once) and revokes it, downloads a bill CSV
whose total equals the API's; another tenant's session gets 404 for that job's URL; every
tenant page loads without console errors."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_support import ConsoleUser, open_user

from conftest import Cli, Server


@pytest.fixture(scope="module")
def tenant(browser: Any, server: Server, demo_key: str) -> Iterator[ConsoleUser]:
    user = open_user(browser, server.url, demo_key)
    user.login()
    yield user
    user.context.close()


@pytest.fixture(scope="module")
def finished_job(tenant: ConsoleUser) -> str:
    """A local job submitted from the form and watched until it ends (log follows)."""
    tenant.goto("/console/jobs")
    tenant.page.fill("[data-testid=command]", "echo hello-console; echo 你好; sleep 1")
    tenant.page.click("[data-testid=submit]")
    job_id = tenant.text("[data-testid=job-id]")
    tenant.page.wait_for_selector("[data-testid=job-log][data-state=succeeded]", timeout=45_000)
    return job_id


def test_submit_watch_and_read_logs(tenant: ConsoleUser, finished_job: str) -> None:
    log = tenant.text("[data-testid=log-text]")
    assert "hello-console" in log
    assert "你好" in log
    api = tenant.api(f"/api/v1/jobs/{finished_job}")
    assert api["state"] == "succeeded"
    assert api["tenant"] == "demo"
    assert tenant.page.locator("[data-testid=attempts] tbody tr").count() == len(
        api["attempt_history"]
    )
    tenant.goto("/console/jobs")
    assert tenant.page.locator(f"tr[data-job='{finished_job}']").count() == 1
    tenant.assert_clean()


def test_cancel_a_running_job_from_its_page(tenant: ConsoleUser) -> None:
    tenant.goto("/console/jobs")
    tenant.page.fill("[data-testid=command]", "echo started; sleep 60")
    tenant.page.click("[data-testid=submit]")
    job_id = tenant.text("[data-testid=job-id]")
    tenant.page.wait_for_selector("[data-testid=job-log][data-state=running]", timeout=30_000)
    tenant.page.click("[data-testid=cancel]")
    tenant.page.wait_for_selector("[data-testid=job-log][data-state=cancelled]", timeout=30_000)
    assert tenant.page.locator("[data-testid=cancel]").count() == 0
    assert tenant.api(f"/api/v1/jobs/{job_id}")["state"] == "cancelled"
    tenant.assert_clean()


def test_a_bad_form_is_refused_inline(tenant: ConsoleUser) -> None:
    before = len(tenant.api("/api/v1/jobs"))
    tenant.goto("/console/jobs")
    tenant.page.fill("[data-testid=command]", "true")
    tenant.page.fill("input[name=cards]", "x")
    tenant.page.click("[data-testid=submit]")
    assert tenant.page.wait_for_selector("[data-error-for=cards]").is_visible()
    assert len(tenant.api("/api/v1/jobs")) == before
    tenant.expected(422)
    tenant.assert_clean()


def test_create_a_key_shown_once_then_revoke_it(tenant: ConsoleUser, server: Server) -> None:
    tenant.goto("/console/keys")
    tenant.page.fill("[data-testid=key-name]", "console-e2e")
    tenant.page.click("[data-testid=create-key]")
    secret = tenant.text("[data-testid=secret]")
    whoami = httpx.get(f"{server.url}/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert whoami.status_code == 200
    assert whoami.json()["tenant"] == "demo"
    prefix = secret[:11]
    tenant.goto("/console/keys")
    assert secret not in tenant.page.content()  # never shown again
    row = tenant.page.locator(f"[data-testid=keys] tr[data-prefix='{prefix}']")
    row.locator("[data-testid=revoke]").click()
    tenant.page.wait_for_selector(f"tr[data-prefix='{prefix}'] [data-col=state]")
    state = tenant.text(f"tr[data-prefix='{prefix}'] [data-col=state]")
    assert state == "已吊销"
    again = httpx.get(f"{server.url}/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert again.status_code == 401
    tenant.assert_clean()


def test_bill_csv_total_equals_the_api(tenant: ConsoleUser, finished_job: str) -> None:
    tenant.goto("/console/usage")
    with tenant.page.expect_download() as info:
        tenant.page.click("[data-testid=bill-csv]")
    text = Path(info.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    period = rows[-1]["period"]
    api = tenant.api(f"/api/v1/tenants/demo/bills/{period}")
    assert rows[-1]["kind"] == "total"
    assert int(rows[-1]["amount_micro"]) == api["total_micro"]
    assert tenant.text("[data-testid=bill-total]") == api["total"]
    tenant.assert_clean()


def test_another_tenants_session_gets_404(
    browser: Any, server: Server, cli: Cli, finished_job: str
) -> None:
    made = cli("tenants", "create", "console-rival")
    assert made.returncode == 0, made.stderr
    key = cli("keys", "create", "--tenant", "console-rival", "--scope", "tenant-admin", "-q")
    assert key.returncode == 0, key.stderr
    rival = open_user(browser, server.url, key.stdout.strip())
    rival.login()
    for path in (f"/console/jobs/{finished_job}", f"/console/jobs/{finished_job}/log"):
        answer = rival.goto(path)
        assert answer.status == 404, path
        assert "hello-console" not in rival.page.content()
    rival.goto("/console/jobs")
    assert rival.page.locator(f"tr[data-job='{finished_job}']").count() == 0
    rival.context.close()


def test_every_tenant_page_loads_clean(tenant: ConsoleUser) -> None:
    for path, selector in (
        ("/console/fleet", "[data-testid=total-cards]"),
        ("/console/quota", "[data-testid=quota-form]"),
        ("/console/usage", "[data-testid=usage]"),
        ("/console/audit", "[data-testid=audit]"),
        ("/console/keys", "[data-testid=keys]"),
        ("/console/jobs", "[data-testid=jobs]"),
    ):
        tenant.goto(path)
        assert tenant.page.locator(selector).is_visible(), path
    tenant.goto("/console/quota")
    quota = tenant.api("/api/v1/tenants/demo")["quota"]
    for family, cards in quota.items():
        field = tenant.page.input_value(f"input[name='quota.{family}']")
        assert field == str(cards)
    audit = tenant.api("/api/v1/audit", limit=1)["entries"]
    tenant.goto("/console/audit")
    if audit:
        first = tenant.page.locator("[data-testid=audit] tbody tr").first
        assert first.get_attribute("data-action") == audit[0]["action"]
    tenant.assert_clean()
