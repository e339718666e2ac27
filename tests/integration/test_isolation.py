"""Authorization matrix over every route (suite R5): who may call what, and tenant isolation.

The matrix below is data: one row per route, one expected status per principal. The test
fails when the app has a route the matrix does not list, so a route added later without a
decision about who may call it cannot slip through. Objects referenced are tenant A's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.apps import AppSettings
from suanwang.domain.datasets import DatasetFormat
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.transfers import TransferRecord, TransferState, new_transfer_id
from suanwang.services.apps import AppSpec
from suanwang.services.external import ExternalSpec
from suanwang.services.knowledge import KnowledgeBaseSpec, Upload
from suanwang.services.platform import Platform

PRINCIPALS = (
    "op",
    "a_admin",
    "a_member",
    "a_ro",
    "b_admin",
    "b_member",
    "anon",
    "revoked",
    "expired",
)
FLEET = "regions: [{name: r1}]\nclusters: [{name: sim, region: r1, kind: simulated, nodes: [{name: n1, chip: ascend-910b, cards: 8}]}]\n"
EXTERNAL_MODEL = "partner-chat"
EXTERNAL_URL = "https://93.184.216.34/v1"  # a public address: no DNS, no exemption needed
SIM_JOB = {"name": "t", "resources": {"chip": "ascend-910b"}, "simulate": {"duration_s": 60}}


@dataclass
class World:
    client: TestClient
    platform: Platform
    keys: dict[str, str]
    fresh_job: Callable[[], str]
    fresh_key: Callable[[], str]
    fresh_deployment: Callable[[], str]
    fresh_external: Callable[[], str]
    fresh_dataset: Callable[[bool], str]
    fresh_transfer: Callable[[], str]
    fresh_agent: Callable[[], str]
    fresh_kb: Callable[[], str]
    fresh_doc: Callable[[], tuple[str, str]]
    fresh_app: Callable[[], str]


@pytest.fixture
def world(settings: Settings, clock: Any) -> Iterator[World]:
    app = build_app(settings, control=False, clock=clock)
    platform: Platform = app.state.platform
    platform.fleet.apply_yaml(FLEET)
    op = Principal("op", Scope.OPERATOR, None)
    keys = {"op": platform.tenancy.bootstrap_operator_key().secret}
    for tenant in ("aaa", "bbb"):
        platform.tenancy.create_tenant(tenant, tenant, {})

    def mint(tenant: str, scope: Scope, expires: int | None = None) -> str:
        return platform.tenancy.create_key(
            op, tenant=tenant, scope=scope, name="", expires_in_s=expires
        ).secret

    keys |= {
        "a_admin": mint("aaa", Scope.TENANT_ADMIN),
        "a_member": mint("aaa", Scope.TENANT_MEMBER),
        "a_ro": mint("aaa", Scope.READ_ONLY),
        "b_admin": mint("bbb", Scope.TENANT_ADMIN),
        "b_member": mint("bbb", Scope.TENANT_MEMBER),
        "expired": mint("aaa", Scope.TENANT_ADMIN, 5),
    }
    revoked = platform.tenancy.create_key(
        op, tenant="aaa", scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
    )
    platform.tenancy.revoke_key(op, revoked.record.id)
    keys["revoked"] = revoked.secret
    clock.advance(10)
    a = platform.tenancy.authenticate(keys["a_admin"])

    def fresh_job() -> str:
        from suanwang.domain.jobs import JobSpec, Resources

        spec = JobSpec(
            name="t", command=(), resources=Resources(chip="ascend-910b"), simulate_duration_s=60
        )
        return platform.jobs.submit(a, spec, None).job.id

    def fresh_key() -> str:
        return platform.tenancy.create_key(
            op, tenant="aaa", scope=Scope.READ_ONLY, name="", expires_in_s=None
        ).record.id

    def fresh_deployment() -> str:
        return platform.deployments.deploy(a, "qwen2.5-72b-instruct", "sim", 0).deployment.id

    def fresh_external() -> str:
        spec = ExternalSpec(EXTERNAL_MODEL, EXTERNAL_URL, credential="sk-ext", tenant="aaa")
        return platform.externals.register(op, spec).deployment.id

    made = iter(range(1_000_000))

    def fresh_dataset(sealed: bool) -> str:
        """A dataset of tenant A with one file, sealed or still uploading."""
        created = platform.datasets.create(a, f"ds{next(made)}", DatasetFormat.TEXT, "r1")
        upload = platform.datasets.begin_file(a, created.id, "a.txt")
        upload.write(b"hello\n")
        platform.datasets.finish_file(a, upload)
        if sealed:
            platform.datasets.seal(a, created.id)
        return created.id

    def fresh_transfer() -> str:
        """A transfer record of one of tenant A's datasets (no agent involved)."""
        dataset = fresh_dataset(True)
        transfer = TransferRecord(
            new_transfer_id(), dataset, "r1", "r2", TransferState.PENDING, 6, 0, 0.0, None,
            "", 0, clock.now(),
        )  # fmt: skip
        with platform.uows() as uow:
            uow.datasets.add_transfer(transfer)
            uow.commit()
        return transfer.id

    def fresh_agent() -> str:
        name = f"agent-{next(made)}"
        platform.agents.register(op, name, "r1", "127.0.0.1:7700")
        return name

    def fresh_kb() -> str:
        return platform.knowledge.create(a, KnowledgeBaseSpec(f"kb-{next(made)}")).id

    def fresh_doc() -> tuple[str, str]:
        kb = fresh_kb()
        return kb, platform.knowledge.upload(a, kb, Upload("a.txt", b"alpha beta."), None).id

    def fresh_app() -> str:
        name = f"app-{next(made)}"
        platform.apps.create(a, AppSpec(name, AppSettings("smollm2-135m-instruct", "Be brief.")))
        return name

    with TestClient(app) as client:
        yield World(
            client,
            platform,
            keys,
            fresh_job,
            fresh_key,
            fresh_deployment,
            fresh_external,
            fresh_dataset,
            fresh_transfer,
            fresh_agent,
            fresh_kb,
            fresh_doc,
            fresh_app,
        )
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


