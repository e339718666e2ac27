"""Batch packing in the simulator: Hypothesis properties and one worked case.

Over random batches (every job submitted at t = 0 by one tenant) on ``gavel-hetero``
(V100/P100/K80), the ``suanwang`` policy, both cost models and 6-minute rounds:

- a stop never loses more work than the cost model said when it was decided (the
  ``Preempt``'s ``lost_work_s``; nothing under ``--cost free``);
- every job finishes;
- no attempt runs on a chip outside the job's accepted list, and no job that is not
  preemptible is ever stopped (the engine raises on that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sim_properties import CHIPS, gavel

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
    """Wraps the run's reallocator; keeps every batch round's ``Preempt`` decisions."""

    inner: Reallocator
    stops: list[Preempt] = field(default_factory=list)
    rounds: int = 0

    def batch_round(self, snapshot: Snapshot) -> list[Decision] | None:
        out = self.inner.batch_round(snapshot)
        if out is not None:
            self.rounds += 1
            self.stops += [d for d in out if isinstance(d, Preempt)]
        return out

    def extend(self, snapshot: Snapshot, decisions: Sequence[Decision]) -> list[Decision]:
        out = self.inner.extend(snapshot, decisions)
        self.stops += [d for d in out[len(decisions) :] if isinstance(d, Preempt)]
        return out


def run(trace: list[TraceJob], cost: CostModel) -> tuple[SimOutcome, Recorder]:
    config = SimConfig(cost_model=cost, decision_interval_s=360.0)
    sim = Simulation(gavel(), trace, resolve_policy("suanwang"), config)
    assert sim.moves is not None, "the suanwang policy reallocates"
    recorder = Recorder(sim.moves)
    sim.moves = recorder  # type: ignore[assignment]
    return sim.run(), recorder


@st.composite
def batches(draw: st.DrawFn) -> list[TraceJob]:
    count = draw(st.integers(min_value=2, max_value=16))
    out = []
    for i in range(count):
        speed = draw(
            st.dictionaries(
                st.sampled_from(CHIPS).map(ChipName), st.floats(min_value=0.25, max_value=3.0)
            )
        )
        out.append(
            TraceJob(
                job_id=JobId(f"j{i}"),
                tenant=TenantId("t"),
                submit_s=draw(st.floats(min_value=0, max_value=30)),
                cards=draw(st.sampled_from([1, 2, 4])),
                duration_s=draw(st.floats(min_value=1, max_value=15_000)),
                nodes=draw(st.integers(min_value=1, max_value=2)),
                chips=tuple(
                    draw(st.lists(st.sampled_from(["any", *CHIPS]), min_size=1, max_size=2))
                ),
                speed=speed,
                preemptible=draw(st.booleans()),
                checkpoint_interval_s=draw(st.none() | st.floats(min_value=10, max_value=5_000)),
            )
        )
    return sorted(out, key=lambda j: j.submit_s)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=batches(), cost=st.sampled_from(list(CostModel)))
def test_batch_rounds_keep_their_cost_and_every_job_finishes(
    trace: list[TraceJob], cost: CostModel
) -> None:
    outcome, recorder = run(trace, cost)
    assert recorder.rounds > 0, "a batch is planned as one"
    compute_metrics(outcome)  # raises on a broken invariant (work, card-seconds)
    stuck = [(j.job_id, j.reason) for j in outcome.jobs if j.state != "completed"]
    assert not stuck, stuck
    by_id = {j.job_id: j for j in trace}
    for attempt in outcome.attempts:
        assert accepts_chip(by_id[attempt.job_id].chips, attempt.chip, "nvidia"), attempt
    said: dict[str, list[float]] = {}
    for stop in recorder.stops:
        said.setdefault(stop.job, []).append(stop.lost_work_s)
    for attempt in (a for a in outcome.attempts if a.outcome == "preempted"):
        assert by_id[attempt.job_id].preemptible
        allowed = said[attempt.job_id].pop(0)
        assert attempt.lost_card_s / attempt.cards <= allowed + 1e-6, (attempt, allowed)
        if cost is CostModel.FREE:
            assert attempt.lost_card_s == 0.0


def test_the_long_jobs_of_a_batch_start_on_the_fast_chips() -> None:
    # gavel-hetero: 36 cards each of V100, P100, K80 (9 nodes of 4). Nine 4-card jobs of
    # 40,000 s (V100) that crawl on a K80 (0.1x), and 100 short 1-card jobs that run as
    # fast on any chip: the long ones must hold the V100s from t = 0 (else one on a K80
    # alone takes 400,000 s), the short ones take the rest.
    speed = {ChipName("nvidia-p100"): 0.5, ChipName("nvidia-k80"): 0.1}
    long = [
        TraceJob(JobId(f"long{i}"), TenantId("t"), 0.0, 4, 40_000.0, speed=speed) for i in range(9)
    ]
    even = {ChipName(c): 1.0 for c in CHIPS}
    short = [
        TraceJob(JobId(f"s{i}"), TenantId("t"), 0.0, 1, 3_000.0, speed=even) for i in range(100)
    ]
    outcome, _recorder = run(long + short, CostModel.FREE)
    first = {a.job_id: a.chip for a in outcome.attempts if a.admitted_at == 0.0}
    assert all(first[JobId(f"long{i}")] == "nvidia-v100" for i in range(9)), first
    ends = {j.job_id: j.end_s for j in outcome.jobs}
    assert max(ends[JobId(f"long{i}")] or 0.0 for i in range(9)) <= 40_000.0 + 360.0
