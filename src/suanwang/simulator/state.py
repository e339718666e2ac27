"""Mutable state of a simulated job and its attempts, and the views the scheduler sees.

A :class:`SimJob` wraps a :class:`~suanwang.simulator.trace.TraceJob` with its progress;
an :class:`Attempt` is one stretch of holding cards (admit to completion or preemption).
:func:`pending_view` and :func:`running_view` build the frozen
:class:`~suanwang.scheduler.snapshot.PendingJob` and
:class:`~suanwang.scheduler.snapshot.RunningJob` values a snapshot holds. The event loop
lives in :mod:`suanwang.simulator.engine`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from suanwang.domain.ids import ChipFamily, ChipName, ClusterName, JobId, RegionName
from suanwang.scheduler.decisions import Placement
from suanwang.scheduler.snapshot import DatasetRef, PendingJob, RunningJob
from suanwang.simulator.trace import TraceJob


class JobState(enum.StrEnum):
    """Where a simulated job is. ``completed`` and ``unschedulable`` are terminal."""

    WAITING = "waiting"
    """Not submitted yet (its submit time is in the future)."""
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    UNSCHEDULABLE = "unschedulable"
    """Still pending when nothing else could happen: the policy never started it."""


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.UNSCHEDULABLE})


class CostModel(enum.StrEnum):
    """What preempting a job costs.

    ``realistic``: work since the job's last checkpoint is lost and a restarted job waits
    ``restart_delay_s`` before it makes progress again. ``free``: nothing is lost and a
    restart is instant (as research simulators with free time-slicing assume).
    """

    REALISTIC = "realistic"
    FREE = "free"


@dataclass(slots=True)
class Attempt:
    """One stretch of a job holding cards, from admission to completion or preemption.

    ``run_start`` is when it starts making progress (after a restart delay or a data
    transfer); ``work_s`` is the reference-chip work the attempt kept.
    """

    job: JobId
    index: int
    cluster: ClusterName
    region: RegionName
    chip: ChipName
    family: ChipFamily
    placements: tuple[Placement, ...]
    cards: int
    admitted_at: float
    run_start: float
    speed: float
    expected_end: float
    ended_at: float | None = None
    outcome: str = ""
    work_s: float = 0.0
    lost_card_s: float = 0.0
    view: RunningJob | None = None
    view_until: float = -math.inf
    stopping_for: JobId | None = None
    """Preempted with a grace period and still writing its checkpoint: for whom."""


@dataclass(slots=True)
class SimJob:
    """A trace job and its progress through the simulation."""

    spec: TraceJob
    seq: int
    chips: tuple[str, ...]
    """The accepted chip selectors, canonical (one shared object per distinct list)."""
    remaining_s: float
    state: JobState = JobState.WAITING
    staging_to: RegionName | None = None
    first_start: float | None = None
    end: float | None = None
    preemptions: int = 0
    reason: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    view: PendingJob | None = None
    request: PendingJob | None = None
    """Its last pending view, kept while it runs (what reallocation moves)."""

    @property
    def attempt(self) -> Attempt:
        """The current (last) attempt."""
        return self.attempts[-1]


def pending_view(job: SimJob, replicas: Mapping[str, set[RegionName]]) -> PendingJob:
    """The job as a pending job of a snapshot (remaining work as its duration)."""
    spec = job.spec
    dataset = None
    if spec.dataset is not None:
        held = tuple(sorted(replicas.get(spec.dataset.name, ())))
        dataset = DatasetRef(spec.dataset.name, spec.dataset.size_bytes, held)
    return PendingJob(
        id=spec.job_id,
        tenant=spec.tenant,
        priority=spec.priority,
        seq=job.seq,
        chips=job.chips,
        cards_per_node=spec.cards,
        nodes=spec.nodes,
        simulated=True,
        kind=spec.kind,
        duration_s=job.remaining_s,
        max_runtime_s=spec.max_runtime_s,
        speed=spec.speed,
        preemptible=spec.preemptible,
        checkpoint_interval_s=spec.checkpoint_interval_s,
        dataset=dataset,
        submitted_at=spec.submit_s,
        staging_to=job.staging_to,
        serving=spec.serving,
    )


def last_checkpoint(attempt: Attempt, interval_s: float | None, now: float) -> float:
    """When the attempt last saved its progress (its run start if it never did)."""
    ran = now - attempt.run_start
    if ran <= 0 or not interval_s:
        return attempt.run_start
    return attempt.run_start + math.floor(ran / interval_s) * interval_s


def running_view(job: SimJob, now: float, cost: CostModel) -> RunningJob:
    """The job's current attempt as a running job of a snapshot taken at ``now``.

    ``started_at`` is when the attempt began making progress (after a restart delay or a
    data transfer) and ``last_checkpoint_at`` the point it resumed from; the periodic
    checkpoints since follow from ``checkpoint_interval_s`` (the scheduler derives them),
    so the view holds for the whole attempt. Under the free cost model every instant is a
    checkpoint: the view holds only at ``now``. ``attempt.view_until`` says until when.
    """
    attempt = job.attempt
    if attempt.view is not None and now < attempt.view_until:
        return attempt.view
    if cost is CostModel.FREE:
        checkpoint, until = now, now
    else:
        checkpoint, until = attempt.run_start, math.inf
    attempt.view = RunningJob(
        id=job.spec.job_id,
        tenant=job.spec.tenant,
        priority=job.spec.priority,
        cluster=attempt.cluster,
        chip=attempt.chip,
        family=attempt.family,
        placements=attempt.placements,
        started_at=attempt.run_start,
        expected_end=attempt.expected_end,
        preemptible=job.spec.preemptible,
        last_checkpoint_at=checkpoint,
        checkpoint_interval_s=job.spec.checkpoint_interval_s,
        request=job.request,
        serving=job.spec.serving,
        preempted_for=attempt.stopping_for,
    )
    attempt.view_until = until
    return attempt.view


@dataclass(frozen=True, slots=True)
class Stop:
    """How a preemption ends an attempt: the cards are held ``hold_s`` more (the grace
    spent writing a checkpoint) and the attempt keeps the work it ran until ``kept_until``."""

    hold_s: float
    kept_until: float


def stop_on_preemption(job: SimJob, now: float, cost: CostModel, *, grace: bool = True) -> Stop:
    """What preempting ``job`` at ``now`` costs (see :mod:`.engine`, grace periods).

    ``free``: nothing lost, the cards free at once. ``realistic`` without a grace period:
    the work since the last periodic checkpoint is lost, the cards free at once. With a
    grace period at least ``checkpoint_save_s``: the job saves on the signal and exits,
    its cards held for the save, nothing lost. A grace too short to save: the cards are
    held for the whole grace (killed at its end) and the work since the last periodic
    checkpoint is lost.
    """
    attempt, spec = job.attempt, job.spec
    if cost is CostModel.FREE:
        return Stop(0.0, now)
    seconds, save = spec.preemption_grace_s, spec.checkpoint_save_s
    checkpoint = last_checkpoint(attempt, spec.checkpoint_interval_s, now)
    if not grace or seconds <= 0:
        return Stop(0.0, checkpoint)
    if save <= seconds:
        return Stop(save, max(now, attempt.run_start))
    return Stop(seconds, checkpoint)
