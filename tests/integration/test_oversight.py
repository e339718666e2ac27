"""The operator views over a real database (SQLite and PostgreSQL) through the API:
utilisation from attempts admitted by the real control loop (a training job and a serving
replica), queues grouped in SQL, WAN links and transfers, revenue equal to the sum of the
tenants' bills, tenants refused (403) on all four routes, 8 requests at once, and
migration 0017 (the index on ``attempts.ended_at``) up and down."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient

from suanwang.adapters.db.engine import alembic_config
from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.billing import parse_period
from suanwang.domain.datasets import DatasetFormat, DatasetRecord, DatasetState
from suanwang.domain.jobs import JobSpec, JobState, Resources
from suanwang.domain.tenancy import Principal, QuotaSpec, Scope
from suanwang.domain.transfers import TransferRecord, TransferState
from suanwang.domain.usage import ComputeUsage, Outcome, TokenUsage
from suanwang.services.platform import Platform

OP = Principal("op", Scope.OPERATOR, None)
NOV = parse_period("2026-11")
T = NOV.start + 86_400.0
FLEET = """
regions: [{name: r1}, {name: r2}]
clusters:
  - {name: sim1, region: r1, kind: simulated, nodes: [{name: a1, chip: ascend-910b, cards: 16}]}
  - {name: sim2, region: r2, kind: simulated, nodes: [{name: b1, chip: ascend-910b, cards: 8}]}
