"""What a train+infer pool run reports: training's share, inference's SLO, and what it cost.

:func:`training_result` reads the training jobs of a finished simulation (a plain
:class:`~.engine.Simulation` for a static split, a :class:`~.pool.PoolSimulation` for the
shared pool): card-hours held within the day, average JCT, preemptions, resumes and work
lost since the last checkpoint. :func:`slo_attainment` is the share of the day's minutes
whose p95 time to first token met the target (at most 5 % of the minute's requests
missed it; a minute without requests counts as met). :func:`static_inference` serves the
day on a fixed set of replicas, as a static split does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from suanwang.domain.ids import JobId
from suanwang.simulator.demand import MINUTES_PER_DAY, DemandDay
from suanwang.simulator.serving import P95_MISS, ReferenceReplica, serve
from suanwang.simulator.state import JobState, SimJob


@dataclass(frozen=True, slots=True)
class TrainingResult:
    """Training jobs' results in one run."""

    jobs: int
    completed: int
    card_hours_in_day: float
    card_hours_total: float
    avg_jct_s: float
    preemptions: int
    preempted_jobs: int
    resumed_jobs: int
    lost_card_hours: float
    lost_work_hours: float
    """Reference-chip hours of work thrown away (done since the last checkpoint)."""
    avg_wait_s: float = 0.0
    """Average time from submission to first start (of the JCT, the queueing)."""
    median_jct_s: float = 0.0
    p90_jct_s: float = 0.0
    longest_tenth_jct_share: float = 0.0
    """Share of the summed JCT made by the 10 % of jobs with the longest JCTs."""


def training_result(
    jobs: Mapping[JobId, SimJob], training: Iterable[JobId], day_s: float
) -> TrainingResult:
    """Training's figures from the simulation's jobs (every job should be completed)."""
    chosen = [jobs[j] for j in training]
    held_day = held_total = lost_card = lost_work = 0.0
    preemptions = preempted = resumed = 0
    for job in chosen:
        for attempt in job.attempts:
            end = attempt.ended_at if attempt.ended_at is not None else attempt.admitted_at
            held_total += (end - attempt.admitted_at) * attempt.cards
            held_day += max(0.0, min(end, day_s) - attempt.admitted_at) * attempt.cards
            lost_card += attempt.lost_card_s
            lost_work += attempt.lost_card_s / attempt.cards * attempt.speed
        preemptions += job.preemptions
        if job.preemptions:
            preempted += 1
            resumed += job.state is JobState.COMPLETED and len(job.attempts) > job.preemptions
    done = [j for j in chosen if j.state is JobState.COMPLETED and j.end is not None]
    jct = sorted(j.end - j.spec.submit_s for j in done if j.end is not None)
    waits = [j.first_start - j.spec.submit_s for j in done if j.first_start is not None]
    tenth = jct[len(jct) - max(1, len(jct) // 10) :] if jct else []
    return TrainingResult(
        jobs=len(chosen),
        completed=len(done),
        card_hours_in_day=held_day / 3600,
        card_hours_total=held_total / 3600,
        avg_jct_s=math.fsum(jct) / len(jct) if jct else 0.0,
        preemptions=preemptions,
        preempted_jobs=preempted,
        resumed_jobs=resumed,
        lost_card_hours=lost_card / 3600,
        lost_work_hours=lost_work / 3600,
        avg_wait_s=math.fsum(waits) / len(waits) if waits else 0.0,
        median_jct_s=jct[len(jct) // 2] if jct else 0.0,
        p90_jct_s=jct[int(len(jct) * 0.9)] if jct else 0.0,
        longest_tenth_jct_share=math.fsum(tenth) / math.fsum(jct) if jct else 0.0,
    )


def slo_attainment(requests: Mapping[int, float], missed: Mapping[int, float]) -> float:
    """Share of the day's minutes (0 .. 1439) whose p95 TTFT met the target."""
    met = 0
    for minute in range(MINUTES_PER_DAY):
        total = requests.get(minute, 0.0)
        if total <= 0 or missed.get(minute, 0.0) <= P95_MISS * total:
            met += 1
    return met / MINUTES_PER_DAY


@dataclass(frozen=True, slots=True)
class StaticInference:
    """A static split's inference side over the day."""

    replicas: int
    capacity: float
    slo_attainment: float
    requests: Mapping[int, float]
    missed: Mapping[int, float]


def static_inference(
    replica: ReferenceReplica,
    weights: Sequence[float],
    demand: DemandDay,
    ttft_target_s: float,
    tick_s: float,
) -> StaticInference:
    """Serve the day on fixed replicas of true speeds ``weights``, tick by tick."""
    requests: dict[int, float] = {}
    missed: dict[int, float] = {}
    backlog = 0.0
    ticks = round(MINUTES_PER_DAY * 60 / tick_s)
    for tick in range(ticks):
        minute = int(tick * tick_s // 60)
        rate = demand.rate_at(minute)
        served = serve(replica, weights, rate, backlog, tick_s, ttft_target_s)
        backlog = served.backlog
        requests[minute] = requests.get(minute, 0.0) + rate * tick_s
        missed[minute] = missed.get(minute, 0.0) + rate * tick_s * served.miss_share
    return StaticInference(
        replicas=len(weights),
        capacity=math.fsum(weights),
        slo_attainment=slo_attainment(requests, missed),
        requests=requests,
        missed=missed,
    )


def smallest_static_share(
    replica: ReferenceReplica,
    candidates: Sequence[float],
    rate_rps: float,
    ttft_target_s: float,
) -> int:
    """Fewest of ``candidates`` (replica speeds, in the order they would be taken) whose
    steady p95 TTFT meets the target at ``rate_rps``; ``len(candidates) + 1`` if none do."""
    for count in range(1, len(candidates) + 1):
        served = serve(replica, candidates[:count], rate_rps, 0.0, 60.0, ttft_target_s)
        if served.backlog == 0 and served.miss_share <= P95_MISS:
            return count
    return len(candidates) + 1
