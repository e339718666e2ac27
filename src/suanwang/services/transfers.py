"""Moving dataset replicas between regions: ``data copy`` and the scheduler's staging (the
agents themselves: services/agents.py).

Metadata moves in the control plane; bytes move agent to agent. A transfer is recorded
``pending`` (by ``copy`` or by a :class:`~suanwang.scheduler.decisions.StageDataset`
decision, inside the scheduling transaction), then :meth:`Transfers.tick` (a control-loop
step) asks the source region's agent to push the replica directory to the target region's
agent, polls its progress (bytes, rate, ETA, chunks re-sent), and when the agent reports it
verified, reads the target's manifest and compares every file's size and SHA-256 with the
dataset's. Only then is the target replica ``ready``, and only then can a job be admitted
there. An agent that cannot be reached leaves the transfer as it is (the error is shown); an
interrupted push is pushed again and resumes from the last verified chunk.
"""

from __future__ import annotations

import structlog

from suanwang.domain.audit import AuditAction
from suanwang.domain.datasets import (
    DatasetRecord,
    DatasetReplica,
    DatasetState,
    ReplicaState,
    replica_path,
)
from suanwang.domain.errors import Conflict, NotFound, ValidationError
from suanwang.domain.rates import check_rate
from suanwang.domain.tenancy import Principal
from suanwang.domain.transfers import (
    AgentRecord,
    LinkCaps,
    TransferProgress,
    TransferRecord,
    TransferState,
    new_transfer_id,
)
from suanwang.ports import (
    AgentUnreachable,
    Clock,
    DatasetFiles,
    TransferAgents,
    UnitOfWork,
    UnitOfWorkFactory,
)
from suanwang.services import audit
from suanwang.services.datasets import visible_dataset

log = structlog.get_logger("suanwang.transfers")
STAGE_PREFIX = "stage-"
"""Transfers the scheduler started (a job waits for them: the snapshot's ``staging_to``)."""
RETRY_FAILED_AFTER_S = 60.0


