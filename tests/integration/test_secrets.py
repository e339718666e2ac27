"""Secrets (suite R8, first part): keys never reach the database, WAL or logs in plaintext."""

from __future__ import annotations

import io
from pathlib import Path

import structlog
from fastapi.testclient import TestClient

from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.tenancy import Principal, Scope
from suanwang.observability import configure_logging, redact


def test_keys_are_stored_hashed_and_never_logged(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 's.db'}")
    stream = io.StringIO()
    configure_logging("debug", json=True, stream=stream)
    app = build_app(settings, control=False)
    platform = app.state.platform
    platform.tenancy.create_tenant("acme", "Acme", {})
    op = platform.tenancy.bootstrap_operator_key().secret
    with TestClient(app) as client:
        created = client.post(
            "/api/v1/keys",
            headers={"Authorization": f"Bearer {op}"},
            json={"tenant": "acme", "scope": "tenant-admin"},
        ).json()
        tenant_key = created["key"]
        listed = client.get("/api/v1/keys", headers={"Authorization": f"Bearer {op}"}).text
        client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {tenant_key}"})
    log = structlog.get_logger("test")
    log.info("request", authorization=f"Bearer {tenant_key}", note=f"key was {tenant_key}")
    platform.uows.engine.dispose()
    assert tenant_key not in listed
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*"))
    for secret in (op, tenant_key):
        assert secret.encode() not in stored
        assert secret not in stream.getvalue()
    assert created["prefix"] in stream.getvalue()  # the prefix is what logs may show


def test_redaction_masks_nested_keys() -> None:
    secret = "sw_Abcdefgh_" + "x" * 43
    assert redact({"headers": {"Authorization": "Bearer " + secret}, "msg": [secret]}) == {
        "headers": {"Authorization": "***"},
        "msg": ["sw_Abcdefgh_***"],
    }
    principal = Principal("k", Scope.READ_ONLY, None)
    assert secret not in repr(principal)
