"""Gateway demand reports (``model_demand``): the gateway's sink and the control plane's reads.

Each gateway process replaces its own rows about once a second (delete + insert in one short
transaction: portable across SQLite and PostgreSQL and as cheap as an upsert for a handful
of deployments); the control plane reads the fresh rows and prunes dead gateways' rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from suanwang.adapters.db.tables import DemandRow
from suanwang.domain.demand import DemandReport
from suanwang.ports import UnitOfWorkFactory


class DemandRepository:
    """:class:`suanwang.ports.DemandStore` inside one unit of work."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def replace(self, gateway: str, reports: Sequence[DemandReport]) -> None:
        self._s.execute(delete(DemandRow).where(DemandRow.gateway == gateway))
        self._s.add_all(_row(r) for r in reports if r.gateway == gateway)
        self._s.flush()

    def reports(self, since: float) -> list[DemandReport]:
        query = (
            select(DemandRow)
            .where(DemandRow.at >= since)
            .order_by(DemandRow.deployment, DemandRow.gateway)
        )
        return [_report(r) for r in self._s.scalars(query)]

    def prune(self, before: float) -> int:
        result = self._s.execute(delete(DemandRow).where(DemandRow.at < before))
        return int(getattr(result, "rowcount", 0) or 0)


class SqlDemandSink:
    """:class:`suanwang.ports.DemandSink`: one transaction per report."""

    def __init__(self, uows: UnitOfWorkFactory) -> None:
        self._uows = uows

    def record(self, gateway: str, reports: Sequence[DemandReport]) -> None:
        with self._uows() as uow:
            uow.demand.replace(gateway, reports)
            uow.commit()


def _row(r: DemandReport) -> DemandRow:
    return DemandRow(
        gateway=r.gateway,
        deployment=r.deployment,
        at=r.at,
        inflight=r.inflight,
        queued=r.queued,
        tokens_per_s=r.tokens_per_s,
        ttft_p95_s=r.ttft_p95_s,
        last_request_at=r.last_request_at,
        routed_at=r.routed_at,
        replica_inflight=dict(r.replica_inflight),
        requests_per_s=r.requests_per_s,
        service_s=r.service_s,
        first_token_s=r.first_token_s,
    )


def _report(row: DemandRow) -> DemandReport:
    per_replica = sorted((str(k), int(str(v))) for k, v in (row.replica_inflight or {}).items())
    return DemandReport(
        gateway=row.gateway,
        deployment=row.deployment,
        at=row.at,
        inflight=row.inflight,
        queued=row.queued,
        tokens_per_s=row.tokens_per_s,
        ttft_p95_s=row.ttft_p95_s,
        last_request_at=row.last_request_at,
        routed_at=row.routed_at,
        replica_inflight=tuple(per_replica),
        requests_per_s=row.requests_per_s,
        service_s=row.service_s,
        first_token_s=row.first_token_s,
    )
