"""Engine clusters through the real stack (SQLite and PostgreSQL): connection blocks stored
and shown, health recorded and obeyed by the scheduler, orphan local runs cancelled, and
``fleet import --from local`` producing a file ``fleet apply`` accepts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient

from suanwang.adapters.db.engine import alembic_config
from suanwang.bootstrap import build_app, discovery_backend
from suanwang.config import Settings
from suanwang.domain.audit import AuditAction, AuditQuery
from suanwang.domain.connections import (
    KubernetesConnection,
    RayConnection,
    SlurmConnection,
    SlurmTenant,
)
from suanwang.domain.jobs import AttemptState, JobState
from suanwang.domain.tenancy import Principal, Scope
from suanwang.ports import LaunchRequest, NodeSlice
from suanwang.services.fleet_import import ImportRequest, import_cluster
from suanwang.services.platform import Platform

UNREACHABLE = "http://127.0.0.1:9"  # discard port: nothing answers
ENGINES = f"""
regions: [{{name: r1}}]
clusters:
  - name: here
    region: r1
    kind: real
    nodes: [{{name: h1, chip: cpu, cards: 4}}]
  - name: ray1
    region: r1
    kind: real
    ray: {{address: '{UNREACHABLE}'}}
    nodes: [{{name: r-n1, chip: cpu, cards: 4}}]
  - name: slurm1
    region: r1
    kind: real
    slurm: {{partition: debug, bin_dir: /nonexistent/bin, tenants: {{acme: {{qos: high}}}}}}
    nodes: [{{name: s-n1, chip: cpu, cards: 4}}]
  - name: k8s1
    region: r1
    kind: real
    kubernetes: {{kubeconfig: /nonexistent/kubeconfig, api_url: '{UNREACHABLE}'}}
    nodes: [{{name: k-n1, chip: cpu, cards: 4}}]
