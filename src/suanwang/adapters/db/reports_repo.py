"""Read-only aggregates for the operator's views (``ReportStore``): attempt spans over a
window, capacity per region or chip, queued jobs grouped by tenant, chip and reason, and
transfers with their dataset's owner. Everything that can grow is filtered, grouped and
paged in SQL; nothing here writes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, exists, func, or_, select
from sqlalchemy.orm import Session

from suanwang.adapters.db.datasets_repo import transfer_record
from suanwang.adapters.db.tables import (
    AttemptRow,
    ClusterRow,
    DatasetRow,
    JobRow,
    NodeRow,
    ReplicaRow,
    TenantRow,
    TransferRow,
)
from suanwang.domain.fleet import ClusterKind
from suanwang.domain.jobs import JobState
from suanwang.domain.oversight import QueueGroup, TransferListing
from suanwang.domain.transfers import TransferState
from suanwang.domain.utilisation import BusySpan, GroupCapacity, UtilBy

SIMULATED = ClusterKind.SIMULATED.value


class ReportRepository:
    """Aggregating reads inside one unit of work."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def busy_spans(self, start: float, end: float) -> list[BusySpan]:
        """Attempts admitted before ``end`` that had not ended by ``start`` (the index on
        ``attempts.ended_at``, migration 0017, keeps old history out of the scan)."""
        serving = exists().where(ReplicaRow.job == AttemptRow.job)
        query = (
            select(
                AttemptRow.admitted_at,
                AttemptRow.ended_at,
                AttemptRow.cards,
                ClusterRow.region,
                AttemptRow.chip,
                ClusterRow.kind,
                serving,
            )
            .join(ClusterRow, ClusterRow.name == AttemptRow.cluster)
            .where(
                AttemptRow.admitted_at < end,
                or_(AttemptRow.ended_at.is_(None), AttemptRow.ended_at > start),
            )
        )
        return [
            BusySpan(a, e, cards, region, chip, kind == SIMULATED, bool(s))
            for a, e, cards, region, chip, kind, s in self._s.execute(query)
        ]

    def capacity(self, by: UtilBy) -> list[GroupCapacity]:
        group = ClusterRow.region if by is UtilBy.REGION else NodeRow.chip
        simulated = func.sum(case((ClusterRow.kind == SIMULATED, NodeRow.cards), else_=0))
        query = (
            select(group, func.sum(NodeRow.cards), simulated)
            .join(ClusterRow, ClusterRow.name == NodeRow.cluster)
            .group_by(group)
            .order_by(group)
        )
        return [GroupCapacity(g, int(c or 0), int(s or 0)) for g, c, s in self._s.execute(query)]

    def queue_groups(self, by_reason: bool, limit: int, offset: int) -> list[QueueGroup]:
        """Grouped by the labelled chip expression (``GROUP BY chip``): PostgreSQL would not
        match two copies of a JSON path expression with separately bound paths."""
        chip = JobRow.spec[("resources", "chip")].as_string().label("chip")
        per_node = JobRow.spec[("resources", "cards_per_node")].as_integer()
        nodes = JobRow.spec[("resources", "nodes")].as_integer()
        keys: list[Any] = [JobRow.tenant, chip]
        if by_reason:
            keys.append(JobRow.reason)
        jobs = func.count().label("jobs")
        query = (
            select(
                *keys,
                jobs,
                func.sum(per_node * nodes),
                func.min(JobRow.created_at),
            )
            .where(JobRow.state == JobState.QUEUED.value)
            .group_by(*keys)
            .order_by(jobs.desc(), *keys)
            .limit(limit)
            .offset(offset)
        )
        return [_group(row, by_reason) for row in self._s.execute(query)]

    def transfers(
        self, state: TransferState | None, limit: int, offset: int
    ) -> list[TransferListing]:
        query = (
            select(TransferRow, DatasetRow.tenant, DatasetRow.name)
            .join(DatasetRow, DatasetRow.id == TransferRow.dataset)
            .order_by(TransferRow.started_at.desc(), TransferRow.id)
            .limit(limit)
            .offset(offset)
        )
        if state is not None:
            query = query.where(TransferRow.state == state.value)
        return [
            TransferListing(transfer_record(row), tenant, name)
            for row, tenant, name in self._s.execute(query)
        ]

    def tiers(self) -> dict[str, str]:
        rows = self._s.execute(select(TenantRow.id, TenantRow.tier)).all()
        return {row.id: row.tier for row in rows}


def _group(row: Any, by_reason: bool) -> QueueGroup:
    if by_reason:
        tenant, chip, reason, jobs, cards, oldest = row
    else:
        (tenant, chip, jobs, cards, oldest), reason = row, None
    return QueueGroup(tenant, chip or "any", reason, int(jobs), int(cards or 0), float(oldest))
