"""A tenant drives the console's tenant views in Chromium: deploys a model from the
catalogue and scales it (a bad count refused inline), creates a dataset, uploads a file
from the file picker and seals it, uploads a document to a knowledge base and tries a
retrieval, reads its usage by day (the chart drawn, the days adding up to the bill) and
its borrowing; every page matches the API and loads without console errors, and another
tenant's session gets 404 for each of these objects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_support import ConsoleUser, open_user

from conftest import Server

MODEL, CLUSTER = "qwen2.5-72b-instruct", "lingang-ascend"


@pytest.fixture(scope="module")
def tenant(browser: Any, server: Server, demo_key: str) -> Iterator[ConsoleUser]:
    user = open_user(browser, server.url, demo_key)
    user.login()
    yield user
    user.context.close()


@pytest.fixture(scope="module")
def made(tenant: ConsoleUser, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A deployment, a sealed dataset and a knowledge base with a document, made in the
    browser."""
    page = tenant.page
    tenant.goto("/console/deployments")
    page.select_option("[data-testid=deploy-model]", MODEL)
    page.fill("[data-testid=deploy-cluster]", CLUSTER)
    page.fill("[data-testid=deploy-replicas]", "1")
    page.click("[data-testid=deploy]")
    deployment = tenant.text("[data-testid=deployment-id]")
    tenant.goto("/console/datasets")
    page.fill("[data-testid=dataset-name]", "console-e2e")
    page.fill("input[name=region]", "shanghai-lingang")
    page.click("[data-testid=create-dataset]")
    dataset = tenant.text("[data-testid=dataset-id]")
    file = tmp_path_factory.mktemp("upload") / "train.jsonl"
    file.write_text('{"text": "你好"}\n' * 100, encoding="utf-8")
    page.set_input_files("[data-testid=upload-file]", str(file))
    page.click("[data-testid=upload]")
    page.wait_for_selector("[data-testid=uploaded]")
    page.click("[data-testid=seal]")
    page.wait_for_selector("[data-testid=ds-state][data-state=ready]")
    tenant.goto("/console/knowledge")
    page.fill("[data-testid=kb-name]", "console-e2e")
    page.click("[data-testid=kb-create]")
    kb = tenant.text("[data-testid=kb-id]")
    doc = Path(file.parent / "guide.md")
    doc.write_text("# Refunds\n\nRefunds take ten working days.\n\n# 算力\n\n昇腾 910B 集群。")
    page.set_input_files("[data-testid=kb-file]", str(doc))
    page.click("[data-testid=kb-upload]")
    page.wait_for_selector("[data-testid=kb-documents] tr[data-name='guide.md']")
    return {"deployment": deployment, "dataset": dataset, "kb": kb}


def test_deploy_and_scale_from_the_console(tenant: ConsoleUser, made: dict[str, str]) -> None:
    dep = made["deployment"]
    api = tenant.api(f"/api/v1/deployments/{dep}")
    tenant.goto(f"/console/deployments/{dep}")
    assert tenant.text("[data-testid=sdk-model]") == api["model"] == MODEL
    assert tenant.text("[data-testid=dep-wanted]") == str(api["replicas"])
    tenant.page.fill("[data-testid=scale-replicas]", "lots")
    tenant.page.click("[data-testid=scale]")
    assert tenant.page.wait_for_selector("[data-error-for=replicas]").is_visible()
    tenant.expected(422)
    tenant.page.fill("[data-testid=scale-replicas]", "2")
    tenant.page.click("[data-testid=scale]")
    tenant.page.wait_for_selector("[data-testid=dep-wanted]:text-is('2')")
    assert tenant.api(f"/api/v1/deployments/{dep}")["replicas"] == 2
    tenant.goto("/console/deployments")
    for d in tenant.api("/api/v1/deployments"):
        row = f"tr[data-deployment='{d['id']}']"
        assert tenant.text(f"{row} [data-col=wanted]") == str(d["replicas"])
        assert tenant.text(f"{row} [data-col=model]") == d["model"]
    assert tenant.page.locator("[data-testid=models] tbody tr").count() == len(
        tenant.api("/api/v1/models")
    )
    tenant.assert_clean()


