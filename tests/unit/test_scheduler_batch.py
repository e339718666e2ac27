"""Batch packing (``scheduler/batch.py``) and its LP (``scheduler/makespan.py``).

Fleet: node 1 is a 1-card ``ascend-910b`` node of ``c1`` (speed 2.0), node 2 a 3-card
``metax-c500`` node of ``c2`` (speed 1.0). Every job of a batch is submitted at t = 0 by
tenant ``t1``, which has no quota.
"""

from __future__ import annotations

import dataclasses

import pytest
from builders import make_job as J
from builders import make_node as N
from builders import make_queue as Q
from builders import make_running as R
from builders import make_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.ids import ChipName, JobId
from suanwang.scheduler.batch import batch_members, batch_round
from suanwang.scheduler.decisions import Admit, Decision, Pending, Preempt
from suanwang.scheduler.makespan import BatchJob, round_shares
from suanwang.scheduler.policy import KUEUE, SUANWANG, Policy, Tuning
from suanwang.scheduler.realloc import MoveCost
from suanwang.scheduler.snapshot import NodeView, PendingJob, RunningJob, Snapshot, TenantQueue

SPEEDS = {"ascend-910b": 2.0, "metax-c500": 1.0}
FREE = MoveCost(restart_delay_s=0.0, round_s=360.0)
REALISTIC = MoveCost(restart_delay_s=30.0, round_s=360.0)
A, B = ChipName("a"), ChipName("b")


def nodes(fast: int = 1, slow: int = 3) -> list[NodeView]:
    return [
        N(1, cluster="c1", chip="ascend-910b", cards_total=fast),
        N(2, cluster="c2", chip="metax-c500", cards_total=slow),
    ]


def job(name: str, work_s: float, **kw: object) -> PendingJob:
    kw.setdefault("chips", ("any",))
    return J(name, duration_s=work_s, **kw)  # type: ignore[arg-type]


def running_on_fast(
    name: str,
    left_s: float,
    now: float,
    *,
    preemptible: bool = True,
    started_at: float = 0.0,
    last_checkpoint_at: float | None = None,
    checkpoint_interval_s: float | None = None,
) -> RunningJob:
    """``name`` on the fast card, ``left_s`` seconds from its end (work ``2 * left_s``)."""
    run = R(
        name,
        {1: 1},
        cluster="c1",
        chip="ascend-910b",
        expected_end=now + left_s,
        preemptible=preemptible,
        started_at=started_at,
        last_checkpoint_at=last_checkpoint_at,
        checkpoint_interval_s=checkpoint_interval_s,
    )
    return dataclasses.replace(run, request=job(name, 2 * left_s))


def plan(
    pending: list[PendingJob],
    running: tuple[RunningJob, ...] = (),
    cost: MoveCost = FREE,
    policy: Policy = SUANWANG,
    now: float = 0.0,
    fleet: list[NodeView] | None = None,
    queues: tuple[TenantQueue, ...] = (),
) -> list[Decision] | None:
    snapshot = make_snapshot(
        fleet or nodes(),
        pending,
        running=running,
        chip_speed=SPEEDS,
        now=now,
        queues=queues,
    )
    return batch_round(snapshot, policy, cost)


def admitted(decisions: list[Decision] | None) -> dict[str, str]:
    assert decisions is not None
    return {d.job: d.chip for d in decisions if isinstance(d, Admit)}


# --- the LP ---------------------------------------------------------------------------


def test_the_round_goes_to_the_short_job_when_the_makespan_allows() -> None:
    jobs = [
        BatchJob(JobId("long"), 1, 3_600.0, {A: 1.0}),
        BatchJob(JobId("short"), 1, 720.0, {A: 1.0}),
    ]
    out = round_shares(jobs, {A: 1}, 360.0)
    assert out.horizon_s == pytest.approx(4_320.0)
    assert out.shares == {JobId("short"): {A: pytest.approx(1.0)}}