"""


def test_connections_are_stored_and_reapplying_changes_nothing(platform: Platform) -> None:
    assert platform.fleet.apply_yaml(ENGINES).changed
    clusters = {c.name: c for c in platform.fleet.view().clusters}
    assert clusters["here"].connection is None
    assert clusters["ray1"].connection == RayConnection(UNREACHABLE)
    assert clusters["slurm1"].connection == SlurmConnection(
        "debug", bin_dir="/nonexistent/bin", tenants=(SlurmTenant("acme", qos="high"),)
    )
    assert clusters["k8s1"].connection == KubernetesConnection(
        kubeconfig="/nonexistent/kubeconfig", api_url=UNREACHABLE
    )
    assert not platform.fleet.apply_yaml(ENGINES).changed
    moved = platform.fleet.apply_yaml(
        ENGINES.replace(
            f"ray: {{address: '{UNREACHABLE}'}}", "ray: {address: 'http://10.0.0.1:8265'}"
        )
    )
    assert moved.updated == ["cluster/ray1"]
    ray1 = {c.name: c for c in platform.fleet.view().clusters}["ray1"]
    assert ray1.connection == RayConnection("http://10.0.0.1:8265")
    with platform.uows() as uow:
        latest = uow.audit.entries(AuditQuery(action=AuditAction.FLEET_APPLY, limit=1))[0]
    assert latest.before == {"cluster/ray1": {**latest.after["cluster/ray1"], "connection": {
        "ray": {"address": UNREACHABLE}}}}  # fmt: skip
    assert latest.after["cluster/ray1"]["connection"] == {
        "ray": {"address": "http://10.0.0.1:8265"}
    }


def test_existing_clusters_migrate_with_no_connection(settings: Settings) -> None:
    config = alembic_config(settings.db_url)
    command.upgrade(config, "0008")
    engine = sa.create_engine(settings.db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO regions VALUES ('r1', 'R', 0)"))
        conn.execute(sa.text("INSERT INTO clusters VALUES ('old', 'r1', 'real', 'local', '', 0)"))
    command.upgrade(config, "head")
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT connection, health_ok, health_reason FROM clusters")
        ).one()
    engine.dispose()
    assert tuple(row) == (None, None, "")


@pytest.fixture
def api(
    settings: Settings, clock: Any
) -> Iterator[tuple[TestClient, Platform, dict[str, str], dict[str, str]]]:
    app = build_app(settings, control=False, clock=clock)
    platform: Platform = app.state.platform
    platform.fleet.apply_yaml(ENGINES)
    platform.tenancy.create_tenant("acme", "Acme", {"cpu": 64})
    op = platform.tenancy.bootstrap_operator_key().secret
    tenant = platform.tenancy.create_key(
        Principal("op", Scope.OPERATOR, None),
        tenant="acme",
        scope=Scope.TENANT_ADMIN,
        name="",
        expires_in_s=None,
    ).secret
    with TestClient(app) as client:
        yield (
            client,
            platform,
            {"Authorization": f"Bearer {op}"},
            {"Authorization": f"Bearer {tenant}"},
        )
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


def test_clusters_show_connection_to_the_operator_and_health_to_everyone(api: Any) -> None:
    client, platform, op, tenant = api
    shown = {c["name"]: c for c in client.get("/api/v1/clusters", headers=op).json()}
    assert shown["ray1"]["connection"] == {"ray": {"address": UNREACHABLE}}
    assert shown["k8s1"]["connection"]["kubernetes"]["kubeconfig"] == "/nonexistent/kubeconfig"
    assert shown["here"]["connection"] is None
    assert shown["slurm1"]["connection"]["slurm"]["tenants"] == {"acme": {"qos": "high"}}
    assert {c["health"]["status"] for c in shown.values()} == {"unchecked"}
    for_tenant = client.get("/api/v1/clusters", headers=tenant).json()
    assert all(c["connection"] is None for c in for_tenant)
    platform.cluster_health.check()
    shown = {c["name"]: c for c in client.get("/api/v1/clusters", headers=tenant).json()}
    assert shown["here"]["health"]["status"] == "healthy"
    for name in ("ray1", "slurm1", "k8s1"):
        health = shown[name]["health"]
        assert health["status"] == "unhealthy", name
        assert health["reason"], name
        assert health["checked_at"] == platform.clock.now()
    fleet = client.get("/api/v1/fleet", headers=op).json()
    assert {c["name"]: c["health"]["status"] for c in fleet["clusters"]}["ray1"] == "unhealthy"


def test_unhealthy_engine_clusters_keep_jobs_queued_while_local_admits(api: Any) -> None:
    client, platform, _, tenant = api
    platform.cluster_health.check()
    body = {"name": "n", "command": ["sleep", "30"], "resources": {"chip": "cpu"}}
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: client.post("/api/v1/jobs", json=body, headers=tenant), range(8))
        )
    assert [a.status_code for a in answers] == [201] * 8, answers[0].text
    ids = [a.json()["id"] for a in answers]
    platform.control.tick()
    acme = platform.tenancy.authenticate(tenant["Authorization"].split()[1])
    states = [platform.jobs.get(acme, j).job.state for j in ids]
    assert states.count(JobState.RUNNING) == 4  # the 4 cpu slots of "here"
    assert states.count(JobState.QUEUED) == 4  # the engine clusters take none; none is lost
    for job_id in ids:
        for attempt in platform.jobs.get(acme, job_id).attempts:
            assert attempt.cluster == "here"
    for job_id in ids:
        platform.jobs.cancel(acme, job_id)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        platform.control.tick()
        if all(platform.jobs.get(acme, j).job.state.terminal for j in ids):
            break
        time.sleep(0.05)
    assert all(platform.jobs.get(acme, j).job.state is JobState.CANCELLED for j in ids)


def test_a_local_run_suanwang_does_not_own_is_cancelled_after_the_grace_period(
    platform: Platform,
) -> None:
    platform.fleet.apply_yaml(ENGINES)
    platform.tenancy.create_tenant("acme", "Acme", {})  # the sandbox runs it as acme's uid
    local = platform.backends["local"]
    ghost = LaunchRequest(
        job_id="ghost",
        attempt=1,
        tenant="acme",
        cluster="here",
        command=("sleep", "60"),
        placements=(NodeSlice("h1", 1),),
    )
    assert local.submit(ghost).state in {AttemptState.STARTING, AttemptState.RUNNING}
    assert ("ghost", 1) in {(r.job_id, r.attempt) for r in local.runs("here", None) if r.alive}
    first = platform.orphans.sweep()
    assert first.seen == [("here", "ghost", 1)]
    assert first.cancelled == []
    assert local.poll("ghost", 1, {}).state is AttemptState.RUNNING  # still in its grace
    platform.clock.advance(301)  # type: ignore[attr-defined]
    assert platform.orphans.sweep().cancelled == [("here", "ghost", 1)]
    deadline = time.monotonic() + 15
    while not (status := local.poll("ghost", 1, {})).state.ended:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status.state is AttemptState.CANCELLED
    assert platform.orphans.sweep().seen == []


def test_fleet_import_from_local_is_accepted_by_apply(
    platform: Platform, settings: Settings
) -> None:
    request = ImportRequest("local", "imported", "lab", "Lab")
    result = import_cluster(request, discovery_backend(settings, "local"), platform.catalogue)
    applied = platform.fleet.apply_yaml(result.text)
    assert "cluster/imported" in applied.created
    nodes = platform.fleet.nodes("imported")
    assert sum(n.cards for n in nodes) == sum(result.cards_by_chip.values())
    assert {n.name for n in nodes} == {n["name"] for n in platform.local_nodes}
    assert not platform.fleet.apply_yaml(result.text).changed
