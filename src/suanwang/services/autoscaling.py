"""The autoscaler: each control tick, every autoscaled deployment's replica count from its
live demand, by the pure policy :func:`suanwang.domain.autoscaling.decide`.

Per tick, in one transaction under the scheduler lock (so two control planes never both
decide): read the gateways' fresh demand reports (``model_demand``, summed by
:func:`~suanwang.domain.demand.total_demand`), count the deployment's live replicas with
their capacity weight, ask the policy, store its memory, and when the count changes set the
deployment's wanted replicas (the converge step that runs next creates, drains or stops
replicas) and record the decision in the audit log as ``deployment.scale`` by the
``autoscaler`` with the policy's one-line reason.

Replica weights are 1.0 each (every replica of a deployment runs on its one chip); the
per-chip learner of SLO-aware placement can supply them through ``weight_of``. For the
``slo_ttft_p95_s`` target the policy also gets the replica as the gateways measured it
(:func:`~suanwang.domain.demand.measured_service`: ``slots`` requests at once, the engine's
setting, at the measured service time and no-wait first token).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import structlog

from suanwang.domain.audit import AuditAction
from suanwang.domain.autoscaling import ReplicaCapacity, ScaleDecision, decide
from suanwang.domain.changes import UNCHANGED
from suanwang.domain.demand import STALE_AFTER_S, DemandReport, measured_service, total_demand
from suanwang.domain.deployments import DeploymentChange, DeploymentRecord
from suanwang.domain.serving import ReplicaState
from suanwang.domain.tenancy import Principal, Scope
from suanwang.ports import Clock, UnitOfWork, UnitOfWorkFactory
from suanwang.services import audit

log = structlog.get_logger("suanwang.autoscaler")
AUTOSCALER = Principal("autoscaler", Scope.OPERATOR, None)
"""Who the audit log names for the autoscaler's changes."""
COUNTED = (ReplicaState.PENDING, ReplicaState.STARTING, ReplicaState.READY, ReplicaState.UNHEALTHY)
"""Replicas that count as capacity: placed or being placed, not draining or stopped."""


@dataclass(frozen=True, slots=True)
class Scaled:
    """One change of a deployment's replica count the autoscaler made."""

    deployment: str
    before: int
    after: int
    reason: str


def unit_weight(_chip: str) -> float:
    return 1.0


class Autoscaler:
    """Sets autoscaled deployments' replica counts from demand (a control-loop step)."""

    def __init__(
        self,
        uows: UnitOfWorkFactory,
        clock: Clock,
        weight_of: Callable[[str], float] = unit_weight,
        slots: int = 8,
    ) -> None:
        self._uows = uows
        self._clock = clock
        self._weight_of = weight_of
        self._slots = slots

    def tick(self) -> list[Scaled]:
        now = self._clock.now()
        scaled: list[Scaled] = []
        with self._uows() as uow:
            uow.lock_scheduler()
            reports = uow.demand.reports(now - STALE_AFTER_S)
            for dep in uow.deployments.deployments(None, all_tenants=True):
                if dep.autoscale is not None:
                    change = self._decide(uow, dep, reports, now)
                    if change is not None:
                        scaled.append(change)
            uow.commit()
        for s in scaled:
            log.info(
                "autoscaled", deployment=s.deployment, before=s.before, after=s.after, why=s.reason
            )
        return scaled

    def _decide(
        self, uow: UnitOfWork, dep: DeploymentRecord, reports: list[DemandReport], now: float
    ) -> Scaled | None:
        assert dep.autoscale is not None
        current = [
            ReplicaCapacity(r.chip, self._weight_of(r.chip))
            for r in uow.deployments.replicas(dep.id)
            if r.number < dep.replicas and r.state in COUNTED
        ]
        demand = total_demand(dep.id, reports, now)
        if demand.last_request_at is None or demand.last_request_at < dep.created_at:
            demand = replace(demand, last_request_at=dep.created_at)  # never called: idle since
        service = None
        if dep.autoscale.target.slo_ttft_p95_s is not None:
            service = measured_service(dep.id, reports, now, self._slots)
        decision = decide(dep.autoscale, current, demand, dep.scale_memory, now, service)
        if decision.replicas == dep.replicas:
            if decision.memory != dep.scale_memory:
                uow.deployments.update_deployment(
                    dep.id, dep.updated_at, DeploymentChange(scale_memory=decision.memory)
                )
            return None
        self._apply(uow, dep, decision, now)
        return Scaled(dep.id, dep.replicas, decision.replicas, decision.reason)

    def _apply(
        self, uow: UnitOfWork, dep: DeploymentRecord, decision: ScaleDecision, now: float
    ) -> None:
        change = DeploymentChange(
            replicas=decision.replicas, scale_memory=decision.memory, state=UNCHANGED
        )
        uow.deployments.update_deployment(dep.id, now, change)
        audit.record(
            uow,
            AUTOSCALER,
            AuditAction.DEPLOYMENT_SCALE,
            dep.id,
            tenant=dep.tenant,
            at=now,
            before={"replicas": dep.replicas},
            after={"replicas": decision.replicas, "reason": decision.reason},
        )
