"""Datasets over the API on SQLite and PostgreSQL: upload streamed to disk with server-side
SHA-256, seal, show, delete (refused while a job uses it), the storage quota, 8 tenants
uploading at once, jobs naming a dataset (snapshot and data-aware placement), storage
metering into bills, and migration 0012 up and down."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient

from suanwang.adapters.db.engine import alembic_config
from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.billing import BYTE_S_PER_GB_MONTH, month_of
from suanwang.domain.jobs import JobState
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.usage import UsageKind
from suanwang.services.metering import ComputeMeter
from suanwang.services.platform import Platform
from suanwang.services.snapshots import build_snapshot

OP = Principal("op", Scope.OPERATOR, None)
FLEET = """
regions: [{name: near}, {name: far}]
clusters:
  - {name: sim-near, region: near, kind: simulated, nodes: [{name: a1, chip: ascend-910b, cards: 8}]}
  - {name: sim-far, region: far, kind: simulated, nodes: [{name: b1, chip: ascend-910b, cards: 8}]}
wan_links: [{between: [near, far], bandwidth_gbps: 10, rtt_ms: 30, distance_km: 3000}]
"""
TENANTS = [f"ten{n}" for n in range(8)]


@dataclass
class World:
    client: TestClient
    platform: Platform
    settings: Settings
    keys: dict[str, dict[str, str]]


@pytest.fixture
def world(settings: Settings, clock: Any) -> Iterator[World]:
    app = build_app(settings, control=False, clock=clock)
    platform: Platform = app.state.platform
    platform.fleet.apply_yaml(FLEET)
    keys = {}
    for tenant in TENANTS:
        platform.tenancy.create_tenant(tenant, tenant, {"ascend": 64})
        secret = platform.tenancy.create_key(
            OP, tenant=tenant, scope=Scope.TENANT_MEMBER, name="", expires_in_s=None
        ).secret
        keys[tenant] = {"Authorization": f"Bearer {secret}"}
    keys["op"] = {"Authorization": f"Bearer {platform.tenancy.bootstrap_operator_key().secret}"}
    with TestClient(app) as client:
        yield World(client, platform, settings, keys)
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


def create(w: World, tenant: str, name: str, region: str = "near") -> str:
    body = {"name": name, "format": "jsonl", "region": region}
    response = w.client.post("/api/v1/datasets", json=body, headers=w.keys[tenant])
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def put(w: World, tenant: str, ref: str, path: str, data: bytes, **headers: str) -> Any:
    """Upload ``data`` streamed in 64 KiB pieces (chunked transfer encoding)."""

    def pieces() -> Iterator[bytes]:
        for at in range(0, len(data), 1 << 16):
            yield data[at : at + (1 << 16)]

    return w.client.put(
        f"/api/v1/datasets/{ref}/files",
        params={"path": path},
        content=pieces(),
        headers=w.keys[tenant] | headers,
    )


def ready(w: World, tenant: str, name: str, files: dict[str, bytes]) -> str:
    ref = create(w, tenant, name)
    for path, data in files.items():
        assert put(w, tenant, ref, path, data).status_code == 201
    assert w.client.post(f"/api/v1/datasets/{ref}/seal", headers=w.keys[tenant]).is_success
    return ref


def test_upload_is_streamed_hashed_and_sealed(world: World) -> None:
    w = world
    big = os.urandom(3 << 20)  # larger than the server's 1 MiB body limit
    ref = create(w, "ten0", "corpus")
    first = put(w, "ten0", ref, "train/part-0.jsonl", big)
    assert first.status_code == 201, first.text
    assert first.json() == {
        "path": "train/part-0.jsonl",
        "size_bytes": len(big),
        "sha256": hashlib.sha256(big).hexdigest(),
    }
    bad = put(w, "ten0", ref, "x.jsonl", b"abc", **{"X-Content-SHA256": "0" * 64})
    assert bad.status_code == 422
    assert bad.json()["field"] == "X-Content-SHA256"
    good = put(
        w,
        "ten0",
        ref,
        "y.jsonl",
        b"abc",
        **{"X-Content-SHA256": hashlib.sha256(b"abc").hexdigest()},
    )
    assert good.status_code == 201
    sealed = w.client.post(f"/api/v1/datasets/{ref}/seal", headers=w.keys["ten0"])
    assert sealed.json()["state"] == "ready"
    assert put(w, "ten0", ref, "z.jsonl", b"late").status_code == 409
    shown = w.client.get("/api/v1/datasets/corpus", headers=w.keys["ten0"]).json()
    assert [e["path"] for e in shown["manifest"]] == ["train/part-0.jsonl", "y.jsonl"]
    assert shown["size_bytes"] == len(big) + 3
    assert shown["replicas"] == [
        {"region": "near", "state": "ready", "updated_at": shown["replicas"][0]["updated_at"]}
    ]
    root = w.settings.storage_dir.resolve() / "near" / "tenants" / "ten0" / "datasets"
    on_disk = root / ref / "train" / "part-0.jsonl"
    assert on_disk.read_bytes() == big
    assert stat.S_IMODE(on_disk.stat().st_mode) == 0o644
    assert stat.S_IMODE((root / ref).stat().st_mode) == 0o755
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert not (root / ref / "x.jsonl").exists()
    assert list((root / f".incoming-{ref}").iterdir()) == []


def test_the_storage_quota_is_enforced_and_named(world: World) -> None:
    w = world
    quota = w.client.put("/api/v1/tenants/ten1/storage", json={"bytes": 1000}, headers=w.keys["op"])
    assert quota.json() == {
        "tenant": "ten1",
        "used_bytes": 0,
        "quota_bytes": 1000,
        "default": False,
    }
    ref = create(w, "ten1", "small")
    assert put(w, "ten1", ref, "a", b"x" * 600).status_code == 201
    over = put(w, "ten1", ref, "b", b"x" * 600)
    assert over.status_code == 413
    assert over.json()["field"] == "storage_quota"
    assert "1000 bytes" in over.json()["detail"]
    assert (
        put(w, "ten1", ref, "a", b"y" * 900).status_code == 201
    )  # replacing counts the difference
    used = w.client.get("/api/v1/tenants/ten1/storage", headers=w.keys["ten1"]).json()
    assert used["used_bytes"] == 900
    other = w.client.get("/api/v1/tenants/ten2/storage", headers=w.keys["ten2"]).json()
    assert other["default"]
    assert other["quota_bytes"] == w.settings.storage_quota_bytes


def test_eight_tenants_upload_at_once(world: World) -> None:
    w = world
    payloads = {t: os.urandom((1 << 20) + n) for n, t in enumerate(TENANTS)}
    refs = {t: create(w, t, "shared-name") for t in TENANTS}  # one name, eight tenants

    def upload(tenant: str) -> Any:
        return put(w, tenant, refs[tenant], "data.bin", payloads[tenant])

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(zip(TENANTS, pool.map(upload, TENANTS), strict=True))
    for tenant, answer in answers.items():
        assert answer.status_code == 201, answer.text
        assert answer.json()["sha256"] == hashlib.sha256(payloads[tenant]).hexdigest()
    listed = w.client.get("/api/v1/datasets", headers=w.keys["op"]).json()
    assert sorted(d["tenant"] for d in listed) == TENANTS


def test_jobs_name_a_dataset_and_deletion_waits_for_them(world: World) -> None:
    w = world
    job = {"name": "j", "resources": {"chip": "ascend-910b"}, "simulate": {"duration_s": 60}}
    missing = w.client.post("/api/v1/jobs", json=job | {"dataset": "nope"}, headers=w.keys["ten0"])
    assert missing.status_code == 404
    assert missing.json()["field"] == "dataset"
    ref = create(w, "ten0", "wip")
    put(w, "ten0", ref, "a", b"1")
    unsealed = w.client.post("/api/v1/jobs", json=job | {"dataset": "wip"}, headers=w.keys["ten0"])
    assert unsealed.status_code == 409
    w.client.post(f"/api/v1/datasets/{ref}/seal", headers=w.keys["ten0"])
    submitted = w.client.post("/api/v1/jobs", json=job | {"dataset": "wip"}, headers=w.keys["ten0"])
    assert submitted.status_code == 201
    assert submitted.json()["spec"]["dataset"] == "wip"
    refused = w.client.delete("/api/v1/datasets/wip", headers=w.keys["ten0"])
    assert refused.status_code == 409
    assert submitted.json()["id"] in refused.json()["detail"]
    w.client.post(f"/api/v1/jobs/{submitted.json()['id']}/cancel", headers=w.keys["ten0"])
    assert w.client.delete("/api/v1/datasets/wip", headers=w.keys["ten0"]).status_code == 200
    assert create(w, "ten0", "wip") != ref  # the name is free again
    assert not (w.settings.storage_dir / "near" / "tenants" / "ten0" / "datasets" / ref).exists()


def test_the_scheduler_places_jobs_where_their_data_is(world: World) -> None:
    w, platform = world, world.platform
    ready(w, "ten0", "far-data", {"a.jsonl": b"x" * 1000})
    body = {"name": "j", "resources": {"chip": "ascend-910b"}, "simulate": {"duration_s": 60}}
    jobs = []
    for _ in range(3):
        answer = w.client.post(
            "/api/v1/jobs", json=body | {"dataset": "far-data"}, headers=w.keys["ten0"]
        )
        jobs.append(answer.json()["id"])
    pinned = body | {
        "dataset": "far-data",
        "resources": {"chip": "ascend-910b", "cluster": "sim-far"},
    }
    forced = w.client.post("/api/v1/jobs", json=pinned, headers=w.keys["ten0"]).json()["id"]
    with platform.uows() as uow:
        queued = uow.jobs.queued()
        snapshot = build_snapshot(uow, queued, platform.catalogue, platform.clock.now())
    refs = {p.id: p.dataset for p in snapshot.pending}
    assert {(r.name, r.size_bytes, r.replicas) for r in refs.values() if r} == {
        ("far-data", 1000, ("near",))
    }
    platform.control.tick()
    t0 = platform.tenancy.authenticate(w.keys["ten0"]["Authorization"].split()[1])
    for job_id in jobs:
        detail = platform.jobs.get(t0, job_id)
        assert detail.attempts[-1].cluster == "sim-near", detail.job.reason
    waiting = platform.jobs.get(t0, forced).job
    assert waiting.state is JobState.QUEUED
    assert "staging dataset far-data from near to far" in waiting.reason


def test_storage_is_metered_into_bills(world: World, clock: Any) -> None:
    w, platform = world, world.platform
    start = clock.now()
    ready(w, "ten3", "kept", {"a": b"x" * 4000})
    gone = ready(w, "ten3", "gone", {"b": b"y" * 1000})
    clock.advance(1800)
    w.client.delete(f"/api/v1/datasets/{gone}", headers=w.keys["ten3"])
    clock.advance(3 * 3600)
    meter = ComputeMeter(platform.uows, clock)
    assert meter.run() > 0
    assert meter.run() == 0  # a second run (or a restarted control plane) adds nothing
    t3 = platform.tenancy.authenticate(w.keys["ten3"]["Authorization"].split()[1])
    period = month_of(start)
    (storage,) = [
        t for t in platform.billing.usage(t3, "ten3", period).totals if t.kind is UsageKind.STORAGE
    ]
    assert storage.byte_s == 4000 * 3 * 3600 + 1000 * 1800
    bill = platform.billing.bill(t3, "ten3", period)
    (line,) = [line for line in bill.lines if line.kind is UsageKind.STORAGE]
    assert line.per == BYTE_S_PER_GB_MONTH
    assert line.unit_price == 150000
    assert (
        line.amount == (storage.byte_s * 150000 + BYTE_S_PER_GB_MONTH // 2) // BYTE_S_PER_GB_MONTH
    )


def test_migration_0012_up_and_down(settings: Settings) -> None:
    config = alembic_config(settings.db_url)
    command.upgrade(config, "0011")
    engine = sa.create_engine(settings.db_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO tenants (id, display_name, created_at) VALUES ('x', 'x', 0)")
        )
    command.upgrade(config, "head")
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT storage_quota_bytes FROM tenants")).scalar_one() is None
        conn.execute(
            sa.text(
                "INSERT INTO datasets (id, tenant, name, format, state, size_bytes, manifest,"
                " created_at) VALUES ('ds-000000000001', 'x', 'n', 'text', 'ready', 1, '[]', 0)"
            )
        )
        with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
            conn.execute(
                sa.text(
                    "INSERT INTO datasets (id, tenant, name, format, state, size_bytes,"
                    " manifest, created_at) VALUES ('ds-000000000002', 'x', 'n', 'text',"
                    " 'ready', 1, '[]', 0)"
                )
            )
        conn.execute(sa.text("DELETE FROM datasets"))
    command.downgrade(config, "0011")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id FROM tenants")).scalar_one() == "x"
        names = sa.inspect(conn).get_table_names()
    assert "datasets" not in names
    assert "transfers" not in names
    engine.dispose()


def test_paths_are_checked_before_anything_is_written(world: World, tmp_path: Path) -> None:
    w = world
    ref = create(w, "ten4", "paths")
    for bad in ("../x", "/etc/passwd", "a/../../b", "a\\b", "a\x00b", ".suanwang-x", ""):
        answer = put(w, "ten4", ref, bad, b"nope")
        assert answer.status_code == 422, (bad, answer.text)
    assert put(w, "ten4", ref, "./a//b/./c", b"ok").json()["path"] == "a/b/c"
    clash = put(w, "ten4", ref, "a/b", b"a directory already")
    assert clash.status_code == 422
