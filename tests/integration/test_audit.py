"""The audit log: every mutating route leaves exactly one entry, tenants read only their own.

The route table below is data, like the isolation matrix: one row per mutating route with
who calls it, with what, and which entry it must leave. ``test_every_mutating_route_has_a_row``
fails when the app gains a POST/PUT/PATCH/DELETE route without a row, so a new change
cannot slip past the log.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from suanwang.adapters.db.audit_repo import AuditRepository
from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.audit import AuditAction, AuditEntry, AuditQuery
from suanwang.domain.jobs import JobSpec, Resources
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform
from suanwang.services.tenancy import Tenancy

FLEET = "regions: [{name: r1}]\nclusters: [{name: sim, region: r1, kind: simulated, nodes: [{name: n1, chip: ascend-910b, cards: 8}]}]\n"
FLEET_CHANGED = FLEET.replace("8}]", "8}, {name: n2, chip: ascend-910b, cards: 8}]")
SIM_JOB = {
    "name": "t",
    "resources": {"chip": "ascend-910b"},
    "simulate": {"duration_s": 60},
    "env": {"HF_TOKEN": "hf_verysecretvalue"},
}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Caller:
    secret: str
    principal: Principal


@dataclass
class World:
    client: TestClient
    platform: Platform
    callers: dict[str, Caller]

    def headers(self, who: str, request_id: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.callers[who].secret}"}
        return headers | ({"X-Request-Id": request_id} if request_id else {})

    def entries(self, **filters: Any) -> list[AuditEntry]:
        if "action" in filters:
            filters["action"] = AuditAction(filters["action"])
        with self.platform.uows() as uow:
            return uow.audit.entries(AuditQuery(limit=500, **filters))

    def fresh_job(self) -> str:
        spec = JobSpec(
            name="t", command=(), resources=Resources(chip="ascend-910b"), simulate_duration_s=60
        )
        return self.platform.jobs.submit(self.callers["a_member"].principal, spec, None).job.id

    def fresh_key(self) -> str:
        return self.platform.tenancy.create_key(
            self.callers["op"].principal,
            tenant="aaa",
            scope=Scope.READ_ONLY,
            name="",
            expires_in_s=None,
        ).record.id

    def fresh_deployment(self) -> str:
        a = self.callers["a_admin"].principal
        return self.platform.deployments.deploy(a, "qwen2.5-72b-instruct", "sim", 0).deployment.id


@pytest.fixture
def world(settings: Settings, clock: Any) -> Iterator[World]:
    app = build_app(settings, control=False, clock=clock)
    platform: Platform = app.state.platform
    platform.fleet.apply_yaml(FLEET)
    for tenant in ("aaa", "bbb"):
        platform.tenancy.create_tenant(tenant, tenant, {})
    op_key = platform.tenancy.bootstrap_operator_key()
    callers = {"op": Caller(op_key.secret, platform.tenancy.authenticate(op_key.secret))}
    for name, tenant, scope in (
        ("a_admin", "aaa", Scope.TENANT_ADMIN),
        ("a_member", "aaa", Scope.TENANT_MEMBER),
        ("a_ro", "aaa", Scope.READ_ONLY),
        ("b_admin", "bbb", Scope.TENANT_ADMIN),
        ("b_member", "bbb", Scope.TENANT_MEMBER),
    ):
        new = platform.tenancy.create_key(
            callers["op"].principal, tenant=tenant, scope=scope, name=name, expires_in_s=None
        )
        callers[name] = Caller(new.secret, platform.tenancy.authenticate(new.secret))
    with TestClient(app) as client:
        yield World(client, platform, callers)
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Row:
    """One mutating route: who calls it, the path and body, and the entries it must leave."""

    who: str
    path: Callable[[World], str]
    body: Any
    actions: tuple[str, ...]
    resource_id: Callable[[str, dict[str, Any]], str | None]
    """The changed object's id, from the path called and the response body."""
    tenant: str | None


def last_segment(path: str, _body: dict[str, Any]) -> str:
    return path.split("/")[4]


