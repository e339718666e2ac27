"""Tenants, quotas and API keys; authentication of a presented key.

A key looks like ``sw_Ab3dE6gH_<43 more characters>``. Only its prefix (``sw_Ab3dE6gH``)
and a SHA-256 hash of the whole key are stored; the key itself is returned once, at
creation. Keys are high-entropy random strings, so a fast hash compared in constant time
is the right tool (passwords, which are not, would need Argon2id).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from suanwang.domain.audit import AuditAction
from suanwang.domain.chips import Catalogue
from suanwang.domain.errors import Conflict, Forbidden, NotFound, Unauthenticated, ValidationError
from suanwang.domain.ids import TenantId, new_key_id
from suanwang.domain.records import KeyRecord, TenantRecord
from suanwang.domain.tenancy import (
    LOCAL_OPERATOR,
    UNITS,
    Principal,
    QuotaSpec,
    Scope,
    check_queue,
    check_quota_specs,
    check_tenant_name,
)
from suanwang.ports import Clock, UnitOfWorkFactory
from suanwang.services import audit

KEY_SHAPE = re.compile(r"^(sw_[A-Za-z0-9]{8})_[A-Za-z0-9_-]{43}$")
MAX_KEY_LIFETIME_S = 5 * 365 * 24 * 3600
log = structlog.get_logger("suanwang.tenancy")
_ALPHANUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def hash_key(key: str) -> str:
    """SHA-256 hex digest of a whole key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _new_secret() -> tuple[str, str]:
    prefix = "sw_" + "".join(secrets.choice(_ALPHANUM) for _ in range(8))
    return prefix, f"{prefix}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key as created: the record and the secret, which is never shown again."""

    record: KeyRecord
    secret: str