wan_links: [{between: [r1, r2], bandwidth_gbps: 10, rtt_ms: 30, distance_km: 3000}]
"""
ROUTES = ("/api/v1/fleet/utilisation", "/api/v1/queues", "/api/v1/wan", "/api/v1/revenue")
World = tuple[TestClient, Platform, dict[str, str]]


@pytest.fixture
def world(settings: Settings, clock: Any) -> Iterator[World]:
    app = build_app(settings, control=False, clock=clock)
    platform: Platform = app.state.platform
    platform.fleet.apply_yaml(FLEET)
    keys = {"op": platform.tenancy.bootstrap_operator_key().secret}
    for tenant, quota in (("aaa", 16), ("bbb", 0)):
        platform.tenancy.create_tenant(tenant, tenant, {"ascend": QuotaSpec(quota)})
        keys[tenant] = platform.tenancy.create_key(
            OP, tenant=tenant, scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
        ).secret
    with TestClient(app) as client:
        yield client, platform, keys
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


def get(world: World, path: str, who: str = "op", **params: Any) -> Any:
    client, _, keys = world
    answer = client.get(path, params=params, headers={"Authorization": f"Bearer {keys[who]}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def submit(platform: Platform, tenant: str, cards: int, seconds: float = 100_000) -> str:
    who = Principal(f"k-{tenant}", Scope.TENANT_ADMIN, tenant)  # type: ignore[arg-type]
    spec = JobSpec(
        name="train",
        command=(),
        resources=Resources(chip="ascend", cards_per_node=cards),
        simulate_duration_s=seconds,
    )
    return platform.jobs.submit(who, spec, None).job.id


def test_utilisation_matches_the_attempts_and_the_fleet(world: World) -> None:
    _, platform, _ = world
    clock: Any = platform.clock
    submit(platform, "aaa", 4)
    platform.deployments.deploy(OP, "qwen2.5-72b-instruct", "sim1", 1)
    platform.control.tick()
    clock.advance(900)
    with platform.uows() as uow:
        attempts = [a for j in uow.jobs.jobs(None) for a in uow.jobs.attempts(j.id)]
    assert attempts, "the control loop admitted nothing"
    body = get(world, "/api/v1/fleet/utilisation", window="1h", by="region")
    assert len(body["times"]) == 60
    held = sum(a.cards for a in attempts)
    current = {c["group"]: c for c in body["current"]}
    assert sum(c["busy_cards"] for c in current.values()) == held
    nodes = get(world, "/api/v1/fleet/nodes")
    assert held == sum(n["cards_used"] for n in nodes)
    assert (current["r1"]["cards"], current["r1"]["simulated_cards"]) == (16, 16)
    area = sum(sum(s["busy_cards"]) for s in body["series"]) * body["step_s"]
    now = platform.clock.now()
    assert area == pytest.approx(sum(a.cards * (now - a.admitted_at) for a in attempts), rel=1e-3)
    assert all(s["simulated"] for s in body["series"])
    assert body["training_now"] == 4
    assert body["inference_now"] == held - 4 > 0
    split_area = (sum(body["training_cards"]) + sum(body["inference_cards"])) * body["step_s"]
    assert split_area == pytest.approx(area, rel=1e-3)
    by_chip = get(world, "/api/v1/fleet/utilisation", window="7d", by="chip")
    assert [c["group"] for c in by_chip["current"]] == ["ascend-910b"]
    assert len(by_chip["times"]) == 168


def test_queues_are_grouped_by_tenant_chip_and_reason(world: World) -> None:
    _, platform, _ = world
    for cards in (2, 2, 4):
        submit(platform, "bbb", cards)  # no quota: they wait
    platform.control.tick()
    body = get(world, "/api/v1/queues")
    (group,) = [g for g in body["groups"] if g["tenant"] == "bbb"]
    assert (group["chip"], group["jobs"], group["cards"]) == ("ascend", 3, 8)
    reasons = [g for g in body["reasons"] if g["tenant"] == "bbb"]
    assert sum(g["jobs"] for g in reasons) == 3
    assert all(g["reason"] for g in reasons)
    assert get(world, "/api/v1/queues", limit=1)["reasons"][:1] == body["reasons"][:1]
    # the page's link: the jobs list narrowed to the group's tenant and chip, in the database
    queued = [JobState.QUEUED]
    assert len(platform.jobs.list(OP, queued, 50, tenant="bbb", chip="ascend")) == 3
    assert platform.jobs.list(OP, queued, 50, tenant="bbb", chip="nvidia") == []


def test_wan_links_and_transfers_newest_first(world: World) -> None:
    _, platform, _ = world
    with platform.uows() as uow:
        uow.datasets.add(
            DatasetRecord(
                "ds1", "aaa", "corpus", DatasetFormat("jsonl"), DatasetState.READY, 3000, (), T
            )
        )
        for n, state in enumerate((TransferState.VERIFIED, TransferState.RUNNING)):
            done, rate = 1000 * (n + 1), 100.0 * n
            record = TransferRecord(f"tr{n}", "ds1", "r1", "r2", state, 3000, done, rate, None,
                                    "", 0, T + n)  # fmt: skip
            uow.datasets.add_transfer(record)
        uow.commit()
    body = get(world, "/api/v1/wan")
    (link,) = body["links"]
    assert (link["region_a"], link["region_b"], link["real"]) == ("r1", "r2", False)
    assert [t["transfer"]["id"] for t in body["transfers"]] == ["tr1", "tr0"]
    assert body["transfers"][0]["tenant"] == "aaa"
    assert body["transfers"][0]["eta_s"] == pytest.approx(10.0)  # 1000 bytes left at 100/s
    running = get(world, "/api/v1/wan", state="running")["transfers"]
    assert [t["transfer"]["id"] for t in running] == ["tr1"]


def test_revenue_totals_equal_the_sum_of_the_bills(world: World) -> None:
    _, platform, _ = world
    with platform.uows() as uow:
        uow.usage.append(
            [
                TokenUsage("x1", "aaa", "k", "smollm2-135m-instruct", "/v1/chat/completions",
                           1_000_000, 500_000, 200, Outcome.OK, T - 1, T, 1000.0),
                TokenUsage("x2", "bbb", "k", "bge-m3", "/v1/embeddings", 7_000, 0, 200,
                           Outcome.OK, T - 1, T, 1000.0),
                ComputeUsage("x3", "aaa", "job:j#1", "ascend-910b", 8, T, T + 1800),
            ],
            T,
        )  # fmt: skip
        uow.commit()
    body = get(world, "/api/v1/revenue", period="2026-11")
    bills = {t: get(world, f"/api/v1/tenants/{t}/bills/2026-11") for t in ("aaa", "bbb")}
    assert body["total"]["amount_micro"] == sum(b["total_micro"] for b in bills.values()) > 0
    assert {r["name"]: r["amount_micro"] for r in body["tenants"]} == {
        t: b["total_micro"] for t, b in bills.items()
    }
    assert body["total"]["tokens"] == 1_507_000
    assert body["total"]["card_hours"] == pytest.approx(4.0)
    client, _, keys = world
    answer = client.get(
        "/api/v1/revenue",
        params={"period": "2026-11", "format": "csv"},
        headers={"Authorization": f"Bearer {keys['op']}"},
    )
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["name"] for r in rows][-1] == "total"
    assert int(rows[-1]["amount_micro"]) == body["total"]["amount_micro"]
    assert {r["name"] for r in body["items"]} == {
        "smollm2-135m-instruct",
        "bge-m3",
        "ascend-910b",
    }


def test_tenants_are_refused_every_operator_view(world: World) -> None:
    client, _, keys = world
    for path in ROUTES:
        answer = client.get(path, headers={"Authorization": f"Bearer {keys['aaa']}"})
        assert answer.status_code == 403, path
        assert answer.headers["content-type"].startswith("application/problem+json")


def test_eight_views_at_once_agree_with_one_at_a_time(world: World) -> None:
    _, platform, _ = world
    submit(platform, "aaa", 4)
    submit(platform, "bbb", 2)
    platform.control.tick()
    paths = [*ROUTES, "/api/v1/queues?limit=1", "/api/v1/wan?state=running", *ROUTES[:2]]
    alone = [get(world, path) for path in paths]
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        together = list(pool.map(lambda path: get(world, path), paths))
    assert len(paths) >= 8
    assert together == alone  # the fake clock stands still: the same numbers, whatever the order


def test_migration_0017_adds_and_drops_the_attempt_end_index(settings: Settings) -> None:
    config = alembic_config(settings.db_url)
    command.upgrade(config, "head")
    engine = sa.create_engine(settings.db_url)

    def indexed() -> bool:
        with engine.connect() as conn:
            indexes = sa.inspect(conn).get_indexes("attempts")
        return any(ix["column_names"] == ["ended_at"] for ix in indexes)

    assert indexed()
    command.downgrade(config, "0016")
    assert not indexed()
    command.upgrade(config, "head")
    assert indexed()
    engine.dispose()
