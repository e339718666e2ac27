"""The control loop: reconcile runs with backends, schedule queued jobs, dispatch admissions.

One :meth:`ControlLoop.tick` does the steps in order (reconcile, schedule, reallocate when
a round is due, dispatch). Every step is safe to repeat
and safe to interrupt with kill -9:

- *schedule* records each admission (attempt + allocations) in the database before any
  backend hears of it (Kueue's "assume");
- *dispatch* calls the backend's idempotent ``submit`` for attempts not yet marked
  dispatched, so a crash between launch and bookkeeping re-attaches instead of relaunching;
- *reconcile* polls live attempts and finishes them; a job's version column makes every
  state change compare-and-set, so two control planes cannot both finish one attempt.

- *reallocate* (its own slower round, :mod:`~suanwang.services.moves`) records moves as
  preemptions with a placement hint, which reconcile and the next cycles carry out.

A backend that raises while launching or polling one attempt fails that job alone (logged,
with the error as its reason and event, no retry): one bad job cannot stop the tick for the
others. An unreachable engine (:class:`~suanwang.ports.EngineUnreachable`) fails nothing: the
attempt is dispatched or polled again on a later tick.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import structlog

from suanwang.domain.changes import UNCHANGED
from suanwang.domain.checkpoints import MAX_RESUMES, RESUME_EXIT_CODE
from suanwang.domain.chips import Catalogue
from suanwang.domain.deployments import PUBLIC_TENANT
from suanwang.domain.ids import (
    NodeId,
)
from suanwang.domain.jobs import ACTIVE, AttemptState, JobState, check_transition
from suanwang.domain.records import AttemptChange, AttemptRecord, JobChange, JobRecord, NodeCards
from suanwang.ports import (
    Backend,
    Clock,
    EngineUnreachable,
    RunStatus,
    UnitOfWork,
    UnitOfWorkFactory,
)
from suanwang.scheduler import Admit, Pending, cycle
from suanwang.scheduler.cache import CycleCache
from suanwang.scheduler.decisions import Preempt, StageDataset
from suanwang.services.launching import (
    DatasetInput,
    dataset_input,
    launch_request,
    replica_engines,
)
from suanwang.services.learning import LearnedSpeeds
from suanwang.services.moves import NO_HINT, Reallocation, age_hints, with_hints
from suanwang.services.snapshots import build_snapshot, preemption_reason

log = structlog.get_logger("suanwang.control")
MAX_ERROR_REASON = 500
"""Characters of a backend error kept in a failed job's reason."""


@dataclass(frozen=True, slots=True)
class _Placed:
    """An admission with what the database needs to record it."""

    decision: Admit
    backend: str
    node_names: Mapping[NodeId, str]


@dataclass(slots=True)
class TickReport:
    """What one tick did (for logs and metrics)."""

    admitted: list[str] = field(default_factory=list)
    dispatched: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)


class Stager(Protocol):
    """Records the transfer a :class:`StageDataset` decision asks for, in the scheduling
    transaction (:meth:`suanwang.services.transfers.Transfers.stage`)."""

    def stage(self, uow: UnitOfWork, tenant: str, name: str, target: str) -> None: ...


