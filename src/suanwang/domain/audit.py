"""The audit log's records: who changed what, when, from which value to which.

An :class:`AuditEntry` is written in the same transaction as the change it describes, so
the two commit (or roll back) together. Entries are append-only: nothing updates or deletes
them. Values are plain JSON with secrets removed by :func:`scrub` (key hashes and new keys
never reach the log). Reading is filtered by :class:`AuditQuery`; who may read what is the
service's business (:mod:`suanwang.services.audit`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from suanwang.domain.errors import ValidationError
from suanwang.domain.tenancy import Principal, Scope

JsonObject = Mapping[str, Any]
"""A JSON object (nested dicts, lists, strings, numbers, booleans, null)."""

SECRET_FIELDS = frozenset(
    {"secret", "secret_hash", "key", "api_key", "token", "password", "authorization"}
)
"""Field names whose values never reach the log, at any depth."""
KEY_IN_TEXT = re.compile(r"(sw_[A-Za-z0-9]{8})_[A-Za-z0-9_-]{20,}")
MAX_PAGE = 500
DEFAULT_PAGE = 100


class AuditResource(enum.StrEnum):
    """The kinds of object the log names (filterable with ``resource=``)."""

    FLEET = "fleet"
    TENANT = "tenant"
    KEY = "key"
    JOB = "job"
    DEPLOYMENT = "deployment"
    CLUSTER = "cluster"
    DATASET = "dataset"
    AGENT = "agent"
    SESSION = "session"


class AuditAction(enum.StrEnum):
    """What was done, as ``<resource>.<verb>`` (filterable with ``action=``)."""

    FLEET_APPLY = "fleet.apply"
    TENANT_CREATE = "tenant.create"
    QUOTA_UPDATE = "quota.update"
    TIER_UPDATE = "tier.update"
    TENANT_LIMITS_UPDATE = "tenant-limits.update"
    KEY_CREATE = "key.create"
    KEY_REVOKE = "key.revoke"
    KEY_LIMITS_UPDATE = "key-limits.update"
    JOB_SUBMIT = "job.submit"
    JOB_CANCEL = "job.cancel"
    DEPLOYMENT_CREATE = "deployment.create"
    DEPLOYMENT_SCALE = "deployment.scale"
    DEPLOYMENT_DELETE = "deployment.delete"
    DEPLOYMENT_UPDATE = "deployment.update"
    DEPLOYMENT_AUTOSCALE = "deployment.autoscale"
    """Autoscaling settings set or turned off (the autoscaler's own changes are ``scale``)."""
    DATASET_CREATE = "dataset.create"
    DATASET_SEAL = "dataset.seal"
    DATASET_DELETE = "dataset.delete"
    DATASET_COPY = "dataset.copy"
    AGENT_REGISTER = "agent.register"
    AGENT_ROTATE = "agent.rotate"
    STORAGE_QUOTA_UPDATE = "storage-quota.update"
    SESSION_LOGIN = "session.login"
    """A web-console session began (an API key was exchanged for a session cookie)."""
    SESSION_LOGOUT = "session.logout"
    ORPHAN_RUN = "cluster.orphan-run"
    """A run an engine holds that no live attempt owns: found, then cancelled."""

    @property
    def resource(self) -> AuditResource:
        """The kind of object the action changes (``tenant`` for ``quota.update`` …)."""
        return _RESOURCE_OF[self.value]


_RESOURCE_OF = {
    "fleet.apply": AuditResource.FLEET,
    "tenant.create": AuditResource.TENANT,
    "quota.update": AuditResource.TENANT,
    "tier.update": AuditResource.TENANT,
    "tenant-limits.update": AuditResource.TENANT,
    "key.create": AuditResource.KEY,
    "key.revoke": AuditResource.KEY,
    "key-limits.update": AuditResource.KEY,
    "job.submit": AuditResource.JOB,
    "job.cancel": AuditResource.JOB,
    "deployment.create": AuditResource.DEPLOYMENT,
    "deployment.scale": AuditResource.DEPLOYMENT,
    "deployment.delete": AuditResource.DEPLOYMENT,
    "cluster.orphan-run": AuditResource.CLUSTER,
    "deployment.update": AuditResource.DEPLOYMENT,
    "deployment.autoscale": AuditResource.DEPLOYMENT,
    "dataset.create": AuditResource.DATASET,
    "dataset.seal": AuditResource.DATASET,
    "dataset.delete": AuditResource.DATASET,
    "dataset.copy": AuditResource.DATASET,
    "agent.register": AuditResource.AGENT,
    "agent.rotate": AuditResource.AGENT,
    "storage-quota.update": AuditResource.TENANT,
    "session.login": AuditResource.SESSION,
    "session.logout": AuditResource.SESSION,
}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change: the key (id and prefix, never the key), its scope and tenant."""

    key_id: str
    key_prefix: str | None
    scope: Scope
    tenant: str | None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(principal.key_id, principal.key_prefix, principal.scope, principal.tenant_id)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change. ``tenant`` is the tenant the change concerns (None: the platform's own).

    ``outcome`` is ``success``: a change that fails rolls back with its entry, so only
    changes that took effect are in the log.
    """

    at: float
    actor: Actor
    action: AuditAction
    resource_id: str | None
    tenant: str | None
    before: JsonObject | None
    after: JsonObject | None
    request_id: str | None
    outcome: str = "success"
    id: int | None = None
    """Assigned by the store; increases with every entry."""

    @property
    def resource(self) -> AuditResource:
        return self.action.resource


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A page of entries, newest first: those with ``id < before_id`` that match every filter."""

    since: float | None = None
    until: float | None = None
    tenant: str | None = None
    action: AuditAction | None = None
    resource: AuditResource | None = None
    resource_id: str | None = None
    actor: str | None = None
    before_id: int | None = None
    limit: int = DEFAULT_PAGE

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValidationError(f"limit must be 1-{MAX_PAGE}", field="limit")


def scrub(value: Any) -> Any:
    """``value`` with secret fields dropped and API keys in text masked to their prefix."""
    if isinstance(value, str):
        return KEY_IN_TEXT.sub(r"\1_***", value)
    if isinstance(value, Mapping):
        return {str(k): scrub(v) for k, v in value.items() if str(k).lower() not in SECRET_FIELDS}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value
