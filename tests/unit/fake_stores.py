"""The tables of the fake database, and in-memory fleet, tenancy and job stores that
implement the storage Protocols of :mod:`suanwang.ports` over them (see :mod:`fakes` for
the unit of work that holds them, :mod:`fake_serving` for the other stores).

Like the SQL repositories they only persist: they check no rule (a job's state change is
the service's to check), and ``update_job`` is compare-and-set on the job's version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from suanwang.domain.audit import AuditEntry
from suanwang.domain.changes import changed_fields
from suanwang.domain.console_sessions import SessionRecord
from suanwang.domain.datasets import DatasetRecord
from suanwang.domain.demand import DemandReport
from suanwang.domain.deployments import (
    DeploymentRecord,
    ReplicaRecord,
)
from suanwang.domain.errors import Conflict
from suanwang.domain.fleet import ClusterKind, ClusterSpec, NodeSpec, RegionSpec, WanLinkSpec
from suanwang.domain.ids import ChipName
from suanwang.domain.jobs import AttemptState, JobState
from suanwang.domain.limits import KeyLimits, TenantLimits
from suanwang.domain.records import (
    AttemptChange,
    AttemptRecord,
    ClusterHealth,
    ClusterRecord,
    JobChange,
    JobEvent,
    JobRecord,
    KeyRecord,
    NodeCards,
    NodeRecord,
    NodeShape,
    TenantRecord,
    shapes_of,
)
from suanwang.domain.tenancy import QuotaSpec
from suanwang.domain.transfers import AgentRecord, TransferRecord
from suanwang.domain.usage import ComputeUsage, StorageUsage, TokenUsage
from suanwang.scheduler.learning import RunObservation


@dataclass(frozen=True, slots=True)
class Allocation:
    attempt: int
    node: int
    tenant: str
    family: str
    cards: int
    active: bool = True


@dataclass(slots=True)
class Tables:
    """Every table, as one unit of work sees it."""

    regions: dict[str, RegionSpec] = field(default_factory=dict)
    clusters: dict[str, ClusterRecord] = field(default_factory=dict)
    nodes: dict[int, tuple[str, NodeSpec]] = field(default_factory=dict)
    node_states: dict[int, str] = field(default_factory=dict)
    """Node id -> state, for nodes not ``ready``."""
    wan_links: dict[tuple[str, str], WanLinkSpec] = field(default_factory=dict)
    tenants: dict[str, TenantRecord] = field(default_factory=dict)
    tiers: dict[str, str] = field(default_factory=dict)
    keys: dict[str, KeyRecord] = field(default_factory=dict)
    local_uids: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    events: list[tuple[str, JobEvent]] = field(default_factory=list)
    attempts: dict[int, AttemptRecord] = field(default_factory=dict)
    metered_to: dict[int, float] = field(default_factory=dict)
    allocations: list[Allocation] = field(default_factory=list)
    deployments: dict[str, DeploymentRecord] = field(default_factory=dict)
    replicas: dict[str, ReplicaRecord] = field(default_factory=dict)
    tenant_limits: dict[str, TenantLimits] = field(default_factory=dict)
    key_limits: dict[str, KeyLimits] = field(default_factory=dict)
    ledger: dict[str, TokenUsage | ComputeUsage | StorageUsage] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    demand: dict[tuple[str, str], DemandReport] = field(default_factory=dict)
    datasets: dict[str, DatasetRecord] = field(default_factory=dict)
    storage_quotas: dict[str, int | None] = field(default_factory=dict)
    transfers: dict[str, TransferRecord] = field(default_factory=dict)
    agents: dict[str, AgentRecord] = field(default_factory=dict)
    sessions: dict[str, SessionRecord] = field(default_factory=dict)

    def copy(self) -> Tables:
        """A copy whose containers can change alone (the records are immutable)."""
        return Tables(**{f.name: _copied(getattr(self, f.name)) for f in dataclasses.fields(self)})


def _copied(container: Any) -> Any:
    return dict(container) if isinstance(container, dict) else list(container)


class _Store:
    """A store over one unit of work's ``tables``; writes are logged in ``calls``."""

    def __init__(self, tables: Tables, calls: list[tuple[str, str]], ids: Iterator[int]) -> None:
        self._t = tables
        self._calls = calls
        self._ids = ids

    def _log(self, method: str, record: object) -> None:
        self._calls.append((method, str(record)))