def test_dataset_and_storage_match_the_api(tenant: ConsoleUser, made: dict[str, str]) -> None:
    api = tenant.api(f"/api/v1/datasets/{made['dataset']}")
    tenant.goto(f"/console/datasets/{made['dataset']}")
    assert tenant.page.get_attribute("[data-testid=ds-size]", "data-bytes") == str(
        api["size_bytes"]
    )
    paths = tenant.page.locator("[data-testid=ds-files-table] tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.path)"
    )
    assert paths == [f["path"] for f in api["manifest"]] == ["train.jsonl"]
    storage = tenant.api("/api/v1/tenants/demo/storage")
    tenant.goto("/console/datasets")
    assert tenant.page.get_attribute("[data-testid=storage-used]", "data-bytes") == str(
        storage["used_bytes"]
    )
    tenant.assert_clean()


def test_try_retrieval_shows_the_apis_hits(tenant: ConsoleUser, made: dict[str, str]) -> None:
    tenant.goto(f"/console/knowledge/{made['kb']}")
    tenant.page.fill("[data-testid=kb-query]", "refunds")
    tenant.page.click("[data-testid=kb-retrieve]")
    tenant.page.wait_for_selector("[data-testid=kb-hits]")
    api = httpx.post(
        f"{tenant.base_url}/api/v1/knowledge-bases/{made['kb']}/retrieve",
        json={"query": "refunds", "mode": "keyword"},
        headers={"Authorization": f"Bearer {tenant.key}"},
    ).json()
    chunks = tenant.page.locator("[data-testid=kb-hits] tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.chunk)"
    )
    assert chunks == [h["chunk_id"] for h in api["hits"]]
    assert chunks
    tenant.assert_clean()


def test_usage_by_day_and_borrowing(tenant: ConsoleUser) -> None:
    tenant.goto("/console/usage")
    drawn = tenant.page.evaluate(
        "() => Chart.getChart(document.getElementById('usage-chart')) !== undefined"
    )
    assert drawn
    period = tenant.page.input_value("input[name=period]")
    daily = tenant.api("/api/v1/tenants/demo/usage/daily", period=period)
    bill = tenant.api(f"/api/v1/tenants/demo/bills/{period}")
    assert daily["total_micro"] == bill["total_micro"]
    shown = tenant.page.get_attribute("[data-testid=daily-total]", "data-value")
    assert shown == str(bill["total_micro"])
    tenant.goto("/console/quota")
    use = tenant.api("/api/v1/tenants/demo/quota-use")
    rows = tenant.page.locator("[data-testid=quota-use] tbody tr[data-family]")
    assert rows.count() == len(use["families"])
    for family in use["families"]:
        row = f"[data-testid=quota-use] tr[data-family='{family['family']}']"
        assert tenant.text(f"{row} [data-col=in_use]") == f"{family['in_use']:g}"
        assert tenant.text(f"{row} [data-col=borrowed]") == f"{family['borrowed']:g}"
    tenant.assert_clean()


def test_another_tenant_gets_404(
    browser: Any, server: Server, operator_key: str, made: dict[str, str]
) -> None:
    auth = {"Authorization": f"Bearer {operator_key}"}
    tenant = httpx.post(f"{server.url}/api/v1/tenants", json={"name": "views-rival"}, headers=auth)
    assert tenant.status_code == 201, tenant.text
    key = httpx.post(
        f"{server.url}/api/v1/keys",
        json={"tenant": "views-rival", "scope": "tenant-admin"},
        headers=auth,
    )
    assert key.status_code == 201, key.text
    rival = open_user(browser, server.url, key.json()["key"])
    rival.login()
    for path in (
        f"/console/deployments/{made['deployment']}",
        f"/console/datasets/{made['dataset']}",
        f"/console/knowledge/{made['kb']}",
    ):
        answer = rival.goto(path)
        assert answer.status == 404, path
        assert "console-e2e" not in rival.page.content()
    rival.goto("/console/datasets")
    assert rival.page.locator(f"tr[data-dataset='{made['dataset']}']").count() == 0
    rival.context.close()