AUTHED_401 = {"anon": 401, "revoked": 401, "expired": 401}


def row(
    op: int, a_admin: int, a_member: int, a_ro: int, b_admin: int, b_member: int
) -> dict[str, int]:
    return {
        "op": op,
        "a_admin": a_admin,
        "a_member": a_member,
        "a_ro": a_ro,
        "b_admin": b_admin,
        "b_member": b_member,
    } | AUTHED_401


EVERYONE_200 = row(200, 200, 200, 200, 200, 200)
OPERATOR_ONLY = row(200, 403, 403, 403, 403, 403)
A_OBJECT_READ = row(200, 200, 200, 200, 404, 404)
PUBLIC = dict.fromkeys(PRINCIPALS, 200)
APP_CHANGE = row(404, 200, 403, 403, 404, 403)

# (method, route template) -> (path maker, body, expected status per principal)
MATRIX: dict[tuple[str, str], tuple[Callable[[World], str], Any, dict[str, int]]] = {
    ("GET", "/healthz"): (lambda w: "/healthz", None, PUBLIC),
    ("GET", "/metrics"): (lambda w: "/metrics", None, PUBLIC),
    ("GET", "/api/v1/whoami"): (lambda w: "/api/v1/whoami", None, EVERYONE_200),
    ("GET", "/api/v1/fleet"): (lambda w: "/api/v1/fleet", None, EVERYONE_200),
    ("GET", "/api/v1/fleet/totals"): (lambda w: "/api/v1/fleet/totals", None, EVERYONE_200),
    ("GET", "/api/v1/fleet/nodes"): (lambda w: "/api/v1/fleet/nodes", None, EVERYONE_200),
    ("GET", "/api/v1/clusters"): (lambda w: "/api/v1/clusters", None, EVERYONE_200),
    ("GET", "/api/v1/chips"): (lambda w: "/api/v1/chips", None, EVERYONE_200),
    ("GET", "/api/v1/priority-classes"): (
        lambda w: "/api/v1/priority-classes",
        None,
        EVERYONE_200,
    ),
    ("POST", "/api/v1/fleet/apply"): (lambda w: "/api/v1/fleet/apply", FLEET, OPERATOR_ONLY),
    ("POST", "/api/v1/demo/load"): (lambda w: "/api/v1/demo/load", None, OPERATOR_ONLY),
    # the operator's views (services/oversight.py): every tenant's numbers
    ("GET", "/api/v1/fleet/utilisation"): (
        lambda w: "/api/v1/fleet/utilisation",
        None,
        OPERATOR_ONLY,
    ),
    ("GET", "/api/v1/queues"): (lambda w: "/api/v1/queues", None, OPERATOR_ONLY),
    ("GET", "/api/v1/wan"): (lambda w: "/api/v1/wan", None, OPERATOR_ONLY),
    ("GET", "/api/v1/revenue"): (lambda w: "/api/v1/revenue", None, OPERATOR_ONLY),
    ("POST", "/api/v1/tenants"): (
        lambda w: "/api/v1/tenants",
        "NEW_TENANT",
        row(201, 403, 403, 403, 403, 403),
    ),
    ("GET", "/api/v1/tenants"): (lambda w: "/api/v1/tenants", None, EVERYONE_200),
    ("GET", "/api/v1/tenants/{name}"): (lambda w: "/api/v1/tenants/aaa", None, A_OBJECT_READ),
    ("PUT", "/api/v1/tenants/{name}/quota"): (
        lambda w: "/api/v1/tenants/aaa/quota",
        {"quota": {"cpu": 1}},
        OPERATOR_ONLY,
    ),
    ("POST", "/api/v1/keys"): (
        lambda w: "/api/v1/keys",
        {"tenant": "aaa", "scope": "read-only"},
        row(201, 201, 403, 403, 404, 403),
    ),
    ("GET", "/api/v1/keys"): (lambda w: "/api/v1/keys", None, row(200, 200, 403, 403, 200, 403)),
    ("DELETE", "/api/v1/keys/{key_id}"): (
        lambda w: f"/api/v1/keys/{w.fresh_key()}",
        None,
        row(200, 200, 403, 403, 404, 403),
    ),
    ("GET", "/api/v1/tenants/{name}/limits"): (
        lambda w: "/api/v1/tenants/aaa/limits",
        None,
        A_OBJECT_READ,
    ),
    ("PUT", "/api/v1/tenants/{name}/limits"): (
        lambda w: "/api/v1/tenants/aaa/limits",
        {"rpm": 100, "token_quota": 10000},
        OPERATOR_ONLY,
    ),
    ("GET", "/api/v1/keys/{key_id}/limits"): (
        lambda w: f"/api/v1/keys/{w.fresh_key()}/limits",
        None,
        row(200, 200, 403, 403, 404, 403),
    ),
    ("PUT", "/api/v1/keys/{key_id}/limits"): (
        lambda w: f"/api/v1/keys/{w.fresh_key()}/limits",
        {"rpm": 10, "models": ["smollm2-135m-instruct"]},
        row(200, 200, 403, 403, 404, 403),
    ),
    ("GET", "/api/v1/usage"): (lambda w: "/api/v1/usage", None, EVERYONE_200),
    ("GET", "/api/v1/tenants/{name}/usage"): (
        lambda w: "/api/v1/tenants/aaa/usage",
        None,
        A_OBJECT_READ,
    ),
    ("GET", "/api/v1/tenants/{name}/bills/{period}"): (
        lambda w: "/api/v1/tenants/aaa/bills/2026-11",
        None,
        A_OBJECT_READ,
    ),
    ("GET", "/api/v1/tenants/{name}/usage/daily"): (
        lambda w: "/api/v1/tenants/aaa/usage/daily?period=2026-11",
        None,
        A_OBJECT_READ,
    ),
    ("GET", "/api/v1/tenants/{name}/quota-use"): (
        lambda w: "/api/v1/tenants/aaa/quota-use",
        None,
        A_OBJECT_READ,
    ),
    ("PUT", "/api/v1/tenants/{name}/tier"): (
        lambda w: "/api/v1/tenants/aaa/tier",
        {"tier": "edu"},
        OPERATOR_ONLY,
    ),
    ("POST", "/api/v1/jobs"): (
        lambda w: "/api/v1/jobs",
        SIM_JOB,
        row(422, 201, 201, 403, 201, 201),
    ),
    ("GET", "/api/v1/jobs"): (lambda w: "/api/v1/jobs", None, EVERYONE_200),
    ("GET", "/api/v1/jobs/{job_id}"): (
        lambda w: f"/api/v1/jobs/{w.fresh_job()}",
        None,
        A_OBJECT_READ,
    ),
    ("GET", "/api/v1/jobs/{job_id}/logs"): (
        lambda w: f"/api/v1/jobs/{w.fresh_job()}/logs",
        None,
        A_OBJECT_READ,
    ),
    ("POST", "/api/v1/jobs/{job_id}/cancel"): (
        lambda w: f"/api/v1/jobs/{w.fresh_job()}/cancel",
        None,
        row(200, 200, 200, 403, 404, 404),
    ),
    # models as a service: tenant A's private deployment; public ones are the operator's
    ("GET", "/api/v1/models"): (lambda w: "/api/v1/models", None, EVERYONE_200),
    ("GET", "/api/v1/models/{name}"): (
        lambda w: "/api/v1/models/smollm2-135m-instruct",
        None,
        EVERYONE_200,
    ),
    ("POST", "/api/v1/deployments"): (
        lambda w: "/api/v1/deployments",
        {"model": "qwen2.5-72b-instruct", "cluster": "sim", "replicas": 0},
        row(201, 201, 403, 403, 201, 403),
    ),
    ("GET", "/api/v1/deployments"): (lambda w: "/api/v1/deployments", None, EVERYONE_200),
    ("GET", "/api/v1/deployments/{deployment_id}"): (
        lambda w: f"/api/v1/deployments/{w.fresh_deployment()}",
        None,
        A_OBJECT_READ,
    ),
    ("PUT", "/api/v1/deployments/{deployment_id}/replicas"): (
        lambda w: f"/api/v1/deployments/{w.fresh_deployment()}/replicas",
        {"replicas": 0},
        row(200, 200, 403, 403, 404, 403),
    ),
    ("PUT", "/api/v1/deployments/{deployment_id}/autoscale"): (
        lambda w: f"/api/v1/deployments/{w.fresh_deployment()}/autoscale",
        {"min_replicas": 0, "max_replicas": 1, "target": {"inflight_per_replica": 4}},
        row(200, 200, 403, 403, 404, 403),
    ),
    ("DELETE", "/api/v1/deployments/{deployment_id}/autoscale"): (
        lambda w: f"/api/v1/deployments/{w.fresh_deployment()}/autoscale",
        None,
        row(200, 200, 403, 403, 404, 403),
    ),
    ("DELETE", "/api/v1/deployments/{deployment_id}"): (
        lambda w: f"/api/v1/deployments/{w.fresh_deployment()}",
        None,
        row(200, 200, 403, 403, 404, 403),
    ),
    # external endpoints (tenant A's private one): only the operator names upstream URLs
    ("POST", "/api/v1/external-endpoints"): (
        lambda w: "/api/v1/external-endpoints",
        {"model": EXTERNAL_MODEL, "base_url": EXTERNAL_URL, "credential": "sk-x", "tenant": "aaa"},
        row(201, 403, 403, 403, 403, 403),
    ),
    ("GET", "/api/v1/external-endpoints"): (
        lambda w: "/api/v1/external-endpoints",
        None,
        OPERATOR_ONLY,
    ),
    ("GET", "/api/v1/external-endpoints/{deployment_id}"): (
        lambda w: f"/api/v1/external-endpoints/{w.fresh_external()}",
        None,
        OPERATOR_ONLY,
    ),
    ("PATCH", "/api/v1/external-endpoints/{deployment_id}"): (
        lambda w: f"/api/v1/external-endpoints/{w.fresh_external()}",
        {"base_url": "https://93.184.216.35/v1", "credential": "sk-y"},
        OPERATOR_ONLY,
    ),
    ("DELETE", "/api/v1/external-endpoints/{deployment_id}"): (
        lambda w: f"/api/v1/external-endpoints/{w.fresh_external()}",
        None,
        OPERATOR_ONLY,
    ),
    # datasets (tenant A's): members write, read-only keys read, other tenants see nothing
    ("POST", "/api/v1/datasets"): (
        lambda w: "/api/v1/datasets",
        "NEW_DATASET",
        row(422, 201, 201, 403, 201, 201),
    ),
    ("GET", "/api/v1/datasets"): (lambda w: "/api/v1/datasets", None, EVERYONE_200),
    ("GET", "/api/v1/datasets/{dataset}"): (
        lambda w: f"/api/v1/datasets/{w.fresh_dataset(True)}",
        None,
        A_OBJECT_READ,
    ),
    ("PUT", "/api/v1/datasets/{dataset}/files"): (
        lambda w: f"/api/v1/datasets/{w.fresh_dataset(False)}/files?path=b/c.txt",
        "some bytes",
        row(201, 201, 201, 403, 404, 404),
    ),
    ("POST", "/api/v1/datasets/{dataset}/seal"): (
        lambda w: f"/api/v1/datasets/{w.fresh_dataset(False)}/seal",
        None,
        row(200, 200, 200, 403, 404, 404),
    ),
    ("DELETE", "/api/v1/datasets/{dataset}"): (
        lambda w: f"/api/v1/datasets/{w.fresh_dataset(True)}",
        None,
        row(200, 200, 200, 403, 404, 404),
    ),
    ("POST", "/api/v1/datasets/{dataset}/copy"): (
        lambda w: f"/api/v1/datasets/{w.fresh_dataset(True)}/copy",
        {"region": "r1"},  # where it is already: 409 once past authorization
        row(409, 409, 409, 403, 404, 404),
    ),
    ("GET", "/api/v1/datasets/{dataset}/transfers"): (
        lambda w: f"/api/v1/datasets/{w.fresh_dataset(True)}/transfers",
        None,
        A_OBJECT_READ,
    ),
    ("GET", "/api/v1/transfers/{transfer_id}"): (
        lambda w: f"/api/v1/transfers/{w.fresh_transfer()}",
        None,
        A_OBJECT_READ,
    ),
    ("POST", "/api/v1/agents"): (
        lambda w: "/api/v1/agents",
        "NEW_AGENT",
        row(201, 403, 403, 403, 403, 403),
    ),
    ("GET", "/api/v1/agents"): (lambda w: "/api/v1/agents", None, OPERATOR_ONLY),
    ("POST", "/api/v1/agents/{name}/rotate"): (
        lambda w: f"/api/v1/agents/{w.fresh_agent()}/rotate",
        None,
        OPERATOR_ONLY,
    ),
    # no key needed, but a renewal must prove the agent's current certificate: nobody's does
    ("POST", "/api/v1/agents/{name}/renew"): (
        lambda w: "/api/v1/agents/agent-x/renew",
        {
            "name": "agent-x",
            "cert_pem": "forged",
            "public_key_pem": "forged",
            "at": 0,
            "signature": "AAAA",
        },
        dict.fromkeys(PRINCIPALS, 403),
    ),
    ("GET", "/api/v1/tenants/{name}/storage"): (
        lambda w: "/api/v1/tenants/aaa/storage",
        None,
        A_OBJECT_READ,
    ),
    ("PUT", "/api/v1/tenants/{name}/storage"): (
        lambda w: "/api/v1/tenants/aaa/storage",
        {"bytes": 10_000_000},
        OPERATOR_ONLY,
    ),
    # the audit log: the operator reads it all, a tenant admin its own tenant's entries
    ("GET", "/api/v1/audit"): (lambda w: "/api/v1/audit", None, row(200, 200, 403, 403, 200, 403)),
    # knowledge bases (tenant A's): tenant-owned, the operator has no tenant to create one in
    ("POST", "/api/v1/knowledge-bases"): (
        lambda w: "/api/v1/knowledge-bases",
        "NEW_KB",
        row(422, 201, 403, 403, 201, 403),
    ),
    ("GET", "/api/v1/knowledge-bases"): (lambda w: "/api/v1/knowledge-bases", None, EVERYONE_200),
    ("GET", "/api/v1/knowledge-bases/{kb_id}"): (
        lambda w: f"/api/v1/knowledge-bases/{w.fresh_kb()}",
        None,
        A_OBJECT_READ,
    ),
    ("DELETE", "/api/v1/knowledge-bases/{kb_id}"): (
        lambda w: f"/api/v1/knowledge-bases/{w.fresh_kb()}",
        None,
        row(200, 200, 403, 403, 404, 403),
    ),
    ("POST", "/api/v1/knowledge-bases/{kb_id}/documents"): (
        lambda w: f"/api/v1/knowledge-bases/{w.fresh_kb()}/documents",
        "UPLOAD",
        row(201, 201, 201, 403, 404, 404),
    ),
    ("GET", "/api/v1/knowledge-bases/{kb_id}/documents"): (
        lambda w: f"/api/v1/knowledge-bases/{w.fresh_kb()}/documents",
        None,
        A_OBJECT_READ,
    ),
    ("DELETE", "/api/v1/knowledge-bases/{kb_id}/documents/{doc_id}"): (
        lambda w: "/api/v1/knowledge-bases/{}/documents/{}".format(*w.fresh_doc()),
        None,
        row(200, 200, 200, 403, 404, 404),
    ),
    ("POST", "/api/v1/knowledge-bases/{kb_id}/retrieve"): (
        lambda w: f"/api/v1/knowledge-bases/{w.fresh_kb()}/retrieve",
        {"query": "alpha", "mode": "keyword"},
        A_OBJECT_READ,
    ),
    # apps (tenant A's): addressed by name in the caller's tenant; the operator has none
    ("POST", "/api/v1/apps"): (
        lambda w: "/api/v1/apps",
        "NEW_APP",
        row(422, 201, 403, 403, 201, 403),
    ),
    ("GET", "/api/v1/apps"): (lambda w: "/api/v1/apps", None, EVERYONE_200),
    ("GET", "/api/v1/apps/{name}"): (
        lambda w: f"/api/v1/apps/{w.fresh_app()}",
        None,
        row(404, 200, 200, 200, 404, 404),
    ),
    ("PATCH", "/api/v1/apps/{name}"): (
        lambda w: f"/api/v1/apps/{w.fresh_app()}",
        {"system_prompt": "Be briefer."},
        APP_CHANGE,
    ),
    ("DELETE", "/api/v1/apps/{name}"): (
        lambda w: f"/api/v1/apps/{w.fresh_app()}",
        None,
        APP_CHANGE,
    ),
    ("GET", "/api/v1/apps/{name}/versions"): (
        lambda w: f"/api/v1/apps/{w.fresh_app()}/versions",
        None,
        row(404, 200, 200, 200, 404, 404),
    ),
    ("POST", "/api/v1/apps/{name}/publish"): (
        lambda w: f"/api/v1/apps/{w.fresh_app()}/publish",
        {"version": 1},
        APP_CHANGE,
    ),
    ("PUT", "/api/v1/apps/{name}/sharing"): (
        lambda w: f"/api/v1/apps/{w.fresh_app()}/sharing",
        {"key_ids": []},
        APP_CHANGE,
    ),
}


