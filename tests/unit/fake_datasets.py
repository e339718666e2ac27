"""The in-memory :class:`~suanwang.ports.DatasetStore` of :class:`fakes.FakeUnitOfWork`."""

from __future__ import annotations

import dataclasses

from fake_stores import _Store

from suanwang.domain.datasets import (
    DatasetRecord,
    DatasetReplica,
    DatasetState,
    ManifestEntry,
)
from suanwang.domain.errors import Conflict
from suanwang.domain.transfers import AgentRecord, TransferProgress, TransferRecord


class FakeDatasets(_Store):
    def add(self, dataset: DatasetRecord) -> None:
        self._log("add_dataset", dataset.id)
        if self.by_name(dataset.tenant, dataset.name) is not None:
            raise Conflict(f"a dataset named {dataset.name!r} exists", field="name")
        self._t.datasets[dataset.id] = dataset

    def get(self, dataset_id: str) -> DatasetRecord | None:
        return self._t.datasets.get(dataset_id)

    def by_name(self, tenant: str, name: str) -> DatasetRecord | None:
        found = self.live(tenant, name)
        return found[0] if found else None

    def live(self, tenant: str | None, name: str | None = None) -> list[DatasetRecord]:
        rows = [
            d
            for d in self._t.datasets.values()
            if d.deleted_at is None
            and (tenant is None or d.tenant == tenant)
            and (name is None or d.name == name)
        ]
        return sorted(rows, key=lambda d: (-d.created_at, d.id))

    def used_bytes(self, tenant: str) -> int:
        return sum(d.size_bytes for d in self.live(tenant))

    def put_file(self, dataset_id: str, entry: ManifestEntry) -> None:
        self._log("put_file", dataset_id)
        d = self._t.datasets[dataset_id]
        files = tuple(
            sorted([*(f for f in d.files if f.path != entry.path), entry], key=lambda f: f.path)
        )
        self._replace(d, files=files, size_bytes=sum(f.size_bytes for f in files))

    def seal(self, dataset_id: str, now: float) -> None:
        self._log("seal_dataset", dataset_id)
        self._replace(self._t.datasets[dataset_id], state=DatasetState.READY, sealed_at=now)

    def mark_deleted(self, dataset_id: str, now: float) -> None:
        self._log("delete_dataset", dataset_id)
        self._replace(self._t.datasets[dataset_id], deleted_at=now)

    def put_replica(self, replica: DatasetReplica) -> None:
        self._log("put_replica", replica.dataset)
        d = self._t.datasets[replica.dataset]
        kept = tuple(r for r in d.replicas if r.region != replica.region)
        self._replace(d, replicas=tuple(sorted([*kept, replica], key=lambda r: r.region)))

    def storage_quota(self, tenant: str) -> int | None:
        return self._t.storage_quotas.get(tenant)

    def set_storage_quota(self, tenant: str, quota_bytes: int | None) -> None:
        self._log("set_storage_quota", tenant)
        self._t.storage_quotas[tenant] = quota_bytes

    def unmetered(self, boundary: float) -> list[DatasetRecord]:
        def pending(d: DatasetRecord) -> bool:
            mark = d.metered_to if d.metered_to is not None else d.created_at
            return mark < (d.deleted_at if d.deleted_at is not None else boundary)

        return sorted((d for d in self._t.datasets.values() if pending(d)), key=lambda d: d.id)

    def set_metered_to(self, dataset_id: str, metered_to: float) -> None:
        self._log("set_dataset_metered_to", dataset_id)
        self._replace(self._t.datasets[dataset_id], metered_to=metered_to)

    def add_transfer(self, transfer: TransferRecord) -> None:
        self._log("add_transfer", transfer.id)
        self._t.transfers[transfer.id] = transfer

    def transfer(self, transfer_id: str) -> TransferRecord | None:
        return self._t.transfers.get(transfer_id)

    def transfers(
        self, *, dataset: str | None = None, active_only: bool = False
    ) -> list[TransferRecord]:
        rows = [
            t
            for t in self._t.transfers.values()
            if (dataset is None or t.dataset == dataset) and (not active_only or t.state.active)
        ]
        return sorted(rows, key=lambda t: (-t.started_at, t.id))

    def update_transfer(self, transfer_id: str, progress: TransferProgress) -> None:
        self._log("update_transfer", transfer_id)
        old = self._t.transfers[transfer_id]
        self._t.transfers[transfer_id] = dataclasses.replace(
            old,
            state=progress.state,
            bytes_total=progress.bytes_total,
            bytes_done=progress.bytes_done,
            rate_bytes_per_s=progress.rate_bytes_per_s,
            eta_s=progress.eta_s,
            chunks_resent=progress.chunks_resent,
            error=progress.error,
            ended_at=progress.ended_at,
        )

    def put_agent(self, agent: AgentRecord) -> None:
        self._log("put_agent", agent.name)
        self._t.agents[agent.name] = agent

    def agents(self) -> list[AgentRecord]:
        return sorted(self._t.agents.values(), key=lambda a: (a.region, a.name))

    def _replace(self, dataset: DatasetRecord, **changes: object) -> None:
        self._t.datasets[dataset.id] = dataclasses.replace(dataset, **changes)  # type: ignore[arg-type]
