"""Gateway limits as use cases: the operator sets a tenant's, a tenant admin its keys'.

A tenant's limits (requests and tokens per minute, token quota per period) bound all its
keys together; a key's limits (rates, model allow-list) narrow one key further. Unset
means unlimited. The gateway reads both through :meth:`GatewayLimits.limits_for`.
"""

from __future__ import annotations

import structlog

from suanwang.domain.audit import AuditAction
from suanwang.domain.errors import Forbidden, NotFound
from suanwang.domain.limits import KeyLimits, Limits, TenantLimits
from suanwang.domain.records import KeyRecord
from suanwang.domain.tenancy import Principal
from suanwang.ports import Clock, UnitOfWork, UnitOfWorkFactory
from suanwang.services import audit

log = structlog.get_logger("suanwang.limits")


class GatewayLimits:
    """Use cases for gateway limits."""

    def __init__(self, uows: UnitOfWorkFactory, clock: Clock) -> None:
        self._uows = uows
        self._clock = clock

    def limits_for(self, tenant: str, key_id: str) -> Limits:
        """What the gateway enforces for ``key_id`` of ``tenant`` (one short read)."""
        with self._uows() as uow:
            return Limits(
                uow.limits.tenant_limits(tenant) or TenantLimits(),
                uow.limits.key_limits(key_id) or KeyLimits(),
            )

    def tenant_limits(self, principal: Principal, tenant: str) -> TenantLimits:
        with self._uows() as uow:
            if uow.tenancy.tenant(tenant) is None or not principal.can_see_tenant(tenant):
                raise NotFound(f"no tenant {tenant!r}", field="name")
            return uow.limits.tenant_limits(tenant) or TenantLimits()

    def set_tenant_limits(
        self, principal: Principal, tenant: str, limits: TenantLimits
    ) -> TenantLimits:
        """Replace a tenant's limits (operator only)."""
        if not principal.is_operator:
            raise Forbidden("only the operator sets tenant limits", field="name")
        with self._uows() as uow:
            if uow.tenancy.tenant(tenant) is None:
                raise NotFound(f"no tenant {tenant!r}", field="name")
            now = self._clock.now()
            old = uow.limits.tenant_limits(tenant)
            uow.limits.set_tenant_limits(tenant, limits, now)
            audit.record(
                uow,
                principal,
                AuditAction.TENANT_LIMITS_UPDATE,
                tenant,
                tenant=tenant,
                at=now,
                before=audit.limits_value(old),
                after=audit.limits_value(limits),
            )
            uow.commit()
        log.info("tenant limits set", tenant=tenant, by=principal.key_id)
        return limits

    def key_limits(self, principal: Principal, key_id: str) -> KeyLimits:
        with self._uows() as uow:
            self._visible_key(uow, principal, key_id)
            return uow.limits.key_limits(key_id) or KeyLimits()

    def set_key_limits(self, principal: Principal, key_id: str, limits: KeyLimits) -> KeyLimits:
        """Replace one key's limits (the operator, or an admin of the key's tenant)."""
        with self._uows() as uow:
            key = self._visible_key(uow, principal, key_id)
            now = self._clock.now()
            old = uow.limits.key_limits(key_id)
            uow.limits.set_key_limits(key_id, limits, now)
            audit.record(
                uow,
                principal,
                AuditAction.KEY_LIMITS_UPDATE,
                key_id,
                tenant=key.tenant,
                at=now,
                before=audit.limits_value(old),
                after=audit.limits_value(limits),
            )
            uow.commit()
        log.info("key limits set", key_id=key_id, by=principal.key_id)
        return limits

    @staticmethod
    def _visible_key(uow: UnitOfWork, principal: Principal, key_id: str) -> KeyRecord:
        """A live key the caller may manage; a revoked key has no limits any more (404)."""
        record = uow.tenancy.key(key_id)
        visible = record is not None and (
            principal.is_operator
            or (record.tenant is not None and record.tenant == principal.tenant_id)
        )
        if record is None or not visible:
            raise NotFound(f"no key {key_id!r}", field="key_id")
        if record.revoked_at is not None:
            raise NotFound(
                f"key {key_id!r} is revoked", field="key_id", hint="limits apply to live keys only"
            )
        return record
