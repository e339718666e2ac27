"""Dataset rows, their replicas and the tenants' storage quotas (``DatasetStore``)."""

from __future__ import annotations

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanwang.adapters.db.tables import (
    AgentRow,
    DatasetReplicaRow,
    DatasetRow,
    TenantRow,
    TransferRow,
)
from suanwang.domain.datasets import (
    DatasetFormat,
    DatasetRecord,
    DatasetReplica,
    DatasetState,
    ManifestEntry,
    ReplicaState,
)
from suanwang.domain.errors import Conflict
from suanwang.domain.transfers import (
    AgentRecord,
    TransferProgress,
    TransferRecord,
    TransferState,
)

D = DatasetRow


class DatasetRepository:
    """:class:`~suanwang.ports.DatasetStore` inside one unit of work."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, dataset: DatasetRecord) -> None:
        self._s.add(
            DatasetRow(
                id=dataset.id,
                tenant=dataset.tenant,
                name=dataset.name,
                format=dataset.format.value,
                state=dataset.state.value,
                size_bytes=dataset.size_bytes,
                manifest=[_entry_dict(e) for e in dataset.files],
                created_at=dataset.created_at,
                sealed_at=dataset.sealed_at,
                deleted_at=None,
                metered_to=None,
            )
        )
        try:
            self._s.flush()
        except IntegrityError as exc:
            raise Conflict(
                f"a dataset named {dataset.name!r} exists", field="name", hint="choose another"
            ) from exc
        for replica in dataset.replicas:
            self.put_replica(replica)

    def get(self, dataset_id: str) -> DatasetRecord | None:
        row = self._s.get(DatasetRow, dataset_id)
        return None if row is None else self._record(row)

    def by_name(self, tenant: str, name: str) -> DatasetRecord | None:
        row = self._s.scalar(
            select(D).where(D.tenant == tenant, D.name == name, D.deleted_at.is_(None))
        )
        return None if row is None else self._record(row)

    def live(
        self, tenant: str | None, name: str | None = None, offset: int = 0, limit: int | None = None
    ) -> list[DatasetRecord]:
        query = select(D).where(D.deleted_at.is_(None)).order_by(D.created_at.desc(), D.id)
        query = query.offset(offset).limit(limit)
        if tenant is not None:
            query = query.where(D.tenant == tenant)
        if name is not None:
            query = query.where(D.name == name)
        return [self._record(row) for row in self._s.scalars(query)]

    def used_bytes(self, tenant: str) -> int:
        total = self._s.scalar(
            select(func.sum(D.size_bytes)).where(D.tenant == tenant, D.deleted_at.is_(None))
        )
        return int(total or 0)

    def put_file(self, dataset_id: str, entry: ManifestEntry) -> None:
        row = self._s.get(DatasetRow, dataset_id, with_for_update=True)
        assert row is not None
        kept = [e for e in row.manifest if e["path"] != entry.path]
        manifest = sorted([*kept, _entry_dict(entry)], key=lambda e: str(e["path"]))
        row.manifest = manifest
        row.size_bytes = sum(int(str(e["size_bytes"])) for e in manifest)
        self._s.flush()

    def seal(self, dataset_id: str, now: float) -> None:
        values = {"state": DatasetState.READY.value, "sealed_at": now}
        self._s.execute(update(DatasetRow).where(D.id == dataset_id).values(values))

    def mark_deleted(self, dataset_id: str, now: float) -> None:
        self._s.execute(update(DatasetRow).where(D.id == dataset_id).values(deleted_at=now))

    def put_replica(self, replica: DatasetReplica) -> None:
        row = self._s.get(DatasetReplicaRow, (replica.dataset, replica.region))
        if row is None:
            row = DatasetReplicaRow(dataset=replica.dataset, region=replica.region)
            self._s.add(row)
        row.state, row.path = replica.state.value, replica.path
        row.updated_at = replica.updated_at
        self._s.flush()

    def storage_quota(self, tenant: str) -> int | None:
        return self._s.scalar(select(TenantRow.storage_quota_bytes).where(TenantRow.id == tenant))

    def set_storage_quota(self, tenant: str, quota_bytes: int | None) -> None:
        query = update(TenantRow).where(TenantRow.id == tenant)
        self._s.execute(query.values(storage_quota_bytes=quota_bytes))

    def unmetered(self, boundary: float) -> list[DatasetRecord]:
        watermark = func.coalesce(D.metered_to, D.created_at)
        pending = or_(
            D.deleted_at.is_(None) & (watermark < boundary),
            D.deleted_at.is_not(None) & (watermark < D.deleted_at),
        )
        query = select(D).where(pending).order_by(D.id)
        return [self._record(row) for row in self._s.scalars(query)]

    def set_metered_to(self, dataset_id: str, metered_to: float) -> None:
        query = update(DatasetRow).where(D.id == dataset_id)
        self._s.execute(query.values(metered_to=metered_to))

    def add_transfer(self, transfer: TransferRecord) -> None:
        t = transfer
        self._s.add(
            TransferRow(
                id=t.id, dataset=t.dataset, source_region=t.source_region,
                target_region=t.target_region, state=t.state.value, bytes_total=t.bytes_total,
                bytes_done=t.bytes_done, rate_bytes_per_s=t.rate_bytes_per_s, eta_s=t.eta_s,
                error=t.error, chunks_resent=t.chunks_resent, started_at=t.started_at,
                ended_at=t.ended_at, max_bytes_per_s=t.max_bytes_per_s,
            )
        )  # fmt: skip
        self._s.flush()

    def transfer(self, transfer_id: str) -> TransferRecord | None:
        row = self._s.get(TransferRow, transfer_id)
        return None if row is None else transfer_record(row)

    def transfers(
        self, *, dataset: str | None = None, active_only: bool = False
    ) -> list[TransferRecord]:
        query = select(TransferRow).order_by(TransferRow.started_at.desc(), TransferRow.id)
        if dataset is not None:
            query = query.where(TransferRow.dataset == dataset)
        if active_only:
            active = (TransferState.PENDING.value, TransferState.RUNNING.value)
            query = query.where(TransferRow.state.in_(active))
        return [transfer_record(row) for row in self._s.scalars(query)]

    def update_transfer(self, transfer_id: str, progress: TransferProgress) -> None:
        p = progress
        values = {
            "state": p.state.value, "bytes_total": p.bytes_total, "bytes_done": p.bytes_done,
            "rate_bytes_per_s": p.rate_bytes_per_s, "eta_s": p.eta_s,
            "chunks_resent": p.chunks_resent, "error": p.error, "ended_at": p.ended_at,
        }  # fmt: skip
        self._s.execute(update(TransferRow).where(TransferRow.id == transfer_id).values(values))

    def put_agent(self, agent: AgentRecord) -> None:
        row = self._s.get(AgentRow, agent.name)
        if row is None:
            row = AgentRow(name=agent.name)
            self._s.add(row)
        row.region, row.address, row.cert_serial = agent.region, agent.address, agent.cert_serial
        row.cert_not_after, row.registered_at = agent.cert_not_after, agent.registered_at
        row.rotated_at = agent.rotated_at
        self._s.flush()

    def agents(self) -> list[AgentRecord]:
        rows = self._s.scalars(select(AgentRow).order_by(AgentRow.region, AgentRow.name))
        return [
            AgentRecord(
                r.name,
                r.region,
                r.address,
                r.cert_serial,
                r.cert_not_after,
                r.registered_at,
                r.rotated_at,
            )
            for r in rows
        ]

    def _record(self, row: DatasetRow) -> DatasetRecord:
        replicas = self._s.scalars(
            select(DatasetReplicaRow)
            .where(DatasetReplicaRow.dataset == row.id)
            .order_by(DatasetReplicaRow.region)
        )
        return DatasetRecord(
            id=row.id,
            tenant=row.tenant,
            name=row.name,
            format=DatasetFormat(row.format),
            state=DatasetState(row.state),
            size_bytes=row.size_bytes,
            files=tuple(
                ManifestEntry(str(e["path"]), int(str(e["size_bytes"])), str(e["sha256"]))
                for e in row.manifest
            ),
            created_at=row.created_at,
            sealed_at=row.sealed_at,
            deleted_at=row.deleted_at,
            metered_to=row.metered_to,
            replicas=tuple(
                DatasetReplica(r.dataset, r.region, ReplicaState(r.state), r.path, r.updated_at)
                for r in replicas
            ),
        )


def _entry_dict(entry: ManifestEntry) -> dict[str, object]:
    return {"path": entry.path, "size_bytes": entry.size_bytes, "sha256": entry.sha256}


def transfer_record(row: TransferRow) -> TransferRecord:
    """A transfer row as the domain record."""
    return TransferRecord(
        id=row.id,
        dataset=row.dataset,
        source_region=row.source_region,
        target_region=row.target_region,
        state=TransferState(row.state),
        bytes_total=row.bytes_total,
        bytes_done=row.bytes_done,
        rate_bytes_per_s=row.rate_bytes_per_s,
        eta_s=row.eta_s,
        error=row.error,
        chunks_resent=row.chunks_resent,
        started_at=row.started_at,
        ended_at=row.ended_at,
        max_bytes_per_s=row.max_bytes_per_s,
    )
