"""The console's tenant views over HTTP without a browser (one app on SQLite for the
module): deployments (deploy, scale, delete), datasets (create, multipart upload, seal,
storage), knowledge bases (upload, retrieve, delete a document), usage by day and
borrowing; each page against the API, bad input inline with 422 and nothing saved,
another tenant's objects 404, and 8 uploads at once.

The daily usage and quota-use services run on SQLite and PostgreSQL at the end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.jobs import JobSpec, Resources
from suanwang.domain.knowledge import ChunkSettings
from suanwang.domain.tenancy import Principal, QuotaSpec, Scope
from suanwang.domain.usage import ComputeUsage
from suanwang.services.knowledge import KnowledgeBaseSpec
from suanwang.services.platform import Platform
from suanwang.services.quota_use import QuotaUseView

FLEET = (
    "regions: [{name: r1}]\nclusters: [{name: c1, region: r1, kind: simulated, "
    "nodes: [{name: n1, chip: ascend-910b, cards: 16}]}]\n"
)
OP = Principal("op", Scope.OPERATOR, None)
CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')
MODEL = "glm-4-9b-chat"
START = 1_800_000_000.0  # 2027-01-15 08:00 UTC


class Clock:
    def __init__(self) -> None:
        self.t = START

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Console:
    app: Any
    platform: Platform
    keys: dict[str, str]
    data_dir: Path

    def principal(self, tenant: str) -> Principal:
        return self.platform.tenancy.authenticate(self.keys[tenant])

    def api(self, path: str, tenant: str) -> Any:
        answer = TestClient(self.app).get(
            path, headers={"Authorization": f"Bearer {self.keys[tenant]}"}
        )
        assert answer.status_code == 200, answer.text
        return answer.json()


@dataclass
class Session:
    client: TestClient
    csrf: str

    def post(self, url: str, **kwargs: Any) -> Any:
        data = {"csrf": self.csrf, **kwargs.pop("data", {})}
        return self.client.post(url, data=data, follow_redirects=False, **kwargs)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    root = tmp_path_factory.mktemp("console-tenant-views")
    settings = Settings(data_dir=root / "data", database_url=f"sqlite:///{root / 'db.sqlite'}")
    app = build_app(settings, control=False, clock=Clock())
    platform: Platform = app.state.platform
    platform.fleet.apply_yaml(FLEET)
    keys = {"op": platform.tenancy.bootstrap_operator_key().secret}
    for tenant in ("aaa", "bbb"):
        quota = {"ascend": QuotaSpec(4, 4, None)}
        platform.tenancy.create_tenant(tenant, tenant, quota, cohort="lab")
        new = platform.tenancy.create_key(
            OP, tenant=tenant, scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
        )
        keys[tenant] = new.secret
    yield Console(app, platform, keys, settings.data_dir)
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


def login(console: Console, tenant: str) -> Session:
    client = TestClient(console.app, base_url="http://testserver")
    token = CSRF_INPUT.search(client.get("/console/login").text)
    assert token is not None
    answer = client.post(
        "/console/login",
        data={"key": console.keys[tenant], "csrf": token.group(1)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    page = CSRF_INPUT.search(client.get("/console/keys").text)
    assert page is not None
    return Session(client, page.group(1))


def test_deploy_scale_and_delete_through_the_forms(console: Console) -> None:
    a, b = login(console, "aaa"), login(console, "bbb")
    bad = a.post("/console/deployments", data={"model": MODEL, "cluster": "c1", "replicas": "x"})
    assert bad.status_code == 422
    assert 'data-error-for="replicas"' in bad.text
    assert console.api("/api/v1/deployments", "aaa") == []
    made = a.post("/console/deployments", data={"model": MODEL, "cluster": "c1", "replicas": "1"})
    assert made.status_code == 303, made.text
    dep_id = made.headers["location"].rsplit("/", 1)[-1]
    listed = a.client.get("/console/deployments").text
    api = console.api("/api/v1/deployments", "aaa")
    assert [d["id"] for d in api] == [dep_id]
    assert f'data-deployment="{dep_id}"' in listed
    assert f'<code data-col="model">{api[0]["model"]}</code>' in listed
    for typed in ("x", "-1", "100000", ""):
        refused = a.post(f"/console/deployments/{dep_id}/scale", data={"replicas": typed})
        assert refused.status_code == 422, typed
        assert 'data-error-for="replicas"' in refused.text
    assert console.api(f"/api/v1/deployments/{dep_id}", "aaa")["replicas"] == 1
    for url in (f"/console/deployments/{dep_id}/scale", f"/console/deployments/{dep_id}/delete"):
        assert b.post(url, data={"replicas": "3"}).status_code == 404, url
    assert b.client.get(f"/console/deployments/{dep_id}").status_code == 404
    assert dep_id not in b.client.get("/console/deployments").text
    assert a.post(f"/console/deployments/{dep_id}/scale", data={"replicas": "2"}).status_code == 303
    shown = a.client.get(f"/console/deployments/{dep_id}").text
    assert console.api(f"/api/v1/deployments/{dep_id}", "aaa")["replicas"] == 2
    assert '<span class="value" data-testid="dep-wanted">2</span>' in shown
    assert "127.0.0.1" not in shown  # a replica's address is the operator's to see
    assert a.post(f"/console/deployments/{dep_id}/delete").status_code == 303
    assert console.api(f"/api/v1/deployments/{dep_id}", "aaa")["state"] == "deleted"


def _dataset(session: Session, name: str) -> str:
    made = session.post("/console/datasets", data={"name": name, "format": "jsonl"})
    assert made.status_code == 303, made.text
    return str(made.headers["location"].rsplit("/", 1)[-1])


def _upload(session: Session, dataset: str, name: str, body: bytes, path: str = "") -> Any:
    return session.post(
        f"/console/datasets/{dataset}/files",
        data={"path": path},
        files={"file": (name, body, "application/octet-stream")},
    )


def test_create_upload_seal_a_dataset_and_storage_matches_the_api(console: Console) -> None:
    a, b = login(console, "aaa"), login(console, "bbb")
    taken = a.post("/console/datasets", data={"name": "Bad Name!", "format": "jsonl"})
    assert taken.status_code == 422
    assert 'data-error-for="name"' in taken.text
    ds = _dataset(a, "corpus")
    assert _upload(a, ds, "a.jsonl", b'{"x": 1}\n').status_code == 303
    assert _upload(a, ds, "b.jsonl", b"0123456789", path="train/b.jsonl").status_code == 303
    refused = _upload(a, ds, "c.jsonl", b"x", path="../escape")
    assert refused.status_code == 422
    assert 'data-error-for="path"' in refused.text
    assert a.post(f"/console/datasets/{ds}/files", data={"path": "p"}).status_code == 422
    forged = a.client.post(
        f"/console/datasets/{ds}/files", files={"file": ("f.bin", b"x")}, data={"csrf": "no"}
    )
    assert forged.status_code == 403
    api = console.api(f"/api/v1/datasets/{ds}", "aaa")
    assert [f["path"] for f in api["manifest"]] == ["a.jsonl", "train/b.jsonl"]
    page = a.client.get(f"/console/datasets/{ds}").text
    assert f'data-testid="ds-size" data-bytes="{api["size_bytes"]}"' in page
    storage = console.api("/api/v1/tenants/aaa/storage", "aaa")
    assert f'data-testid="storage-used" data-bytes="{storage["used_bytes"]}"' in page
    assert f'data-testid="storage-cap" data-bytes="{storage["quota_bytes"]}"' in page
    assert b.client.get(f"/console/datasets/{ds}").status_code == 404
    assert _upload(b, ds, "evil", b"evil").status_code == 404
    assert b.post(f"/console/datasets/{ds}/seal").status_code == 404
    assert a.post(f"/console/datasets/{ds}/seal").status_code == 303
    assert console.api(f"/api/v1/datasets/{ds}", "aaa")["state"] == "ready"
    assert _upload(a, ds, "late", b"late").status_code == 409


def test_an_upload_past_the_storage_quota_keeps_nothing(console: Console) -> None:
    a = login(console, "aaa")
    ds = _dataset(a, "small")
    used = console.api("/api/v1/tenants/aaa/storage", "aaa")["used_bytes"]
    console.platform.datasets.set_storage_quota(OP, "aaa", used + 100)
    try:
        refused = _upload(a, ds, "big.bin", b"x" * 200)
        assert refused.status_code == 413
        assert 'data-error-for="file"' in refused.text
        assert console.api(f"/api/v1/datasets/{ds}", "aaa")["files"] == 0
        assert console.api("/api/v1/tenants/aaa/storage", "aaa")["used_bytes"] == used
    finally:
        console.platform.datasets.set_storage_quota(OP, "aaa", None)


def test_eight_uploads_at_once_are_all_stored(console: Console) -> None:
    a = login(console, "aaa")
    ds = _dataset(a, "burst")
    bodies = {f"part-{i}.bin": bytes([i]) * (1000 + i) for i in range(8)}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda kv: _upload(a, ds, kv[0], kv[1]), bodies.items()))
    assert [r.status_code for r in answers] == [303] * 8
    api = console.api(f"/api/v1/datasets/{ds}", "aaa")
    assert {f["path"]: f["size_bytes"] for f in api["manifest"]} == {
        name: len(body) for name, body in bodies.items()
    }
    assert api["size_bytes"] == sum(len(b) for b in bodies.values())
    assert not [p for p in console.data_dir.rglob(f".incoming-{ds}/*") if p.is_file()]


def test_knowledge_base_upload_retrieve_delete(console: Console) -> None:
    a, b = login(console, "aaa"), login(console, "bbb")
    refused = a.post("/console/knowledge", data={"name": "", "embedding_model": "no-such"})
    assert refused.status_code == 422
    assert "data-error-for=" in refused.text
    assert console.api("/api/v1/knowledge-bases", "aaa") == []
    made = a.post("/console/knowledge", data={"name": "handbook"})
    assert made.status_code == 303, made.text
    kb_id = made.headers["location"].rsplit("/", 1)[-1]
    assert [k["id"] for k in console.api("/api/v1/knowledge-bases", "aaa")] == [kb_id]
    spec = KnowledgeBaseSpec("small-chunks", "", ChunkSettings(200, 20), None)
    kb = console.platform.knowledge.create(console.principal("aaa"), spec)
    text = "算网 schedules training jobs on Ascend cards.\n\nRefunds take ten days."
    up = a.post(
        f"/console/knowledge/{kb.id}/documents",
        files={"file": ("guide.md", text.encode(), "text/markdown")},
    )
    assert up.status_code == 303, up.text
    docs = console.api(f"/api/v1/knowledge-bases/{kb.id}/documents", "aaa")
    assert [d["name"] for d in docs] == ["guide.md"]
    bad = a.post(f"/console/knowledge/{kb.id}/documents", files={"file": ("x.exe", b"MZ")})
    assert bad.status_code == 422
    assert 'data-error-for="file"' in bad.text
    asked = a.post(f"/console/knowledge/{kb.id}/retrieve", data={"query": "refunds", "top_k": "2"})
    assert asked.status_code == 200
    hits = TestClient(console.app).post(
        f"/api/v1/knowledge-bases/{kb.id}/retrieve",
        json={"query": "refunds", "top_k": 2, "mode": "keyword"},
        headers={"Authorization": f"Bearer {console.keys['aaa']}"},
    )
    for hit in hits.json()["hits"]:
        assert f'data-chunk="{hit["chunk_id"]}"' in asked.text
        assert f"{hit['score']:.4f}" in asked.text
    empty = a.post(f"/console/knowledge/{kb.id}/retrieve", data={"query": " ", "top_k": "0"})
    assert empty.status_code == 422
    assert 'data-error-for="top_k"' in empty.text
    assert b.client.get(f"/console/knowledge/{kb.id}").status_code == 404
    assert b.post(f"/console/knowledge/{kb.id}/retrieve", data={"query": "x"}).status_code == 404
    doc = docs[0]["id"]
    assert b.post(f"/console/knowledge/{kb.id}/documents/{doc}/delete").status_code == 404
    assert a.post(f"/console/knowledge/{kb.id}/documents/{doc}/delete").status_code == 303
    assert console.api(f"/api/v1/knowledge-bases/{kb.id}/documents", "aaa") == []


class FakeGateway:
    """The in-process gateway's POST as a principal: records who asked, answers vectors."""

    def __init__(self) -> None:
        self.calls: list[tuple[Principal, str, int]] = []

    async def post_as(self, principal: Principal, path: str, body: bytes) -> tuple[int, bytes]:
        texts = json.loads(body)["input"]
        self.calls.append((principal, path, len(texts)))
        data = [{"index": i, "embedding": [1.0, float(i + 1), 0.5]} for i in range(len(texts))]
        return 200, json.dumps({"data": data, "usage": {"prompt_tokens": 7}}).encode()


