"""Job, event, attempt and allocation rows.

Job state changes are compare-and-set on ``version``: a stale writer (say, a second
control plane) changes nothing and learns it lost the race. Whether a state change is legal
is the domain's rule (:func:`~suanwang.domain.jobs.check_transition`), applied by the
services before they ask for it; this module only persists.

Specs and placements are JSON columns, decoded here once into typed records (a
:class:`~suanwang.domain.jobs.JobSpec`, :class:`~suanwang.domain.records.NodeCards`) and
encoded here on the way in; nothing beyond this module reads them by key.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanwang.adapters.db.tables import (
    AllocationRow,
    AttemptRow,
    JobEventRow,
    JobRow,
    column_values,
)
from suanwang.domain.errors import Conflict
from suanwang.domain.ids import ChipName, NodeId
from suanwang.domain.jobs import AttemptState, JobState, spec_from_dict, spec_to_dict
from suanwang.domain.records import (
    AttemptChange,
    AttemptRecord,
    JobChange,
    JobEvent,
    JobRecord,
    NodeCards,
)
from suanwang.scheduler.learning import RunObservation


class DuplicateIdempotencyKey(Conflict):
    """Another request with the same tenant and Idempotency-Key committed first."""


class JobRepository:
    """Reads and writes jobs and their attempts inside one unit of work."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add_job(self, job: JobRecord) -> None:
        self._s.add(
            JobRow(
                id=job.id,
                tenant=job.tenant,
                name=job.name,
                state=job.state.value,
                reason=job.reason,
                priority=job.priority,
                spec=spec_to_dict(job.spec),
                idempotency_key=job.idempotency_key,
                request_hash=job.request_hash,
                attempts=0,
                cancel_requested=False,
                created_at=job.created_at,
                updated_at=job.updated_at,
                version=1,
            )
        )
        try:
            self._s.flush()
        except IntegrityError as exc:
            raise DuplicateIdempotencyKey(
                "duplicate Idempotency-Key", field="Idempotency-Key"
            ) from exc

    def job(self, job_id: str) -> JobRecord | None:
        row = self._s.get(JobRow, job_id)
        return None if row is None else _job(row)

    def jobs_by_id(self, job_ids: Collection[str]) -> dict[str, JobRecord]:
        wanted = sorted(set(job_ids))
        found: dict[str, JobRecord] = {}
        for start in range(0, len(wanted), ID_BATCH):  # SQLite caps bound parameters
            chunk = wanted[start : start + ID_BATCH]
            for row in self._s.scalars(select(JobRow).where(JobRow.id.in_(chunk))):
                found[row.id] = _job(row)
        return found

    def job_by_idempotency(self, tenant: str, key: str) -> JobRecord | None:
        row = self._s.scalar(
            select(JobRow).where(JobRow.tenant == tenant, JobRow.idempotency_key == key)
        )
        return None if row is None else _job(row)

    def jobs(
        self,
        tenant: str | None,
        states: Iterable[JobState] | None = None,
        limit: int = 100,
        offset: int = 0,
        chip: str | None = None,
    ) -> list[JobRecord]:
        query = select(JobRow).order_by(JobRow.created_at.desc(), JobRow.id)
        query = query.limit(limit).offset(offset)
        if tenant is not None:
            query = query.where(JobRow.tenant == tenant)
        if chip is not None:
            query = query.where(JobRow.spec[("resources", "chip")].as_string() == chip)
        if states is not None:
            query = query.where(JobRow.state.in_([s.value for s in states]))
        return [_job(r) for r in self._s.scalars(query)]

    def queued(self) -> list[JobRecord]:
        query = select(JobRow).where(JobRow.state == JobState.QUEUED.value)
        return [_job(r) for r in self._s.scalars(query.order_by(JobRow.created_at, JobRow.id))]

    def with_states(self, states: Iterable[JobState]) -> list[JobRecord]:
        query = select(JobRow).where(JobRow.state.in_([s.value for s in states]))
        return [_job(r) for r in self._s.scalars(query.order_by(JobRow.created_at, JobRow.id))]

    def count_by_state(self) -> dict[str, int]:
        rows = self._s.execute(select(JobRow.state, func.count()).group_by(JobRow.state))
        return {state: int(n) for state, n in rows}

    def update_job(self, job: JobRecord, now: float, change: JobChange) -> bool:
        """Compare-and-set: apply ``change`` only if the row still has ``job.version``."""
        result = self._s.execute(
            update(JobRow)
            .where(JobRow.id == job.id, JobRow.version == job.version)
            .values(**column_values(change), updated_at=now, version=job.version + 1),
            execution_options=ONE_ROW,
        )
        _expire(self._s, JobRow, job.id)
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def add_event(self, job_id: str, at: float, state: str, reason: str) -> None:
        self._s.add(JobEventRow(job=job_id, at=at, state=state, reason=reason))

    def events(self, job_id: str) -> list[JobEvent]:
        query = select(JobEventRow).where(JobEventRow.job == job_id).order_by(JobEventRow.id)
        return [JobEvent(r.at, r.state, r.reason) for r in self._s.scalars(query)]

    def add_attempt(self, attempt: AttemptRecord) -> int:
        row = AttemptRow(
            job=attempt.job,
            number=attempt.number,
            state=attempt.state.value,
            cluster=attempt.cluster,
            backend=attempt.backend,
            chip=attempt.chip,
            family=attempt.family,
            cards=attempt.cards,
            placements=[_placement_json(p) for p in attempt.placements],
            handle=attempt.handle,
            dispatched=False,
            exit_code=None,
            reason=attempt.reason,
            admitted_at=attempt.admitted_at,
            started_at=None,
            ended_at=None,
        )
        self._s.add(row)
        self._s.flush()
        return row.id

    def attempts(self, job_id: str) -> list[AttemptRecord]:
        query = select(AttemptRow).where(AttemptRow.job == job_id).order_by(AttemptRow.number)
        return [_attempt(r) for r in self._s.scalars(query)]

    def live_attempts(self, tenant: str | None = None) -> list[AttemptRecord]:
        """Attempts that have not ended (starting or running), of ``tenant``'s jobs if given."""
        live = [AttemptState.STARTING.value, AttemptState.RUNNING.value]
        query = select(AttemptRow).where(AttemptRow.state.in_(live)).order_by(AttemptRow.id)
        if tenant is not None:
            query = query.join(JobRow, JobRow.id == AttemptRow.job).where(JobRow.tenant == tenant)
        return [_attempt(r) for r in self._s.scalars(query)]

    def update_attempt(self, attempt_id: int, change: AttemptChange) -> None:
        query = update(AttemptRow).where(AttemptRow.id == attempt_id)
        self._s.execute(query.values(**column_values(change)), execution_options=ONE_ROW)
        _expire(self._s, AttemptRow, attempt_id)

    def add_allocations(
        self, attempt_id: int, tenant: str, family: str, placements: Sequence[NodeCards]
    ) -> None:
        self._s.add_all(
            AllocationRow(
                attempt=attempt_id,
                node=p.node_id,
                tenant=tenant,
                family=family,
                cards=p.cards,
                active=True,
            )
            for p in placements
        )

    def release_allocations(self, attempt_id: int) -> None:
        self._s.execute(
            update(AllocationRow)
            .where(AllocationRow.attempt == attempt_id, AllocationRow.active.is_(True))
            .values(active=False)
        )

    def finished_runs(
        self, pairs: Collection[tuple[str, str]], per_pair: int
    ) -> list[RunObservation]:
        """The latest ``per_pair`` successful real runs of each (tenant, kind), with their
        estimates."""
        runs: list[RunObservation] = []
        for tenant, kind in sorted(pairs):
            query = (
                select(JobRow.spec, AttemptRow.chip, AttemptRow.started_at, AttemptRow.ended_at)
                .join(JobRow, JobRow.id == AttemptRow.job)
                .where(
                    JobRow.tenant == tenant,
                    AttemptRow.state == AttemptState.SUCCEEDED.value,
                    AttemptRow.started_at.is_not(None),
                    AttemptRow.ended_at.is_not(None),
                    JobRow.spec["kind"].as_string() == kind,
                )
                .order_by(AttemptRow.ended_at.desc())
                .limit(per_pair)
            )
            for stored, chip, started, ended in self._s.execute(query):
                spec = spec_from_dict(stored)
                reference = spec.expected_duration_s
                if reference is not None and not spec.simulated and started and ended:
                    run_s = float(ended - started)
                    runs.append(
                        RunObservation(tenant, kind, ChipName(chip), reference, run_s, ended)
                    )
        return runs

    def usage(self) -> dict[str, dict[str, int]]:
        """Cards held now, by tenant and chip family."""
        query = (
            select(AllocationRow.tenant, AllocationRow.family, func.sum(AllocationRow.cards))
            .where(AllocationRow.active.is_(True))
            .group_by(AllocationRow.tenant, AllocationRow.family)
        )
        result: dict[str, dict[str, int]] = {}
        for tenant, family, cards in self._s.execute(query):
            result.setdefault(tenant, {})[family] = int(cards)
        return result


