"""Deployment and replica rows, and the :class:`ReplicaDirectory` the gateway reads.

A deployment's chip and simulated flag live in its ``spec`` JSON; everything the gateway
needs to route (``ReplicaView``) comes from one join of ready replicas and active deployments.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from suanwang.adapters.db.tables import (
    DeploymentRow,
    ExternalEndpointRow,
    ReplicaRow,
    column_values,
)
from suanwang.domain.autoscaling import AutoscaleSpec, ScaleMemory, ScalingTarget
from suanwang.domain.deployments import (
    DeploymentChange,
    DeploymentRecord,
    DeploymentState,
    ReplicaChange,
    ReplicaRecord,
)
from suanwang.domain.serving import DeploymentView, ReplicaState, ReplicaView, Secret
from suanwang.ports import SecretBox, UnitOfWorkFactory

log = structlog.get_logger("suanwang.gateway")


class DeploymentRepository:
    """Reads and writes deployments and replicas inside one unit of work."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add_deployment(self, deployment: DeploymentRecord) -> None:
        d = deployment
        self._s.add(
            DeploymentRow(
                id=d.id,
                tenant=d.tenant,
                model=d.model,
                cluster=d.cluster,
                engine=d.engine,
                replicas=d.replicas,
                state=d.state.value,
                spec={
                    "chip": d.chip,
                    "simulated": d.simulated,
                    "idempotency_key": d.idempotency_key,
                },
                created_at=d.created_at,
                updated_at=d.updated_at,
                version=1,
                autoscale=autoscale_json(d.autoscale),
                scale_memory=memory_json(d.scale_memory),
            )
        )
        self._s.flush()

    def deployment(self, deployment_id: str) -> DeploymentRecord | None:
        row = self._s.get(DeploymentRow, deployment_id)
        return None if row is None else _deployment(row)

    def deployments(self, tenant: str | None, *, all_tenants: bool) -> list[DeploymentRecord]:
        query = select(DeploymentRow).where(DeploymentRow.state == DeploymentState.ACTIVE.value)
        if not all_tenants:
            query = query.where((DeploymentRow.tenant == tenant) | DeploymentRow.tenant.is_(None))
        rows = self._s.scalars(query.order_by(DeploymentRow.created_at, DeploymentRow.id))
        return [_deployment(r) for r in rows]

    def update_deployment(self, deployment_id: str, now: float, change: DeploymentChange) -> None:
        values = column_values(change)
        if "autoscale" in values:
            values["autoscale"] = autoscale_json(change.autoscale)  # type: ignore[arg-type]
        if "scale_memory" in values:
            values["scale_memory"] = memory_json(change.scale_memory)  # type: ignore[arg-type]
        self._s.execute(
            update(DeploymentRow)
            .where(DeploymentRow.id == deployment_id)
            .values(updated_at=now, version=DeploymentRow.version + 1, **values)
        )

    def add_replica(self, replica: ReplicaRecord) -> None:
        r = replica
        self._s.add(
            ReplicaRow(
                id=r.id,
                deployment=r.deployment,
                number=r.number,
                job=r.job,
                state=r.state.value,
                base_url=r.base_url,
                simulated=r.simulated,
                chip=r.chip,
                reason=r.reason,
                failures=r.failures,
                restarts=r.restarts,
                port=r.port,
                created_at=r.created_at,
                ready_at=r.ready_at,
                last_health_at=r.last_health_at,
                drain_started_at=r.drain_started_at,
            )
        )
        self._s.flush()

    def replicas(self, deployment_id: str | None = None) -> list[ReplicaRecord]:
        query = select(ReplicaRow).order_by(ReplicaRow.deployment, ReplicaRow.number)
        if deployment_id is not None:
            query = query.where(ReplicaRow.deployment == deployment_id)
        return [_replica(r) for r in self._s.scalars(query)]

    def update_replica(self, replica_id: str, change: ReplicaChange) -> None:
        query = update(ReplicaRow).where(ReplicaRow.id == replica_id)
        self._s.execute(query.values(**column_values(change)))

    def ports_in_use(self) -> set[int]:
        query = select(ReplicaRow.port).where(
            ReplicaRow.port.is_not(None), ReplicaRow.state != ReplicaState.STOPPED.value
        )
        return {int(p) for p in self._s.scalars(query) if p is not None}

    def ready_views(self) -> list[ReplicaView]:
        query = (
            select(ReplicaRow, DeploymentRow, ExternalEndpointRow)
            .join(DeploymentRow, ReplicaRow.deployment == DeploymentRow.id)
            .outerjoin(ExternalEndpointRow, ExternalEndpointRow.deployment == DeploymentRow.id)
            .where(
                ReplicaRow.state != ReplicaState.STOPPED.value,
                DeploymentRow.state == DeploymentState.ACTIVE.value,
            )
            .order_by(ReplicaRow.id)
        )
        return [
            ReplicaView(
                replica_id=r.id,
                deployment_id=d.id,
                model=d.model,
                engine=d.engine,
                base_url=r.base_url,
                owner_tenant=d.tenant,
                simulated=r.simulated,
                chip=r.chip,
                ready=r.state == ReplicaState.READY.value,
                upstream_model=e.upstream_model if e is not None else None,
                sealed_credential=e.credential if e is not None else None,
            )
            for r, d, e in self._s.execute(query)
        ]

    def autoscaled_views(self) -> list[DeploymentView]:
        query = (
            select(DeploymentRow.id, DeploymentRow.model, DeploymentRow.tenant)
            .where(
                DeploymentRow.state == DeploymentState.ACTIVE.value,
                DeploymentRow.autoscale.is_not(None),
            )
            .order_by(DeploymentRow.id)
        )
        return [DeploymentView(i, m, t) for i, m, t in self._s.execute(query)]


