"""Autoscaling settings through the HTTP API and the database (SQLite and PostgreSQL): set on
deploy, shown, changed, turned off; bad values are 422 problems naming the field (and write
nothing); a manual scale of an autoscaled deployment is a 409; another tenant's deployment is
404; gateway demand rows round-trip through the store; migration 0010 up and down."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from suanwang.adapters.db.demand_repo import SqlDemandSink
from suanwang.adapters.db.engine import alembic_config
from suanwang.adapters.db.tables import Base
from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.demand import DemandReport
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform

FLEET = (
    "regions: [{name: r1}]\nclusters: [{name: sim, region: r1, kind: simulated, "
    "nodes: [{name: n1, chip: ascend-910b, cards: 16}]}]\n"
)
MODEL = "qwen2.5-72b-instruct"
SCALING = {"min_replicas": 1, "max_replicas": 3, "target": {"inflight_per_replica": 4}}
Api = tuple[TestClient, Platform, dict[str, str], dict[str, str]]


@pytest.fixture
def api(settings: Settings, clock: Any) -> Iterator[Api]:
    app = build_app(settings, control=False, clock=clock)
    platform: Platform = app.state.platform
    platform.fleet.apply_yaml(FLEET)
    op = Principal("op", Scope.OPERATOR, None)
    keys = {}
    for tenant in ("acme", "globex"):
        platform.tenancy.create_tenant(tenant, tenant.title(), {"ascend": 16})
        keys[tenant] = platform.tenancy.create_key(
            op, tenant=tenant, scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
        ).secret
    with TestClient(app) as client:
        yield (
            client,
            platform,
            {"Authorization": f"Bearer {keys['acme']}"},
            {"Authorization": f"Bearer {keys['globex']}"},
        )
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


def rows(platform: Platform) -> dict[str, int]:
    engine = platform.uows.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }


def deploy(client: TestClient, headers: dict[str, str], **extra: Any) -> Any:
    body = {"model": MODEL, "cluster": "sim", **extra}
    return client.post("/api/v1/deployments", headers=headers, json=body)


def test_autoscaling_is_set_on_deploy_shown_changed_and_turned_off(api: Api) -> None:
    client, _, acme, _ = api
    created = deploy(client, acme, replicas=5, autoscale=SCALING)
    assert created.status_code == 201, created.text
    dep = created.json()
    assert dep["replicas"] == 3  # the starting count, brought into [1, 3]
    assert dep["autoscale"]["target"] == {
        "inflight_per_replica": 4.0,
        "tokens_per_s_per_replica": None,
        "ttft_p95_s": None,
        "slo_ttft_p95_s": None,
    }
    assert (dep["autoscale"]["scale_up_cooldown_s"], dep["autoscale"]["tolerance"]) == (30.0, 0.1)
    path = f"/api/v1/deployments/{dep['id']}"
    refused = client.put(f"{path}/replicas", headers=acme, json={"replicas": 2})
    assert refused.status_code == 409
    assert (refused.json()["field"], bool(refused.json()["hint"])) == ("replicas", True)
    slo = {"min_replicas": 0, "max_replicas": 2, "target": {"ttft_p95_s": 0.5}}
    changed = client.put(f"{path}/autoscale", headers=acme, json=slo)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["replicas"], changed.json()["autoscale"]["min_replicas"]) == (2, 0)
    assert client.get(path, headers=acme).json()["autoscale"]["target"]["ttft_p95_s"] == 0.5
    sized = {"min_replicas": 1, "max_replicas": 2, "target": {"slo_ttft_p95_s": 0.5}}
    changed = client.put(f"{path}/autoscale", headers=acme, json=sized)
    assert changed.status_code == 200, changed.text
    target = client.get(path, headers=acme).json()["autoscale"]["target"]
    assert (target["slo_ttft_p95_s"], target["ttft_p95_s"]) == (0.5, None)
    off = client.delete(f"{path}/autoscale", headers=acme)
    assert (off.json()["autoscale"], off.json()["replicas"]) == (None, 2)
    assert client.put(f"{path}/replicas", headers=acme, json={"replicas": 1}).status_code == 200
    fixed = deploy(client, acme, replicas=2).json()
    assert (fixed["autoscale"], fixed["replicas"]) == (None, 2)  # as before: a fixed count


BAD = [
    pytest.param({**SCALING, "min_replicas": 4}, "max_replicas", id="min-above-max"),
    pytest.param({**SCALING, "min_replicas": -1}, "autoscale.min_replicas", id="negative-min"),
    pytest.param({**SCALING, "max_replicas": 5000}, "autoscale.max_replicas", id="max-too-big"),
    pytest.param({**SCALING, "target": {}}, "target", id="no-target"),
    pytest.param(
        {**SCALING, "target": {"inflight_per_replica": 2, "ttft_p95_s": 0.5}},
        "target",
        id="two-targets",
    ),
    pytest.param(
        {**SCALING, "target": {"inflight_per_replica": 0}},
        "autoscale.target.inflight_per_replica",
        id="zero-target",
    ),
    pytest.param(
        {**SCALING, "target": {"slo_ttft_p95_s": -0.5}},
        "autoscale.target.slo_ttft_p95_s",
        id="negative-slo",
    ),
    pytest.param({**SCALING, "tolerance": 1.5}, "autoscale.tolerance", id="tolerance"),
    pytest.param({**SCALING, "idle_to_zero_s": -1}, "autoscale.idle_to_zero_s", id="idle"),
    pytest.param({**SCALING, "surprise": 1}, "autoscale.surprise", id="unknown-field"),
]


@pytest.mark.parametrize(("autoscale", "field"), BAD)
def test_bad_autoscaling_is_a_problem_naming_the_field_and_writes_nothing(
    api: Api, autoscale: dict[str, Any], field: str
) -> None:
    client, platform, acme, _ = api
    before = rows(platform)
    response = deploy(client, acme, autoscale=autoscale)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in problem["field"], problem
    assert problem["detail"]
    assert rows(platform) == before


def test_another_tenants_deployment_cannot_be_autoscaled(api: Api) -> None:
    client, _, acme, globex = api
    dep = deploy(client, acme).json()
    path = f"/api/v1/deployments/{dep['id']}/autoscale"
    assert client.put(path, headers=globex, json=SCALING).status_code == 404
    assert client.delete(path, headers=globex).status_code == 404
    assert client.get(f"/api/v1/deployments/{dep['id']}", headers=acme).json()["autoscale"] is None


def test_demand_rows_are_replaced_per_gateway_read_fresh_and_pruned(api: Api) -> None:
    _, platform, _, _ = api
    sink = SqlDemandSink(platform.uows)

    def row(gateway: str, deployment: str, at: float, n: int) -> DemandReport:
        replicas = (("r-0", n),)
        return DemandReport(
            gateway, deployment, at, n, 0, 1.5, 0.25, at, at, replicas, 2.5, 1.8, 0.02
        )

    sink.record("gw-a", [row("gw-a", "dep-1111", 100.0, 2), row("gw-a", "dep-2222", 100.0, 1)])
    sink.record("gw-b", [row("gw-b", "dep-1111", 90.0, 5)])
    sink.record("gw-a", [row("gw-a", "dep-1111", 101.0, 3)])  # replaces both of gw-a's rows
    with platform.uows() as uow:
        assert uow.demand.reports(95.0) == [row("gw-a", "dep-1111", 101.0, 3)]
        assert len(uow.demand.reports(0.0)) == 2
        assert uow.demand.prune(95.0) == 1
        uow.commit()
    with platform.uows() as uow:
        assert [r.gateway for r in uow.demand.reports(0.0)] == ["gw-a"]


def test_existing_deployments_migrate_to_a_fixed_count_and_back(settings: Settings) -> None:
    config = alembic_config(settings.db_url)
    command.upgrade(config, "0009")
    engine = sa.create_engine(settings.db_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO deployments (id, tenant, model, cluster, engine, replicas, state,"
                " spec, created_at, updated_at, version) VALUES ('dep-0ld0', NULL, 'm', 'c',"
                " 'vllm', 2, 'active', '{}', 0, 0, 1)"
            )
        )
    command.upgrade(config, "head")
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT autoscale, scale_memory FROM deployments")).one()
        demand = conn.execute(sa.text("SELECT count(*) FROM model_demand")).scalar_one()
    assert (tuple(row), demand) == ((None, None), 0)
    command.downgrade(config, "0009")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT replicas FROM deployments")).scalar_one() == 2
    engine.dispose()