def app_routes(world: World) -> set[tuple[str, str]]:
    paths = world.client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return {(m.upper(), p) for p, ops in paths.items() for m in ops}


def test_matrix_covers_every_route(world: World) -> None:
    missing = app_routes(world) - set(MATRIX)
    assert not missing, f"routes without an authorization-matrix row: {sorted(missing)}"


def call(world: World, principal: str, method: str, path: str, body: Any, n: int) -> Any:
    headers = {} if principal == "anon" else {"Authorization": f"Bearer {world.keys[principal]}"}
    if body == "NEW_TENANT":
        body = {"name": f"t-{principal.replace('_', '-')}-{n}"}
    if body == "NEW_AGENT":
        body = {"name": f"ag-{principal.replace('_', '-')}-{n}", "region": "r1",
                "address": "127.0.0.1:7701"}  # fmt: skip
    if body == "NEW_DATASET":
        body = {"name": f"d-{principal.replace('_', '-')}-{n}", "format": "jsonl", "region": "r1"}
    if body == "NEW_KB":
        body = {"name": f"kb-{principal.replace('_', '-')}-{n}"}
    if body == "NEW_APP":
        body = {"name": f"app-{principal.replace('_', '-')}-{n}",
                "model": "smollm2-135m-instruct", "system_prompt": "Be brief."}  # fmt: skip
    if body == "UPLOAD":
        files = {"file": ("doc.txt", b"some text.")}
        return world.client.request(method, path, headers=headers, files=files)
    if isinstance(body, str):
        return world.client.request(method, path, headers=headers, content=body)
    return world.client.request(method, path, headers=headers, json=body)