class Transfers:
    """``data copy``, staging decisions and the control-loop step that drives transfers."""

    def __init__(
        self,
        uows: UnitOfWorkFactory,
        clock: Clock,
        agents: TransferAgents,
        files: DatasetFiles,
        min_period_s: float = 1.0,
    ) -> None:
        self._uows, self._clock, self._agents, self._files = uows, clock, agents, files
        self._min_period_s = min_period_s
        self._last_tick: float | None = None

    def copy(
        self, principal: Principal, ref: str, region: str, max_bytes_per_s: float | None = None
    ) -> TransferRecord:
        """Start copying a ready dataset to ``region`` (409 if it is there or on its way),
        at most at ``max_bytes_per_s`` (and never above the link's cap)."""
        if max_bytes_per_s is not None:
            check_rate(max_bytes_per_s)
        with self._uows() as uow:
            uow.lock_scheduler()
            dataset = visible_dataset(uow, principal, ref)
            if dataset.state is not DatasetState.READY:
                raise Conflict(f"dataset {dataset.name!r} is not sealed", field="dataset")
            if region not in {r.name for r in uow.fleet.regions()}:
                raise ValidationError(f"no region {region[:64]!r}", field="region")
            transfer = self._record(uow, dataset, region, new_transfer_id(), max_bytes_per_s)
            audit.record(
                uow, principal, AuditAction.DATASET_COPY, dataset.id, tenant=dataset.tenant,
                at=transfer.started_at, after={"transfer": transfer.id, "to": region,
                                               "max_bytes_per_s": max_bytes_per_s},
            )  # fmt: skip
            uow.commit()
        return transfer

    def stage(self, uow: UnitOfWork, tenant: str, name: str, target: str) -> None:
        """A staging decision, inside the scheduling transaction: record a transfer of the
        tenant's dataset ``name`` to ``target`` unless one is under way (or just failed)."""
        dataset = uow.datasets.by_name(tenant, name)
        if dataset is None or dataset.state is not DatasetState.READY:
            return
        now = self._clock.now()
        for t in uow.datasets.transfers(dataset=dataset.id):
            if t.target_region != target:
                continue
            if t.state.active or (t.ended_at or 0) > now - RETRY_FAILED_AFTER_S:
                return
        try:
            self._record(uow, dataset, target, STAGE_PREFIX + new_transfer_id()[3:])
        except (Conflict, ValidationError) as exc:
            log.warning("cannot stage dataset", dataset=dataset.id, target=target, why=str(exc))

    def _record(
        self,
        uow: UnitOfWork,
        dataset: DatasetRecord,
        target: str,
        transfer_id: str,
        max_bytes_per_s: float | None = None,
    ) -> TransferRecord:
        if target in dataset.ready_regions():
            raise Conflict(f"dataset {dataset.name!r} is in {target} already", field="region")
        if any(
            t.target_region == target
            for t in uow.datasets.transfers(dataset=dataset.id, active_only=True)
        ):
            raise Conflict(f"dataset {dataset.name!r} is on its way to {target}", field="region")
        agents = _agents_by_region(uow)
        source = next((r for r in dataset.ready_regions() if r in agents), None)
        if source is None or target not in agents:
            raise ValidationError(
                f"no agent registered in {target if target not in agents else 'a source region'}",
                field="region",
                hint="the operator registers one per region: suanwang agents register",
            )
        now = self._clock.now()
        transfer = TransferRecord(
            transfer_id, dataset.id, source, target, TransferState.PENDING,
            dataset.size_bytes, 0, 0.0, None, "", 0, now, max_bytes_per_s=max_bytes_per_s,
        )  # fmt: skip
        uow.datasets.add_transfer(transfer)
        path = self._files.replica_dir(target, dataset.tenant, dataset.id)
        uow.datasets.put_replica(
            DatasetReplica(dataset.id, target, ReplicaState.STAGING, path, now)
        )
        return transfer

    def get(self, principal: Principal, transfer_id: str) -> TransferRecord:
        with self._uows() as uow:
            transfer = uow.datasets.transfer(transfer_id)
            dataset = None if transfer is None else uow.datasets.get(transfer.dataset)
            if transfer is None or dataset is None or not principal.can_see_tenant(dataset.tenant):
                raise NotFound(f"no transfer {transfer_id[:80]!r}", field="transfer_id")
            return transfer

    def of_dataset(self, principal: Principal, ref: str) -> list[TransferRecord]:
        with self._uows() as uow:
            dataset = visible_dataset(uow, principal, ref)
            return uow.datasets.transfers(dataset=dataset.id)

    # --- the control-loop step --------------------------------------------------------------
    def tick(self) -> None:
        """Start pending transfers, poll running ones, verify finished ones (at most once
        per ``min_period_s``)."""
        now = self._clock.now()
        if self._last_tick is not None and now - self._last_tick < self._min_period_s:
            return
        self._last_tick = now
        with self._uows() as uow:
            active = uow.datasets.transfers(active_only=True)
            agents = _agents_by_region(uow)
            datasets = {t.dataset: uow.datasets.get(t.dataset) for t in active}
            links = {
                frozenset((str(w.region_a), str(w.region_b))): w for w in uow.fleet.wan_links()
            }
        for transfer in active:
            dataset = datasets[transfer.dataset]
            if dataset is None or dataset.deleted_at is not None:
                self._end(transfer, TransferProgress(TransferState.FAILED, error="dataset deleted"))
                continue
            source, target = agents.get(transfer.source_region), agents.get(transfer.target_region)
            if source is None or target is None:
                self._note(transfer, "no agent registered in one of the regions")
                continue
            link = links.get(frozenset((transfer.source_region, transfer.target_region)))
            caps = LinkCaps(
                None if link is None else link.bandwidth_gbps * 1e9 / 8,
                None if link is None else link.transfer_cap_bytes_per_s,
                transfer.max_bytes_per_s,
            )
            self._advance(transfer, dataset, source.address, target.address, caps)

    def _advance(
        self,
        transfer: TransferRecord,
        dataset: DatasetRecord,
        source: str,
        target: str,
        caps: LinkCaps,
    ) -> None:
        rel = replica_path(dataset.tenant, dataset.id)
        push = (source, transfer.id, rel, target, rel, caps)
        try:
            if transfer.state is TransferState.PENDING:
                progress = self._agents.start_push(*push)
            else:
                progress = self._agents.status(source, transfer.id)
                if progress.state is TransferState.PENDING:  # interrupted: resume
                    progress = self._agents.start_push(*push)
            if progress.state is TransferState.VERIFIED:
                progress = self._verify(dataset, target, rel, progress)
        except AgentUnreachable as exc:
            self._note(transfer, f"agent unreachable, retrying: {exc}")
            return
        if progress.state in (TransferState.VERIFIED, TransferState.FAILED):
            self._end(transfer, progress)
        else:
            self._update(transfer.id, progress)

    def _verify(
        self, dataset: DatasetRecord, target: str, rel: str, progress: TransferProgress
    ) -> TransferProgress:
        """The target's manifest against the dataset's: every path, size and SHA-256."""
        held = {(e.path, e.size_bytes, e.sha256) for e in self._agents.manifest(target, rel)}
        wanted = {(e.path, e.size_bytes, e.sha256) for e in dataset.files}
        if held != wanted:
            missing = len(wanted - held)
            return TransferProgress(
                TransferState.FAILED, progress.bytes_total, progress.bytes_done,
                error=f"the target's files differ from the manifest ({missing} file(s) wrong or "
                "missing)",
            )  # fmt: skip
        return progress

    def _end(self, transfer: TransferRecord, progress: TransferProgress) -> None:
        now = self._clock.now()
        verified = progress.state is TransferState.VERIFIED
        with self._uows() as uow:
            dataset = uow.datasets.get(transfer.dataset)
            if verified and dataset is not None:
                self._files.finalise(transfer.target_region, dataset.tenant, dataset.id)
            ended = TransferProgress(
                progress.state, progress.bytes_total,
                progress.bytes_total if verified else progress.bytes_done, 0.0,
                0.0 if verified else None, progress.chunks_resent, progress.error, now,
            )  # fmt: skip
            uow.datasets.update_transfer(transfer.id, ended)
            if dataset is not None and dataset.deleted_at is None:
                state = ReplicaState.READY if verified else ReplicaState.FAILED
                path = self._files.replica_dir(transfer.target_region, dataset.tenant, dataset.id)
                uow.datasets.put_replica(
                    DatasetReplica(dataset.id, transfer.target_region, state, path, now)
                )
            uow.commit()
        log.info("transfer ended", transfer=transfer.id, state=progress.state.value,
                 error=progress.error)  # fmt: skip

    def _update(self, transfer_id: str, progress: TransferProgress) -> None:
        with self._uows() as uow:
            uow.datasets.update_transfer(transfer_id, progress)
            uow.commit()

    def _note(self, transfer: TransferRecord, error: str) -> None:
        """Keep the transfer as it is, with ``error`` shown (the next tick tries again)."""
        kept = TransferProgress(
            transfer.state, transfer.bytes_total, transfer.bytes_done, 0.0, None,
            transfer.chunks_resent, error,
        )  # fmt: skip
        self._update(transfer.id, kept)


def staging_regions(uow: UnitOfWork) -> dict[str, str]:
    """Dataset id -> the region the scheduler is staging it to (active ``stage-`` transfers)."""
    return {
        t.dataset: t.target_region
        for t in uow.datasets.transfers(active_only=True)
        if t.id.startswith(STAGE_PREFIX)
    }


def _agents_by_region(uow: UnitOfWork) -> dict[str, AgentRecord]:
    """One agent per region (the first by name where several are registered)."""
    found: dict[str, AgentRecord] = {}
    for agent in uow.datasets.agents():
        found.setdefault(agent.region, agent)
    return found
