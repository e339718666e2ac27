"""Hypothesis property of the fair-share floor (``Policy.share_floor``, ``scheduler/floor.py``).

Whatever the trace and the cost model, under ``suanwang`` with the floor on no tenant stays *below its
floor* for more than :data:`N_ROUNDS` decision rounds: below it means the tenant has a
waiting job that would keep it within its fair share (the fleet's cards over the number
of tenants with pending or running work) and holds less than that. The floor is checked
from the run's own records (attempts and jobs), at every instant something changed.

The traces are built so the floor is always reachable: one chip type (a card is a unit),
every job preemptible, on one node, and all jobs of a run of the same size, which divides
the node's 4 cards (no fragmentation can keep a freed card from fitting).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanwang.domain.ids import ChipName, JobId, TenantId
from suanwang.scheduler import Decision, Snapshot, cycle
from suanwang.scheduler.cache import CycleCache
from suanwang.scheduler.policy import SUANWANG
from suanwang.simulator import (
    CostModel,
    SimConfig,
    SimFleet,
    TraceJob,
    load_fleet,
    simulate,
)
from suanwang.simulator.outcome import SimOutcome
from suanwang.simulator.policies import SCHEDULER_POLICY, Policy

FLOOR = dataclasses.replace(SUANWANG, name="suanwang+floor", share_floor=True)
"""``suanwang`` with the fair-share floor, which it leaves off by default (see
docs/scheduler.md: under realistic cost its preemptions lose work it does not price)."""

INTERVAL_S = 60.0
N_ROUNDS = 3
"""One round to preempt for the job, the next to start it, and one for the arrival."""
CARDS = 12
FLEET = f"""
regions:
  - name: r1
clusters:
  - name: c1
    region: r1
    kind: simulated
    node_groups:
      - {{name_prefix: v, count: {CARDS // 4}, chip: nvidia-v100, cards: 4}}
"""


def with_floor() -> Policy:
    """``FLOOR`` as the simulator runs a named policy (reallocation included)."""

    def run(snapshot: Snapshot, cache: CycleCache | None = None) -> list[Decision]:
        return cycle(snapshot, FLOOR, cache=cache)

    setattr(run, SCHEDULER_POLICY, FLOOR)
    return run


@cache
def fleet() -> SimFleet:
    path = Path(tempfile.mkdtemp(prefix="suanwang-floor-")) / "floor-12.yaml"
    path.write_text(FLEET, encoding="utf-8")
    return load_fleet(str(path))


@st.composite
def traces(draw: st.DrawFn) -> list[TraceJob]:
    size = draw(st.sampled_from([1, 2, 4]))
    count = draw(st.integers(min_value=2, max_value=20))
    jobs = [
        TraceJob(
            job_id=JobId(f"j{i}"),
            tenant=TenantId(draw(st.sampled_from(["a", "b", "c"]))),
            submit_s=draw(st.floats(min_value=0, max_value=20_000)),
            cards=size,
            duration_s=draw(st.floats(min_value=100, max_value=30_000)),
            chips=(ChipName("nvidia-v100"),),
            preemptible=True,
            checkpoint_interval_s=draw(st.none() | st.floats(min_value=60, max_value=3_600)),
        )
        for i in range(count)
    ]
    return sorted(jobs, key=lambda j: j.submit_s)


def below_floor_spells(outcome: SimOutcome, size: int) -> Iterator[tuple[str, float, float]]:
    """(tenant, from, to) of every stretch a tenant spent below its floor."""
    jobs = {j.job_id: j for j in outcome.jobs}
    times = sorted(
        {j.submit_s for j in outcome.jobs}
        | {a.admitted_at for a in outcome.attempts}
        | {a.ended_at for a in outcome.attempts}
    )
    since: dict[str, float] = {}
    for t in times:
        held: dict[str, int] = {}
        running = set()
        for a in outcome.attempts:
            if a.admitted_at <= t < a.ended_at:
                tenant = jobs[a.job_id].tenant
                held[tenant] = held.get(tenant, 0) + a.cards
                running.add(a.job_id)
        waiting = {
            j.tenant
            for j in outcome.jobs
            if j.submit_s <= t and (j.end_s is None or j.end_s > t) and j.job_id not in running
        }
        active = waiting | set(held)
        below = {x for x in waiting if held.get(x, 0) + size <= CARDS / len(active) + 1e-9}
        for tenant in sorted(set(since) - below):
            yield tenant, since.pop(tenant), t
        for tenant in below:
            since.setdefault(tenant, t)
    end = max(times, default=0.0)
    yield from ((tenant, start, end) for tenant, start in since.items())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces(), cost=st.sampled_from(list(CostModel)))
def test_no_tenant_stays_below_its_floor(trace: list[TraceJob], cost: CostModel) -> None:
    config = SimConfig(cost_model=cost, decision_interval_s=INTERVAL_S)
    outcome = simulate(fleet(), trace, with_floor(), config)
    assert all(j.state == "completed" for j in outcome.jobs)
    limit = N_ROUNDS * INTERVAL_S
    long = [s for s in below_floor_spells(outcome, trace[0].cards) if s[2] - s[1] > limit]
    assert not long, long


def test_a_tenant_arriving_late_preempts_a_tenant_over_its_share() -> None:
    """The floor at work: tenant a fills the fleet with long jobs; tenant b's job, which
    FIFO order and plain fair-share ordering would keep waiting for days, starts within
    two rounds, by stopping one of a's jobs."""
    long = [
        TraceJob(JobId(f"a{i}"), TenantId("a"), 0.0, 4, 500_000.0, preemptible=True)
        for i in range(CARDS // 4)
    ]
    late = TraceJob(JobId("b0"), TenantId("b"), 1_000.0, 4, 1_000.0, preemptible=True)
    config = SimConfig(decision_interval_s=INTERVAL_S)
    outcome = simulate(fleet(), [*long, late], with_floor(), config)
    record = next(j for j in outcome.jobs if j.job_id == "b0")
    assert record.first_start_s is not None
    assert record.first_start_s <= late.submit_s + 2 * INTERVAL_S
    assert sum(j.preemptions for j in outcome.jobs) == 1  # one of a's jobs, once
