"""Hypothesis properties of the simulator over random traces, with every real policy.

Whatever the trace, the policy and the cost model: every job ends in exactly one terminal
state, card-seconds and work are conserved (``compute_metrics`` checks and raises), jobs
that fit the fleet all complete, and the same inputs give the same outcome.
"""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanwang.domain.ids import ChipFamily, ChipName, JobId, TenantId
from suanwang.scheduler.snapshot import FlavorQuota, TenantQueue
from suanwang.simulator import (
    CostModel,
    SimConfig,
    SimFleet,
    TraceJob,
    available_policies,
    compute_metrics,
    load_fleet,
    resolve_policy,
    simulate,
)
from suanwang.simulator.fleet import QuotaPlan

CHIPS = ("nvidia-v100", "nvidia-p100", "nvidia-k80")


@cache
def gavel() -> SimFleet:
    return load_fleet("gavel-hetero")


@st.composite
def jobs(draw: st.DrawFn) -> list[TraceJob]:
    count = draw(st.integers(min_value=1, max_value=25))
    out = []
    for i in range(count):
        nodes = draw(st.integers(min_value=1, max_value=3))
        speed = draw(
            st.dictionaries(
                st.sampled_from(CHIPS).map(ChipName), st.floats(min_value=0.1, max_value=3.0)
            )
        )
        out.append(
            TraceJob(
                job_id=JobId(f"j{i}"),
                tenant=TenantId(draw(st.sampled_from(["a", "b", "c"]))),
                submit_s=draw(st.floats(min_value=0, max_value=5_000)),
                cards=draw(st.integers(min_value=1, max_value=4)),
                duration_s=draw(st.floats(min_value=1, max_value=20_000)),
                nodes=nodes,
                priority=draw(st.integers(min_value=0, max_value=2)),
                chips=tuple(
                    draw(st.lists(st.sampled_from(["any", *CHIPS]), min_size=1, max_size=2))
                ),
                speed=speed,
                preemptible=draw(st.booleans()),
                checkpoint_interval_s=draw(st.none() | st.floats(min_value=10, max_value=5_000)),
            )
        )
    return sorted(out, key=lambda j: j.submit_s)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    trace=jobs(),
    policy=st.sampled_from(available_policies()),
    cost=st.sampled_from(list(CostModel)),
    interval=st.sampled_from([0.0, 60.0]),
    nominal=st.none() | st.sampled_from([12, 36]),
)
def test_every_run_keeps_the_invariants(
    trace: list[TraceJob], policy: str, cost: CostModel, interval: float, nominal: int | None
) -> None:
    config = SimConfig(cost_model=cost, decision_interval_s=interval)
    quotas = None
    if nominal is not None:  # a job holds at most 12 cards: within nominal, it can always run
        flavor = FlavorQuota(nominal=nominal, borrowing_limit=None)
        queue = TenantQueue(TenantId("*"), {ChipFamily("nvidia"): flavor}, cohort="all")
        quotas = QuotaPlan(default=queue)
    outcome = simulate(gavel(), trace, resolve_policy(policy), config, quotas=quotas)
    compute_metrics(outcome)  # raises on a broken invariant
    # 9 nodes of 4 cards per chip: every generated job fits, so every job completes.
    stuck = [(j.job_id, j.reason) for j in outcome.jobs if j.state != "completed"]
    assert not stuck, stuck
    again = simulate(gavel(), trace, resolve_policy(policy), config, quotas=quotas)
    assert (again.jobs, again.attempts) == (outcome.jobs, outcome.attempts)