class Tenancy:
    """Use cases for tenants and keys."""

    def __init__(self, uows: UnitOfWorkFactory, clock: Clock, catalogue: Catalogue) -> None:
        self._uows = uows
        self._clock = clock
        self._catalogue = catalogue

    def authenticate(self, presented: str | None) -> Principal:
        """The principal behind a presented key, or Unauthenticated (same error for every cause)."""
        match = KEY_SHAPE.match(presented or "")
        if match is None:
            raise Unauthenticated(
                "missing or invalid API key", hint="send 'Authorization: Bearer sw_…'"
            )
        with self._uows() as uow:
            record = uow.tenancy.key_by_prefix(match.group(1))
        assert presented is not None
        if record is None or not hmac.compare_digest(hash_key(presented), record.secret_hash):
            raise Unauthenticated(
                "missing or invalid API key", hint="check the key, or create a new one"
            )
        if not record.usable_at(self._clock.now()):
            raise Unauthenticated("API key revoked or expired", hint="create a new key")
        tenant = TenantId(record.tenant) if record.tenant else None
        return Principal(record.id, record.scope, tenant, key_prefix=record.prefix)

    def create_tenant(
        self,
        name: str,
        display_name: str,
        quota: Mapping[str, int | QuotaSpec],
        cohort: str | None = None,
        weight: float = 1.0,
        *,
        actor: Principal = LOCAL_OPERATOR,
    ) -> TenantRecord:
        """Create a tenant with its quota (cards per chip family, or QuotaSpecs) and queue."""
        check_tenant_name(name)
        specs = self._specs(quota)
        cohort, weight = check_queue(cohort, weight)
        now = self._clock.now()
        with self._uows() as uow:
            if uow.tenancy.tenant(name) is not None:
                raise Conflict(f"tenant {name!r} already exists", field="name")
            uow.tenancy.add_tenant(name, display_name or name, now)
            uow.tenancy.set_quota(name, specs)
            uow.tenancy.set_queue(name, cohort, weight)
            record = uow.tenancy.tenant(name)
            assert record is not None
            audit.record(
                uow,
                actor,
                AuditAction.TENANT_CREATE,
                name,
                tenant=name,
                at=now,
                after=audit.tenant_value(record),
            )
            uow.commit()
        return record

    def _specs(self, quota: Mapping[str, int | QuotaSpec]) -> dict[str, QuotaSpec]:
        specs = {f: q if isinstance(q, QuotaSpec) else QuotaSpec(q) for f, q in quota.items()}
        return check_quota_specs(specs, self._catalogue.families | {UNITS})

    def tenants(self, principal: Principal) -> list[TenantRecord]:
        with self._uows() as uow:
            everyone = uow.tenancy.tenants()
        return [t for t in everyone if principal.can_see_tenant(t.id)]

    def tenant(self, principal: Principal, name: str) -> TenantRecord:
        with self._uows() as uow:
            record = uow.tenancy.tenant(name)
        if record is None or not principal.can_see_tenant(record.id):
            raise NotFound(f"no tenant {name!r}", field="name")
        return record

    def set_quota(
        self,
        name: str,
        quota: Mapping[str, int | QuotaSpec],
        cohort: str | None = None,
        weight: float = 1.0,
        *,
        actor: Principal = LOCAL_OPERATOR,
    ) -> TenantRecord:
        """Replace a tenant's quota map and queue settings (cohort, fair-share weight)."""
        specs = self._specs(quota)
        cohort, weight = check_queue(cohort, weight)
        with self._uows() as uow:
            uow.lock_scheduler()  # a quota is a scheduling input; and concurrent replacements
            old = uow.tenancy.tenant(name)  # of one quota map would collide on PostgreSQL
            if old is None:
                raise NotFound(f"no tenant {name!r}", field="name")
            uow.tenancy.set_quota(name, specs)
            uow.tenancy.set_queue(name, cohort, weight)
            record = uow.tenancy.tenant(name)
            assert record is not None
            audit.record(
                uow,
                actor,
                AuditAction.QUOTA_UPDATE,
                name,
                tenant=name,
                at=self._clock.now(),
                before=audit.tenant_value(old),
                after=audit.tenant_value(record),
            )
            uow.commit()
        return record

    def create_key(
        self,
        creator: Principal,
        *,
        tenant: str | None,
        scope: Scope,
        name: str,
        expires_in_s: int | None,
    ) -> NewKey:
        """Mint a key no broader than the creator's, for the creator's own tenant."""
        tenant = self._key_tenant(creator, tenant, scope)
        if expires_in_s is not None and not 0 < expires_in_s <= MAX_KEY_LIFETIME_S:
            raise ValidationError(
                "expires_in_s must be between 1 s and 5 years", field="expires_in_s"
            )
        now = self._clock.now()
        prefix, secret = _new_secret()
        record = KeyRecord(
            id=new_key_id(),
            prefix=prefix,
            secret_hash=hash_key(secret),
            tenant=tenant,
            scope=scope,
            name=name,
            created_by=creator.key_id,
            created_at=now,
            expires_at=None if expires_in_s is None else now + expires_in_s,
            revoked_at=None,
        )
        with self._uows() as uow:
            if tenant is not None and uow.tenancy.tenant(tenant) is None:
                raise NotFound(f"no tenant {tenant!r}", field="tenant")
            uow.tenancy.add_key(record)
            audit.record(
                uow,
                creator,
                AuditAction.KEY_CREATE,
                record.id,
                tenant=tenant,
                at=now,
                after=audit.key_value(record),
            )
            uow.commit()
        log.info(
            "api key created",
            key_id=record.id,
            prefix=prefix,
            tenant=tenant,
            scope=scope.value,
            created_by=creator.key_id,
        )
        return NewKey(record, secret)

    def _key_tenant(self, creator: Principal, tenant: str | None, scope: Scope) -> str | None:
        if not creator.scope.covers(scope):
            raise Forbidden(f"a {creator.scope} key cannot create a {scope} key", field="scope")
        if scope is Scope.OPERATOR:
            if tenant is not None:
                raise ValidationError("operator keys belong to no tenant", field="tenant")
            return None
        if creator.is_operator:
            if tenant is None:
                raise ValidationError("name the tenant the key is for", field="tenant")
            return tenant
        if tenant is not None and tenant != creator.tenant_id:
            raise NotFound(f"no tenant {tenant!r}", field="tenant")
        return creator.tenant_id

    def keys(self, principal: Principal, tenant: str | None = None) -> list[KeyRecord]:
        with self._uows() as uow:
            if principal.is_operator:
                return uow.tenancy.keys(tenant, operator_keys=False)
            if tenant is not None and tenant != principal.tenant_id:
                raise NotFound(f"no tenant {tenant!r}", field="tenant")
            return uow.tenancy.keys(principal.tenant_id, operator_keys=False)

    def revoke_key(self, principal: Principal, key_id: str) -> KeyRecord:
        with self._uows() as uow:
            record = uow.tenancy.key(key_id)
            visible = record is not None and (
                principal.is_operator
                or (record.tenant is not None and record.tenant == principal.tenant_id)
            )
            if record is None or not visible:
                raise NotFound(f"no key {key_id!r}", field="key_id")
            if record.revoked_at is None:
                now = self._clock.now()
                uow.tenancy.revoke_key(key_id, now)
                uow.sessions.delete_for_key(key_id)  # its console sessions end with it
                audit.record(
                    uow,
                    principal,
                    AuditAction.KEY_REVOKE,
                    key_id,
                    tenant=record.tenant,
                    at=now,
                    before=audit.key_value(record),
                    after=audit.key_value(dataclasses.replace(record, revoked_at=now)),
                )
                uow.commit()
        log.info("api key revoked", key_id=key_id, revoked_by=principal.key_id)
        with self._uows() as uow:
            revoked = uow.tenancy.key(key_id)
        assert revoked is not None
        return revoked

    def bootstrap_operator_key(self, name: str = "bootstrap") -> NewKey:
        """Create an operator key without a caller (local admin command; used once at set-up)."""
        return self.create_key(
            LOCAL_OPERATOR, tenant=None, scope=Scope.OPERATOR, name=name, expires_in_s=None
        )
