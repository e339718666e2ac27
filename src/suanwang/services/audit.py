"""The audit log as use cases: record a change inside its unit of work, and read the log.

Every service method that changes something calls :func:`record` once, in the same unit of
work as the change and before its commit, so the change and its entry commit or roll back
together. A failed change (a 4xx, an exception) therefore leaves no entry. The ``*_value``
functions give the JSON shapes of the before/after values; they never include key hashes or
keys, and :func:`~suanwang.domain.audit.scrub` removes anything secret-looking besides.

Who reads what: the operator every entry; a tenant admin the entries that concern its own
tenant, with the operator's key shown only as ``operator``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from suanwang.domain.audit import Actor, AuditAction, AuditEntry, AuditQuery, JsonObject, scrub
from suanwang.domain.autoscaling import AutoscaleSpec
from suanwang.domain.deployments import DeploymentRecord
from suanwang.domain.errors import Forbidden, NotFound
from suanwang.domain.jobs import spec_to_dict
from suanwang.domain.limits import KeyLimits, TenantLimits
from suanwang.domain.records import JobRecord, KeyRecord, TenantRecord
from suanwang.domain.tenancy import Principal, QuotaSpec, Scope
from suanwang.ports import UnitOfWork, UnitOfWorkFactory

MASKED = "***"


def record(
    uow: UnitOfWork,
    actor: Principal,
    action: AuditAction,
    resource_id: str | None,
    *,
    tenant: str | None,
    at: float,
    before: JsonObject | None = None,
    after: JsonObject | None = None,
) -> None:
    """Append the entry for one change to ``uow`` (committed with the change, or not at all)."""
    uow.audit.append(
        AuditEntry(
            at=at,
            actor=Actor.of(actor),
            action=action,
            resource_id=resource_id,
            tenant=tenant,
            before=None if before is None else scrub(before),
            after=None if after is None else scrub(after),
            request_id=actor.request_id,
        )
    )


# --- the before/after values ------------------------------------------------------------------
def quota_value(quota: Mapping[str, QuotaSpec]) -> dict[str, Any]:
    return {family: dataclasses.asdict(spec) for family, spec in quota.items()}


def tenant_value(tenant: TenantRecord) -> dict[str, Any]:
    return {
        "display_name": tenant.display_name,
        "quota": quota_value(tenant.quota),
        "cohort": tenant.cohort,
        "weight": tenant.weight,
    }


def key_value(key: KeyRecord) -> dict[str, Any]:
    """A key as the log shows it: never its hash, never the key."""
    return {
        "prefix": key.prefix,
        "tenant": key.tenant,
        "scope": key.scope.value,
        "name": key.name,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    }


def limits_value(limits: TenantLimits | KeyLimits | None) -> dict[str, Any] | None:
    if limits is None:
        return None
    value = dataclasses.asdict(limits)
    if isinstance(limits, TenantLimits):
        value["period"] = limits.period.value
    elif limits.models is not None:
        value["models"] = list(limits.models)
    return value


def job_state_value(job: JobRecord) -> dict[str, Any]:
    return {
        "state": job.state.value,
        "cancel_requested": job.cancel_requested,
        "reason": job.reason,
    }


def job_value(job: JobRecord) -> dict[str, Any]:
    """A job's state and spec; environment values are masked (they may hold the tenant's
    secrets), their names kept."""
    spec = spec_to_dict(job.spec)
    spec["env"] = dict.fromkeys(spec["env"], MASKED)
    return {"name": job.name, **job_state_value(job), "spec": spec}


def deployment_value(dep: DeploymentRecord) -> dict[str, Any]:
    return {
        "model": dep.model,
        "cluster": dep.cluster,
        "engine": dep.engine,
        "chip": dep.chip,
        "replicas": dep.replicas,
        "state": dep.state.value,
        "public": dep.tenant is None,
        **({"autoscale": autoscale_value(dep.autoscale)} if dep.autoscale is not None else {}),
    }


def autoscale_value(spec: AutoscaleSpec) -> dict[str, Any]:
    target = {k: v for k, v in dataclasses.asdict(spec.target).items() if v is not None}
    return {**dataclasses.asdict(spec), "target": target}


# --- reading ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AuditPage:
    """Entries newest first; ``next_before`` continues the listing (None: no more)."""

    entries: list[AuditEntry]
    next_before: int | None


class AuditLog:
    """Reads the audit log with tenant isolation."""

    def __init__(self, uows: UnitOfWorkFactory) -> None:
        self._uows = uows

    def entries(self, principal: Principal, query: AuditQuery) -> AuditPage:
        """A page of what ``principal`` may see (the operator: all; a tenant admin: its own)."""
        if not principal.is_operator:
            query = self._own_tenant(principal, query)
        with self._uows() as uow:
            found = uow.audit.entries(query)
        if not principal.is_operator:
            found = [_hide_foreign_actor(e, principal) for e in found]
        more = len(found) == query.limit and found[-1].id is not None
        return AuditPage(found, found[-1].id if more else None)

    @staticmethod
    def _own_tenant(principal: Principal, query: AuditQuery) -> AuditQuery:
        if principal.scope is not Scope.TENANT_ADMIN or principal.tenant_id is None:
            raise Forbidden("the audit log is for the operator and tenant admins")
        if query.tenant is not None and query.tenant != principal.tenant_id:
            raise NotFound(f"no tenant {query.tenant[:64]!r}", field="tenant")
        return dataclasses.replace(query, tenant=principal.tenant_id)


def _hide_foreign_actor(entry: AuditEntry, reader: Principal) -> AuditEntry:
    """The operator's key stays the operator's business: a tenant sees ``operator``."""
    if entry.actor.tenant == reader.tenant_id:
        return entry
    hidden = Actor(entry.actor.scope.value, None, entry.actor.scope, None)
    return dataclasses.replace(entry, actor=hidden)