def test_a_base_with_an_embedding_model_embeds_as_the_session(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploads and vector queries embed through the gateway as the session's principal
    (no key anywhere); the gateway's tokens are reported, and tenant B cannot use it."""
    gateway = FakeGateway()
    monkeypatch.setattr(console.app.state, "app_chat", gateway)
    a, b = login(console, "aaa"), login(console, "bbb")
    spec = KnowledgeBaseSpec("vectors", "", ChunkSettings(200, 20), "all-minilm-l6-v2")
    kb = console.platform.knowledge.create(console.principal("aaa"), spec)
    text = "Refunds take ten days.\n\nTraining jobs run on Ascend cards."
    up = a.post(
        f"/console/knowledge/{kb.id}/documents",
        files={"file": ("faq.md", text.encode(), "text/markdown")},
    )
    assert up.status_code == 303, up.text
    asked = a.post(
        f"/console/knowledge/{kb.id}/retrieve",
        data={"query": "refunds", "top_k": "2", "mode": "vector"},
    )
    assert asked.status_code == 200, asked.text
    assert "data-chunk=" in asked.text
    principal = console.principal("aaa")
    assert [(p.key_id, p.tenant_id, path) for p, path, _ in gateway.calls] == [
        (principal.key_id, "aaa", "/v1/embeddings")
    ] * 2
    assert gateway.calls[1][2] == 1  # the query alone
    assert b.post(f"/console/knowledge/{kb.id}/retrieve", data={"query": "x"}).status_code == 404
    assert len(gateway.calls) == 2


def test_usage_by_day_adds_up_to_the_period_on_page_and_api(console: Console) -> None:
    day = 86_400
    with console.platform.uows() as uow:
        uow.usage.append(
            [
                ComputeUsage(f"u{i}", "aaa", f"job:u{i}#1", "ascend-910b", 3, s, s + 1234.5)
                for i, s in enumerate((START - 3 * day, START - day - 7, START - day, START))
            ],
            START,
        )
        uow.commit()
    a = login(console, "aaa")
    daily = console.api("/api/v1/tenants/aaa/usage/daily?period=2027-01", "aaa")
    bill = console.api("/api/v1/tenants/aaa/bills/2027-01", "aaa")
    usage = console.api("/api/v1/tenants/aaa/usage?period=2027-01", "aaa")
    assert len(daily["days"]) == 31
    assert sum(d["amount_micro"] for d in daily["days"]) == bill["total_micro"] > 0
    assert daily["total_micro"] == bill["total_micro"]
    assert sum(d["card_ms"] for d in daily["days"]) == sum(t["card_ms"] for t in usage["totals"])
    assert sum(d["card_ms"] > 0 for d in daily["days"]) == 3
    page = a.client.get("/console/usage?period=2027-01").text
    assert f'data-testid="daily-total" data-value="{bill["total_micro"]}"' in page
    assert 'id="usage-chart"' in page
    assert login(console, "bbb").client.get("/console/usage?tenant=aaa").status_code == 404
    longer = a.client.get("/console/usage?period=2026-01-01..2026-12-01")
    assert 'data-testid="daily-too-long"' in longer.text


def test_borrowed_cards_on_the_quota_page_match_the_api(console: Console) -> None:
    spec = JobSpec(
        name="big",
        command=(),
        resources=Resources(chip="ascend", cards_per_node=6),
        simulate_duration_s=3600,
    )
    console.platform.jobs.submit(console.principal("bbb"), spec, None)
    console.platform.control.tick()
    api = console.api("/api/v1/tenants/bbb/quota-use", "bbb")
    ascend = next(f for f in api["families"] if f["family"] == "ascend")
    assert (ascend["nominal"], ascend["in_use"], ascend["borrowed"]) == (4, 6, 2)
    page = login(console, "bbb").client.get("/console/quota").text
    row = re.search(r'<tr data-family="ascend"><td>ascend</td>(.*?)</tr>', page)
    assert row is not None
    assert 'data-col="in_use">6</td>' in row.group(1)
    assert 'data-col="borrowed">2</td>' in row.group(1)
    assert login(console, "aaa").client.get("/console/tenants/bbb").status_code == 404


def test_quota_use_and_daily_usage_services_on_both_databases(platform: Platform) -> None:
    platform.fleet.apply_yaml(FLEET)
    platform.tenancy.create_tenant("aaa", "aaa", {"ascend": QuotaSpec(4, 4, None)}, cohort="lab")
    platform.tenancy.create_tenant("bbb", "bbb", {"ascend": QuotaSpec(8, 0, None)}, cohort="lab")
    view = QuotaUseView(platform.uows, platform.clock, platform.catalogue, platform.tenancy)
    assert [(f.family, f.in_use, f.borrowed) for f in view.of(OP, "aaa").families] == [
        ("ascend", 0.0, 0.0)
    ]
    now = platform.clock.now()
    with platform.uows() as uow:
        uow.usage.append([ComputeUsage("x", "aaa", "job:x#1", "ascend-910b", 1, now, now + 1)], now)
        uow.commit()
    period = platform.billing.period(None)
    days = platform.billing.daily(OP, "aaa", period)
    bill = platform.billing.bill(OP, "aaa", period)
    assert sum(d.amount for d in days) == bill.total
    assert sum(d.card_ms for d in days) == 1000