def _job(row: JobRow) -> JobRecord:
    return JobRecord(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        state=JobState(row.state),
        reason=row.reason,
        priority=row.priority,
        spec=spec_from_dict(row.spec),
        idempotency_key=row.idempotency_key,
        request_hash=row.request_hash,
        attempts=row.attempts,
        cancel_requested=row.cancel_requested,
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
        preempt_reason=row.preempt_reason,
        preempted_for=row.preempted_for,
        hint_cluster=row.hint_cluster,
        hint_chip=row.hint_chip,
        hint_cycles=row.hint_cycles,
    )


def _attempt(row: AttemptRow) -> AttemptRecord:
    return AttemptRecord(
        id=row.id,
        job=row.job,
        number=row.number,
        state=AttemptState(row.state),
        cluster=row.cluster,
        backend=row.backend,
        chip=row.chip,
        family=row.family,
        cards=row.cards,
        placements=tuple(_placement(p) for p in row.placements),
        handle=dict(row.handle),
        dispatched=row.dispatched,
        exit_code=row.exit_code,
        reason=row.reason,
        admitted_at=row.admitted_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        last_checkpoint_at=row.last_checkpoint_at,
    )


def _placement_json(placement: NodeCards) -> dict[str, object]:
    return {"node_id": placement.node_id, "node": placement.node, "cards": placement.cards}


def _placement(stored: Mapping[str, Any]) -> NodeCards:
    return NodeCards(NodeId(int(stored["node_id"])), str(stored["node"]), int(stored["cards"]))


ID_BATCH: Final = 500
ONE_ROW: Final = {"synchronize_session": False}
"""An UPDATE of one row by key: SQLAlchemy's default ("evaluate") scans every loaded object
of the class to keep them in step, which made each update of a tick that had loaded 4,000
queued jobs cost ~4 ms; :func:`_expire` keeps the one loaded object right instead."""


def _expire(session: Session, model: type[Any], key: object) -> None:
    """Forget what ``session`` holds of ``model``'s row ``key`` (reloaded on next use)."""
    loaded = session.identity_map.get(session.identity_key(model, key))
    if loaded is not None:
        session.expire(loaded)
