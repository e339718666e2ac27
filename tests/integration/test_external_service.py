"""External endpoints' use cases on a real database (SQLite and PostgreSQL), with a fake probe
and resolver: health checks make them ready and take them out, what the gateway's directory
hands over, prices on bills, updates and removal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from suanwang.adapters.crypto import FernetBox
from suanwang.adapters.db.deployments_repo import SqlReplicaDirectory
from suanwang.domain.audit import AuditQuery
from suanwang.domain.errors import Conflict, Forbidden, ValidationError
from suanwang.domain.external import HealthCheck
from suanwang.domain.serving import TokenPrice
from suanwang.domain.tenancy import Principal, Scope
from suanwang.ports import ProbeTarget
from suanwang.services.audit import AuditLog
from suanwang.services.external import ExternalEndpoints, ExternalSpec, ExternalUpdate
from suanwang.services.models import default_models
from suanwang.services.platform import Platform

OP = Principal("op", Scope.OPERATOR, None)
DNS = {"models.example.com": ["93.184.216.34"], "inside.example.com": ["10.0.0.5"]}


@dataclass
class FakeProbe:
    healthy: bool = True
    seen: list[ProbeTarget] = field(default_factory=list)

    def reachable(self, targets: list[ProbeTarget]) -> dict[str, bool]:
        self.seen += targets
        return {t.key: self.healthy for t in targets}


def resolve(host: str) -> Sequence[str]:
    if host not in DNS:
        raise OSError("no such host")
    return DNS[host]


@dataclass
class World:
    platform: Platform
    externals: ExternalEndpoints
    probe: FakeProbe
    box: FernetBox
    clock: Any


@pytest.fixture
def world(platform: Platform, clock: Any, tmp_path: Any) -> World:
    probe = FakeProbe()
    box = FernetBox(key_file=tmp_path / "credentials.key")
    externals = ExternalEndpoints(
        platform.uows, clock, box, probe, resolve, default_models(), probe_interval_s=1.0
    )
    return World(platform, externals, probe, box, clock)


def states(world: World, dep: str) -> str:
    replica = world.externals.get(OP, dep).replica
    assert replica is not None
    return replica.state.value


def test_health_checks_make_it_ready_and_take_it_out(world: World) -> None:
    spec = ExternalSpec("partner", "https://models.example.com/v1", credential="sk-live")
    dep = world.externals.register(OP, spec).deployment.id
    directory = SqlReplicaDirectory(world.platform.uows, world.box)
    assert states(world, dep) == "starting"
    assert [v.ready for v in directory.ready_replicas()] == [False]  # deployed, not routable
    world.externals.check_health()
    assert world.probe.seen[-1].url == "https://models.example.com/v1/models"
    assert dict(world.probe.seen[-1].headers) == {"authorization": "Bearer sk-live"}
    assert "sk-live" not in repr(world.probe.seen[-1])
    assert states(world, dep) == "ready"
    (view,) = directory.ready_replicas()
    assert view.ready
    assert view.credential is not None
    assert view.credential.reveal() == "sk-live"
    assert view.engine == "openai-compatible"
    assert view.sealed_credential is None
    for _ in range(3):  # the engines' health checker leaves replicas without a job alone
        world.clock.advance(1.0)
        world.platform.deployments.check_health()
    assert states(world, dep) == "ready"
    world.probe.healthy = False
    for expected in ("ready", "ready", "unhealthy"):  # three misses in a row
        world.clock.advance(1.0)
        world.externals.check_health()
        assert states(world, dep) == expected
    assert not directory.ready_replicas()[0].ready
    world.probe.healthy = True
    world.clock.advance(1.0)
    world.externals.check_health()
    assert states(world, dep) == "ready"


def test_health_endpoint_is_probed_without_the_credential(world: World) -> None:
    spec = ExternalSpec(
        "partner", "https://models.example.com/v1", credential="sk-x", health=HealthCheck.HEALTH
    )
    world.externals.register(OP, spec)
    world.externals.check_health()
    assert world.probe.seen[-1].url == "https://models.example.com/health"
    assert world.probe.seen[-1].headers == ()


def test_names_resolving_to_private_addresses_need_the_exemption(world: World) -> None:
    spec = ExternalSpec("inside", "http://inside.example.com:8000/v1")
    with pytest.raises(ValidationError, match="private"):
        world.externals.register(OP, spec)
    exempt = ExternalSpec("inside", "http://inside.example.com:8000/v1", allow_private_network=True)
    dep = world.externals.register(OP, exempt).deployment.id
    with pytest.raises(ValidationError):  # dropping the exemption re-checks the URL
        world.externals.update(OP, dep, ExternalUpdate(allow_private_network=False))


def test_only_the_operator(world: World) -> None:
    world.platform.tenancy.create_tenant("acme", "acme", {})
    admin = Principal("k", Scope.TENANT_ADMIN, "acme")
    spec = ExternalSpec("partner", "https://models.example.com/v1")
    with pytest.raises(Forbidden):
        world.externals.register(admin, spec)
    dep = world.externals.register(OP, spec).deployment.id
    for attempt in (
        lambda: world.externals.get(admin, dep),
        lambda: world.externals.registered(admin),
        lambda: world.externals.update(admin, dep, ExternalUpdate(base_url="http://10.0.0.1")),
        lambda: world.externals.remove(admin, dep),
    ):
        with pytest.raises(Forbidden):
            attempt()


def test_prices_conflicts_and_bills(world: World) -> None:
    priced = ExternalSpec("partner", "https://models.example.com/v1", price=TokenPrice(5, 7))
    dep = world.externals.register(OP, priced).deployment.id
    with pytest.raises(Conflict):  # a second replica of the model at another price
        world.externals.register(OP, ExternalSpec("partner", "https://models.example.com/v2"))
    with pytest.raises(ValidationError):  # catalogue models keep the catalogue's price
        world.externals.register(
            OP,
            ExternalSpec("smollm2-135m-instruct", "https://models.example.com", price=priced.price),
        )
    assert world.externals.token_prices() == {"partner": TokenPrice(5, 7)}
    world.externals.remove(OP, dep)
    assert world.externals.token_prices() == {"partner": TokenPrice(5, 7)}  # past bills


def test_update_and_remove(world: World) -> None:
    spec = ExternalSpec("partner", "https://models.example.com/v1", credential="sk-1")
    dep = world.externals.register(OP, spec).deployment.id
    world.externals.check_health()
    world.platform.deployments.converge()  # the control loop starts no job for it
    assert states(world, dep) == "ready"
    changed = world.externals.update(
        OP, dep, ExternalUpdate(base_url="https://models.example.com/v2", credential="sk-2")
    )
    assert changed.replica is not None
    assert changed.replica.state.value == "starting"  # the new URL must pass a check first
    assert changed.endpoint.sealed_credential is not None
    assert world.box.open(changed.endpoint.sealed_credential) == "sk-2"
    cleared = world.externals.update(OP, dep, ExternalUpdate(credential=None))
    assert not cleared.endpoint.has_credential
    gone = world.externals.remove(OP, dep)
    assert gone.deployment.state.value == "deleted"
    assert gone.replica is not None
    assert gone.replica.state.value == "stopped"
    assert world.externals.remove(OP, dep).deployment.state.value == "deleted"  # idempotent
    with pytest.raises(Conflict):
        world.externals.update(OP, dep, ExternalUpdate(upstream_model="x"))
    assert world.externals.registered(OP) == []
    assert SqlReplicaDirectory(world.platform.uows, world.box).ready_replicas() == []


def test_register_update_and_remove_are_audited_without_the_credential(world: World) -> None:
    spec = ExternalSpec("partner", "https://models.example.com/v1", credential="sk-secret-1")
    dep = world.externals.register(OP, spec).deployment.id
    world.externals.update(OP, dep, ExternalUpdate(credential="sk-secret-2"))
    world.externals.remove(OP, dep)
    page = AuditLog(world.platform.uows).entries(OP, AuditQuery(resource_id=dep))
    entries = list(reversed(page.entries))
    assert [e.action.value for e in entries] == [
        "deployment.create",
        "deployment.update",
        "deployment.delete",
    ]
    update, delete = entries[1], entries[2]
    assert update.before is not None
    assert update.after is not None
    assert (update.before["has_credential"], update.after["has_credential"]) == (True, True)
    assert delete.after is not None
    assert delete.after["has_credential"] is False
    assert delete.after["state"] == "deleted"
    assert "sk-secret" not in repr(entries)
