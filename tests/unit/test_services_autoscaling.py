"""The autoscaler and the drain on scale-down, through the real Deployments, Autoscaler and
ControlLoop services over in-memory fakes (services/autoscaling.py, services/replicas.py).

Demand comes in as gateway reports (``uow.demand``), as the gateway writes them."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from fakes import FakeBackend, FakeClock, FakeDatabase, seed

from suanwang.domain.autoscaling import AutoscaleSpec, ScalingTarget
from suanwang.domain.demand import ROUTING_MARGIN_S, DemandReport
from suanwang.domain.errors import Conflict
from suanwang.domain.queueing import ServiceModel, replicas_for_slo
from suanwang.domain.serving import ReplicaState
from suanwang.domain.tenancy import Principal, Scope
from suanwang.ports import EnginePlan, LaunchRequest, ReplicaLaunch, RunStatus
from suanwang.services.autoscaling import Autoscaler
from suanwang.services.catalogue import default_catalogue
from suanwang.services.control import ControlLoop
from suanwang.services.deployments import Deployments
from suanwang.services.models import default_models

OP = Principal("op", Scope.OPERATOR, None)
MODEL = "qwen2.5-72b-instruct"  # 4 ascend cards: 2 nodes x 8 cards hold 4 replicas


class PlacingBackend(FakeBackend):
    """Reports the node it was given at one address, as an engine backend does."""

    def submit(self, request: LaunchRequest) -> RunStatus:
        status = super().submit(request)
        handle = {"node": request.placements[0].node, "host": "10.0.0.7"}
        return RunStatus(status.state, handle, started_at=status.started_at)


@dataclass
class Launcher:
    next_port: int = 8100

    def plan(self, launch: ReplicaLaunch) -> EnginePlan:
        return EnginePlan(("engine",), (), "")

    def free_port(self, taken: set[int]) -> int:
        while self.next_port in taken:
            self.next_port += 1
        return self.next_port


@dataclass
class Probe:
    asked: list[str] = field(default_factory=list)

    def healthy(self, base_urls: list[str]) -> dict[str, bool]:
        return dict.fromkeys(base_urls, True)


@dataclass
class Plane:
    db: FakeDatabase
    clock: FakeClock
    deployments: Deployments
    autoscaler: Autoscaler
    loop: ControlLoop
    dep: str = ""

    def step(self, seconds: float = 1.0) -> None:
        """One control tick and health check; then converge sees the answers."""
        self.clock.advance(seconds)
        self.loop.tick()
        self.deployments.converge()
        self.deployments.check_health()

    def report(
        self,
        *,
        inflight: int = 0,
        queued: int = 0,
        per_replica: dict[str, int] | None = None,
        routed_ago: float = 0.0,
        last: float | None = None,
        measured: tuple[float, float, float] | None = None,
    ) -> None:
        """``measured``: requests/s, service time and no-wait first token."""
        now = self.clock.now()
        with self.db() as uow:
            row = DemandReport(
                "gw-1",
                self.dep,
                now,
                inflight,
                queued,
                0.0,
                None,
                now if last is None else last,
                now - routed_ago,
                tuple(sorted((per_replica or {}).items())),
                *(measured or (0.0, None, None)),
            )
            uow.demand.replace("gw-1", [row])
            uow.commit()

    def replicas(self) -> list:  # type: ignore[type-arg]
        return sorted(self.db.tables.replicas.values(), key=lambda r: r.number)

    def states(self) -> list[str]:
        return [r.state.value for r in self.replicas()]

    def wanted(self) -> int:
        return self.db.tables.deployments[self.dep].replicas


def spec(min_r: int = 1, max_r: int = 3, **kw: float) -> AutoscaleSpec:
    times = {"scale_up_cooldown_s": 0.0, "scale_down_cooldown_s": 5.0, "idle_to_zero_s": 20.0}
    return AutoscaleSpec(min_r, max_r, ScalingTarget(inflight_per_replica=2.0), **{**times, **kw})


def plane_with(autoscale: AutoscaleSpec, replicas: int = 1) -> Plane:
    db, clock = FakeDatabase(), FakeClock()
    seed(db)
    catalogue = default_catalogue()
    deployments = Deployments(
        db, clock, catalogue, default_models(), Launcher(), Probe(), probe_interval_s=0.0
    )
    autoscaler = Autoscaler(db, clock)
    loop = ControlLoop(
        db,
        {"fake": PlacingBackend(clock)},
        clock,
        catalogue,
        after_reconcile=(autoscaler.tick, deployments.converge),
    )
    plane = Plane(db, clock, deployments, autoscaler, loop)
    detail = deployments.deploy(OP, MODEL, "here", replicas, tenant="acme", autoscale=autoscale)
    plane.dep = detail.deployment.id
    return plane


@pytest.fixture
def plane() -> Plane:
    return plane_with(spec())


def test_demand_scales_up_and_the_decision_is_audited(plane: Plane) -> None:
    plane.step()
    assert plane.states() == ["ready"]
    plane.report(inflight=5)  # 5 in flight at 2 per replica: 3 replicas
    plane.step()
    assert plane.wanted() == 3
    plane.step()
    assert plane.states() == ["ready", "ready", "ready"]
    entries = [e for e in plane.db.tables.audit if e.actor.key_id == "autoscaler"]
    assert [(e.action.value, e.before, (e.after or {}).get("replicas")) for e in entries] == [
        ("deployment.scale", {"replicas": 1}, 3)
    ]
    assert (entries[0].after or {})["reason"]


def test_scale_down_drains_before_stopping(plane: Plane) -> None:
    plane.report(inflight=4)
    plane.step()
    plane.step()
    assert plane.states() == ["ready", "ready"]
    one = plane.replicas()[1]
    plane.report(inflight=1, per_replica={one.id: 1}, routed_ago=0.0)
    for _ in range(10):  # past the scale-down window
        plane.step()
        plane.report(inflight=1, per_replica={one.id: 1})
        if plane.wanted() == 1:
            break
    assert plane.wanted() == 1
    plane.step()
    assert plane.states() == ["ready", "draining"]
    job = plane.db.tables.jobs[one.job or ""]
    assert not job.cancel_requested  # its request is still being answered
    plane.step()
    plane.report(inflight=0, routed_ago=0.0)  # done, and the gateway reloaded since
    plane.step(ROUTING_MARGIN_S)
    assert plane.states() == ["ready", "stopped"]
    assert "drained" in plane.replicas()[1].reason
    assert plane.db.tables.jobs[one.job or ""].cancel_requested


def test_a_draining_replica_wanted_again_is_routed_again(plane: Plane) -> None:
    plane.report(inflight=4)
    plane.step()
    plane.step()
    two = plane.replicas()[1]
    for _ in range(10):
        plane.report(inflight=1, per_replica={two.id: 1})
        plane.step()
        if plane.replicas()[1].state is ReplicaState.DRAINING:
            break
    assert plane.states() == ["ready", "draining"]
    plane.report(inflight=4, per_replica={two.id: 1})
    plane.step()
    assert plane.states() == ["ready", "ready"]
    assert plane.replicas()[1].job == two.job  # the same engine, never stopped


def test_without_any_gateway_a_scaled_down_replica_stops_at_once() -> None:
    plane = plane_with(spec(min_r=1, max_r=3), replicas=2)
    plane.step()
    assert plane.states() == ["ready", "ready"]
    plane.deployments.set_autoscale(OP, plane.dep, spec(min_r=1, max_r=1))
    assert plane.states() == ["ready", "stopped"]


def test_an_idle_deployment_scales_to_zero_and_a_queued_request_wakes_it() -> None:
    plane = plane_with(spec(min_r=0, max_r=2, idle_to_zero_s=10.0))
    plane.step()
    start = plane.clock.now()
    plane.report(last=start)
    for _ in range(40):
        plane.step()
        plane.report(last=start)
    assert plane.wanted() == 0
    assert plane.states() == ["stopped"]
    assert plane.clock.now() - start >= 10.0
    plane.report(queued=1, last=plane.clock.now())
    plane.step()
    assert plane.wanted() == 1
    plane.step()
    assert plane.states() == ["ready"]


def test_a_manual_scale_of_an_autoscaled_deployment_is_refused_naming_the_field(
    plane: Plane,
) -> None:
    with pytest.raises(Conflict) as caught:
        plane.deployments.scale(OP, plane.dep, 3)
    assert caught.value.field == "replicas"
    fixed = plane.deployments.set_autoscale(OP, plane.dep, None)
    assert fixed.deployment.autoscale is None
    assert plane.deployments.scale(OP, plane.dep, 2).deployment.replicas == 2


def test_an_slo_target_sizes_replicas_from_the_measured_rate_and_service_time() -> None:
    """8 slots a replica (the engine's setting), 2 s an answer, 10 ms to first token: the
    queueing model's fewest replicas keeping 97 % of requests under 0.5 s."""
    target = ScalingTarget(slo_ttft_p95_s=0.5)
    plane = plane_with(AutoscaleSpec(1, 4, target, scale_up_cooldown_s=0.0), replicas=1)
    plane.step()
    plane.report(inflight=3, measured=(1.5, 2.0, 0.01))  # 1.5/s x 2 s = 3 busy of 8 slots
    plane.step()
    assert plane.wanted() == 1
    model = ServiceModel(8, 0.5, 0.01)
    expected = replicas_for_slo(model, 9.0, 0.5, most=4)
    assert expected == 3  # 18 busy slots: 3 replicas (24 slots), not 18 / 8 rounded up
    plane.report(inflight=18, measured=(9.0, 2.0, 0.01))
    plane.step()
    assert plane.wanted() == expected
    reason = plane.db.tables.audit[-1].after or {}
    assert "sized by queueing model" in str(reason.get("reason"))


def test_an_slo_target_without_measurements_follows_the_measured_p95() -> None:
    target = ScalingTarget(slo_ttft_p95_s=0.5)
    plane = plane_with(AutoscaleSpec(1, 4, target, scale_up_cooldown_s=0.0), replicas=1)
    plane.step()
    with plane.db() as uow:  # a gateway of before migration 0013: no rate or service time
        now = plane.clock.now()
        row = DemandReport("gw-1", plane.dep, now, 8, 0, 100.0, 1.0, now, now, ())
        uow.demand.replace("gw-1", [row])
        uow.commit()
    plane.step()
    assert plane.wanted() == 2  # p95 1.0 s against 0.5 s: twice the capacity (rule 3)