class FakeSessions(_Store):
    def add(self, record: SessionRecord) -> None:
        self._log("add_session", record.key_id)
        self._t.sessions[record.id_hash] = record

    def get(self, id_hash: str) -> SessionRecord | None:
        return self._t.sessions.get(id_hash)

    def delete(self, id_hash: str) -> bool:
        return self._t.sessions.pop(id_hash, None) is not None

    def delete_for_key(self, key_id: str) -> int:
        gone = [h for h, r in self._t.sessions.items() if r.key_id == key_id]
        for h in gone:
            del self._t.sessions[h]
        return len(gone)

    def delete_expired(self, now: float) -> int:
        gone = [h for h, r in self._t.sessions.items() if r.expires_at <= now]
        for h in gone:
            del self._t.sessions[h]
        return len(gone)


class FakeFleet(_Store):
    def regions(self) -> list[RegionSpec]:
        return [self._t.regions[n] for n in sorted(self._t.regions)]

    def clusters(self) -> list[ClusterRecord]:
        return [self._t.clusters[n] for n in sorted(self._t.clusters)]

    def wan_links(self) -> list[WanLinkSpec]:
        return [self._t.wan_links[k] for k in sorted(self._t.wan_links)]

    def node_shapes(self) -> list[NodeShape]:
        return shapes_of(self.nodes())

    def nodes(
        self, cluster: str | None = None, *, offset: int = 0, limit: int | None = None
    ) -> list[NodeRecord]:
        end = None if limit is None else offset + limit
        return self._all_nodes(cluster)[offset:end]

    def _all_nodes(self, cluster: str | None) -> list[NodeRecord]:
        used: dict[int, int] = {}
        for a in self._t.allocations:
            if a.active:
                used[a.node] = used.get(a.node, 0) + a.cards
        records = []
        for node_id, (name, spec) in sorted(self._t.nodes.items()):
            c = self._t.clusters[name]
            if cluster is None or name == cluster:
                simulated = c.kind == ClusterKind.SIMULATED.value
                records.append(
                    NodeRecord(
                        node_id,
                        name,
                        c.region,
                        simulated,
                        spec.name,
                        spec.chip,
                        spec.cards,
                        used.get(node_id, 0),
                        spec.network_group,
                        self._t.node_states.get(node_id, "ready"),
                    )
                )
        return records

    def put_region(self, spec: RegionSpec, now: float) -> None:
        self._log("put_region", spec.name)
        self._t.regions[spec.name] = spec

    def put_cluster(self, spec: ClusterSpec, now: float) -> None:
        self._log("put_cluster", spec.name)
        old = self._t.clusters.get(spec.name)
        record = ClusterRecord(
            spec.name,
            spec.region,
            spec.kind.value,
            spec.backend,
            spec.description,
            spec.connection,
            old.health if old else None,
        )
        self._t.clusters[spec.name] = record

    def set_health(self, cluster: str, health: ClusterHealth) -> None:
        self._log("set_health", cluster)
        old = self._t.clusters.get(cluster)
        if old is not None:
            self._t.clusters[cluster] = replace(old, health=health)

    def set_node_states(self, cluster: str, names: list[str], state: str) -> None:
        self._log("set_node_states", f"{cluster}:{state}:{','.join(sorted(names))}")
        for i, (c, spec) in self._t.nodes.items():
            if c == cluster and spec.name in names:
                if state == "ready":
                    self._t.node_states.pop(i, None)
                else:
                    self._t.node_states[i] = state

    def put_node(self, cluster: str, spec: NodeSpec) -> None:
        self._log("put_node", spec.name)
        found = [i for i, (c, s) in self._t.nodes.items() if (c, s.name) == (cluster, spec.name)]
        self._t.nodes[found[0] if found else next(self._ids)] = (cluster, spec)

    def add_nodes(self, cluster: str, specs: list[NodeSpec]) -> None:
        for spec in specs:
            self.put_node(cluster, spec)

    def delete_nodes(self, cluster: str, names: list[str]) -> None:
        self._log("delete_nodes", cluster)
        for i, (c, spec) in list(self._t.nodes.items()):
            if c == cluster and spec.name in names:
                del self._t.nodes[i]

    def put_wan_link(self, spec: WanLinkSpec) -> None:
        a, b = sorted((spec.region_a, spec.region_b))
        self._log("put_wan_link", f"{a}-{b}")
        self._t.wan_links[(a, b)] = spec