class ControlLoop:
    """Drives jobs from queued to a terminal state."""

    def __init__(
        self,
        uows: UnitOfWorkFactory,
        backends: Mapping[str, Backend],
        clock: Clock,
        catalogue: Catalogue,
        after_reconcile: Sequence[Callable[[], None]] = (),
        benchmark_tenant: str | None = PUBLIC_TENANT,
        realloc_interval_s: float = 0.0,
        stager: Stager | None = None,
        on_success: Callable[[JobRecord, AttemptRecord], object] | None = None,
    ) -> None:
        self._uows = uows
        self._stager = stager
        self._on_success = on_success
        """Called after a job with an ``output_dataset`` succeeded (services/job_outputs.py)."""
        """Records a dataset transfer for a staging decision (None: the job just waits)."""
        self._backends = backends
        self._clock = clock
        self._catalogue = catalogue
        self._after_reconcile = tuple(after_reconcile)
        """Steps run between reconcile and schedule (deployments: restart and health-check)."""
        self._learned = LearnedSpeeds(clock, operator=benchmark_tenant)
        """Chip speeds learned per tenant; ``benchmark_tenant``'s runs teach everyone."""
        self._cache = CycleCache()
        """Kept across ticks: each snapshot is new, so equal nodes and running jobs are
        recognised by value; it changes what a tick costs, never its decisions."""
        self._realloc = Reallocation(catalogue, realloc_interval_s)
        """The slower reallocation round (:mod:`~suanwang.services.moves`); 0 = off."""

    def tick(self) -> TickReport:
        report = TickReport()
        self.reconcile(report)
        for step in self._after_reconcile:
            step()
        self.schedule(report)
        self.reallocate(report)
        self.dispatch(report)
        return report

    # --- reallocate ---------------------------------------------------------------------
    def reallocate(self, report: TickReport) -> None:
        """Run a reallocation round if one is due: record moves for reconcile to carry out."""
        now = self._clock.now()
        if not self._realloc.due(now):
            return
        with self._uows() as uow:
            uow.lock_scheduler()
            running = uow.jobs.jobs_by_id([a.job for a in uow.jobs.live_attempts()]).values()
            wanted = {(j.tenant, j.spec.kind) for j in running if j.spec.kind}
            report.moved.extend(self._realloc.run(uow, now, self._learned.book(uow, wanted)))
            uow.commit()

    # --- schedule -----------------------------------------------------------------------
    def schedule(self, report: TickReport) -> None:
        with self._uows() as uow:
            uow.lock_scheduler()
            queued = [j for j in uow.jobs.queued() if not j.cancel_requested]
            if not queued:
                return
            wanted = {(j.tenant, j.spec.kind) for j in queued if j.spec.kind}
            learned = self._learned.book(uow, wanted)
            snapshot = build_snapshot(uow, queued, self._catalogue, self._clock.now(), learned)
            by_id = {j.id: j for j in queued}
            snapshot = with_hints(snapshot, by_id)
            names = {n.id: n.name for n in snapshot.nodes}
            backends = {c.name: c.backend for c in uow.fleet.clusters()}
            now = self._clock.now()
            for decision in cycle(snapshot, cache=self._cache):
                if isinstance(decision, Preempt):
                    self._request_preemption(uow, decision, now)
                    continue
                if isinstance(decision, StageDataset):
                    if self._stager is not None:
                        staged = by_id[decision.job]
                        self._stager.stage(uow, staged.tenant, decision.dataset,
                                           decision.target_region)  # fmt: skip
                    continue
                job = by_id[decision.job]
                if isinstance(decision, Admit):
                    placed = _Placed(decision, backends[decision.cluster], names)
                    if self._admit(uow, job, placed, now):
                        report.admitted.append(job.id)
                elif isinstance(decision, Pending) and decision.reason != job.reason:
                    uow.jobs.update_job(job, now, JobChange(reason=decision.reason))
            age_hints(uow, queued, set(report.admitted), snapshot.nodes, now)
            uow.commit()

    def _request_preemption(self, uow: UnitOfWork, decision: Preempt, now: float) -> None:
        """Record that a running job must stop; reconcile stops it and requeues it."""
        victim = uow.jobs.job(decision.job)
        if victim is None or victim.preempt_reason or victim.state not in ACTIVE:
            return
        reason = preemption_reason(decision.for_job, decision.reason)
        if uow.jobs.update_job(
            victim, now, JobChange(preempt_reason=reason, preempted_for=decision.for_job)
        ):
            uow.jobs.add_event(victim.id, now, victim.state, f"preemption requested: {reason}")

    def _admit(self, uow: UnitOfWork, job: JobRecord, placed: _Placed, now: float) -> bool:
        decision = placed.decision
        number = job.attempts + 1
        check_transition(job.state, JobState.ADMITTED)
        admitted = replace(
            NO_HINT,
            state=JobState.ADMITTED,
            attempts=number,
            reason=f"admitted to {decision.cluster}",
        )
        if not uow.jobs.update_job(job, now, admitted):
            return False
        placements = tuple(
            NodeCards(p.node, placed.node_names[p.node], p.cards) for p in decision.placements
        )
        attempt_id = uow.jobs.add_attempt(
            AttemptRecord(
                id=0,
                job=job.id,
                number=number,
                state=AttemptState.STARTING,
                cluster=decision.cluster,
                backend=placed.backend,
                chip=decision.chip,
                family=decision.family,
                cards=sum(p.cards for p in decision.placements),
                placements=placements,
                handle={},
                dispatched=False,
                exit_code=None,
                reason="",
                admitted_at=now,
                started_at=None,
                ended_at=None,
            )
        )
        uow.jobs.add_allocations(attempt_id, job.tenant, decision.family, placements)
        uow.jobs.add_event(
            job.id,
            now,
            JobState.ADMITTED,
            f"attempt {number} on {decision.cluster} ({decision.chip})",
        )
        return True

    # --- dispatch -----------------------------------------------------------------------
    def dispatch(self, report: TickReport) -> None:
        with self._uows() as uow:
            todo = [a for a in uow.jobs.live_attempts() if not a.dispatched]
            found = uow.jobs.jobs_by_id([a.job for a in todo])
            jobs = {a.job: found.get(a.job) for a in todo}
            connections = {c.name: c.connection for c in uow.fleet.clusters()} if todo else {}
            engines = replica_engines(uow, jobs.values())
            resumes = {a.job: _requeued_free(uow.jobs.attempts(a.job)) for a in todo}
            regions = {c.name: c.region for c in uow.fleet.clusters()} if todo else {}
            inputs = {
                a.job: dataset_input(uow, job, regions.get(a.cluster, ""))
                for a in todo
                if (job := jobs[a.job]) is not None
            }
        for attempt in todo:
            job = jobs[attempt.job]
            if job is None or job.state is not JobState.ADMITTED:
                continue
            if job.cancel_requested or job.preempt_reason:
                stopped = RunStatus(AttemptState.CANCELLED, reason="stopped before start")
                self._finish(attempt, stopped)
                continue
            data = inputs.get(job.id, DatasetInput())
            if data.missing:
                self._finish(attempt, RunStatus(AttemptState.FAILED, reason=data.missing))
                continue
            try:
                request = launch_request(
                    job,
                    attempt,
                    connections.get(attempt.cluster),
                    engines.get(job.id),
                    resumes.get(job.id, 0),
                    data.path,
                )
                status = self._backends[attempt.backend].submit(request)
            except EngineUnreachable as exc:
                log.warning(
                    "engine unreachable; dispatch retried next tick", job=job.id, error=str(exc)
                )
                continue
            except Exception as exc:
                log.exception("launch raised; failing this job alone", job=job.id)
                self._fail_alone(attempt, "dispatch", exc)
                continue
            self._record_dispatch(job, attempt, status)
            report.dispatched.append(job.id)

    def _record_dispatch(self, job: JobRecord, attempt: AttemptRecord, status: RunStatus) -> None:
        now = self._clock.now()
        with self._uows() as uow:
            current = uow.jobs.job(job.id)
            if current is None or current.state is not JobState.ADMITTED:
                return
            check_transition(current.state, JobState.RUNNING)
            started = AttemptChange(
                dispatched=True,
                handle=dict(status.handle),
                state=AttemptState.RUNNING,
                started_at=status.started_at or now,
            )
            uow.jobs.update_attempt(attempt.id, started)
            running = JobChange(state=JobState.RUNNING, reason=f"running on {attempt.cluster}")
            uow.jobs.update_job(current, now, running)
            uow.jobs.add_event(job.id, now, JobState.RUNNING, f"attempt {attempt.number} started")
            uow.commit()

    # --- reconcile ----------------------------------------------------------------------
    def reconcile(self, report: TickReport) -> None:
        with self._uows() as uow:
            live = [a for a in uow.jobs.live_attempts() if a.dispatched]
            jobs = uow.jobs.jobs_by_id([a.job for a in live])
            stop = {a.job: why for a in live if (why := _stop_reason(jobs.get(a.job)))}
        for attempt in live:
            try:
                status = self._poll(attempt, stop.get(attempt.job))
            except EngineUnreachable as exc:
                log.warning(
                    "engine unreachable; polled again next tick", job=attempt.job, error=str(exc)
                )
                continue
            except Exception as exc:
                log.exception("poll raised; failing this job alone", job=attempt.job)
                self._fail_alone(attempt, "poll", exc)
                report.finished.append(attempt.job)
                continue
            if status.state.ended:
                self._finish(attempt, status)
                report.finished.append(attempt.job)
            elif status.checkpoint_at and status.checkpoint_at != attempt.last_checkpoint_at:
                self._record_checkpoint(attempt, status.checkpoint_at)

    def _poll(self, attempt: AttemptRecord, stop_reason: str | None) -> RunStatus:
        """The attempt's status from its backend, after asking it to stop if it must."""
        backend = self._backends[attempt.backend]
        status = backend.poll(attempt.job, attempt.number, attempt.handle)
        if not status.state.ended and stop_reason is not None:
            backend.cancel(attempt.job, attempt.number, attempt.handle)
            if attempt.backend == "simulated":
                status = RunStatus(AttemptState.CANCELLED, reason=stop_reason)
        return status

    def _fail_alone(self, attempt: AttemptRecord, step: str, error: Exception) -> None:
        """Fail the job of an attempt whose backend raised (no retry), the error as reason.

        After a failed poll the run is asked to stop, so no process outlives the cards it
        no longer holds.
        """
        reason = f"{step} failed: {type(error).__name__}: {error}"[:MAX_ERROR_REASON]
        if step == "poll":
            try:
                self._backends[attempt.backend].cancel(attempt.job, attempt.number, attempt.handle)
            except Exception:
                log.exception("cancel after a failed poll raised too", job=attempt.job)
        self._finish(attempt, RunStatus(AttemptState.FAILED, reason=reason), retry=False)

    def _record_checkpoint(self, attempt: AttemptRecord, at: float) -> None:
        with self._uows() as uow:
            uow.jobs.update_attempt(attempt.id, AttemptChange(last_checkpoint_at=at))
            uow.commit()

    def _finish(self, attempt: AttemptRecord, status: RunStatus, *, retry: bool = True) -> None:
        now = self._clock.now()
        with self._uows() as uow:
            job = uow.jobs.job(attempt.job)
            if job is None or job.state.terminal:
                return
            preempted = _requeued_free(uow.jobs.attempts(job.id))
            outcome = _outcome(job, attempt, status, retry=retry, preempted=preempted)
            target, reason = outcome.state, outcome.reason
            check_transition(job.state, target)
            finished = JobChange(
                state=target, reason=reason, preempt_reason=None, preempted_for=None
            )
            if not uow.jobs.update_job(job, now, finished):
                return
            checkpoint = status.checkpoint_at or attempt.last_checkpoint_at
            ended = AttemptChange(
                state=AttemptState.PREEMPTED if outcome.requeued_free else status.state,
                exit_code=status.exit_code,
                reason=status.reason,
                ended_at=status.ended_at or now,
                dispatched=True,
                last_checkpoint_at=UNCHANGED if checkpoint is None else checkpoint,
            )
            uow.jobs.update_attempt(attempt.id, ended)
            uow.jobs.release_allocations(attempt.id)
            uow.jobs.add_event(job.id, now, target, reason)
            uow.commit()
        if target is JobState.SUCCEEDED and job.spec.output_dataset and self._on_success:
            self._on_success(job, attempt)


