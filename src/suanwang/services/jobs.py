"""Job use cases: submit (idempotent), list, show, cancel, logs.

Submission is durable: the job row is committed before the caller gets a 2xx. The same
``Idempotency-Key`` with the same body returns the same job; with a different body, 422.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from suanwang.domain.audit import AuditAction
from suanwang.domain.checkpoints import DEFAULT_MAX_PREEMPTION_GRACE_S, check_preemption_grace
from suanwang.domain.chips import Catalogue, selector_matches, selectors_label
from suanwang.domain.errors import Conflict, NotFound, Unavailable, ValidationError
from suanwang.domain.ids import new_job_id
from suanwang.domain.jobs import (
    JobSpec,
    JobState,
    check_transition,
    spec_to_dict,
    validate_job,
)
from suanwang.domain.priorities import PriorityClasses
from suanwang.domain.records import AttemptRecord, JobChange, JobEvent, JobRecord, NodeShape
from suanwang.domain.tenancy import Principal
from suanwang.ports import Backend, Clock, EngineUnreachable, UnitOfWork, UnitOfWorkFactory
from suanwang.services import audit
from suanwang.services.datasets import usable_dataset

MAX_LIST = 1000
MAX_LOG_OFFSET = 2**63 - 1
"""The largest file offset there is; a larger ``offset`` is refused (422), a smaller one past
the end of the log reads nothing."""


@dataclass(frozen=True, slots=True)
class JobDetail:
    job: JobRecord
    attempts: list[AttemptRecord]
    events: list[JobEvent]


@dataclass(frozen=True, slots=True)
class LogTail:
    """One read of a followed log: ``chunk`` starts at ``offset`` of attempt ``attempt``."""

    chunk: bytes
    attempt: int | None
    offset: int
    ended: bool
    """The job was terminal before the read, so an empty chunk means the log is complete."""


@dataclass(frozen=True, slots=True)
class Submitted:
    job: JobRecord
    replayed: bool


def request_hash(spec: JobSpec) -> str:
    """A stable hash of a spec, to tell a replay from a different request under one key."""
    canonical = json.dumps(spec_to_dict(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_fits_fleet(spec: JobSpec, shapes: list[NodeShape], catalogue: Catalogue) -> set[str]:
    """Reject a job that no cluster could ever run, even when empty; else the clusters that
    could."""
    res = spec.resources
    per_cluster_chip: dict[tuple[str, str], int] = {}
    for node in shapes:
        if node.simulated != spec.simulated or node.cards < res.cards_per_node:
            continue
        if res.cluster and node.cluster != res.cluster:
            continue
        if res.region and node.region != res.region:
            continue
        chip = catalogue.get(node.chip)
        if not any(selector_matches(s, chip) for s in res.accepted):
            continue
        key = (node.cluster, node.chip)
        per_cluster_chip[key] = per_cluster_chip.get(key, 0) + node.count
    if not any(count >= res.nodes for count in per_cluster_chip.values()):
        kind = "simulated" if spec.simulated else "real"
        raise ValidationError(
            f"no {kind} cluster has {res.nodes} node(s) with {res.cards_per_node} free "
            f"'{selectors_label(res.accepted)}' cards each, even when idle",
            field="resources",
            hint="ask for fewer cards or nodes, another chip, or (for simulated clusters) "
            "set simulate.duration_s",
        )
    return {cluster for (cluster, _), count in per_cluster_chip.items() if count >= res.nodes}


class Jobs:
    """Use cases for a tenant's jobs."""

    def __init__(
        self,
        uows: UnitOfWorkFactory,
        clock: Clock,
        catalogue: Catalogue,
        backends: Mapping[str, Backend],
        priority_classes: PriorityClasses | None = None,
        max_preemption_grace_s: float = DEFAULT_MAX_PREEMPTION_GRACE_S,
    ) -> None:
        self._uows = uows
        self._max_grace_s = max_preemption_grace_s
        self._clock = clock
        self._catalogue = catalogue
        self._backends = backends
        self.priority_classes = priority_classes or PriorityClasses.of(())

    def submit(self, principal: Principal, spec: JobSpec, idempotency_key: str | None) -> Submitted:
        """Validate and durably queue a job, or replay the one stored under the same key."""
        if principal.tenant_id is None:
            raise ValidationError(
                "jobs belong to a tenant; use a tenant key", field="Authorization"
            )
        spec = self.priority_classes.apply(validate_job(spec))
        check_preemption_grace(spec.preemption_grace_s, self._max_grace_s)
        for selector in spec.resources.accepted:
            self._catalogue.check_selector(selector)
        for chip, _ in spec.speed:
            self._catalogue.get(chip, field_name=f"speed.{chip}")
        digest = request_hash(spec)
        with self._uows() as uow:
            replay = self._replay(uow, principal.tenant_id, idempotency_key, digest)
            if replay is not None:
                return Submitted(replay, replayed=True)
            if spec.dataset is not None:
                usable_dataset(uow, principal.tenant_id, spec.dataset)
            fitting = check_fits_fleet(spec, uow.fleet.node_shapes(), self._catalogue)
            self._check_runnable(uow, spec, fitting)
            job = self._new_job(principal.tenant_id, spec, idempotency_key, digest)
            try:
                uow.jobs.add_job(job)
            except Conflict:
                if idempotency_key is None:
                    raise
                lost_race = True  # another request with this key committed first
            else:
                uow.jobs.add_event(job.id, job.created_at, JobState.QUEUED, "submitted")
                audit.record(
                    uow,
                    principal,
                    AuditAction.JOB_SUBMIT,
                    job.id,
                    tenant=job.tenant,
                    at=job.created_at,
                    after=audit.job_value(job),
                )
                uow.commit()
                return Submitted(job, replayed=False)
        assert lost_race
        with self._uows() as uow:
            winner = self._replay(uow, principal.tenant_id, idempotency_key, digest)
        assert winner is not None
        return Submitted(winner, replayed=True)

    def _check_runnable(self, uow: UnitOfWork, spec: JobSpec, fitting: set[str]) -> None:
        """422 if every cluster the job fits on refuses it (a local cluster that cannot
        sandbox tenant jobs on this host)."""
        backends = {c.name: self._backends.get(c.backend) for c in uow.fleet.clusters()}
        refusals = []
        for name in sorted(fitting):
            backend = backends.get(name)
            why = backend.refusal(spec.workload) if backend is not None else None
            if why is None:
                return
            refusals.append(f"cluster {name!r} cannot run this job: {why}")
        if refusals:
            raise ValidationError(
                refusals[0],
                field="resources.cluster",
                hint="choose another cluster, or see docs/jobs.md (the local cluster)",
            )

    def _replay(
        self, uow: UnitOfWork, tenant: str, key: str | None, digest: str
    ) -> JobRecord | None:
        if key is None:
            return None
        existing = uow.jobs.job_by_idempotency(tenant, key)
        if existing is not None and existing.request_hash != digest:
            raise ValidationError(
                "this Idempotency-Key was used with a different request body",
                field="Idempotency-Key",
                hint="use a new key for a new job",
            )
        return existing

    def _new_job(self, tenant: str, spec: JobSpec, key: str | None, digest: str) -> JobRecord:
        now = self._clock.now()
        return JobRecord(
            id=new_job_id(),
            tenant=tenant,
            name=spec.name,
            state=JobState.QUEUED,
            reason="waiting for the scheduler",
            priority=spec.priority,
            spec=spec,
            idempotency_key=key,
            request_hash=digest,
            attempts=0,
            cancel_requested=False,
            created_at=now,
            updated_at=now,
            version=1,
        )

    def list(
        self,
        principal: Principal,
        states: list[JobState] | None,
        limit: int,
        *,
        offset: int = 0,
        tenant: str | None = None,
        chip: str | None = None,
    ) -> list[JobRecord]:
        """Newest first; a tenant sees only its own. ``tenant`` narrows the operator's view
        (another tenant's name gives a tenant nothing, as if it had no jobs); ``chip``: only
        jobs asking for that chip selector (the queues page links here by tenant and chip)."""
        limit = max(1, min(limit, MAX_LIST))
        scope = tenant if principal.is_operator else principal.tenant_id
        if tenant is not None and not principal.can_see_tenant(tenant):
            return []
        with self._uows() as uow:
            return uow.jobs.jobs(scope, states, limit, max(0, offset), chip=chip)

    def get(self, principal: Principal, job_id: str) -> JobDetail:
        with self._uows() as uow:
            job = self._visible(uow, principal, job_id)
            return JobDetail(job, uow.jobs.attempts(job_id), uow.jobs.events(job_id))

    def _visible(self, uow: UnitOfWork, principal: Principal, job_id: str) -> JobRecord:
        job = uow.jobs.job(job_id)
        if job is None or not principal.can_see_tenant(job.tenant):
            raise NotFound(f"no job {job_id!r}", field="job_id")
        return job

    def cancel(self, principal: Principal, job_id: str) -> JobRecord:
        """Cancel a queued job at once; ask the backend to stop an admitted or running one."""
        now = self._clock.now()
        with self._uows() as uow:
            job = self._visible(uow, principal, job_id)
            if job.state.terminal:
                raise Conflict(
                    f"job {job_id} already {job.state}",
                    field="job_id",
                    hint="terminal jobs cannot be cancelled",
                )
            if job.cancel_requested:
                return job
            if job.state in (JobState.QUEUED, JobState.PREEMPTED):
                check_transition(job.state, JobState.CANCELLED)
                cancelled = JobChange(
                    state=JobState.CANCELLED, reason="cancelled by user", cancel_requested=True
                )
                uow.jobs.update_job(job, now, cancelled)
                uow.jobs.add_event(job_id, now, JobState.CANCELLED, "cancelled by user")
            else:
                uow.jobs.update_job(job, now, JobChange(cancel_requested=True, reason="cancelling"))
                uow.jobs.add_event(job_id, now, job.state, "cancel requested")
            updated = uow.jobs.job(job_id)
            assert updated is not None
            audit.record(
                uow,
                principal,
                AuditAction.JOB_CANCEL,
                job_id,
                tenant=job.tenant,
                at=now,
                before=audit.job_state_value(job),
                after=audit.job_state_value(updated),
            )
            uow.commit()
        return updated

    def logs(
        self, principal: Principal, job_id: str, offset: int, limit: int, attempt: int | None = None
    ) -> tuple[bytes, AttemptRecord | None]:
        """Output of an attempt (the latest by default) from ``offset``."""
        _check_offset(offset)
        with self._uows() as uow:
            self._visible(uow, principal, job_id)
            attempts = uow.jobs.attempts(job_id)
        chosen = [a for a in attempts if attempt is None or a.number == attempt]
        if not chosen:
            if attempt is not None:
                raise NotFound(f"job {job_id} has no attempt {attempt}", field="attempt")
            return b"", None
        latest = chosen[-1]
        return self._read_log(latest, max(0, offset), limit), latest

    def tail(
        self, principal: Principal, job_id: str, offset: int, limit: int, attempt: int | None
    ) -> LogTail:
        """The next chunk of the latest attempt's log for a follower that read ``attempt``
        up to ``offset``; a newer attempt is read from its start."""
        _check_offset(offset)
        with self._uows() as uow:
            job = self._visible(uow, principal, job_id)
            attempts = uow.jobs.attempts(job_id)
        if not attempts:
            return LogTail(b"", None, offset, job.state.terminal)
        latest = attempts[-1]
        if attempt is not None and latest.number != attempt:
            offset = 0
        chunk = self._read_log(latest, offset, limit)
        return LogTail(chunk, latest.number, offset, job.state.terminal)

    def _read_log(self, attempt: AttemptRecord, offset: int, limit: int) -> bytes:
        """The attempt's output from its backend; 503 if its engine cannot be reached."""
        backend = self._backends.get(attempt.backend)
        if backend is None:
            raise Unavailable(
                f"the {attempt.backend} backend is not installed in this control plane",
                field="job_id",
                hint="see docs/backends.md",
            )
        try:
            return backend.logs(attempt.job, attempt.number, attempt.handle, offset, limit)
        except EngineUnreachable as exc:
            raise Unavailable(
                f"the engine of cluster {attempt.cluster!r} cannot be reached: {exc}",
                field="job_id",
                hint="try again later; 'suanwang fleet show' shows the cluster's health",
            ) from exc


def _check_offset(offset: int) -> None:
    if not 0 <= offset <= MAX_LOG_OFFSET:
        raise ValidationError(
            f"offset must be 0 to {MAX_LOG_OFFSET}",
            field="offset",
            hint="a byte offset into the log; past its end reads nothing",
        )