ROUTES: dict[tuple[str, str], Row] = {
    ("POST", "/api/v1/fleet/apply"): Row(
        "op", lambda w: "/api/v1/fleet/apply", FLEET_CHANGED, ("fleet.apply",),
        lambda p, b: None, None,
    ),
    ("POST", "/api/v1/demo/load"): Row(
        "op", lambda w: "/api/v1/demo/load", None, ("fleet.apply", "tenant.create"),
        lambda p, b: None, None,
    ),
    ("POST", "/api/v1/tenants"): Row(
        "op", lambda w: "/api/v1/tenants", {"name": "ccc", "quota": {"cpu": 2}},
        ("tenant.create",), lambda p, b: "ccc", "ccc",
    ),
    ("PUT", "/api/v1/tenants/{name}/quota"): Row(
        "op", lambda w: "/api/v1/tenants/aaa/quota", {"quota": {"cpu": 1}}, ("quota.update",),
        last_segment, "aaa",
    ),
    ("PUT", "/api/v1/tenants/{name}/limits"): Row(
        "op", lambda w: "/api/v1/tenants/aaa/limits", {"rpm": 100}, ("tenant-limits.update",),
        last_segment, "aaa",
    ),
    ("PUT", "/api/v1/tenants/{name}/tier"): Row(
        "op", lambda w: "/api/v1/tenants/aaa/tier", {"tier": "edu"}, ("tier.update",),
        last_segment, "aaa",
    ),
    ("POST", "/api/v1/keys"): Row(
        "a_admin", lambda w: "/api/v1/keys", {"scope": "read-only"}, ("key.create",),
        lambda p, b: b["id"], "aaa",
    ),
    ("DELETE", "/api/v1/keys/{key_id}"): Row(
        "a_admin", lambda w: f"/api/v1/keys/{w.fresh_key()}", None, ("key.revoke",),
        last_segment, "aaa",
    ),
    ("PUT", "/api/v1/keys/{key_id}/limits"): Row(
        "a_admin", lambda w: f"/api/v1/keys/{w.fresh_key()}/limits", {"rpm": 10},
        ("key-limits.update",), last_segment, "aaa",
    ),
    ("POST", "/api/v1/jobs"): Row(
        "a_member", lambda w: "/api/v1/jobs", SIM_JOB, ("job.submit",),
        lambda p, b: b["id"], "aaa",
    ),
    ("POST", "/api/v1/jobs/{job_id}/cancel"): Row(
        "op", lambda w: f"/api/v1/jobs/{w.fresh_job()}/cancel", None, ("job.cancel",),
        last_segment, "aaa",
    ),
    ("POST", "/api/v1/deployments"): Row(
        "a_admin", lambda w: "/api/v1/deployments",
        {"model": "qwen2.5-72b-instruct", "cluster": "sim", "replicas": 0},
        ("deployment.create",), lambda p, b: b["id"], "aaa",
    ),
    ("PUT", "/api/v1/deployments/{deployment_id}/replicas"): Row(
        "a_admin", lambda w: f"/api/v1/deployments/{w.fresh_deployment()}/replicas",
        {"replicas": 1}, ("deployment.scale",), last_segment, "aaa",
    ),
    ("DELETE", "/api/v1/deployments/{deployment_id}"): Row(
        "a_admin", lambda w: f"/api/v1/deployments/{w.fresh_deployment()}", None,
        ("deployment.delete",), last_segment, "aaa",
    ),
}  # fmt: skip


def mutating_routes(world: World) -> set[tuple[str, str]]:
    """Every POST/PUT/PATCH/DELETE route of the app, in the OpenAPI document or not."""
    routes = world.client.app.routes  # type: ignore[attr-defined]
    return {
        (m, r.path_format)
        for r in routes
        if isinstance(r, APIRoute)
        for m in r.methods
        if m in MUTATING
    }


def call(world: World, who: str, method: str, path: str, body: Any, request_id: str) -> Any:
    headers = world.headers(who, request_id)
    if isinstance(body, str):
        return world.client.request(method, path, headers=headers, content=body)
    return world.client.request(method, path, headers=headers, json=body)


def test_every_mutating_route_has_a_row(world: World) -> None:
    missing = mutating_routes(world) - set(ROUTES)
    assert not missing, f"mutating routes the audit table does not cover: {sorted(missing)}"


def test_every_mutating_route_records_exactly_its_entries(world: World) -> None:
    failures = []
    for n, ((method, template), row) in enumerate(ROUTES.items()):
        path = row.path(world)  # may itself change things (a fresh job): count after it
        last = max((e.id or 0 for e in world.entries()), default=0)
        request_id = f"req-{n}"
        response = call(world, row.who, method, path, row.body, request_id)
        if response.status_code >= 300:
            failures.append(f"{method} {template}: {response.status_code} {response.text}")
            continue
        assert response.headers["X-Request-Id"] == request_id
        new = sorted((e for e in world.entries() if (e.id or 0) > last), key=lambda e: e.id or 0)
        got = tuple(e.action.value for e in new)
        if got != row.actions:
            failures.append(f"{method} {template}: entries {got} != {row.actions}")
            continue
        caller = world.callers[row.who].principal
        first = new[0]
        expected = (caller.key_id, request_id, row.resource_id(path, response.json()), row.tenant)
        actual = (first.actor.key_id, first.request_id, first.resource_id, first.tenant)
        if actual != expected:
            failures.append(f"{method} {template}: (actor, request, resource, tenant) {actual}")
    assert not failures, "\n".join(failures)