def _stop_reason(job: JobRecord | None) -> str | None:
    """Why a live attempt of ``job`` must be stopped, if it must."""
    if job is None:
        return None
    if job.cancel_requested:
        return "cancelled by user"
    return job.preempt_reason


@dataclass(frozen=True, slots=True)
class _Outcome:
    """The job's next state after an attempt ended, and whether it was requeued without
    using a retry (a preemption, a move, or exit 75: the attempt becomes ``preempted``)."""

    state: JobState
    reason: str
    requeued_free: bool = False


def _requeued_free(attempts: Sequence[AttemptRecord]) -> int:
    """Attempts stopped and requeued without a retry: the job's resume count."""
    return sum(a.state is AttemptState.PREEMPTED for a in attempts)


def _outcome(
    job: JobRecord,
    attempt: AttemptRecord,
    status: RunStatus,
    *,
    retry: bool = True,
    preempted: int = 0,
) -> _Outcome:
    """The job's next state after ``attempt`` ended; ``preempted`` earlier attempts were
    stopped by preemption or a move (or exited 75) and used none of the job's retries."""
    retries_left = retry and job.spec.retries >= attempt.number - preempted
    number = attempt.number
    if status.state is AttemptState.SUCCEEDED:
        return _Outcome(JobState.SUCCEEDED, f"attempt {number} exited 0")
    if job.cancel_requested:
        return _Outcome(JobState.CANCELLED, status.reason or "cancelled")
    if job.preempt_reason is not None:
        return _Outcome(JobState.QUEUED, f"attempt {number} {job.preempt_reason}; requeued", True)
    if status.state is AttemptState.CANCELLED:
        return _Outcome(JobState.CANCELLED, status.reason or "cancelled")
    if _asks_to_resume(status, retry) and preempted < MAX_RESUMES:
        why = f"attempt {number} checkpointed and asked to resume (exit {RESUME_EXIT_CODE})"
        return _Outcome(JobState.QUEUED, f"{why}; requeued", True)
    what = "was lost" if status.state is AttemptState.LOST else f"exited {status.exit_code}"
    if status.state is AttemptState.FAILED and status.exit_code is None:
        what = "failed"
    detail = f"attempt {number} {what}" + (f": {status.reason}" if status.reason else "")
    if retries_left:
        return _Outcome(JobState.QUEUED, f"{detail}; retrying")
    return _Outcome(JobState.FAILED, detail)


def _asks_to_resume(status: RunStatus, retry: bool) -> bool:
    """Whether the run ended by itself with the "checkpointed, please resume" exit code
    (not after a limit or a platform error: those fail as usual)."""
    exited = status.reason in ("", "exited")
    return retry and exited and status.exit_code == RESUME_EXIT_CODE
