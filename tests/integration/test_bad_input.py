"""Bad input gets a 4xx problem document naming the field, and changes nothing in the database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from suanwang.adapters.db.tables import Base
from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform

FLEET = "regions: [{name: r1}]\nclusters: [{name: sim, region: r1, kind: simulated, nodes: [{name: n1, chip: ascend-910b, cards: 8}]}]\n"


@pytest.fixture
def api(
    settings: Settings, clock: Any
) -> Iterator[tuple[TestClient, Platform, dict[str, str], dict[str, str]]]:
    settings.max_body_bytes = 64 * 1024
    app = build_app(settings, control=False, clock=clock)
    platform: Platform = app.state.platform
    platform.fleet.apply_yaml(FLEET)
    platform.tenancy.create_tenant("acme", "Acme", {})
    op_key = platform.tenancy.bootstrap_operator_key().secret
    tenant_key = platform.tenancy.create_key(
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
            {"Authorization": f"Bearer {op_key}"},
            {"Authorization": f"Bearer {tenant_key}"},
        )
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


def fingerprint(platform: Platform) -> dict[str, int]:
    """Row counts of every table: equal before and after means nothing was written."""
    engine = platform.uows.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }


FLEET_CASES = [
    pytest.param(b"regions: [\n  - name: r1\n clusters", 422, "body", id="malformed-yaml"),
    pytest.param(
        FLEET.replace("ascend-910b", "ascend-9999").encode(),
        422,
        "clusters[0].nodes[0].chip",
        id="unknown-chip",
    ),
    pytest.param(
        FLEET.replace("cards: 8", "cards: -8").encode(),
        422,
        "clusters[0].nodes[0].cards",
        id="negative-cards",
    ),
    pytest.param(
        FLEET.replace("region: r1", "region: nowhere").encode(),
        422,
        "clusters[0].region",
        id="unknown-region",
    ),
    pytest.param(
        "regions: [{name: r1, display_name: '\u4e0a\u6d77'}]".encode("gb18030"),
        422,
        "body",
        id="non-utf8",
    ),
    pytest.param(b"- just\n- a list\n", 422, "body", id="not-a-mapping"),
    pytest.param(
        b"regions: [{name: r1, colour: red}]", 422, "regions[0].colour", id="unknown-field"
    ),
    pytest.param(b"x: " + b"a" * 70_000, 413, "body", id="oversized"),
    *[
        pytest.param(
            FLEET.replace("kind: simulated", f"kind: real, {block}").encode(), 422, field, id=name
        )
        for name, block, field in [
            ("unknown-backend", "backend: nomad", "clusters[0].backend"),
            ("ray-without-block", "backend: ray", "clusters[0].ray"),
            ("block-for-local", "backend: local, ray: {address: 'http://h:1'}", "clusters[0].ray"),
            (
                "two-blocks",
                "ray: {address: 'http://h:1'}, slurm: {partition: p}",
                "clusters[0].slurm",
            ),
            ("bad-ray-address", "ray: {address: 'h:8265'}", "clusters[0].ray.address"),
            ("secret-in-address", "ray: {address: 'http://u:pw@h:1'}", "clusters[0].ray.address"),
            ("bad-partition", "slurm: {partition: 'a;b'}", "clusters[0].slurm.partition"),
            (
                "bad-tenant-qos",
                "slurm: {partition: p, tenants: {acme: {qos: 'a b'}}}",
                "clusters[0].slurm.tenants.acme.qos",
            ),
            ("kube-extra-key", "kubernetes: {token: x}", "clusters[0].kubernetes.token"),
        ]
    ],
]


@pytest.mark.parametrize(("body", "status", "field"), FLEET_CASES)
def test_bad_fleet_files(api: Any, body: bytes, status: int, field: str) -> None:
    client, platform, op, _ = api
    before = fingerprint(platform)
    response = client.post("/api/v1/fleet/apply", headers=op, content=body)
    assert response.status_code == status, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["field"] == field
    assert problem["detail"]
    assert fingerprint(platform) == before


JOB_CASES = [
    pytest.param(
        {"resources": {"cards_per_node": -1}, "command": ["true"]},
        "resources.cards_per_node",
        id="negative-cards",
    ),
    pytest.param(
        {"resources": {"chip": "ascend-9999"}, "command": ["true"]},
        "resources.chip",
        id="unknown-chip",
    ),
    pytest.param(
        {
            "resources": {"chip": "ascend-910b", "cards_per_node": 8, "nodes": 2},
            "simulate": {"duration_s": 10},
        },
        "resources",
        id="more-cards-than-exist",
    ),
    pytest.param(
        {"resources": {"chip": "ascend-910b"}, "command": ["true"]},
        "resources",
        id="no-real-cluster",
    ),
    pytest.param(
        {"resources": {"chip": ["ascend", "ascend-9999"]}, "simulate": {"duration_s": 5}},
        "resources.chip",
        id="unknown-chip-in-list",
    ),
    pytest.param(
        {"resources": {"chip": [f"c{i}" for i in range(17)]}, "simulate": {"duration_s": 5}},
        "resources.chip",
        id="too-many-accepted-chips",
    ),
    pytest.param(
        {"resources": {"chip": []}, "simulate": {"duration_s": 5}},
        "resources.chip",
        id="empty-chip-list",
    ),
    pytest.param(
        {"resources": {"chip": ["nvidia-h20", "metax"]}, "simulate": {"duration_s": 5}},
        "resources",
        id="no-accepted-chip-in-the-fleet",
    ),
    pytest.param({"command": []}, "command", id="no-command"),
    pytest.param({"command": ["true"], "priority": 10**6}, "priority", id="priority-range"),
    pytest.param({"command": ["true"], "colour": "red"}, "colour", id="unknown-field"),
    pytest.param({"command": "true"}, "command", id="wrong-type"),
    pytest.param({"command": ["true"], "env": {"A=B": "x"}}, "env", id="bad-env-name"),
    pytest.param(
        {"simulate": {"duration_s": -5}, "resources": {"chip": "ascend"}},
        "simulate.duration_s",
        id="negative-duration",
    ),
    pytest.param(
        {"simulate": {"duration_s": 5}, "speed": {"ascend-910b": -1}},
        "speed.ascend-910b",
        id="negative-speed",
    ),
    pytest.param(
        {"simulate": {"duration_s": 5}, "speed": {"ascend-9999": 2}},
        "speed.ascend-9999",
        id="speed-on-unknown-chip",
    ),
    pytest.param({"simulate": {"duration_s": 5}, "kind": ""}, "kind", id="empty-kind"),
    pytest.param(
        {"simulate": {"duration_s": 5}, "resources": {"chip": 7}},
        "resources.chip",
        id="chip-is-a-number",
    ),
    pytest.param(
        {"simulate": {"duration_s": 5}, "resources": {"chip": ["ascend", 7]}},
        "resources.chip",
        id="chip-list-holds-a-number",
    ),
    pytest.param(
        {"command": ["true"], "working_dir": "/tmp\x00/x"}, "working_dir", id="nul-in-working-dir"
    ),
    pytest.param(
        {"command": ["true"], "working_dir": "/tmp\n/x"}, "working_dir", id="newline-in-working-dir"
    ),
    pytest.param({"command": ["true"], "env": {"A": "x\x00y"}}, "env.A", id="nul-in-env-value"),
    pytest.param({"command": ["true"], "env": {"A\x00": "x"}}, "env", id="nul-in-env-name"),
    pytest.param({"command": ["true"], "env": {"A\x1b": "x"}}, "env", id="escape-in-env-name"),
    pytest.param({"command": ["tr\x00ue"]}, "command", id="nul-in-command"),
    pytest.param(
        {"command": ["true"], "env": {f"V{i}": "x" for i in range(1025)}}, "env", id="env-count"
    ),
    pytest.param(
        {"simulate": {"duration_s": 5}, "preemption_grace_s": -1},
        "preemption_grace_s",
        id="negative-grace",
    ),
    pytest.param(
        {"simulate": {"duration_s": 5}, "preemption_grace_s": 301},
        "preemption_grace_s",
        id="grace-over-the-operator-max",
    ),
    pytest.param(
        {"simulate": {"duration_s": 5}, "preemption_grace_s": "30"},
        "preemption_grace_s",
        id="grace-is-a-string",
    ),
]


@pytest.mark.parametrize(("body", "field"), JOB_CASES)
def test_bad_jobs(api: Any, body: dict[str, Any], field: str) -> None:
    client, platform, _, tenant = api
    before = fingerprint(platform)
    response = client.post("/api/v1/jobs", headers=tenant, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert fingerprint(platform) == before


def test_a_list_of_accepted_chips_is_taken_and_shown(api: Any) -> None:
    client, _, _, tenant = api
    body = {
        "resources": {"chip": ["nvidia-h20", "ascend", "nvidia-h20"]},
        "simulate": {"duration_s": 5},
    }
    response = client.post("/api/v1/jobs", headers=tenant, json=body)
    assert response.status_code == 201, response.text
    job = client.get(f"/api/v1/jobs/{response.json()['id']}", headers=tenant).json()
    assert job["spec"]["resources"]["chip"] == "nvidia-h20"
    assert job["spec"]["resources"]["chips"] == ["nvidia-h20", "ascend"]


@pytest.mark.parametrize(
    ("content", "ctype"),
    [
        (b"\xff\xfe\x00garbage", "application/json"),
        (b"{not json", "application/json"),
        (b"\x80\x81", "text/plain"),
    ],
)
def test_undecodable_job_bodies(api: Any, content: bytes, ctype: str) -> None:
    client, platform, _, tenant = api
    before = fingerprint(platform)
    response = client.post(
        "/api/v1/jobs", headers=tenant | {"content-type": ctype}, content=content
    )
    assert 400 <= response.status_code < 500
    assert "detail" in response.json()
    assert fingerprint(platform) == before


SIMULATED = '"simulate": {"duration_s": 5}, "resources": {"chip": "ascend"}'
RAW_JOB_CASES = [
    pytest.param('{"command": ' + "[" * 1000 + "]" * 1000 + "}", 400, "body", id="nested-1000"),
    pytest.param(
        '{"priority": ' + "9" * 5000 + ", " + SIMULATED + "}", 400, "body", id="5000-digits"
    ),
    pytest.param(
        '{"priority": ' + "9" * 4000 + ", " + SIMULATED + "}", 422, "priority", id="4000-digits"
    ),
    pytest.param('{"name": "\\ud800", ' + SIMULATED + "}", 422, "name", id="surrogate-in-name"),
    pytest.param(
        '{"command": ["\\udfff"], ' + SIMULATED + "}", 422, "command.0", id="surrogate-in-argv"
    ),
]


@pytest.mark.parametrize(("body", "status", "field"), RAW_JOB_CASES)
def test_hostile_json_in_job_bodies(api: Any, body: str, status: int, field: str) -> None:
    """Written by hand: json.dumps cannot write a lone surrogate or a 5,000-digit number."""
    client, platform, _, tenant = api
    before = fingerprint(platform)
    headers = tenant | {"content-type": "application/json"}
    response = client.post("/api/v1/jobs", headers=headers, content=body.encode())
    assert response.status_code == status, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (problem["field"], bool(problem["hint"])) == (field, True)
    assert fingerprint(platform) == before


def test_oversized_job_body(api: Any) -> None:
    client, platform, _, tenant = api
    before = fingerprint(platform)
    response = client.post(
        "/api/v1/jobs", headers=tenant, json={"command": ["echo", "x" * 100_000]}
    )
    assert response.status_code == 413
    assert fingerprint(platform) == before


def test_log_offsets_past_the_end_and_impossible(api: Any) -> None:
    """Past the end: 200 and empty (a 500 at 2**44 before); not an offset at all: 422."""
    client, platform, _, tenant = api
    real = "{name: here, region: r1, kind: real, nodes: [{name: n1, chip: cpu, cards: 1}]}"
    platform.fleet.apply_yaml(FLEET.replace("}]}]", "}]}, " + real + "]"))
    job = client.post(
        "/api/v1/jobs",
        headers=tenant,
        json={"command": ["echo", "hello"], "resources": {"chip": "cpu"}},
    ).json()["id"]
    deadline = time.monotonic() + 20
    while client.get(f"/api/v1/jobs/{job}", headers=tenant).json()["state"] != "succeeded":
        assert time.monotonic() < deadline, "the job did not finish"
        platform.control.tick()
        time.sleep(0.05)
    logs = f"/api/v1/jobs/{job}/logs"
    assert client.get(logs, headers=tenant, params={"offset": 2}).content == b"llo\n"
    for offset in (6, 2**44, 2**62, 2**63 - 1):
        response = client.get(logs, headers=tenant, params={"offset": offset})
        assert (response.status_code, response.content) == (200, b""), offset
    for offset in ("-1", str(2**63), "9" * 5000):
        response = client.get(logs, headers=tenant, params={"offset": offset})
        assert response.status_code == 422, offset
        assert response.json()["field"] == "query.offset"
