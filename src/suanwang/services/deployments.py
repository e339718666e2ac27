"""Deployment use cases: deploy, scale, delete, list and show; and the per-tick reconcile.

A deployment is a workload: each replica is a long-running job that the scheduler places like
any other (cards and chip from the model's catalogue entry and the cluster). Who may do what:

- the operator deploys *public* models (every tenant may call them), or private ones for a
  tenant with ``tenant=``;
- a tenant admin deploys private models in its own tenant, and scales or deletes only those;
- everyone sees public deployments and their own tenant's; another tenant's are 404.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from suanwang.domain.audit import AuditAction
from suanwang.domain.autoscaling import AutoscaleSpec, ScaleMemory
from suanwang.domain.chips import Catalogue
from suanwang.domain.demand import STALE_AFTER_S, DemandReport
from suanwang.domain.deployments import (
    PUBLIC_TENANT,
    DeploymentChange,
    DeploymentRecord,
    DeploymentState,
    ReplicaChange,
    ReplicaRecord,
    check_deployment_id,
    check_replicas,
    engine_runs_on,
)
from suanwang.domain.errors import Conflict, Forbidden, NotFound, ValidationError
from suanwang.domain.external import OPENAI_COMPATIBLE
from suanwang.domain.serving import ModelSpec
from suanwang.domain.tenancy import Principal
from suanwang.ports import Clock, EngineLauncher, EngineProbe, UnitOfWork, UnitOfWorkFactory
from suanwang.services import audit
from suanwang.services.replicas import PROBE_INTERVAL_S, Converger, HealthChecker, Placement

DEMAND_KEPT_S = 60.0
"""Gateway demand rows older than this (a gateway gone for a minute) are deleted."""


@dataclass(frozen=True, slots=True)
class DeploymentDetail:
    deployment: DeploymentRecord
    replicas: list[ReplicaRecord]


class Deployments:
    """Use cases for model deployments and their replicas."""

    def __init__(
        self,
        uows: UnitOfWorkFactory,
        clock: Clock,
        catalogue: Catalogue,
        models: Mapping[str, ModelSpec],
        launcher: EngineLauncher,
        probe: EngineProbe,
        probe_interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        self._uows = uows
        self._clock = clock
        self._catalogue = catalogue
        self._models = dict(models)
        self._launcher = launcher
        self._health = HealthChecker(uows, probe, clock, probe_interval_s)

    # --- the catalogue ------------------------------------------------------------------
    def models(self) -> list[ModelSpec]:
        return sorted(self._models.values(), key=lambda m: (m.kind.value, m.name))

    def model(self, name: str) -> ModelSpec:
        if name not in self._models:
            raise NotFound(
                f"no model {name!r} in the catalogue",
                field="model",
                hint=f"models: {', '.join(sorted(self._models))}",
            )
        return self._models[name]

    # --- use cases ----------------------------------------------------------------------
    def deploy(
        self,
        principal: Principal,
        model: str,
        cluster: str,
        replicas: int,
        engine: str | None = None,
        tenant: str | None = None,
        idempotency_key: str | None = None,
        autoscale: AutoscaleSpec | None = None,
    ) -> DeploymentDetail:
        """Create a deployment and queue its replicas' jobs (in one transaction).

        With ``autoscale``, ``replicas`` is the starting count, brought into its range.
        A retry with the same ``idempotency_key`` (same owner) returns the deployment the
        first call made; the check runs under the scheduler lock, so concurrent retries agree.
        """
        spec = self.model(model)
        check_replicas(replicas)
        if autoscale is not None:
            replicas = _in_range(replicas, autoscale)
        owner = _owner(principal, tenant)
        now = self._clock.now()
        with self._uows() as uow:
            uow.lock_scheduler()
            replay = _replay(uow, owner, idempotency_key, (model, cluster, engine))
            if replay is not None:
                return DeploymentDetail(replay, uow.deployments.replicas(replay.id))
            if owner is not None and uow.tenancy.tenant(owner) is None:
                raise NotFound(f"no tenant {owner!r}", field="tenant")
            if owner is None and uow.tenancy.tenant(PUBLIC_TENANT) is None:
                uow.tenancy.add_tenant(PUBLIC_TENANT, "Public model deployments", now)
            placement, chosen, simulated = self._place(uow, spec, cluster, engine)
            dep = DeploymentRecord(
                id=f"dep-{secrets.token_hex(4)}",
                tenant=owner,
                model=spec.name,
                cluster=cluster,
                engine=chosen,
                replicas=replicas,
                state=DeploymentState.ACTIVE,
                chip=placement.chip,
                simulated=simulated,
                created_at=now,
                updated_at=now,
                idempotency_key=idempotency_key,
                autoscale=autoscale,
            )
            uow.deployments.add_deployment(dep)
            self._converger(uow, placement, now).run(dep)
            audit.record(
                uow,
                principal,
                AuditAction.DEPLOYMENT_CREATE,
                dep.id,
                tenant=owner,
                at=now,
                after=audit.deployment_value(dep),
            )
            uow.commit()
            return DeploymentDetail(dep, uow.deployments.replicas(dep.id))

    def scale(self, principal: Principal, deployment_id: str, replicas: int) -> DeploymentDetail:
        """Set the wanted replica count; replicas that gave up get a fresh start."""
        check_replicas(replicas)
        now = self._clock.now()
        with self._uows() as uow:
            uow.lock_scheduler()
            dep = self._managed(uow, principal, deployment_id)
            if dep.autoscale is not None:
                raise Conflict(
                    f"{deployment_id} is autoscaled between {dep.autoscale.min_replicas} and "
                    f"{dep.autoscale.max_replicas} replicas",
                    field="replicas",
                    hint=f"change its range with `suanwang deployments autoscale {deployment_id}"
                    " --min-replicas N --max-replicas M`, or turn autoscaling off with --off",
                )
            uow.deployments.update_deployment(dep.id, now, DeploymentChange(replicas=replicas))
            for r in uow.deployments.replicas(dep.id):
                if r.number < replicas and r.failures:
                    uow.deployments.update_replica(r.id, ReplicaChange(failures=0))
            return self._converge_audited(uow, principal, dep, AuditAction.DEPLOYMENT_SCALE, now)

    def set_autoscale(
        self, principal: Principal, deployment_id: str, autoscale: AutoscaleSpec | None
    ) -> DeploymentDetail:
        """Turn autoscaling on with ``autoscale`` (or change it), or off with ``None`` (the
        deployment keeps its current count). The count is brought into the new range and the
        autoscaler's memory starts afresh, as if it had just scaled up (so an idle
        deployment gets its full ``idle_to_zero_s`` before going to zero)."""
        now = self._clock.now()
        with self._uows() as uow:
            uow.lock_scheduler()
            dep = self._managed(uow, principal, deployment_id)
            replicas = dep.replicas if autoscale is None else _in_range(dep.replicas, autoscale)
            fresh_start = ScaleMemory(last_up_at=now)  # idle time counts from now
            change = DeploymentChange(
                replicas=replicas, autoscale=autoscale, scale_memory=fresh_start
            )
            uow.deployments.update_deployment(dep.id, now, change)
            action = AuditAction.DEPLOYMENT_AUTOSCALE
            return self._converge_audited(uow, principal, dep, action, now)

    def delete(self, principal: Principal, deployment_id: str) -> DeploymentDetail:
        """Stop every replica and mark the deployment deleted (idempotent for the owner)."""
        now = self._clock.now()
        with self._uows() as uow:
            uow.lock_scheduler()
            dep = self._managed(uow, principal, deployment_id, deleted_ok=True)
            if dep.state is DeploymentState.ACTIVE:
                deleted = DeploymentChange(state=DeploymentState.DELETED)
                uow.deployments.update_deployment(dep.id, now, deleted)
                fresh = uow.deployments.deployment(dep.id)
                assert fresh is not None
                self._converger(uow, self._placement_of(uow, fresh), now).run(fresh)
                audit.record(
                    uow,
                    principal,
                    AuditAction.DEPLOYMENT_DELETE,
                    dep.id,
                    tenant=dep.tenant,
                    at=now,
                    before=audit.deployment_value(dep),
                    after=audit.deployment_value(fresh),
                )
                dep = fresh
                uow.commit()
            return DeploymentDetail(dep, uow.deployments.replicas(dep.id))

    def list(self, principal: Principal) -> list[DeploymentDetail]:
        with self._uows() as uow:
            deps = uow.deployments.deployments(
                principal.tenant_id, all_tenants=principal.is_operator
            )
            by_dep: dict[str, list[ReplicaRecord]] = {}
            for r in uow.deployments.replicas():
                by_dep.setdefault(r.deployment, []).append(r)
        return [_shown(principal, DeploymentDetail(d, by_dep.get(d.id, []))) for d in deps]

    def get(self, principal: Principal, deployment_id: str) -> DeploymentDetail:
        with self._uows() as uow:
            dep = self._visible(uow, principal, deployment_id)
            return _shown(principal, DeploymentDetail(dep, uow.deployments.replicas(dep.id)))

    def replica_counts(self) -> dict[str, int]:
        """Replicas by state (``simulated`` ones counted apart), for metrics."""
        counts: dict[str, int] = {}
        with self._uows() as uow:
            for r in uow.deployments.replicas():
                key = f"{r.state.value}{'-simulated' if r.simulated else ''}"
                counts[key] = counts.get(key, 0) + 1
        return counts

    # --- the control loop's step --------------------------------------------------------
    def converge(self) -> None:
        """Bring every deployment's replicas in step with their jobs (a control-loop step)."""
        now = self._clock.now()
        with self._uows() as uow:
            uow.lock_scheduler()
            deps = uow.deployments.deployments(None, all_tenants=True)
            active = {d.id for d in deps}
            live = {r.deployment for r in uow.deployments.replicas() if r.state != "stopped"}
            gone = [d for d in map(uow.deployments.deployment, live - active) if d is not None]
            uow.demand.prune(now - DEMAND_KEPT_S)
            demand = uow.demand.reports(now - STALE_AFTER_S)
            for dep in [*deps, *gone]:
                if dep.engine != OPENAI_COMPATIBLE:  # external: no jobs (services/external.py)
                    self._converger(uow, self._placement_of(uow, dep), now, demand).run(dep)
            uow.commit()

    def check_health(self) -> None:
        """Probe running engines and mark replicas ready or unhealthy (off the control loop)."""
        self._health.check()

    # --- helpers ------------------------------------------------------------------------
    def _converge_audited(
        self,
        uow: UnitOfWork,
        principal: Principal,
        before: DeploymentRecord,
        action: AuditAction,
        now: float,
    ) -> DeploymentDetail:
        """After a change to ``before``: converge its replicas now (with the gateways' fresh
        demand), audit ``action`` with both values, commit; the deployment as it is now."""
        fresh = uow.deployments.deployment(before.id)
        assert fresh is not None
        demand = uow.demand.reports(now - STALE_AFTER_S)
        self._converger(uow, self._placement_of(uow, fresh), now, demand).run(fresh)
        audit.record(
            uow,
            principal,
            action,
            before.id,
            tenant=before.tenant,
            at=now,
            before=audit.deployment_value(before),
            after=audit.deployment_value(fresh),
        )
        uow.commit()
        return DeploymentDetail(fresh, uow.deployments.replicas(before.id))

    def _converger(
        self,
        uow: UnitOfWork,
        placement: Placement,
        now: float,
        demand: Sequence[DemandReport] | None = None,
    ) -> Converger:
        return Converger(uow, self._launcher, self._models, placement, now, demand)

    def _placement_of(self, uow: UnitOfWork, dep: DeploymentRecord) -> Placement:
        backend = {c.name: c.backend for c in uow.fleet.clusters()}.get(dep.cluster, "none")
        model = self._models[dep.model]
        family = self._catalogue.get(dep.chip).family
        return Placement(dep.chip, family, model.cards, backend)

    def _place(
        self, uow: UnitOfWork, model: ModelSpec, cluster: str, engine: str | None
    ) -> tuple[Placement, str, bool]:
        """Chip, engine and backend for ``model`` on ``cluster`` (ValidationError if none)."""
        record = next((c for c in uow.fleet.clusters() if c.name == cluster), None)
        if record is None:
            raise NotFound(
                f"no cluster {cluster!r}", field="cluster", hint="see `suanwang fleet show`"
            )
        if engine is not None and engine not in model.engines:
            raise ValidationError(
                f"{model.name} is not served by engine {engine!r}",
                field="engine",
                hint=f"engines for this model: {', '.join(model.engines)}",
            )
        nodes = [n for n in uow.fleet.nodes(cluster) if n.cards >= model.cards]
        chips = list(dict.fromkeys(n.chip for n in nodes))
        for chip in chips:
            if chip not in model.chips and "any" not in model.chips:
                continue
            family = self._catalogue.get(chip).family
            for candidate in [engine] if engine else list(model.engines):
                if engine_runs_on(candidate, family):
                    placement = Placement(chip, family, model.cards, record.backend)
                    return placement, candidate, record.kind == "simulated"
        raise ValidationError(
            f"cluster {cluster!r} has no chip that can serve {model.name}"
            + (f" with {engine}" if engine else ""),
            field="cluster",
            hint=f"the model runs on {', '.join(model.chips)} with {', '.join(model.engines)}; "
            f"this cluster has {', '.join(chips) or 'no nodes with enough cards'}",
        )

    def _visible(
        self, uow: UnitOfWork, principal: Principal, deployment_id: str
    ) -> DeploymentRecord:
        check_deployment_id(deployment_id)
        dep = uow.deployments.deployment(deployment_id)
        visible = dep is not None and (
            dep.tenant is None or principal.is_operator or principal.tenant_id == dep.tenant
        )
        if dep is None or not visible:
            raise NotFound(f"no deployment {deployment_id!r}", field="deployment_id")
        return dep

    def _managed(
        self, uow: UnitOfWork, principal: Principal, deployment_id: str, *, deleted_ok: bool = False
    ) -> DeploymentRecord:
        dep = self._visible(uow, principal, deployment_id)
        if dep.tenant is None and not principal.is_operator:
            raise Forbidden(
                "public deployments are managed by the operator",
                field="deployment_id",
                hint="deploy a private copy with `suanwang models deploy`",
            )
        if dep.engine == OPENAI_COMPATIBLE:
            raise Conflict(
                f"{deployment_id} is an external endpoint",
                field="deployment_id",
                hint=f"use `suanwang models external remove {deployment_id}` (operator)",
            )
        if dep.state is DeploymentState.DELETED and not deleted_ok:
            raise Conflict(f"deployment {deployment_id} was deleted", field="deployment_id")
        return dep


