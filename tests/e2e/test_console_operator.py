"""The operator drives the console in Chromium: logs in with the operator key, sees fleet
totals that match the API, opens a cluster, edits a quota (a bad value is refused inline
and nothing is saved; a good one is what the API then shows), reads every operator page
without console errors, and the session cookie has the flags it should."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from console_support import ConsoleUser, open_user

from conftest import Cli, Server


@pytest.fixture(scope="module")
def operator(browser: Any, server: Server, operator_key: str) -> Iterator[ConsoleUser]:
    user = open_user(browser, server.url, operator_key)
    user.login()
    yield user
    user.context.close()


def test_fleet_totals_match_the_api_and_a_cluster_opens(operator: ConsoleUser) -> None:
    operator.goto("/console/fleet")
    overall = operator.api("/api/v1/fleet/totals")["overall"]
    assert int(operator.text("[data-testid=total-cards]")) == overall["cards"]
    assert operator.text("[data-testid=total-pflops]") == f"{overall['pflops_fp16']:.3f}"
    for chip, cards in overall["cards_by_chip"].items():
        row = operator.text(f"[data-testid=chips] tr[data-chip='{chip}'] [data-col=cards]")
        assert int(row) == cards, chip
    simulated = operator.page.locator("[data-testid=clusters] .badge.simulated").count()
    assert simulated == sum(c["simulated"] for c in operator.api("/api/v1/clusters"))
    assert operator.page.locator("#pflops-chart").is_visible()

    name = "local"
    operator.page.click(f"[data-testid=clusters] tr[data-cluster='{name}'] a")
    operator.page.wait_for_selector("[data-testid=cluster-name]")
    nodes = operator.api("/api/v1/fleet/nodes", cluster=name)
    assert int(operator.text("[data-testid=cluster-cards]")) == sum(n["cards"] for n in nodes)
    operator.assert_clean()


def test_quota_edit_refuses_bad_input_inline_and_saves_good(
    operator: ConsoleUser, cli: Cli
) -> None:
    made = cli("tenants", "create", "console-quota", "--quota", "nvidia=4")
    assert made.returncode == 0, made.stderr
    before = operator.api("/api/v1/tenants/console-quota")
    operator.goto("/console/tenants/console-quota")
    operator.page.fill("input[name='quota.nvidia']", "lots")
    operator.page.fill("input[name='quota.ascend']", "12")
    operator.page.click("[data-testid=save-quota]")
    message = operator.page.wait_for_selector("[data-error-for='quota.nvidia']")
    assert message.is_visible()
    assert operator.page.input_value("input[name='quota.nvidia']") == "lots"  # kept as typed
    assert operator.api("/api/v1/tenants/console-quota") == before  # nothing half-saved
    operator.expected(422)

    operator.page.fill("input[name='quota.nvidia']", "")
    operator.page.fill("input[name='quota.ascend']", "12")
    operator.page.click("[data-testid=save-quota]")
    operator.page.wait_for_selector("[data-testid=saved]")
    assert operator.api("/api/v1/tenants/console-quota")["quota"] == {"ascend": 12}
    operator.assert_clean()


def test_every_operator_page_loads_clean_with_the_apis_data(operator: ConsoleUser) -> None:
    operator.goto("/console/tenants")
    tenants = operator.api("/api/v1/tenants")
    assert operator.page.locator("[data-testid=tenants] tbody tr").count() == len(tenants)

    operator.goto("/console/jobs")
    jobs = operator.api("/api/v1/jobs", limit=50)
    shown = operator.page.locator("[data-testid=jobs] tbody tr").count()
    assert shown == len(jobs)
    if jobs:
        assert operator.page.locator(f"tr[data-job='{jobs[0]['id']}']").count() == 1

    operator.goto("/console/audit")
    newest = operator.api("/api/v1/audit", limit=1)["entries"][0]
    first = operator.page.locator("[data-testid=audit] tbody tr").first
    assert first.get_attribute("data-action") == newest["action"]
    operator.goto("/console/audit?action=quota.update")
    actions = operator.page.locator("[data-testid=audit] tbody tr[data-action]")
    assert {actions.nth(i).get_attribute("data-action") for i in range(actions.count())} <= {
        "quota.update"
    }

    operator.goto("/console/keys")
    keys = operator.api("/api/v1/keys")
    assert operator.page.locator("[data-testid=keys] tbody tr").count() == min(len(keys), 50)
    operator.goto("/console/usage?tenant=demo")
    assert operator.page.locator("[data-testid=bill]").is_visible()
    operator.goto("/console/fleet?lang=en")
    assert operator.page.locator("html").get_attribute("lang") == "en"
    assert "Fleet" in operator.text("h1")
    operator.goto("/console/fleet?lang=zh")
    assert operator.text("h1") == "算力总览"
    operator.assert_clean()


def test_session_cookie_flags_and_csrf(browser: Any, server: Server, operator_key: str) -> None:
    user = open_user(browser, server.url, operator_key)
    user.login()
    cookie = next(c for c in user.context.cookies() if c["name"] == "sw_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    assert cookie["expires"] > time.time() + 3600
    assert operator_key not in cookie["value"]
    assert user.page.evaluate("document.cookie").find("sw_session") == -1  # HttpOnly

    # the browser's own cookie, a write without the token: refused, nothing saved
    before = user.api("/api/v1/tenants/demo")
    refused = user.page.request.post(
        f"{server.url}/console/tenants/demo/quota",
        form={"quota.ascend": "99", "weight": "1"},
        max_redirects=0,
    )
    assert refused.status == 403
    assert user.api("/api/v1/tenants/demo") == before

    user.page.click("[data-testid=logout]")
    user.page.wait_for_selector("[data-testid=key]")
    assert not [c for c in user.context.cookies() if c["name"] == "sw_session"]
    replay = httpx.get(
        f"{server.url}/console/fleet",
        cookies={"sw_session": cookie["value"]},
        follow_redirects=False,
    )
    assert replay.status_code == 303  # the session row is gone: the old cookie is worthless
    user.assert_clean()
    user.context.close()