def test_a_long_job_the_makespan_needs_runs_from_the_first_round() -> None:
    # 2 cards; 7,200 s for the long job and 4 x 1,800 s: the makespan is 7,200 s only if
    # the long job runs all the time, though shortest-first would leave it for last.
    jobs = [BatchJob(JobId("long"), 1, 7_200.0, {A: 1.0})]
    jobs += [BatchJob(JobId(f"s{i}"), 1, 1_800.0, {A: 1.0}) for i in range(4)]
    out = round_shares(jobs, {A: 2}, 360.0)
    assert out.horizon_s == pytest.approx(7_200.0)
    assert out.shares[JobId("long")][A] == pytest.approx(1.0)


def test_the_horizon_uses_every_type_as_the_fastest_plan_would() -> None:
    # x is 4x faster on a, y only 1.2x; each on one type, the makespan is 3,600 s. With
    # both types busy all along and each job always running, x spends t on a and H - t
    # on b, y the opposite: 4t + H - t = 3,600 and 1.2 (H - t) + t = 3,600, so
    # H = 3,840 * 15 / 19 = 3,031.6 s.
    jobs = [
        BatchJob(JobId("x"), 1, 3_600.0, {A: 4.0, B: 1.0}),
        BatchJob(JobId("y"), 1, 3_600.0, {A: 1.2, B: 1.0}),
    ]
    out = round_shares(jobs, {A: 1, B: 1}, 360.0)
    assert out.horizon_s == pytest.approx(3_840.0 * 15 / 19, abs=1.0)


lp_jobs = st.lists(
    st.builds(
        BatchJob,
        job=st.integers(0, 10**6).map(lambda i: JobId(f"j{i}")),
        cards=st.sampled_from([1, 2, 4]),
        work_s=st.floats(min_value=10.0, max_value=50_000.0),
        speed=st.dictionaries(st.sampled_from([A, B]), st.floats(0.1, 4.0), min_size=1),
    ),
    min_size=1,
    max_size=30,
    unique_by=lambda j: j.job,
)


@settings(max_examples=60, deadline=None)
@given(jobs=lp_jobs, a=st.integers(4, 16), b=st.integers(4, 16))
def test_shares_respect_capacity_and_the_horizon_bounds_every_job(
    jobs: list[BatchJob], a: int, b: int
) -> None:
    cards = {A: a, B: b}
    out = round_shares(jobs, cards, 360.0)
    for chip in (A, B):
        used = sum(j.cards * out.shares.get(j.job, {}).get(chip, 0.0) for j in jobs)
        assert used <= cards[chip] + 1e-6
    for j in jobs:
        row = out.shares.get(j.job, {})
        assert sum(row.values()) <= 1 + 1e-6
        assert set(row) <= set(j.speed)
        # no job can end sooner than on its fastest type, alone
        assert out.horizon_s >= j.work_s / max(j.speed.values()) - 1e-3


# --- what a batch is ------------------------------------------------------------------


def test_jobs_submitted_apart_are_not_a_batch() -> None:
    assert plan([job("a", 1_000), job("b", 1_000, submitted_at=3_600.0)], now=3_600.0) is None


def test_a_tenant_with_a_quota_is_left_to_the_cycle() -> None:
    queue = Q("t1", {"ascend": 1})
    assert plan([job("a", 1_000), job("b", 1_000)], queues=(queue,)) is None


def test_a_policy_without_batch_packing_does_not_pack() -> None:
    assert plan([job("a", 1_000), job("b", 1_000)], policy=KUEUE) is None


def test_more_jobs_than_the_bound_are_not_planned() -> None:
    small = dataclasses.replace(SUANWANG, tuning=Tuning(batch_max_jobs=2))
    assert plan([job(n, 1_000) for n in "abc"], policy=small) is None
    assert plan([job(n, 1_000) for n in "ab"], policy=small) is not None


def test_a_serving_replica_is_never_part_of_a_batch() -> None:
    replica = dataclasses.replace(running_on_fast("replica", 20_000.0, now=0.0), serving=True)
    assert plan([job("a", 100.0), job("b", 100.0)], running=(replica,)) is None


