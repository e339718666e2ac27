"""Tenant, quota and API-key rows. Keys are stored as a prefix plus a SHA-256 hash only."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from suanwang.adapters.db.tables import ApiKeyRow, QuotaRow, TenantRow, TenantUidRow
from suanwang.domain.records import KeyRecord, TenantRecord
from suanwang.domain.tenancy import QuotaSpec, Scope


class TenancyRepository:
    """Reads and writes tenants and keys inside one unit of work."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add_tenant(self, tenant_id: str, display_name: str, now: float) -> None:
        self._s.add(TenantRow(id=tenant_id, display_name=display_name, created_at=now))
        self._s.flush()

    def tenant(self, tenant_id: str) -> TenantRecord | None:
        row = self._s.get(TenantRow, tenant_id)
        return None if row is None else self._tenant(row)

    def tenants(self) -> list[TenantRecord]:
        return [self._tenant(r) for r in self._s.scalars(select(TenantRow).order_by(TenantRow.id))]

    def quotas(self) -> dict[str, dict[str, QuotaSpec]]:
        """Every tenant's quota map (tenants without quota rows are absent)."""
        result: dict[str, dict[str, QuotaSpec]] = {}
        for row in self._s.scalars(select(QuotaRow)):
            result.setdefault(row.tenant, {})[row.family] = _spec(row)
        return result

    def set_quota(self, tenant_id: str, quota: dict[str, QuotaSpec]) -> None:
        self._s.execute(delete(QuotaRow).where(QuotaRow.tenant == tenant_id))
        self._s.add_all(
            QuotaRow(
                tenant=tenant_id,
                family=f,
                cards=q.nominal,
                borrowing_limit=q.borrowing_limit,
                lending_limit=q.lending_limit,
            )
            for f, q in quota.items()
        )

    def set_queue(self, tenant_id: str, cohort: str | None, weight: float) -> None:
        row = self._s.get(TenantRow, tenant_id)
        if row is not None:
            row.cohort, row.weight = cohort, weight

    def _tenant(self, row: TenantRow) -> TenantRecord:
        quota = {
            q.family: _spec(q)
            for q in self._s.scalars(select(QuotaRow).where(QuotaRow.tenant == row.id))
        }
        return TenantRecord(
            row.id,
            row.display_name,
            row.created_at,
            dict(sorted(quota.items())),
            row.cohort,
            row.weight,
        )

    def add_key(self, key: KeyRecord) -> None:
        self._s.add(
            ApiKeyRow(
                id=key.id,
                prefix=key.prefix,
                secret_hash=key.secret_hash,
                tenant=key.tenant,
                scope=key.scope.value,
                name=key.name,
                created_by=key.created_by,
                created_at=key.created_at,
                expires_at=key.expires_at,
                revoked_at=None,
            )
        )
        self._s.flush()

    def key_by_prefix(self, prefix: str) -> KeyRecord | None:
        row = self._s.scalar(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix))
        return None if row is None else _key(row)

    def key(self, key_id: str) -> KeyRecord | None:
        row = self._s.get(ApiKeyRow, key_id)
        return None if row is None else _key(row)

    def keys(self, tenant_id: str | None, *, operator_keys: bool) -> list[KeyRecord]:
        """Keys of one tenant, or (``operator_keys``) the operator's own keys, or all."""
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        if tenant_id is not None:
            query = query.where(ApiKeyRow.tenant == tenant_id)
        elif operator_keys:
            query = query.where(ApiKeyRow.tenant.is_(None))
        return [_key(r) for r in self._s.scalars(query)]

    def local_uid(self, tenant_id: str) -> int | None:
        row = self._s.get(TenantUidRow, tenant_id)
        return None if row is None else row.uid

    def highest_local_uid(self, first: int, last: int) -> int | None:
        """The highest uid handed out within ``first..last`` (None if none was)."""
        return self._s.scalar(
            select(func.max(TenantUidRow.uid)).where(TenantUidRow.uid.between(first, last))
        )

    def add_local_uid(self, tenant_id: str, uid: int, now: float) -> None:
        self._s.add(TenantUidRow(tenant=tenant_id, uid=uid, allocated_at=now))
        self._s.flush()

    def revoke_key(self, key_id: str, now: float) -> None:
        row = self._s.get(ApiKeyRow, key_id)
        if row is not None and row.revoked_at is None:
            row.revoked_at = now


def _spec(row: QuotaRow) -> QuotaSpec:
    return QuotaSpec(row.cards, row.borrowing_limit, row.lending_limit)


def _key(row: ApiKeyRow) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        prefix=row.prefix,
        secret_hash=row.secret_hash,
        tenant=row.tenant,
        scope=Scope(row.scope),
        name=row.name,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )
