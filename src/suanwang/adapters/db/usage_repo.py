"""Ledger reads and compute-metering bookkeeping inside one unit of work.

Writes go through :func:`suanwang.adapters.db.usage_ledger.insert_rows` (append-only,
idempotent on ``entry_id``); this module sums the ledger for usage reports and bills,
reads and sets tenants' price tiers, and finds attempts with card-time not yet metered.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from suanwang.adapters.db.tables import AttemptRow, JobRow, ReplicaRow, TenantRow, UsageLedgerRow
from suanwang.adapters.db.usage_ledger import compute_row, insert_rows, storage_row, token_row
from suanwang.domain.billing import UsageTotal
from suanwang.domain.metering import AttemptSpan
from suanwang.domain.usage import ComputeUsage, StorageUsage, TokenUsage, UsageKind

L = UsageLedgerRow


class UsageRepository:
    """The ledger and metering watermarks as one unit of work sees them."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def append(
        self, entries: Iterable[TokenUsage | ComputeUsage | StorageUsage], recorded_at: float
    ) -> int:
        """Append ``entries`` (known entry ids are skipped); returns how many were new."""
        rows = []
        for e in entries:
            if isinstance(e, TokenUsage):
                rows.append(token_row(e, recorded_at))
            elif isinstance(e, ComputeUsage):
                rows.append(compute_row(e, recorded_at))
            else:
                rows.append(storage_row(e, recorded_at))
        return insert_rows(self._s.connection(), rows)

    def totals(self, tenant: str | None, start: float, end: float) -> list[UsageTotal]:
        """Sums by tenant and model (tokens) or chip (compute), ``start <= ended_at < end``."""
        item = func.coalesce(func.nullif(L.model, ""), L.chip)
        query = (
            select(
                L.tenant,
                L.kind,
                item,
                func.count(),
                func.sum(L.prompt_tokens),
                func.sum(L.completion_tokens),
                func.sum(L.card_ms),
                func.sum(L.byte_s),
            )
            .where(L.ended_at >= start, L.ended_at < end)
            .group_by(L.tenant, L.kind, item)
            .order_by(L.tenant, L.kind, item)
        )
        if tenant is not None:
            query = query.where(L.tenant == tenant)
        return [
            UsageTotal(
                tenant=row[0],
                kind=UsageKind(row[1]),
                item=row[2],
                entries=int(row[3]),
                prompt_tokens=int(row[4] or 0),
                completion_tokens=int(row[5] or 0),
                card_ms=int(row[6] or 0),
                byte_s=int(row[7] or 0),
            )
            for row in self._s.execute(query)
        ]

    def tier(self, tenant: str) -> str | None:
        """The tenant's price tier, or ``None`` when there is no such tenant."""
        return self._s.execute(select(TenantRow.tier).where(TenantRow.id == tenant)).scalar()

    def set_tier(self, tenant: str, tier: str) -> bool:
        """Set the tenant's price tier; ``False`` when there is no such tenant."""
        row = self._s.get(TenantRow, tenant)
        if row is None:
            return False
        row.tier = tier
        self._s.flush()
        return True

    def unmetered_attempts(self, boundary: float) -> list[AttemptSpan]:
        """Ended attempts not fully metered, and running ones with a closed interval before
        ``boundary`` (the newest grid boundary) not yet metered."""
        ended_pending = and_(
            AttemptRow.ended_at.is_not(None),
            or_(AttemptRow.metered_to.is_(None), AttemptRow.metered_to < AttemptRow.ended_at),
        )
        running_pending = and_(
            AttemptRow.ended_at.is_(None),
            func.coalesce(AttemptRow.metered_to, AttemptRow.started_at) < boundary,
        )
        query = (
            select(AttemptRow, JobRow.tenant, ReplicaRow.id)
            .join(JobRow, JobRow.id == AttemptRow.job)
            .outerjoin(ReplicaRow, ReplicaRow.job == AttemptRow.job)
            .where(AttemptRow.started_at.is_not(None), or_(ended_pending, running_pending))
            .order_by(AttemptRow.id)
        )
        spans: dict[int, AttemptSpan] = {}
        for attempt, tenant, replica in self._s.execute(query):
            assert attempt.started_at is not None
            spans[attempt.id] = AttemptSpan(
                attempt_id=attempt.id,
                job=attempt.job,
                number=attempt.number,
                tenant=tenant,
                chip=attempt.chip,
                cards=attempt.cards,
                started_at=attempt.started_at,
                ended_at=attempt.ended_at,
                metered_to=attempt.metered_to,
                replica=replica,
            )
        return list(spans.values())

    def set_metered_to(self, attempt_id: int, metered_to: float) -> None:
        self._s.execute(
            update(AttemptRow).where(AttemptRow.id == attempt_id).values(metered_to=metered_to)
        )