class FakeTenancy(_Store):
    def add_tenant(self, tenant_id: str, display_name: str, now: float) -> None:
        self._log("add_tenant", tenant_id)
        self._t.tenants[tenant_id] = TenantRecord(tenant_id, display_name, now)
        self._t.tiers[tenant_id] = "standard"

    def tenant(self, tenant_id: str) -> TenantRecord | None:
        return self._t.tenants.get(tenant_id)

    def tenants(self) -> list[TenantRecord]:
        return [self._t.tenants[t] for t in sorted(self._t.tenants)]

    def quotas(self) -> dict[str, dict[str, QuotaSpec]]:
        return {t.id: dict(t.quota) for t in self._t.tenants.values() if t.quota}

    def set_quota(self, tenant_id: str, quota: dict[str, QuotaSpec]) -> None:
        self._log("set_quota", tenant_id)
        tenant = self._t.tenants[tenant_id]
        self._t.tenants[tenant_id] = replace(tenant, quota=dict(sorted(quota.items())))

    def set_queue(self, tenant_id: str, cohort: str | None, weight: float) -> None:
        self._log("set_queue", tenant_id)
        if tenant_id in self._t.tenants:
            tenant = self._t.tenants[tenant_id]
            self._t.tenants[tenant_id] = replace(tenant, cohort=cohort, weight=weight)

    def add_key(self, key: KeyRecord) -> None:
        self._log("add_key", key.id)
        self._t.keys[key.id] = replace(key, revoked_at=None)

    def key_by_prefix(self, prefix: str) -> KeyRecord | None:
        return next((k for k in self._t.keys.values() if k.prefix == prefix), None)

    def key(self, key_id: str) -> KeyRecord | None:
        return self._t.keys.get(key_id)

    def keys(self, tenant_id: str | None, *, operator_keys: bool) -> list[KeyRecord]:
        keys = sorted(self._t.keys.values(), key=lambda k: (k.created_at, k.id))
        if tenant_id is not None:
            return [k for k in keys if k.tenant == tenant_id]
        return [k for k in keys if k.tenant is None] if operator_keys else keys

    def revoke_key(self, key_id: str, now: float) -> None:
        self._log("revoke_key", key_id)
        key = self._t.keys.get(key_id)
        if key is not None and key.revoked_at is None:
            self._t.keys[key_id] = replace(key, revoked_at=now)

    def local_uid(self, tenant_id: str) -> int | None:
        return self._t.local_uids.get(tenant_id)

    def highest_local_uid(self, first: int, last: int) -> int | None:
        return max((u for u in self._t.local_uids.values() if first <= u <= last), default=None)

    def add_local_uid(self, tenant_id: str, uid: int, now: float) -> None:
        self._log("add_local_uid", tenant_id)
        self._t.local_uids[tenant_id] = uid