def _in_range(replicas: int, autoscale: AutoscaleSpec) -> int:
    return min(max(replicas, autoscale.min_replicas), autoscale.max_replicas)


def _shown(principal: Principal, detail: DeploymentDetail) -> DeploymentDetail:
    """What ``principal`` sees: an external endpoint's address only for the operator."""
    if principal.is_operator or detail.deployment.engine != OPENAI_COMPATIBLE:
        return detail
    hidden = [replace(r, base_url="external") for r in detail.replicas]
    return DeploymentDetail(detail.deployment, hidden)


def _owner(principal: Principal, tenant: str | None) -> str | None:
    """The owning tenant of a new deployment (``None``: public)."""
    if principal.is_operator:
        return tenant
    if tenant is not None and tenant != principal.tenant_id:
        raise NotFound(f"no tenant {tenant!r}", field="tenant")
    return principal.tenant_id


def _replay(
    uow: UnitOfWork, owner: str | None, key: str | None, asked: tuple[object, ...]
) -> DeploymentRecord | None:
    """The deployment an earlier call with ``key`` made for ``owner``, if any."""
    if key is None:
        return None
    for dep in uow.deployments.deployments(owner, all_tenants=owner is None):
        if dep.idempotency_key == key and dep.tenant == owner:
            model, cluster, engine = asked  # replicas may have been scaled since
            if (dep.model, dep.cluster) != (model, cluster) or engine not in (None, dep.engine):
                raise ValidationError(
                    "this Idempotency-Key was used with a different deployment",
                    field="Idempotency-Key",
                    hint="use a new key for a new deployment",
                )
            return dep
    return None
