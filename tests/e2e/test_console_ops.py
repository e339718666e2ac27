"""The operator's views in Chromium (issue 16, point 2): utilisation over time with the
training/inference split, queues with their reasons, WAN links and transfers, revenue by
tenant and model; each page loads without console errors and shows the API's numbers.
A tenant's session gets 403 on all four pages and its key 403 on their API routes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_support import ConsoleUser, open_user

from conftest import Server

PAGES = ("/console/utilisation", "/console/queues", "/console/wan", "/console/revenue")
ROUTES = ("/api/v1/fleet/utilisation", "/api/v1/queues", "/api/v1/wan", "/api/v1/revenue")
QUEUED_JOBS = 3
FIRST_REASON = "waiting for the scheduler"
"""A job's reason until the scheduler's first cycle after its submission."""


@pytest.fixture(scope="module")
def operator(browser: Any, server: Server, operator_key: str) -> Iterator[ConsoleUser]:
    user = open_user(browser, server.url, operator_key)
    user.login()
    yield user
    user.context.close()


@pytest.fixture(scope="module")
def queued(server: Server, operator_key: str) -> Iterator[str]:
    """A tenant without Ascend quota with a few simulated Ascend jobs waiting for it
    (cancelled at the end, so the other console tests see an idle queue). Made through the
    API rather than the CLI: two CLI processes would cost the suite ~6 s."""
    operator = {"Authorization": f"Bearer {operator_key}"}
    made = httpx.post(
        f"{server.url}/api/v1/tenants",
        json={"name": "ops-queue", "quota": {"ascend": 0}},
        headers=operator,
        timeout=10,
    )
    assert made.status_code == 201, made.text
    key = httpx.post(
        f"{server.url}/api/v1/keys",
        json={"tenant": "ops-queue", "scope": "tenant-member"},
        headers=operator,
        timeout=10,
    )
    assert key.status_code == 201, key.text
    headers = {"Authorization": f"Bearer {key.json()['key']}"}
    body = {"name": "waits", "resources": {"chip": "ascend", "cards_per_node": 8},
            "simulate": {"duration_s": 60}}  # fmt: skip
    ids = []
    for _ in range(QUEUED_JOBS):
        answer = httpx.post(f"{server.url}/api/v1/jobs", json=body, headers=headers, timeout=10)
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # until the scheduler has said why they wait
        answer = httpx.get(f"{server.url}/api/v1/queues", headers=operator, timeout=10).json()
        said = {g["reason"] for g in answer["reasons"] if g["tenant"] == "ops-queue"}
        if said and FIRST_REASON not in said:
            break
        time.sleep(0.2)
    yield "ops-queue"
    for job_id in ids:
        httpx.post(f"{server.url}/api/v1/jobs/{job_id}/cancel", headers=headers, timeout=10)


def chart(user: ConsoleUser, selector: str) -> Any:
    return json.loads(user.page.get_attribute(selector, "data-ops-chart") or "{}")


def test_utilisation_page_matches_the_api(operator: ConsoleUser) -> None:
    operator.goto("/console/utilisation?window=1h&by=chip")
    api = operator.api("/api/v1/fleet/utilisation", window="1h", by="chip")
    rows = operator.page.locator("[data-testid=current] tbody tr")
    assert rows.count() == len(api["current"])
    for current in api["current"]:
        row = f"[data-testid=current] tr[data-group='{current['group']}']"
        assert int(operator.text(f"{row} [data-col=cards]")) == current["cards"]
        assert int(operator.text(f"{row} [data-col=busy]")) == current["busy_cards"]
    drawn = chart(operator, "#util-chart")
    assert len(drawn["labels"]) == len(api["times"]) == 60
    assert len(drawn["datasets"]) == len(api["series"])
    assert int(operator.text("[data-testid=training-now]")) == api["training_now"]
    assert operator.page.locator("#util-chart").is_visible()
    assert operator.page.locator("#split-chart").is_visible()
    operator.goto("/console/utilisation?window=7d&lang=en")
    assert len(chart(operator, "#split-chart")["labels"]) == 168
    assert operator.page.locator("[data-testid=current] .badge.simulated").count() > 0
    operator.goto("/console/utilisation?lang=zh")
    operator.assert_clean()


def test_queues_page_groups_waiting_work_like_the_api(operator: ConsoleUser, queued: str) -> None:
    operator.goto("/console/queues")
    api = operator.api("/api/v1/queues")
    (group,) = [g for g in api["groups"] if g["tenant"] == queued]
    assert (group["jobs"], group["cards"]) == (QUEUED_JOBS, 8 * QUEUED_JOBS)
    row = f"[data-testid=queue-groups] tr[data-tenant='{queued}']"
    assert int(operator.text(f"{row} [data-col=jobs]")) == QUEUED_JOBS
    assert int(operator.text(f"{row} [data-col=cards]")) == 8 * QUEUED_JOBS
    reasons = [g for g in api["reasons"] if g["tenant"] == queued]
    rows = operator.page.locator(f"[data-testid=queue-reasons] tr[data-tenant='{queued}']")
    assert rows.count() == len(reasons)
    assert {rows.nth(i).locator("td").nth(2).inner_text() for i in range(rows.count())} == {
        g["reason"] for g in reasons
    }
    operator.page.click(f"{row} a")
    operator.page.wait_for_selector("[data-testid=jobs]")
    assert operator.page.locator("[data-testid=jobs] tbody tr").count() == QUEUED_JOBS
    assert operator.page.input_value("input[name=chip]") == "ascend"
    operator.assert_clean()


def test_wan_and_revenue_pages_match_the_api(operator: ConsoleUser) -> None:
    operator.goto("/console/wan")
    api = operator.api("/api/v1/wan")
    assert operator.page.locator("[data-testid=links] tbody tr[data-link]").count() == len(
        api["links"]
    )
    real = operator.page.locator("[data-testid=links] .badge.real").count()
    assert real == sum(link["real"] for link in api["links"])
    operator.goto("/console/wan?state=running")
    running = operator.api("/api/v1/wan", state="running")["transfers"]
    assert operator.page.locator("[data-testid=transfers] tr[data-transfer]").count() == len(
        running
    )

    operator.goto("/console/revenue")
    revenue = operator.api("/api/v1/revenue")
    assert operator.text("[data-testid=total-amount]") == revenue["total"]["amount"]
    tenants = operator.page.locator("[data-testid=revenue-tenants] tbody tr[data-kind=tenant]")
    assert tenants.count() == len(revenue["tenants"])
    with operator.page.expect_download() as download:
        operator.page.click("[data-testid=revenue-csv]")
    saved = Path(download.value.path()).read_bytes()
    api_csv = httpx.get(
        f"{operator.base_url}/api/v1/revenue",
        params={"format": "csv"},
        headers={"Authorization": f"Bearer {operator.key}"},
        timeout=10,
    )
    assert saved == api_csv.content
    operator.page.fill("[data-testid=period]", "2026-13")
    operator.page.click("[data-testid=period-form] button")
    message = operator.page.wait_for_selector("[data-error-for=period]")
    assert message.is_visible()
    assert operator.page.input_value("[data-testid=period]") == "2026-13"
    operator.expected(422)
    operator.assert_clean()


def test_tenants_get_403_on_every_operator_view(
    browser: Any, server: Server, demo_key: str
) -> None:
    tenant = open_user(browser, server.url, demo_key)
    tenant.login()
    for path in PAGES:
        assert tenant.goto(path).status == 403, path
    tenant.expected(403)
    tenant.assert_clean()
    tenant.context.close()
    for path in ROUTES:
        answer = httpx.get(
            f"{server.url}{path}", headers={"Authorization": f"Bearer {demo_key}"}, timeout=10
        )
        assert answer.status_code == 403, path
