"""Prometheus metrics and the OpenAPI document are served and say something useful."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from suanwang.bootstrap import build_app
from suanwang.config import Settings


def test_metrics_and_openapi(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'm.db'}")
    app = build_app(settings, control=False)
    platform = app.state.platform
    op = platform.tenancy.bootstrap_operator_key().secret
    with TestClient(app) as client:
        client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {op}"})
        client.get("/api/v1/jobs")
        metrics = client.get("/metrics").text
        spec = client.get("/openapi.json").json()
    platform.uows.engine.dispose()
    assert (
        'suanwang_http_requests_total{method="GET",route="/api/v1/jobs",status="200"} 1.0'
        in metrics
    )
    assert 'status="401"' in metrics
    assert "suanwang_jobs{" in metrics or "# TYPE suanwang_jobs gauge" in metrics
    assert "/api/v1/jobs/{job_id}/logs" in spec["paths"]
    assert spec["info"]["title"] == "suanwang"
