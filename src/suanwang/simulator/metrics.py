"""Metrics of a simulation run, and the invariants every run must satisfy.

:func:`compute_metrics` turns a :class:`~suanwang.simulator.outcome.SimOutcome` into a
:class:`PolicyMetrics`: job completion time (JCT = end - submit) and queueing delay
(first start - submit) as average / median / p95, makespan, utilisation per chip type
(overall and as a time series), per-tenant results with Jain's fairness index, and the
costs of preemption and data staging. It first calls :func:`check_invariants`, which
raises :class:`~suanwang.simulator.errors.InvariantViolation` when a job did not end in
exactly one terminal state or when card-seconds or work were not conserved.

Fairness, two ways (both reported):

- ``jain_index``: Jain's index over the tenants' *average slowdown* (mean over their
  jobs of JCT / run time alone on the reference chip). Sensitive to tiny jobs: one
  ten-second job that waited an hour weighs as much as a week-long one.
- ``jain_ftf`` and ``max_ftf``: over each tenant's *finish-time fairness*
  ``rho = sum(JCT) / sum(run time alone)`` (Themis, NSDI 2020, with the reference-chip run
  time standing in for the tenant's run time on its own share): how much longer the
  tenant's work took than it would alone. ``max_ftf`` is the worst-off tenant's rho, the
  number Themis minimises; a starved tenant shows up there first.

Jain's index is 1.0 when every tenant fares alike and 1/n when one tenant bears it all.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from suanwang.domain.ids import ChipName, TenantId
from suanwang.simulator.errors import InvariantViolation
from suanwang.simulator.outcome import AttemptRecord, JobRecord, SimOutcome

SERIES_BINS = 100
CDF_POINTS = 101
_REL_TOL = 1e-6


@dataclass(frozen=True, slots=True)
class Summary:
    """Average, median and 95th percentile of a sample (0 when empty)."""

    avg: float
    median: float
    p95: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        ordered = sorted(values)
        if not ordered:
            return cls(0.0, 0.0, 0.0)
        avg = math.fsum(ordered) / len(ordered)
        return cls(avg, percentile(ordered, 50), percentile(ordered, 95))


@dataclass(frozen=True, slots=True)
class TenantMetrics:
    """One tenant's jobs, how they fared, and its share of the card-seconds used."""

    tenant: TenantId
    jobs: int
    completed: int
    avg_jct_s: float
    avg_slowdown: float
    card_s: float
    share: float
    ftf: float = 0.0
    """Finish-time fairness rho: sum of JCT over sum of reference run time (0: none done)."""


@dataclass(frozen=True, slots=True)
class PolicyMetrics:
    """Everything reported about one policy's run."""

    policy: str
    jobs: int
    completed: int
    unschedulable: int
    jct_s: Summary
    queueing_s: Summary
    slowdown: Summary
    makespan_s: float
    utilisation: Mapping[ChipName, float]
    series_times_s: tuple[float, ...]
    series: Mapping[ChipName, tuple[float, ...]]
    tenants: tuple[TenantMetrics, ...]
    jain_index: float
    preemptions: int
    lost_card_s: float
    lost_work_s: float
    overhead_card_s: float
    bytes_staged: int
    transfers: int
    allocated_card_s: float
    cycles: int
    wall_s: float
    policy_wall_s: float
    jct_cdf_s: tuple[float, ...] = field(default_factory=tuple)
    """JCT at quantiles 0, 1, ..., 100 % (for CDF plots)."""
    jain_ftf: float = 1.0
    """Jain's index over the tenants' finish-time fairness (``TenantMetrics.ftf``)."""
    max_ftf: float = 0.0
    """The worst-off tenant's finish-time fairness."""

    @property
    def jobs_per_s(self) -> float:
        """Simulation speed: trace jobs per wall-clock second."""
        return self.jobs / self.wall_s if self.wall_s > 0 else math.inf


