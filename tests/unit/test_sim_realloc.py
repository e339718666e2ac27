"""Periodic reallocation in the simulator: Hypothesis properties and one worked case.

Over random traces on ``gavel-hetero`` (V100/P100/K80), the ``suanwang`` policy with
reallocation, both cost models and 6-minute rounds:

- a move never loses more work than the cost model said when it was decided (the
  ``Preempt``'s ``lost_work_s``; nothing under ``--cost free``);
- every job finishes;
- no attempt runs on a chip outside the job's accepted list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sim_properties import gavel, jobs

from suanwang.domain.chips import accepts_chip
from suanwang.domain.ids import ChipName, JobId, TenantId
from suanwang.scheduler.decisions import Decision, Preempt
from suanwang.scheduler.snapshot import Snapshot
from suanwang.simulator import CostModel, SimConfig, TraceJob, compute_metrics, resolve_policy
from suanwang.simulator.engine import Simulation
from suanwang.simulator.moves import Reallocator
from suanwang.simulator.outcome import SimOutcome


@dataclass
class Recorder:
    """Wraps the run's reallocator and keeps every move's ``Preempt`` (batch packing's
    stops included: they are moves too)."""

    inner: Reallocator
    moves: list[tuple[float, Preempt]] = field(default_factory=list)
    """Each move with the time of the round that decided it."""

    def extend(self, snapshot: Snapshot, decisions: Sequence[Decision]) -> list[Decision]:
        out = self.inner.extend(snapshot, decisions)
        self.moves += [(snapshot.now, d) for d in out[len(decisions) :] if isinstance(d, Preempt)]
        return out

    def batch_round(self, snapshot: Snapshot) -> list[Decision] | None:
        out = self.inner.batch_round(snapshot)
        self.moves += [(snapshot.now, d) for d in out or () if isinstance(d, Preempt)]
        return out


def run(trace: list[TraceJob], cost: CostModel) -> tuple[SimOutcome, list[tuple[float, Preempt]]]:
    config = SimConfig(cost_model=cost, decision_interval_s=360.0)
    sim = Simulation(gavel(), trace, resolve_policy("suanwang"), config)
    assert sim.moves is not None, "the suanwang policy reallocates"
    recorder = Recorder(sim.moves)
    sim.moves = recorder  # type: ignore[assignment]
    return sim.run(), recorder.moves


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=jobs(), cost=st.sampled_from(list(CostModel)))
def test_moves_keep_their_cost_and_every_job_finishes(
    trace: list[TraceJob], cost: CostModel
) -> None:
    outcome, moves = run(trace, cost)
    compute_metrics(outcome)  # raises on a broken invariant (work, card-seconds)
    stuck = [(j.job_id, j.reason) for j in outcome.jobs if j.state != "completed"]
    assert not stuck, stuck
    for attempt in outcome.attempts:
        job = next(j for j in trace if j.job_id == attempt.job_id)
        family = "nvidia"  # every chip of gavel-hetero
        assert accepts_chip(job.chips, attempt.chip, family), (job.chips, attempt.chip)
    # A move stops its attempt at the round that decided it; the job's other stops (a
    # higher-priority job's preemption) are not moves and are not matched here.
    stopped = {(a.job_id, a.ended_at): a for a in outcome.attempts if a.outcome == "preempted"}
    for at, move in moves:
        assert (move.job, at) in stopped, f"move {move} at t={at} stopped no attempt"
        attempt = stopped.pop((move.job, at))
        lost_s = attempt.lost_card_s / attempt.cards
        assert lost_s <= move.lost_work_s + 1e-6, (attempt, move)
        if cost is CostModel.FREE:
            assert lost_s == 0.0


def test_a_long_job_on_a_slow_chip_moves_when_a_fast_one_frees() -> None:
    # Nine V100 nodes of 4 cards: ``short`` holds one until 1,000 s, fillers the rest
    # for 1e6 s (neither may be preempted). At the first round (360 s) ``r`` (V100 only, higher priority, 500 s)
    # reserves the V100 node ``short`` frees; ``long`` (4 cards, 40,000 s on a V100,
    # 10x slower elsewhere) would queue behind it for a V100 until 1e6 s (the estimate
    # does not count ``r``'s own release), so it starts on a slower chip. Once ``r`` is
    # done the V100 node is free and nobody waits: ``long`` moves there and ends near
    # 1,800 + 40,000 s instead of ~400,000 s. (``r`` and ``long`` come 100 s after the
    # others, outside batch packing's window: this is the reallocation rule alone.)
    v100_only = ("nvidia-v100",)
    speed = {ChipName("nvidia-p100"): 0.1, ChipName("nvidia-k80"): 0.1}
    fillers = [
        TraceJob(JobId(f"v{i}"), TenantId("a"), 0.0, 4, 1e6, chips=v100_only, preemptible=False)
        for i in range(8)
    ]
    trace = [
        TraceJob(
            JobId("short"), TenantId("a"), 0.0, 4, 1_000.0, chips=v100_only, preemptible=False
        ),
        *fillers,
        TraceJob(JobId("r"), TenantId("a"), 100.0, 4, 500.0, priority=1, chips=v100_only),
        TraceJob(JobId("long"), TenantId("a"), 100.0, 4, 40_000.0, speed=speed),
    ]
    outcome, moves = run(trace, CostModel.FREE)
    assert [m.job for _, m in moves] == ["long"]
    runs = [(a.chip, a.admitted_at, a.ended_at) for a in outcome.attempts if a.job_id == "long"]
    # 1,440 s at 0.1 on the K80 = 144 s of work done; 39,856 s left at 1.0 from 1,800 s
    assert runs == [("nvidia-k80", 360.0, 1_800.0), ("nvidia-v100", 1_800.0, 41_656.0)]