def test_entry_names_the_actor_by_key_id_prefix_scope_and_tenant(world: World) -> None:
    world.client.post("/api/v1/keys", headers=world.headers("a_admin"), json={"scope": "read-only"})
    (entry,) = world.entries(action="key.create", actor=world.callers["a_admin"].principal.key_id)
    a_admin = world.callers["a_admin"]
    assert entry.actor.key_prefix == a_admin.secret[:11]
    assert (entry.actor.scope, entry.actor.tenant) == (Scope.TENANT_ADMIN, "aaa")


def test_before_and_after_values(world: World) -> None:
    headers = world.headers("op")
    world.client.put("/api/v1/tenants/aaa/quota", headers=headers, json={"quota": {"cpu": 3}})
    (entry,) = world.entries(action="quota.update")
    assert entry.before is not None
    assert entry.after is not None
    assert entry.before["quota"] == {}
    assert entry.after["quota"] == {
        "cpu": {"nominal": 3, "borrowing_limit": 0, "lending_limit": None}
    }
    world.client.put("/api/v1/tenants/aaa/tier", headers=headers, json={"tier": "edu"})
    (tier,) = world.entries(action="tier.update")
    assert (tier.before, tier.after) == ({"tier": "standard"}, {"tier": "edu"})


def test_no_key_and_no_key_hash_and_no_env_value_reach_the_log(world: World) -> None:
    created = world.client.post(
        "/api/v1/keys", headers=world.headers("a_admin"), json={"scope": "read-only"}
    ).json()
    world.client.post("/api/v1/jobs", headers=world.headers("a_member"), json=SIM_JOB)
    with world.platform.uows() as uow:
        stored = uow.tenancy.key(created["id"])
    assert stored is not None
    log = json.dumps([[e.before, e.after] for e in world.entries()])
    for caller in world.callers.values():
        assert caller.secret not in log
    assert created["key"] not in log
    assert stored.secret_hash not in log
    assert "hf_verysecretvalue" not in log
    (job,) = world.entries(action="job.submit")
    assert job.after is not None
    assert job.after["spec"]["env"] == {"HF_TOKEN": "***"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/v1/tenants", {"name": "Bad Name!"}, 422),
        ("POST", "/api/v1/tenants", {"name": "aaa"}, 409),
        ("PUT", "/api/v1/tenants/aaa/quota", {"quota": {"no-such-chip": 1}}, 422),
        ("PUT", "/api/v1/tenants/zzz/quota", {"quota": {}}, 404),
        ("POST", "/api/v1/keys", {"tenant": "bbb", "scope": "read-only"}, 201),
        ("POST", "/api/v1/fleet/apply", "regions: [{name: }]", 422),
        ("POST", "/api/v1/deployments", {"model": "nope", "cluster": "sim"}, 404),
    ],
)
def test_a_failed_change_records_nothing(
    world: World, method: str, path: str, body: Any, status: int
) -> None:
    before = len(world.entries())
    response = call(world, "op", method, path, body, "failing")
    assert response.status_code == status
    assert len(world.entries()) == before + (1 if status < 300 else 0)


class CommitFails:
    """A unit of work over the real database whose commit fails (a full disk, say)."""

    def __init__(self, uow: Any) -> None:
        self._uow = uow

    def __enter__(self) -> CommitFails:
        self._uow.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._uow.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._uow, name)

    def commit(self) -> None:
        raise RuntimeError("disk full")


def test_an_entry_rolls_back_with_its_change(world: World) -> None:
    """The entry is written in the change's own transaction: a commit that fails loses both."""
    platform = world.platform
    tenancy = Tenancy(lambda: CommitFails(platform.uows()), platform.clock, platform.catalogue)
    with pytest.raises(RuntimeError, match="disk full"):
        tenancy.create_tenant("ddd", "ddd", {})
    assert world.entries(resource_id="ddd") == []
    with platform.uows() as uow:
        assert uow.tenancy.tenant("ddd") is None


