"""Gateway limits rows: per tenant (rates, token quota, period) and per key (rates, models)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from suanwang.adapters.db.tables import KeyLimitsRow, TenantLimitsRow
from suanwang.domain.limits import KeyLimits, QuotaPeriod, TenantLimits


class LimitsRepository:
    """Reads and writes gateway limits inside one unit of work."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def tenant_limits(self, tenant: str) -> TenantLimits | None:
        row = self._s.get(TenantLimitsRow, tenant)
        if row is None:
            return None
        return TenantLimits(
            row.rpm, row.tpm, row.token_quota, row.period_s, QuotaPeriod(row.period)
        )

    def set_tenant_limits(self, tenant: str, limits: TenantLimits, now: float) -> None:
        self._s.merge(
            TenantLimitsRow(
                tenant=tenant,
                rpm=limits.rpm,
                tpm=limits.tpm,
                token_quota=limits.token_quota,
                period_s=limits.period_s,
                period=limits.period.value,
                updated_at=now,
            )
        )
        self._s.flush()

    def key_limits(self, key_id: str) -> KeyLimits | None:
        row = self._s.get(KeyLimitsRow, key_id)
        if row is None:
            return None
        models = None if row.models is None else tuple(row.models)
        return KeyLimits(row.rpm, row.tpm, models)

    def set_key_limits(self, key_id: str, limits: KeyLimits, now: float) -> None:
        models = None if limits.models is None else list(limits.models)
        self._s.merge(
            KeyLimitsRow(
                key_id=key_id, rpm=limits.rpm, tpm=limits.tpm, models=models, updated_at=now
            )
        )
        self._s.flush()
