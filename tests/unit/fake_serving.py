"""In-memory stores of models as a service, gateway limits and the two append-only logs
(usage ledger, audit log), implementing the Protocols of :mod:`suanwang.ports` over
:class:`fake_stores.Tables` (see :mod:`fakes`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from fake_stores import _Store

from suanwang.domain.audit import AuditEntry, AuditQuery
from suanwang.domain.billing import UsageTotal
from suanwang.domain.changes import changed_fields
from suanwang.domain.demand import DemandReport
from suanwang.domain.deployments import (
    DeploymentChange,
    DeploymentRecord,
    DeploymentState,
    ReplicaChange,
    ReplicaRecord,
)
from suanwang.domain.limits import KeyLimits, TenantLimits
from suanwang.domain.metering import AttemptSpan
from suanwang.domain.serving import DeploymentView, ReplicaState, ReplicaView
from suanwang.domain.usage import ComputeUsage, StorageUsage, TokenUsage, UsageKind


class FakeDeployments(_Store):
    def add_deployment(self, deployment: DeploymentRecord) -> None:
        self._log("add_deployment", deployment.id)
        self._t.deployments[deployment.id] = deployment

    def deployment(self, deployment_id: str) -> DeploymentRecord | None:
        return self._t.deployments.get(deployment_id)

    def deployments(self, tenant: str | None, *, all_tenants: bool) -> list[DeploymentRecord]:
        active = [d for d in self._t.deployments.values() if d.state is DeploymentState.ACTIVE]
        if not all_tenants:
            active = [d for d in active if d.tenant in (tenant, None)]
        return sorted(active, key=lambda d: (d.created_at, d.id))

    def update_deployment(self, deployment_id: str, now: float, change: DeploymentChange) -> None:
        self._log("update_deployment", deployment_id)
        dep = self._t.deployments[deployment_id]
        self._t.deployments[deployment_id] = replace(dep, **changed_fields(change), updated_at=now)

    def add_replica(self, replica: ReplicaRecord) -> None:
        self._log("add_replica", replica.id)
        self._t.replicas[replica.id] = replica

    def replicas(self, deployment_id: str | None = None) -> list[ReplicaRecord]:
        replicas = [r for r in self._t.replicas.values() if deployment_id in (None, r.deployment)]
        return sorted(replicas, key=lambda r: (r.deployment, r.number))

    def update_replica(self, replica_id: str, change: ReplicaChange) -> None:
        self._log("update_replica", replica_id)
        replica = self._t.replicas[replica_id]
        self._t.replicas[replica_id] = replace(replica, **changed_fields(change))

    def ports_in_use(self) -> set[int]:
        return {
            r.port
            for r in self._t.replicas.values()
            if r.port is not None and r.state is not ReplicaState.STOPPED
        }

    def ready_views(self) -> list[ReplicaView]:
        views = []
        for r in sorted(self._t.replicas.values(), key=lambda r: r.id):
            d = self._t.deployments[r.deployment]
            if r.state is not ReplicaState.STOPPED and d.state is DeploymentState.ACTIVE:
                views.append(
                    ReplicaView(
                        r.id,
                        d.id,
                        d.model,
                        d.engine,
                        r.base_url,
                        d.tenant,
                        r.simulated,
                        r.chip,
                        r.state is ReplicaState.READY,
                    )
                )
        return views

    def autoscaled_views(self) -> list[DeploymentView]:
        return [
            DeploymentView(d.id, d.model, d.tenant)
            for d in sorted(self._t.deployments.values(), key=lambda d: d.id)
            if d.state is DeploymentState.ACTIVE and d.autoscale is not None
        ]


class FakeDemand(_Store):
    def replace(self, gateway: str, reports: Sequence[DemandReport]) -> None:
        self._log("replace_demand", gateway)
        kept = {k: v for k, v in self._t.demand.items() if k[0] != gateway}
        kept.update({(r.gateway, r.deployment): r for r in reports if r.gateway == gateway})
        self._t.demand = kept

    def reports(self, since: float) -> list[DemandReport]:
        return [r for _, r in sorted(self._t.demand.items()) if r.at >= since]

    def prune(self, before: float) -> int:
        old = [k for k, r in self._t.demand.items() if r.at < before]
        for k in old:
            del self._t.demand[k]
        return len(old)


class FakeLimits(_Store):
    def tenant_limits(self, tenant: str) -> TenantLimits | None:
        return self._t.tenant_limits.get(tenant)

    def set_tenant_limits(self, tenant: str, limits: TenantLimits, now: float) -> None:
        self._log("set_tenant_limits", tenant)
        self._t.tenant_limits[tenant] = limits

    def key_limits(self, key_id: str) -> KeyLimits | None:
        return self._t.key_limits.get(key_id)

    def set_key_limits(self, key_id: str, limits: KeyLimits, now: float) -> None:
        self._log("set_key_limits", key_id)
        self._t.key_limits[key_id] = limits


class FakeUsage(_Store):
    def append(
        self, entries: Iterable[TokenUsage | ComputeUsage | StorageUsage], recorded_at: float
    ) -> int:
        new = 0
        for entry in entries:
            self._log("append_usage", entry.entry_id)
            if entry.entry_id not in self._t.ledger:
                self._t.ledger[entry.entry_id] = entry
                new += 1
        return new

    def totals(self, tenant: str | None, start: float, end: float) -> list[UsageTotal]:
        sums: dict[tuple[str, UsageKind, str], list[int]] = {}
        for e in self._t.ledger.values():
            if (tenant is None or e.tenant == tenant) and start <= e.ended_at < end:
                if isinstance(e, TokenUsage):
                    key, add = (
                        (e.tenant, UsageKind.TOKENS, e.model),
                        (e.prompt_tokens, e.completion_tokens, 0, 0),
                    )
                elif isinstance(e, StorageUsage):
                    key, add = (e.tenant, UsageKind.STORAGE, "storage"), (0, 0, 0, e.byte_s)
                else:
                    ms = e.cards * (round(e.ended_at * 1000) - round(e.started_at * 1000))
                    key, add = (e.tenant, UsageKind.COMPUTE, e.chip), (0, 0, ms, 0)
                total = sums.setdefault(key, [0, 0, 0, 0, 0])
                total[0] += 1
                for i, value in enumerate(add, start=1):
                    total[i] += value
        return [UsageTotal(t, k, item, *s) for (t, k, item), s in sorted(sums.items())]

    def tier(self, tenant: str) -> str | None:
        return self._t.tiers.get(tenant)

    def set_tier(self, tenant: str, tier: str) -> bool:
        self._log("set_tier", tenant)
        if tenant not in self._t.tenants:
            return False
        self._t.tiers[tenant] = tier
        return True

    def unmetered_attempts(self, boundary: float) -> list[AttemptSpan]:
        spans = []
        for a in sorted(self._t.attempts.values(), key=lambda a: a.id):
            metered = self._t.metered_to.get(a.id)
            if a.started_at is None:
                continue
            if a.ended_at is not None and metered is not None and metered >= a.ended_at:
                continue
            if a.ended_at is None and (metered or a.started_at) >= boundary:
                continue
            replica = next((r.id for r in self._t.replicas.values() if r.job == a.job), None)
            tenant = self._t.jobs[a.job].tenant
            spans.append(
                AttemptSpan(
                    a.id,
                    a.job,
                    a.number,
                    tenant,
                    a.chip,
                    a.cards,
                    a.started_at,
                    a.ended_at,
                    metered,
                    replica,
                )
            )
        return spans

    def set_metered_to(self, attempt_id: int, metered_to: float) -> None:
        self._log("set_metered_to", str(attempt_id))
        self._t.metered_to[attempt_id] = metered_to


class FakeAudit(_Store):
    def append(self, entry: AuditEntry) -> int:
        entry_id = len(self._t.audit) + 1
        self._log("append_audit", entry.action.value)
        self._t.audit.append(replace(entry, id=entry_id))
        return entry_id

    def entries(self, query: AuditQuery) -> list[AuditEntry]:
        q = query
        matching = [
            e
            for e in reversed(self._t.audit)
            if (q.before_id is None or (e.id or 0) < q.before_id)
            and (q.since is None or e.at >= q.since)
            and (q.until is None or e.at < q.until)
            and (q.tenant is None or e.tenant == q.tenant)
            and (q.action is None or e.action is q.action)
            and (q.resource is None or e.resource is q.resource)
            and (q.resource_id is None or e.resource_id == q.resource_id)
            and (q.actor is None or e.actor.key_id == q.actor)
        ]
        return matching[: q.limit]