def test_a_job_without_a_duration_is_not_planned() -> None:
    assert plan([job("a", 1_000), J("b", chips=("any",))]) is None


def test_another_tenants_work_is_never_stopped_for_a_batch() -> None:
    # Hostile tenant: "evil" submits a batch of short jobs while t1's long job holds the
    # fast card; the plan would stop it for them if the two were one batch. They are not.
    theirs = running_on_fast("victim", 20_000.0, now=0.0)
    evil = [job(f"e{i}", 100.0, tenant="evil") for i in range(8)]
    assert plan(evil, running=(theirs,)) is None


# --- the round ------------------------------------------------------------------------


def test_the_long_job_takes_the_fast_chip_from_the_start() -> None:
    # Shortest-first would give the fast card to a short job; the makespan needs the long
    # one there (20,000 s of work: 10,000 s on it) while the short ones share the slow card.
    pending = [job("long", 20_000.0)] + [job(f"s{i}", 2_000.0) for i in range(3)]
    assert admitted(plan(pending)) == {
        "long": "ascend-910b",
        "s0": "metax-c500",
        "s1": "metax-c500",
        "s2": "metax-c500",
    }


def test_free_stops_time_slice_a_long_job_for_a_short_one() -> None:
    # One card: the makespan is the same either way, so the short job goes first.
    long = running_on_fast("long", 1_800.0, now=3_600.0, last_checkpoint_at=3_600.0)
    decisions = plan([job("short", 720.0)], running=(long,), now=3_600.0, fleet=nodes(slow=0))
    assert decisions is not None
    stops = [d for d in decisions if isinstance(d, Preempt)]
    assert [(d.job, d.lost_work_s) for d in stops] == [("long", 0.0)]
    assert admitted(decisions) == {"short": "ascend-910b"}


def test_a_stop_that_costs_more_than_the_bound_is_not_made() -> None:
    # Realistic cost: the long job last saved 1,000 s ago; stopping it would lose that.
    long = running_on_fast(
        "long", 1_800.0, now=3_600.0, started_at=0.0, checkpoint_interval_s=2_600.0
    )
    decisions = plan(
        [job("short", 720.0)], running=(long,), cost=REALISTIC, now=3_600.0, fleet=nodes(slow=0)
    )
    assert decisions is not None
    assert not [d for d in decisions if isinstance(d, Preempt)]
    assert admitted(decisions) == {}


def test_a_non_preemptible_job_is_never_stopped() -> None:
    long = running_on_fast("long", 1_800.0, now=3_600.0, preemptible=False)
    decisions = plan([job("short", 720.0)], running=(long,), now=3_600.0, fleet=nodes(slow=0))
    assert decisions is not None
    assert not [d for d in decisions if isinstance(d, Preempt)]


def test_a_job_is_only_placed_on_a_chip_it_accepts() -> None:
    pending = [job("slow-only", 20_000.0, chips=("metax-c500",)), job("other", 1_000.0)]
    chips = admitted(plan(pending))
    assert chips["slow-only"] == "metax-c500"


def test_every_pending_job_gets_a_decision() -> None:
    pending = [job(f"j{i}", 1_000.0 * (i + 1), cards_per_node=2) for i in range(4)]
    decisions = plan(pending)
    assert decisions is not None
    decided = {d.job for d in decisions if isinstance(d, Admit | Pending)}
    assert decided == {p.id for p in pending}


def test_members_of_a_batch_are_its_pending_and_running_jobs() -> None:
    long = running_on_fast("long", 1_800.0, now=10.0)
    snapshot: Snapshot = make_snapshot(
        nodes(), [job("a", 10.0)], running=[long], chip_speed=SPEEDS, now=10.0
    )
    members = batch_members(snapshot, SUANWANG, FREE)
    assert members is not None
    assert [(m.id, m.work_s) for m in members] == [("a", 10.0), ("long", 3_600.0)]
