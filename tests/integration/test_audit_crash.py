"""kill -9 of the server right after it answered 2xx to a change: the change and its audit
entry are both there after the restart (they commit in one transaction), on SQLite and
PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from procs import Server, free_port

from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.audit import AuditQuery
from suanwang.domain.tenancy import LOCAL_OPERATOR, Scope

KILLS = 8
FLEET = """
regions: [{name: far}]
clusters:
  - {name: sim, region: far, kind: simulated, nodes: [{name: s1, chip: ascend-910b, cards: 8}]}
"""
SIM_JOB = {"name": "sim", "resources": {"chip": "ascend-910b"}, "simulate": {"duration_s": 5}}


def change(n: int, member_key: str) -> tuple[str, str, Any, str | None]:
    """The n-th change: (method, path, body, tenant key to use instead of the operator's)."""
    return [
        ("POST", "/api/v1/tenants", {"name": f"crash-{n}"}, None),
        ("PUT", "/api/v1/tenants/acme/quota", {"quota": {"cpu": n}}, None),
        ("POST", "/api/v1/keys", {"tenant": "acme", "scope": "read-only", "name": f"k{n}"}, None),
        ("PUT", "/api/v1/tenants/acme/limits", {"rpm": 100 + n}, None),
        ("POST", "/api/v1/jobs", SIM_JOB, member_key),
    ][n % 5]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_change_and_entry_survive_kill_dash_nine(db_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    platform = build_platform(Settings(data_dir=data, database_url=db_url))
    platform.fleet.apply_yaml(FLEET)
    platform.tenancy.create_tenant("acme", "Acme", {})
    op_key = platform.tenancy.bootstrap_operator_key().secret
    member_key = platform.tenancy.create_key(
        LOCAL_OPERATOR, tenant="acme", scope=Scope.TENANT_MEMBER, name="", expires_in_s=None
    ).secret
    env = os.environ | {
        "SUANWANG_DATA_DIR": str(data),
        "SUANWANG_DATABASE_URL": db_url,
        "SUANWANG_LOG_LEVEL": "warning",
    }
    server = Server(env, free_port(), tmp_path / "server.log")
    url = f"http://127.0.0.1:{server.port}"
    acked: dict[str, Any] = {}
    try:
        server.start()
        for n in range(KILLS):
            method, path, body, key = change(n, member_key)
            headers = {"Authorization": f"Bearer {key or op_key}", "X-Request-Id": f"crash-{n}"}
            response = httpx.request(method, url + path, json=body, headers=headers, timeout=10)
            server.kill()  # at once: nothing after the 2xx gets a chance to run
            assert response.status_code in (200, 201), response.text
            acked[f"crash-{n}"] = response.json()
            server.start()
    finally:
        server.stop()

    with platform.uows() as uow:
        entries = uow.audit.entries(AuditQuery(limit=500))
        tenants = {t.id for t in uow.tenancy.tenants()}
        jobs = {j.id for j in uow.jobs.jobs(None, limit=1000)}
    platform.uows.engine.dispose()  # type: ignore[attr-defined]
    by_request = {e.request_id: e for e in entries if e.request_id in acked}
    assert sorted(by_request) == sorted(acked), "an acknowledged change lost its entry"
    assert len([e for e in entries if e.request_id in acked]) == KILLS, "an entry twice"
    for rid, body in acked.items():
        entry = by_request[rid]
        if entry.action == "tenant.create":
            assert body["name"] in tenants
        if entry.action == "job.submit":
            assert body["id"] in jobs
            assert entry.resource_id == body["id"]
        if entry.action == "key.create":
            assert entry.resource_id == body["id"]