def test_every_route_for_every_principal(world: World) -> None:
    failures = []
    n = 0
    for (method, template), (make_path, body, expected) in MATRIX.items():
        for principal in PRINCIPALS:
            n += 1
            response = call(world, principal, method, make_path(world), body, n)
            if response.status_code != expected[principal]:
                failures.append(
                    f"{principal} {method} {template}: {response.status_code} != {expected[principal]}"
                )
    assert not failures, "\n".join(failures)


def test_not_yours_and_missing_are_indistinguishable(world: World) -> None:
    job = world.fresh_job()
    b = {"Authorization": f"Bearer {world.keys['b_admin']}"}
    theirs = world.client.get(f"/api/v1/jobs/{job}", headers=b)
    missing = world.client.get("/api/v1/jobs/job-000000000000", headers=b)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["title"] == missing.json()["title"]


def test_lists_never_show_foreign_objects(world: World) -> None:
    job = world.fresh_job()
    b = {"Authorization": f"Bearer {world.keys['b_admin']}"}
    assert job not in world.client.get("/api/v1/jobs", headers=b).text
    assert [t["name"] for t in world.client.get("/api/v1/tenants", headers=b).json()] == ["bbb"]
    assert all(k["tenant"] == "bbb" for k in world.client.get("/api/v1/keys", headers=b).json())
    assert world.client.get("/api/v1/keys?tenant=aaa", headers=b).status_code == 404
    assert world.client.get("/api/v1/usage?tenant=aaa", headers=b).status_code == 404
    usage = world.client.get("/api/v1/usage", headers=b).json()["totals"]
    assert all(t["tenant"] == "bbb" for t in usage)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"tenant": "aaa", "scope": "operator"}, 403),
        ({"scope": "operator"}, 403),
        ({"tenant": "bbb", "scope": "read-only"}, 404),
        ({"tenant": "aaa", "scope": "tenant-admin"}, 201),
    ],
)
def test_no_privilege_escalation_through_keys(
    world: World, body: dict[str, str], status: int
) -> None:
    a = {"Authorization": f"Bearer {world.keys['a_admin']}"}
    assert world.client.post("/api/v1/keys", headers=a, json=body).status_code == status


@pytest.mark.parametrize(
    "header",
    [
        "Bearer ' OR '1'='1",
        "Bearer sw_AAAAAAAA_" + "A" * 43,
        "Basic abc",
        "Bearer " + "x" * 10_000,
        "Bearer sw_AAAAAAAA_" + "'; DROP TABLE api_keys; --".ljust(43, "A"),
    ],
)
def test_hostile_authorization_headers_get_401(world: World, header: str) -> None:
    response = world.client.get("/api/v1/jobs", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