def percentile(ordered: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile of sorted values, interpolating linearly between ranks."""
    if not ordered:
        return 0.0
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def jain_index(values: Iterable[float]) -> float:
    """Jain's fairness index (sum x)^2 / (n * sum x^2): 1.0 equal, 1/n maximally unequal."""
    xs = list(values)
    squares = math.fsum(x * x for x in xs)
    if not xs or squares == 0:
        return 1.0
    return math.fsum(xs) ** 2 / (len(xs) * squares)


def check_invariants(outcome: SimOutcome) -> None:
    """Raise InvariantViolation unless the run is consistent.

    Checks: job ids are unique and each job is in exactly one terminal state
    (``completed`` with an end, or ``unschedulable`` without); card-seconds are conserved
    (the engine's running integral equals the sum over attempts of cards x held time,
    overall and per chip); each completed job's kept work equals its duration.
    """
    counts = Counter(j.job_id for j in outcome.jobs)
    duplicated = [job for job, n in counts.items() if n > 1]
    if duplicated:
        raise InvariantViolation(f"job {duplicated[0]} has {counts[duplicated[0]]} records")
    for job in outcome.jobs:
        done = job.state == "completed" and job.end_s is not None
        never = job.state == "unschedulable" and job.end_s is None
        if not (done or never):
            raise InvariantViolation(f"job {job.job_id} ended in state {job.state!r}")
    _check_card_seconds(outcome)
    _check_work(outcome)


def _check_card_seconds(outcome: SimOutcome) -> None:
    held: dict[ChipName, float] = dict.fromkeys(outcome.counters.allocated_card_s, 0.0)
    for a in outcome.attempts:
        held[a.chip] = held.get(a.chip, 0.0) + a.cards * (a.ended_at - a.admitted_at)
    for chip, total in held.items():
        integral = outcome.counters.allocated_card_s.get(chip, 0.0)
        if not math.isclose(total, integral, rel_tol=_REL_TOL, abs_tol=1e-3):
            raise InvariantViolation(
                f"card-seconds not conserved on {chip}: attempts hold {total:.3f}, "
                f"the clock integrated {integral:.3f}"
            )


def _check_work(outcome: SimOutcome) -> None:
    kept: dict[str, float] = {}
    for a in outcome.attempts:
        kept[a.job_id] = kept.get(a.job_id, 0.0) + a.work_s
    for job in outcome.jobs:
        if job.state == "completed":
            work = kept.get(job.job_id, 0.0)
            if not math.isclose(work, job.duration_s, rel_tol=_REL_TOL, abs_tol=1e-3):
                raise InvariantViolation(
                    f"job {job.job_id} did {work:.3f} s of work for {job.duration_s:.3f} s"
                )


def compute_metrics(outcome: SimOutcome) -> PolicyMetrics:
    """Check the invariants, then compute every metric of the run."""
    check_invariants(outcome)
    done = _finished(outcome.jobs)
    jcts = sorted(end - j.submit_s for j, _, end in done)
    start = min((j.submit_s for j in outcome.jobs), default=0.0)
    makespan = max((end for _, _, end in done), default=start) - start
    counters = outcome.counters
    times, series = utilisation_series(outcome.attempts, outcome.cards_by_chip, outcome.end_s)
    tenants = tenant_metrics(outcome)
    return PolicyMetrics(
        policy=outcome.policy,
        jobs=len(outcome.jobs),
        completed=len(done),
        unschedulable=len(outcome.jobs) - len(done),
        jct_s=Summary.of(jcts),
        queueing_s=Summary.of([first - j.submit_s for j, first, _ in done]),
        slowdown=Summary.of([(end - j.submit_s) / j.duration_s for j, _, end in done]),
        makespan_s=makespan,
        utilisation={
            chip: counters.allocated_card_s.get(chip, 0.0) / (cards * makespan) if makespan else 0.0
            for chip, cards in outcome.cards_by_chip.items()
        },
        series_times_s=times,
        series=series,
        tenants=tenants,
        jain_index=jain_index(t.avg_slowdown for t in tenants if t.completed),
        preemptions=counters.preemptions,
        lost_card_s=counters.lost_card_s,
        lost_work_s=counters.lost_work_s,
        overhead_card_s=counters.overhead_card_s,
        bytes_staged=counters.bytes_staged,
        transfers=counters.transfers,
        allocated_card_s=math.fsum(counters.allocated_card_s.values()),
        cycles=counters.cycles,
        wall_s=counters.wall_s,
        policy_wall_s=counters.policy_wall_s,
        jct_cdf_s=tuple(percentile(jcts, p) for p in range(CDF_POINTS)) if jcts else (),
        jain_ftf=jain_index(t.ftf for t in tenants if t.completed),
        max_ftf=max((t.ftf for t in tenants if t.completed), default=0.0),
    )


def _finished(jobs: Iterable[JobRecord]) -> list[tuple[JobRecord, float, float]]:
    """Completed jobs with their first start and end."""
    out: list[tuple[JobRecord, float, float]] = []
    for job in jobs:
        if job.end_s is not None and job.first_start_s is not None:
            out.append((job, job.first_start_s, job.end_s))
    return out


def tenant_metrics(outcome: SimOutcome) -> tuple[TenantMetrics, ...]:
    """Per tenant: jobs, completed, average JCT and slowdown, card-seconds, share and
    finish-time fairness."""
    card_s: dict[str, float] = {}
    tenant_of = {j.job_id: j.tenant for j in outcome.jobs}
    for a in outcome.attempts:
        tenant = tenant_of[a.job_id]
        card_s[tenant] = card_s.get(tenant, 0.0) + a.cards * (a.ended_at - a.admitted_at)
    total = math.fsum(card_s.values())
    by_tenant: dict[TenantId, list[JobRecord]] = {}
    for job in outcome.jobs:
        by_tenant.setdefault(job.tenant, []).append(job)
    rows: list[TenantMetrics] = []
    for tenant in sorted(by_tenant):
        done = _finished(by_tenant[tenant])
        jct = [end - j.submit_s for j, _, end in done]
        slow = [(end - j.submit_s) / j.duration_s for j, _, end in done]
        used = card_s.get(tenant, 0.0)
        alone = math.fsum(j.duration_s for j, _, _ in done)
        rows.append(
            TenantMetrics(
                tenant=tenant,
                jobs=len(by_tenant[tenant]),
                completed=len(done),
                avg_jct_s=math.fsum(jct) / len(jct) if jct else 0.0,
                avg_slowdown=math.fsum(slow) / len(slow) if slow else 0.0,
                card_s=used,
                share=used / total if total else 0.0,
                ftf=math.fsum(jct) / alone if alone > 0 else 0.0,
            )
        )
    return tuple(rows)


def utilisation_series(
    attempts: Iterable[AttemptRecord],
    cards_by_chip: Mapping[ChipName, int],
    end_s: float,
    bins: int = SERIES_BINS,
) -> tuple[tuple[float, ...], dict[ChipName, tuple[float, ...]]]:
    """Fraction of each chip's cards held in each of ``bins`` equal slices of [0, end].

    Returns the slices' start times and, per chip, the fraction in each slice.
    """
    if end_s <= 0:
        return (), dict.fromkeys(cards_by_chip, ())
    width = end_s / bins
    edges = [i * width for i in range(bins + 1)]
    changes: dict[ChipName, list[tuple[float, int]]] = {chip: [] for chip in cards_by_chip}
    for a in attempts:
        changes.setdefault(a.chip, []).extend(((a.admitted_at, a.cards), (a.ended_at, -a.cards)))
    series: dict[ChipName, tuple[float, ...]] = {}
    for chip, cards in cards_by_chip.items():
        held = _integral_at(sorted(changes[chip]), edges)
        series[chip] = tuple(
            (held[i + 1] - held[i]) / (cards * width) if cards else 0.0 for i in range(bins)
        )
    return tuple(edges[:-1]), series


def _integral_at(changes: Sequence[tuple[float, int]], edges: Sequence[float]) -> list[float]:
    """Card-seconds held from 0 up to each edge, given sorted (time, +/- cards) changes."""
    out: list[float] = []
    busy, integral, last, i = 0, 0.0, 0.0, 0
    for edge in edges:
        while i < len(changes) and changes[i][0] <= edge:
            at, delta = changes[i]
            integral += busy * (at - last)
            busy, last, i = busy + delta, at, i + 1
        out.append(integral + busy * (edge - last))
    return out