class FakeJobs(_Store):
    def add_job(self, job: JobRecord) -> None:
        self._log("add_job", job.id)
        key = job.idempotency_key
        if key is not None and self.job_by_idempotency(job.tenant, key) is not None:
            raise Conflict("duplicate Idempotency-Key", field="Idempotency-Key")
        stored = replace(job, attempts=0, cancel_requested=False, version=1)
        self._t.jobs[job.id] = stored

    def job(self, job_id: str) -> JobRecord | None:
        return self._t.jobs.get(job_id)

    def jobs_by_id(self, job_ids: Collection[str]) -> dict[str, JobRecord]:
        return {i: self._t.jobs[i] for i in job_ids if i in self._t.jobs}

    def job_by_idempotency(self, tenant: str, key: str) -> JobRecord | None:
        found = (j for j in self._t.jobs.values() if (j.tenant, j.idempotency_key) == (tenant, key))
        return next(found, None)

    def jobs(
        self,
        tenant: str | None,
        states: Iterable[JobState] | None = None,
        limit: int = 100,
        offset: int = 0,
        chip: str | None = None,
    ) -> list[JobRecord]:
        wanted = None if states is None else set(states)
        jobs = [
            j
            for j in sorted(self._t.jobs.values(), key=lambda j: j.id)
            if (tenant is None or j.tenant == tenant)
            and (wanted is None or j.state in wanted)
            and (chip is None or j.spec.resources.chip == chip)
        ]
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)[offset : offset + limit]

    def queued(self) -> list[JobRecord]:
        return self.with_states([JobState.QUEUED])

    def with_states(self, states: Iterable[JobState]) -> list[JobRecord]:
        wanted = set(states)
        jobs = [j for j in self._t.jobs.values() if j.state in wanted]
        return sorted(jobs, key=lambda j: (j.created_at, j.id))

    def count_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for j in self._t.jobs.values():
            counts[j.state.value] = counts.get(j.state.value, 0) + 1
        return counts

    def update_job(self, job: JobRecord, now: float, change: JobChange) -> bool:
        self._log("update_job", job.id)
        stored = self._t.jobs.get(job.id)
        if stored is None or stored.version != job.version:
            return False
        fields = changed_fields(change)
        self._t.jobs[job.id] = replace(stored, **fields, updated_at=now, version=job.version + 1)
        return True

    def add_event(self, job_id: str, at: float, state: str, reason: str) -> None:
        self._log("add_event", job_id)
        self._t.events.append((job_id, JobEvent(at, str(state), reason)))

    def events(self, job_id: str) -> list[JobEvent]:
        return [event for job, event in self._t.events if job == job_id]

    def add_attempt(self, attempt: AttemptRecord) -> int:
        attempt_id = next(self._ids)
        self._log("add_attempt", attempt.job)
        self._t.attempts[attempt_id] = replace(
            attempt,
            id=attempt_id,
            dispatched=False,
            exit_code=None,
            started_at=None,
            ended_at=None,
        )
        return attempt_id

    def attempts(self, job_id: str) -> list[AttemptRecord]:
        return sorted(
            (a for a in self._t.attempts.values() if a.job == job_id), key=lambda a: a.number
        )

    def live_attempts(self, tenant: str | None = None) -> list[AttemptRecord]:
        live = [a for _, a in sorted(self._t.attempts.items()) if not a.state.ended]
        return [a for a in live if tenant is None or self._t.jobs[a.job].tenant == tenant]

    def finished_runs(
        self, pairs: Collection[tuple[str, str]], per_pair: int
    ) -> list[RunObservation]:
        runs: list[RunObservation] = []
        for tenant, kind in sorted(pairs):
            done = [
                (a, self._t.jobs[a.job])
                for a in self._t.attempts.values()
                if a.state is AttemptState.SUCCEEDED and a.started_at and a.ended_at
            ]
            done = [(a, j) for a, j in done if (j.tenant, j.spec.kind) == (tenant, kind)]
            done.sort(key=lambda pair: pair[0].ended_at or 0.0, reverse=True)
            for a, j in done[:per_pair]:
                reference = j.spec.expected_duration_s
                if reference is not None and not j.spec.simulated:
                    assert a.started_at is not None
                    assert a.ended_at is not None
                    run_s = a.ended_at - a.started_at
                    runs.append(
                        RunObservation(tenant, kind, ChipName(a.chip), reference, run_s, a.ended_at)
                    )
        return runs

    def update_attempt(self, attempt_id: int, change: AttemptChange) -> None:
        self._log("update_attempt", str(attempt_id))
        attempt = self._t.attempts[attempt_id]
        self._t.attempts[attempt_id] = replace(attempt, **changed_fields(change))

    def add_allocations(
        self, attempt_id: int, tenant: str, family: str, placements: Sequence[NodeCards]
    ) -> None:
        self._log("add_allocations", str(attempt_id))
        self._t.allocations += [
            Allocation(attempt_id, p.node_id, tenant, family, p.cards) for p in placements
        ]

    def release_allocations(self, attempt_id: int) -> None:
        self._log("release_allocations", str(attempt_id))
        self._t.allocations = [
            replace(a, active=False) if a.attempt == attempt_id else a for a in self._t.allocations
        ]

    def usage(self) -> dict[str, dict[str, int]]:
        held: dict[str, dict[str, int]] = {}
        for a in self._t.allocations:
            if a.active:
                by_family = held.setdefault(a.tenant, {})
                by_family[a.family] = by_family.get(a.family, 0) + a.cards
        return held
