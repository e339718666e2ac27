"""What one simulation run produces: per-job and per-attempt records and counters.

These are plain frozen values; :mod:`suanwang.simulator.metrics` turns them into metrics
and checks the invariants, :mod:`suanwang.simulator.report` renders them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from suanwang.domain.ids import ChipName, JobId, TenantId
from suanwang.simulator.errors import InvariantViolation
from suanwang.simulator.state import JobState, SimJob


@dataclass(frozen=True, slots=True)
class JobRecord:
    """How one job fared. ``cards`` is its total (cards per node times nodes)."""

    job_id: JobId
    tenant: TenantId
    submit_s: float
    cards: int
    duration_s: float
    state: str
    first_start_s: float | None
    end_s: float | None
    preemptions: int
    attempts: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One stretch of holding cards. ``work_s`` is reference-chip work kept."""

    job_id: JobId
    index: int
    chip: ChipName
    cards: int
    admitted_at: float
    run_start: float
    ended_at: float
    outcome: str
    work_s: float
    lost_card_s: float


@dataclass(frozen=True, slots=True)
class Counters:
    """Totals the engine counts as it goes.

    ``allocated_card_s`` is integrated over time from the cards held at each instant,
    independently of the attempt records (the conservation check compares the two).
    """

    cycles: int = 0
    admissions: int = 0
    preemptions: int = 0
    lost_card_s: float = 0.0
    lost_work_s: float = 0.0
    overhead_card_s: float = 0.0
    bytes_staged: int = 0
    transfers: int = 0
    allocated_card_s: Mapping[ChipName, float] = field(default_factory=dict)
    policy_wall_s: float = 0.0
    wall_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SimOutcome:
    """Everything a run of one policy over one trace on one fleet produced."""

    policy: str
    fleet: str
    cards_by_chip: Mapping[ChipName, int]
    jobs: tuple[JobRecord, ...]
    attempts: tuple[AttemptRecord, ...]
    counters: Counters
    end_s: float
    settings: Mapping[str, object] = field(default_factory=dict)


def job_records(jobs: Iterable[SimJob]) -> tuple[JobRecord, ...]:
    """One record per job, in trace order."""
    return tuple(
        JobRecord(
            job_id=job.spec.job_id,
            tenant=job.spec.tenant,
            submit_s=job.spec.submit_s,
            cards=job.spec.total_cards,
            duration_s=job.spec.duration_s,
            state=str(job.state),
            first_start_s=job.first_start,
            end_s=job.end,
            preemptions=job.preemptions,
            attempts=len(job.attempts),
            reason=job.reason if job.state is not JobState.COMPLETED else "",
        )
        for job in jobs
    )


def attempt_records(jobs: Iterable[SimJob]) -> tuple[AttemptRecord, ...]:
    """Every finished attempt of every job, in trace then attempt order.

    Raises:
        InvariantViolation: an attempt never ended (the run was cut short).
    """
    records: list[AttemptRecord] = []
    for job in jobs:
        for attempt in job.attempts:
            if attempt.ended_at is None:
                raise InvariantViolation(
                    f"attempt {attempt.index} of job {attempt.job} never ended"
                )
            records.append(
                AttemptRecord(
                    job_id=attempt.job,
                    index=attempt.index,
                    chip=attempt.chip,
                    cards=attempt.cards,
                    admitted_at=attempt.admitted_at,
                    run_start=attempt.run_start,
                    ended_at=attempt.ended_at,
                    outcome=attempt.outcome,
                    work_s=attempt.work_s,
                    lost_card_s=attempt.lost_card_s,
                )
            )
    return tuple(records)
