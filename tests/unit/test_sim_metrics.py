"""Metrics math (percentiles, Jain's index, utilisation) and the end-of-run invariants."""

from __future__ import annotations

import dataclasses

import pytest

from suanwang.domain.ids import ChipName, JobId, TenantId
from suanwang.simulator.errors import InvariantViolation
from suanwang.simulator.metrics import (
    Summary,
    check_invariants,
    compute_metrics,
    jain_index,
    percentile,
    utilisation_series,
)
from suanwang.simulator.outcome import AttemptRecord, Counters, JobRecord, SimOutcome

V100 = ChipName("nvidia-v100")


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        (list(range(1, 101)), 95, 95.05),
        (list(range(1, 101)), 50, 50.5),
        ([10.0], 95, 10.0),
        ([1.0, 2.0], 100, 2.0),
        ([], 95, 0.0),
    ],
)
def test_percentile_interpolates_between_ranks(
    values: list[float], pct: float, expected: float
) -> None:
    assert percentile(values, pct) == pytest.approx(expected)


def test_summary_of_a_sample() -> None:
    summary = Summary.of([4.0, 1.0, 3.0, 2.0])
    assert (summary.avg, summary.median) == (2.5, 2.5)
    assert summary.p95 == pytest.approx(3.85)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, 1.0, 1.0], 1.0),
        ([1.0, 0.0, 0.0, 0.0], 0.25),
        ([1.0, 2.0], 9 / 10),
        ([], 1.0),
    ],
)
def test_jain_index(values: list[float], expected: float) -> None:
    assert jain_index(values) == pytest.approx(expected)


def record(
    job: str, tenant: str, submit: float, start: float, end: float, cards: int = 1
) -> JobRecord:
    return JobRecord(
        JobId(job), TenantId(tenant), submit, cards, end - start, "completed", start, end, 0, 1
    )


def attempt(job: str, start: float, end: float, cards: int = 1) -> AttemptRecord:
    return AttemptRecord(
        JobId(job), 0, V100, cards, start, start, end, "completed", end - start, 0.0
    )


def outcome(jobs: list[JobRecord], attempts: list[AttemptRecord], allocated: float) -> SimOutcome:
    counters = Counters(allocated_card_s={V100: allocated})
    end = max((a.ended_at for a in attempts), default=0.0)
    return SimOutcome("p", "f", {V100: 2}, tuple(jobs), tuple(attempts), counters, end)


def test_metrics_of_a_two_job_run() -> None:
    jobs = [record("a", "x", 0, 0, 10), record("b", "y", 0, 10, 30, cards=2)]
    attempts = [attempt("a", 0, 10), attempt("b", 10, 30, cards=2)]
    metrics = compute_metrics(outcome(jobs, attempts, allocated=10 + 40))
    assert metrics.jct_s.avg == 20
    assert metrics.queueing_s.avg == 5
    assert metrics.makespan_s == 30
    assert metrics.utilisation[V100] == pytest.approx(50 / 60)
    assert [(t.tenant, t.share) for t in metrics.tenants] == [("x", 0.2), ("y", 0.8)]
    # Slowdowns 1.0 (x) and 30/20 = 1.5 (y).
    assert metrics.jain_index == pytest.approx(2.5**2 / (2 * (1 + 2.25)))
    # Finish-time fairness rho: x 10 / 10 = 1.0, y 30 / 20 = 1.5 (one job each).
    assert [t.ftf for t in metrics.tenants] == [1.0, 1.5]
    assert metrics.jain_ftf == pytest.approx(metrics.jain_index)
    assert metrics.max_ftf == 1.5
    assert (metrics.jct_cdf_s[0], metrics.jct_cdf_s[-1]) == (10, 30)


def test_finish_time_fairness_weighs_jobs_by_run_time() -> None:
    """x: a 10 s job that waited 90 s (slowdown 10) and a 1,000 s job that did not wait.
    Average slowdown says x suffers (5.5); rho says it barely waited (1,100 / 1,010)."""
    jobs = [
        record("a", "x", 0, 90, 100),
        record("b", "x", 0, 0, 1_000),
        record("c", "y", 0, 0, 100),
    ]
    attempts = [attempt("a", 90, 100), attempt("b", 0, 1_000), attempt("c", 0, 100)]
    metrics = compute_metrics(outcome(jobs, attempts, allocated=10 + 1_000 + 100))
    x, y = metrics.tenants
    assert (x.avg_slowdown, y.avg_slowdown) == (5.5, 1.0)
    assert x.ftf == pytest.approx(1_100 / 1_010)
    assert y.ftf == 1.0
    assert metrics.max_ftf == pytest.approx(1_100 / 1_010)
    assert metrics.jain_ftf > 0.99 > metrics.jain_index


def test_conservation_violation_is_raised() -> None:
    jobs = [record("a", "x", 0, 0, 10)]
    with pytest.raises(InvariantViolation, match="card-seconds not conserved"):
        check_invariants(outcome(jobs, [attempt("a", 0, 10)], allocated=11.0))


def test_lost_work_violation_is_raised() -> None:
    jobs = [record("a", "x", 0, 0, 10)]
    short = dataclasses.replace(attempt("a", 0, 10), work_s=9.0)
    with pytest.raises(InvariantViolation, match=r"did 9\.000 s of work"):
        check_invariants(outcome(jobs, [short], allocated=10.0))


@pytest.mark.parametrize(
    "bad",
    [
        dataclasses.replace(record("a", "x", 0, 0, 10), state="running"),
        dataclasses.replace(record("a", "x", 0, 0, 10), state="unschedulable"),
    ],
)
def test_non_terminal_or_inconsistent_state_is_raised(bad: JobRecord) -> None:
    with pytest.raises(InvariantViolation, match="ended in state"):
        check_invariants(outcome([bad], [attempt("a", 0, 10)], allocated=10.0))


def test_duplicate_job_records_are_raised() -> None:
    jobs = [record("a", "x", 0, 0, 10), record("a", "x", 0, 0, 10)]
    with pytest.raises(InvariantViolation, match="2 records"):
        check_invariants(outcome(jobs, [attempt("a", 0, 10)], allocated=10.0))


def test_utilisation_series_splits_time_into_bins() -> None:
    times, series = utilisation_series(
        [attempt("a", 0, 5, cards=2), attempt("b", 5, 10)], {V100: 2}, 10.0, bins=4
    )
    assert times == (0.0, 2.5, 5.0, 7.5)
    assert series[V100] == pytest.approx((1.0, 1.0, 0.5, 0.5))