def test_tenant_admin_reads_only_its_own_tenant(world: World) -> None:
    for who in ("a_admin", "b_admin"):
        world.client.post("/api/v1/keys", headers=world.headers(who), json={"scope": "read-only"})
    world.client.post("/api/v1/jobs", headers=world.headers("a_member"), json=SIM_JOB)
    world.client.put(
        "/api/v1/tenants/bbb/quota", headers=world.headers("op"), json={"quota": {"cpu": 1}}
    )

    def read(who: str, **params: Any) -> Any:
        return world.client.get("/api/v1/audit", headers=world.headers(who), params=params)

    b_sees = read("b_admin", limit=500).json()["entries"]
    assert b_sees
    assert {e["tenant"] for e in b_sees} == {"bbb"}
    assert not any('"aaa"' in json.dumps(e) for e in b_sees)  # ids are random hex
    assert read("b_admin", tenant="aaa").status_code == 404
    assert read("b_admin", tenant="bbb").status_code == 200
    a_sees = {e["tenant"] for e in read("a_admin", limit=500).json()["entries"]}
    assert a_sees == {"aaa"}
    op_sees = {e["tenant"] for e in read("op", limit=500).json()["entries"]}
    assert {"aaa", "bbb", None} <= op_sees
    for who in ("a_member", "a_ro", "b_member"):
        assert read(who).status_code == 403
    operator_change = next(e for e in b_sees if e["action"] == "quota.update")
    assert operator_change["actor"] == {
        "key_id": "operator",
        "key_prefix": None,
        "scope": "operator",
        "tenant": None,
    }


def test_pages_chain_without_gaps_or_repeats(world: World) -> None:
    for _ in range(7):
        world.fresh_key()
    everything = [e.id for e in world.entries()]
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = world.client.get("/api/v1/audit", headers=world.headers("op"), params=params)
        assert page.status_code == 200, page.text
        seen += [e["id"] for e in page.json()["entries"]]
        if page.json()["next_cursor"] is None:
            break
        params["cursor"] = page.json()["next_cursor"]
    assert seen == everything == sorted(everything, reverse=True)


def test_filters(world: World, clock: Any) -> None:
    clock.advance(100)
    mark = clock.now()
    world.fresh_key()
    world.fresh_job()
    op = world.headers("op")

    def ids(**params: Any) -> list[str]:
        page = world.client.get("/api/v1/audit", headers=op, params=params | {"limit": 500})
        assert page.status_code == 200, page.text
        return [e["action"] for e in page.json()["entries"]]

    assert ids(since=mark) == ["job.submit", "key.create"]
    assert "key.create" in ids(until=mark)
    assert "job.submit" not in ids(until=mark)
    assert set(ids(action="job.submit")) == {"job.submit"}
    assert set(ids(resource="tenant")) == {"tenant.create"}
    assert ids(tenant="bbb") == ["key.create", "key.create", "tenant.create"]
    for bad in ({"resource": "spaceship"}, {"action": "key.explode"}, {"cursor": "x"}):
        response = world.client.get("/api/v1/audit", headers=op, params=bad)
        assert response.status_code == 422
        assert response.json()["field"].endswith(next(iter(bad)))


def test_concurrent_changes_lose_no_entry(world: World) -> None:
    op = world.callers["op"].principal
    errors: list[BaseException] = []

    def mint(n: int) -> None:
        try:
            world.platform.tenancy.create_key(
                op, tenant="bbb", scope=Scope.READ_ONLY, name=f"c{n}", expires_in_s=None
            )
            world.platform.tenancy.set_quota("bbb", {"cpu": n}, actor=op)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    before = len(world.entries(tenant="bbb"))
    threads = [threading.Thread(target=mint, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    entries = world.entries(tenant="bbb")
    assert len(entries) == before + 24
    names = {e.after["name"] for e in entries if e.after and e.action == "key.create"}
    assert {f"c{n}" for n in range(12)} <= names


def test_the_log_refuses_update_and_delete(world: World) -> None:
    engine = world.platform.uows.engine  # type: ignore[attr-defined]
    statements = ["UPDATE audit_log SET actor_key_id = 'nobody'", "DELETE FROM audit_log"]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_log")
    count = len(world.entries())
    for statement in statements:
        with engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(statement))
    assert count > 0
    assert len(world.entries()) == count
    assert all(e.actor.key_id != "nobody" for e in world.entries())
    assert {m for m in dir(AuditRepository) if not m.startswith("_")} == {"append", "entries"}