class SqlReplicaDirectory:
    """:class:`suanwang.ports.ReplicaDirectory` over the database (one short read each call).

    External endpoints' credentials are opened with ``box``; one that no key opens leaves its
    replica out (logged without the ciphertext), so a request never goes out unauthenticated.
    """

    def __init__(self, uows: UnitOfWorkFactory, box: SecretBox | None = None) -> None:
        self._uows = uows
        self._box = box
        self._opened: dict[str, Secret] = {}

    def ready_replicas(self) -> list[ReplicaView]:
        with self._uows() as uow:
            views = uow.deployments.ready_views()
        return [v for v in map(self._open, views) if v is not None]

    def autoscaled_deployments(self) -> list[DeploymentView]:
        with self._uows() as uow:
            return uow.deployments.autoscaled_views()

    def _open(self, view: ReplicaView) -> ReplicaView | None:
        sealed = view.sealed_credential
        if sealed is None:
            return view
        secret = self._opened.get(sealed)
        if secret is None:
            try:
                if self._box is None:
                    raise ValueError("no credential keys configured in this process")
                secret = Secret(self._box.open(sealed))
            except ValueError as exc:
                log.error("cannot open credential", replica=view.replica_id, error=str(exc))
                return None
            self._opened = {sealed: secret} | (self._opened if len(self._opened) < 1024 else {})
        return replace(view, credential=secret, sealed_credential=None)


def _deployment(row: DeploymentRow) -> DeploymentRecord:
    spec = dict(row.spec or {})
    return DeploymentRecord(
        id=row.id,
        tenant=row.tenant,
        model=row.model,
        cluster=row.cluster,
        engine=row.engine,
        replicas=row.replicas,
        state=DeploymentState(row.state),
        chip=str(spec.get("chip", "")),
        simulated=bool(spec.get("simulated", False)),
        created_at=row.created_at,
        updated_at=row.updated_at,
        idempotency_key=str(key) if (key := spec.get("idempotency_key")) else None,
        autoscale=autoscale_of(row.autoscale),
        scale_memory=memory_of(row.scale_memory),
    )


def _replica(row: ReplicaRow) -> ReplicaRecord:
    return ReplicaRecord(
        id=row.id,
        deployment=row.deployment,
        number=row.number,
        job=row.job,
        state=ReplicaState(row.state),
        base_url=row.base_url,
        simulated=row.simulated,
        chip=row.chip,
        reason=row.reason,
        failures=row.failures,
        restarts=row.restarts,
        port=row.port,
        created_at=row.created_at,
        ready_at=row.ready_at,
        last_health_at=row.last_health_at,
        drain_started_at=row.drain_started_at,
    )


# --- autoscaling settings and memory as JSON --------------------------------------------------
def autoscale_json(spec: AutoscaleSpec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    t = spec.target
    return {
        "min_replicas": spec.min_replicas,
        "max_replicas": spec.max_replicas,
        "target": {
            "inflight_per_replica": t.inflight_per_replica,
            "tokens_per_s_per_replica": t.tokens_per_s_per_replica,
            "ttft_p95_s": t.ttft_p95_s,
            "slo_ttft_p95_s": t.slo_ttft_p95_s,
        },
        "scale_up_cooldown_s": spec.scale_up_cooldown_s,
        "scale_down_cooldown_s": spec.scale_down_cooldown_s,
        "idle_to_zero_s": spec.idle_to_zero_s,
        "tolerance": spec.tolerance,
    }


def autoscale_of(value: dict[str, Any] | None) -> AutoscaleSpec | None:
    """The stored settings, parsed (they were validated when set)."""
    if value is None:
        return None
    target = value["target"]
    return AutoscaleSpec(
        min_replicas=int(value["min_replicas"]),
        max_replicas=int(value["max_replicas"]),
        target=ScalingTarget(
            inflight_per_replica=_float_or_none(target.get("inflight_per_replica")),
            tokens_per_s_per_replica=_float_or_none(target.get("tokens_per_s_per_replica")),
            ttft_p95_s=_float_or_none(target.get("ttft_p95_s")),
            slo_ttft_p95_s=_float_or_none(target.get("slo_ttft_p95_s")),
        ),
        scale_up_cooldown_s=float(value["scale_up_cooldown_s"]),
        scale_down_cooldown_s=float(value["scale_down_cooldown_s"]),
        idle_to_zero_s=float(value["idle_to_zero_s"]),
        tolerance=float(value["tolerance"]),
    )


def memory_json(memory: ScaleMemory) -> dict[str, Any]:
    return {
        "last_up_at": memory.last_up_at,
        "last_down_at": memory.last_down_at,
        "recent": [[at, n] for at, n in memory.recent],
    }


def memory_of(value: dict[str, Any] | None) -> ScaleMemory:
    if not value:
        return ScaleMemory()
    return ScaleMemory(
        last_up_at=_float_or_none(value.get("last_up_at")),
        last_down_at=_float_or_none(value.get("last_down_at")),
        recent=tuple((float(at), int(n)) for at, n in value.get("recent", [])),
    )


def _float_or_none(value: object) -> float | None:
    return None if value is None else float(str(value))
