"""The event loop on tiny fleets with hand-computable traces.

Policies here are small scripted functions over the snapshot, so the expected times
depend only on the engine (the real policies are exercised in integration tests).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from suanwang.domain.ids import ChipFamily, JobId, NodeId, RegionName, TenantId
from suanwang.scheduler.decisions import Admit, Decision, Pending, Placement, Preempt, StageDataset
from suanwang.scheduler.snapshot import FlavorQuota, NodeView, PendingJob, Snapshot, TenantQueue
from suanwang.simulator.engine import SimConfig, simulate
from suanwang.simulator.errors import InvariantViolation, SimulationError
from suanwang.simulator.fleet import QuotaPlan, SimFleet, load_fleet
from suanwang.simulator.metrics import compute_metrics
from suanwang.simulator.outcome import SimOutcome
from suanwang.simulator.policies import resolve_policy
from suanwang.simulator.state import CostModel
from suanwang.simulator.trace import DatasetSpec, TraceJob

Policy = Callable[[Snapshot], list[Decision]]
EVENTS = SimConfig(decision_interval_s=0.0)


def fleet(tmp_path: Path, chip: str = "nvidia-v100", cards: int = 4, nodes: int = 1) -> SimFleet:
    """One region ``r1`` (and an empty ``r2`` joined by an 8 Gb/s, 100 ms link)."""
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "regions: [{name: r1}, {name: r2}]\n"
        "clusters:\n"
        "  - {name: c1, region: r1, kind: simulated, node_groups: [{name_prefix: n, "
        f"count: {nodes}, chip: {chip}, cards: {cards}}}]}}\n"
        "wan_links: [{between: [r1, r2], bandwidth_gbps: 8, rtt_ms: 100, distance_km: 10}]\n",
        encoding="utf-8",
    )
    return load_fleet(str(path))


def job(name: str, submit: float, cards: int, duration: float, **extra: Any) -> TraceJob:
    return TraceJob(JobId(name), TenantId("t"), submit, cards, duration, **extra)


def _place(job: PendingJob, node: NodeView) -> Admit:
    placement = (Placement(node.id, job.cards_per_node),)
    return Admit(job.id, node.cluster, node.chip, node.family, placement)


def strict_fifo(snapshot: Snapshot) -> list[Decision]:
    """Priority, then submit order; the first job that does not fit blocks the rest."""
    free = {n.id: n.cards_free for n in snapshot.nodes}
    decisions: list[Decision] = []
    for pending in sorted(snapshot.pending, key=lambda j: (-j.priority, j.seq)):
        node = next((n for n in snapshot.nodes if free[n.id] >= pending.cards_per_node), None)
        if node is None:
            return [*decisions, Pending(pending.id, "waiting")]
        free[node.id] -= pending.cards_per_node
        decisions.append(_place(pending, node))
    return decisions


def ends(outcome: SimOutcome) -> dict[str, float | None]:
    return {j.job_id: j.end_s for j in outcome.jobs}


def test_fifo_jcts_are_exact(tmp_path: Path) -> None:
    jobs = [job("a", 0, 4, 100), job("b", 10, 2, 50), job("c", 20, 2, 30)]
    outcome = simulate(fleet(tmp_path), jobs, strict_fifo, EVENTS)
    assert ends(outcome) == {"a": 100, "b": 150, "c": 130}
    metrics = compute_metrics(outcome)
    assert metrics.jct_s.avg == pytest.approx((100 + 140 + 110) / 3)
    assert metrics.queueing_s.avg == pytest.approx((0 + 90 + 80) / 3)
    assert metrics.makespan_s == 150
    assert metrics.allocated_card_s == 4 * 100 + 2 * 50 + 2 * 30


def test_cycles_wait_for_the_decision_interval(tmp_path: Path) -> None:
    jobs = [job("a", 0, 4, 100), job("b", 10, 2, 50)]
    outcome = simulate(fleet(tmp_path), jobs, strict_fifo, SimConfig(decision_interval_s=60))
    # b arrives at 10 but the cycle after a's end (100) runs at 120.
    assert ends(outcome) == {"a": 100, "b": 170}


def test_speed_per_job_and_default_speed_from_tflops(tmp_path: Path) -> None:
    jobs = [
        job("fast", 0, 1, 100, speed={"nvidia-p100": 2.0}),
        job("default", 0, 1, 187),
    ]
    outcome = simulate(fleet(tmp_path, chip="nvidia-p100"), jobs, strict_fifo, EVENTS)
    assert ends(outcome)["fast"] == 50
    # No speed given: P100 FP16 TFLOPS over the V100's (18.7 / 125).
    assert ends(outcome)["default"] == pytest.approx(187 * 125 / 18.7)


def preempt_a_for_b(snapshot: Snapshot) -> list[Decision]:
    """FIFO, but job b, once pending, preempts a running job a."""
    waiting = {j.id for j in snapshot.pending}
    running = {r.id for r in snapshot.running}
    if "b" in waiting and "a" in running:
        return [Preempt(JobId("a"), JobId("b"), "b is urgent")]
    return strict_fifo(snapshot)


@pytest.mark.parametrize(
    ("cost", "a_end", "lost_card_s"),
    [
        # a ran 0..500 and checkpointed at 300: 200 s lost; 700 s left after b (500..600),
        # resumed at 600 after a 30 s restart delay.
        pytest.param(CostModel.REALISTIC, 600 + 30 + 700, 200.0, id="realistic"),
        # Free: nothing lost, no restart delay; 500 s left.
        pytest.param(CostModel.FREE, 600 + 500, 0.0, id="free"),
    ],
)
def test_cost_models_of_preemption(
    tmp_path: Path, cost: CostModel, a_end: float, lost_card_s: float
) -> None:
    jobs = [job("a", 0, 1, 1000, checkpoint_interval_s=300), job("b", 500, 1, 100, priority=1)]
    config = SimConfig(cost_model=cost, decision_interval_s=0, restart_delay_s=30)
    outcome = simulate(fleet(tmp_path, cards=1), jobs, preempt_a_for_b, config)
    assert ends(outcome) == {"a": a_end, "b": 600}
    metrics = compute_metrics(outcome)
    assert (metrics.preemptions, metrics.lost_card_s) == (1, lost_card_s)
    (a, _) = outcome.jobs
    assert (a.preemptions, a.attempts) == (1, 2)


def test_preempting_a_non_preemptible_job_is_an_invariant_violation(tmp_path: Path) -> None:
    jobs = [job("a", 0, 1, 1000, preemptible=False), job("b", 500, 1, 100, priority=1)]
    with pytest.raises(InvariantViolation, match="non-preemptible"):
        simulate(fleet(tmp_path, cards=1), jobs, preempt_a_for_b, EVENTS)


def lent(nominal_b: int) -> QuotaPlan:
    """Tenants a (4 cards' nominal, lends all) and b (``nominal_b``, borrows freely)."""
    nvidia = ChipFamily("nvidia")
    a = TenantQueue(TenantId("a"), {nvidia: FlavorQuota(4, 0, None)}, cohort="co")
    b = TenantQueue(TenantId("b"), {nvidia: FlavorQuota(nominal_b, None, None)}, cohort="co")
    return QuotaPlan(tenants={TenantId("a"): a, TenantId("b"): b})


def test_the_lender_reclaims_a_non_preemptible_borrower(tmp_path: Path) -> None:
    """b runs a non-preemptible job on a's idle quota; a's job reclaims it at once and
    b's job runs again after a's."""
    jobs = [
        TraceJob(JobId("b"), TenantId("b"), 0, 4, 1000, preemptible=False, priority=1000),
        TraceJob(JobId("a"), TenantId("a"), 10, 4, 100),
    ]
    outcome = simulate(
        fleet(tmp_path, cards=4), jobs, resolve_policy("suanwang"), EVENTS, quotas=lent(0)
    )
    assert ends(outcome)["a"] == 110
    compute_metrics(outcome)
    (b_job,) = [j for j in outcome.jobs if j.job_id == "b"]
    assert b_job.preemptions == 1


def preempt_b_for_a(snapshot: Snapshot) -> list[Decision]:
    """FIFO, but job a, once pending, preempts a running job b."""
    if "a" in {j.id for j in snapshot.pending} and "b" in {r.id for r in snapshot.running}:
        return [Preempt(JobId("b"), JobId("a"), "reclaim")]
    return strict_fifo(snapshot)


@pytest.mark.parametrize(
    ("nominal_b", "allowed"),
    [pytest.param(0, True, id="borrowed-reclaimable"), pytest.param(4, False, id="own-quota")],
)
def test_a_non_preemptible_victim_must_hold_borrowed_quota(
    tmp_path: Path, nominal_b: int, allowed: bool
) -> None:
    jobs = [
        TraceJob(JobId("b"), TenantId("b"), 0, 4, 1000, preemptible=False),
        TraceJob(JobId("a"), TenantId("a"), 10, 4, 100),
    ]
    run = partial(
        simulate, fleet(tmp_path, cards=4), jobs, preempt_b_for_a, EVENTS, quotas=lent(nominal_b)
    )
    if allowed:
        assert compute_metrics(run()).preemptions == 1
    else:
        with pytest.raises(InvariantViolation, match="non-preemptible"):
            run()


def stage_then_admit(snapshot: Snapshot) -> list[Decision]:
    """Stage each job's dataset to r2 first; admit it there once the data is in."""
    decisions: list[Decision] = []
    for pending in snapshot.pending:
        assert pending.dataset is not None
        if "r2" in pending.dataset.replicas:
            node = next(n for n in snapshot.nodes if n.region == "r2")
            decisions.append(_place(pending, node))
        elif pending.staging_to is None:
            source = pending.dataset.replicas[0]
            decisions.append(
                StageDataset(pending.id, pending.dataset.name, source, RegionName("r2"), 8, 1.0)
            )
    return decisions


def two_region_fleet(tmp_path: Path) -> SimFleet:
    path = tmp_path / "fleet2.yaml"
    path.write_text(
        "regions: [{name: r1}, {name: r2}]\n"
        "clusters:\n"
        "  - {name: c2, region: r2, kind: simulated, nodes: [{name: m, chip: nvidia-v100, cards: 2}]}\n"
        "wan_links: [{between: [r1, r2], bandwidth_gbps: 8, rtt_ms: 100, distance_km: 10}]\n",
        encoding="utf-8",
    )
    return load_fleet(str(path))


DATA = DatasetSpec("d", 8_000_000_000, RegionName("r1"))  # 8 s at 8 Gb/s, + 0.1 s RTT


@pytest.mark.parametrize("policy", [stage_then_admit, strict_fifo], ids=["staged", "implicit"])
def test_staging_copies_once_and_delays_the_start(tmp_path: Path, policy: Policy) -> None:
    jobs = [job("a", 0, 1, 100, dataset=DATA), job("b", 0, 1, 100, dataset=DATA)]
    outcome = simulate(two_region_fleet(tmp_path), jobs, policy, EVENTS)
    assert ends(outcome) == {"a": pytest.approx(108.1), "b": pytest.approx(108.1)}
    metrics = compute_metrics(outcome)
    assert (metrics.bytes_staged, metrics.transfers) == (8_000_000_000, 1)


def test_job_that_never_fits_ends_unschedulable(tmp_path: Path) -> None:
    jobs = [job("small", 0, 2, 10), job("huge", 0, 8, 10)]

    def greedy(snapshot: Snapshot) -> list[Decision]:
        fits = [j for j in snapshot.pending if j.cards_per_node <= snapshot.nodes[0].cards_free]
        return [_place(j, snapshot.nodes[0]) for j in fits[:1]]

    outcome = simulate(fleet(tmp_path), jobs, greedy, EVENTS)
    states = {j.job_id: j.state for j in outcome.jobs}
    assert states == {"small": "completed", "huge": "unschedulable"}
    assert compute_metrics(outcome).unschedulable == 1


def test_over_allocation_is_an_invariant_violation(tmp_path: Path) -> None:
    def greedy(snapshot: Snapshot) -> list[Decision]:
        return [_place(j, snapshot.nodes[0]) for j in snapshot.pending]

    with pytest.raises(InvariantViolation, match="over-allocated"):
        simulate(fleet(tmp_path), [job("a", 0, 4, 10), job("b", 0, 4, 10)], greedy, EVENTS)


def test_broken_gang_is_an_invariant_violation(tmp_path: Path) -> None:
    def half_gang(snapshot: Snapshot) -> list[Decision]:
        return [_place(j, snapshot.nodes[0]) for j in snapshot.pending]

    with pytest.raises(InvariantViolation, match="1 of 2 nodes"):
        simulate(fleet(tmp_path, nodes=2), [job("a", 0, 4, 10, nodes=2)], half_gang, EVENTS)


def test_snapshot_carries_running_jobs_links_and_speeds(tmp_path: Path) -> None:
    seen: list[Snapshot] = []

    def spy(snapshot: Snapshot) -> list[Decision]:
        seen.append(snapshot)
        return strict_fifo(snapshot)

    jobs = [job("a", 0, 4, 1000, checkpoint_interval_s=300), job("b", 700, 1, 10)]
    simulate(fleet(tmp_path), jobs, spy, EVENTS)
    later = seen[-1]
    assert later.now == 1000
    assert later.links[0].bandwidth_gbps == 8
    assert later.chip_speed == {"nvidia-v100": 1.0}
    during = next(s for s in seen if s.now == 700)
    (running,) = during.running
    assert (running.id, running.expected_end, running.started_at) == ("a", 1000, 0)
    assert (running.last_checkpoint_at, running.checkpoint_interval_s) == (0, 300)
    assert during.usage == {"t": {"nvidia": 4}}


def test_same_inputs_give_the_same_outcome(tmp_path: Path) -> None:
    jobs = [job(f"j{i}", i * 7 % 50, 1 + i % 4, 30 + i) for i in range(40)]

    def run() -> SimOutcome:
        return simulate(fleet(tmp_path, nodes=2), jobs, strict_fifo, SimConfig())

    first, second = run(), run()
    assert (first.jobs, first.attempts) == (second.jobs, second.attempts)


def flapping(snapshot: Snapshot) -> list[Decision]:
    """Preempt whatever runs; otherwise admit the first pending job and leave the rest
    undecided (so the engine keeps cycling)."""
    if snapshot.running:
        return [Preempt(snapshot.running[0].id, snapshot.pending[0].id, "flap")]
    first = min(snapshot.pending, key=lambda j: j.seq)
    return [_place(first, snapshot.nodes[0])]


def test_policy_that_never_settles_is_stopped(tmp_path: Path) -> None:
    config = SimConfig(decision_interval_s=1, max_cycles=50)
    jobs = [job("a", 0, 1, 1000), job("b", 0, 1, 1000)]
    with pytest.raises(SimulationError, match="did not finish"):
        simulate(fleet(tmp_path, cards=1), jobs, flapping, config)


def test_spinning_at_one_instant_waits_for_the_next_event(tmp_path: Path) -> None:
    def flaps_until_50(snapshot: Snapshot) -> list[Decision]:
        return flapping(snapshot) if snapshot.now < 50 else strict_fifo(snapshot)

    jobs = [job("a", 0, 1, 100), job("b", 0, 1, 100), job("c", 50, 1, 1)]
    outcome = simulate(fleet(tmp_path, cards=1), jobs, flaps_until_50, EVENTS)
    assert all(j.state == "completed" for j in outcome.jobs)
    # 100 cycles at t=0 alternate admit and preempt; then the engine waits for t=50.
    assert compute_metrics(outcome).preemptions == 50


def test_no_extra_cycle_after_a_cycle_that_decided_everything(tmp_path: Path) -> None:
    calls: list[float] = []

    def counting(snapshot: Snapshot) -> list[Decision]:
        calls.append(snapshot.now)
        return strict_fifo(snapshot)

    jobs = [job("a", 0, 4, 100), job("b", 0, 4, 100)]
    simulate(fleet(tmp_path), jobs, counting, SimConfig(decision_interval_s=10))
    assert calls == [0, 100]


def test_unknown_node_id_never_reaches_the_cluster(tmp_path: Path) -> None:
    def bogus(snapshot: Snapshot) -> list[Decision]:
        node = snapshot.nodes[0]
        return [
            Admit(j.id, node.cluster, node.chip, node.family, (Placement(NodeId(0), 3),))
            for j in snapshot.pending
        ]

    with pytest.raises(InvariantViolation, match="3 cards on a node"):
        simulate(fleet(tmp_path), [job("a", 0, 4, 10)], bogus, EVENTS)


def two_chip_fleet(tmp_path: Path) -> SimFleet:
    """One 4-card node each of V100, P100 and K80 in cluster ``c1``."""
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "regions: [{name: r1}]\n"
        "clusters:\n"
        "  - {name: c1, region: r1, kind: simulated, node_groups: [\n"
        "      {name_prefix: v, count: 1, chip: nvidia-v100, cards: 4},\n"
        "      {name_prefix: p, count: 1, chip: nvidia-p100, cards: 4},\n"
        "      {name_prefix: k, count: 1, chip: nvidia-k80, cards: 4}]}\n",
        encoding="utf-8",
    )
    return load_fleet(str(path))


@pytest.mark.parametrize("policy", ["fifo", "slurm", "kueue"])
def test_a_list_of_accepted_chips_is_not_collapsed_to_the_fastest(
    tmp_path: Path, policy: str
) -> None:
    """``b`` accepts V100 or P100 (half speed there): with the V100 busy it runs on the
    P100 at once instead of waiting for the V100 (the old importer/engine kept only the
    fastest accepted chip); ``c`` accepts the P100 only and waits behind ``b``."""
    only_v100 = {"chips": ("nvidia-v100",), "speed": {"nvidia-v100": 1.0}}
    either = {"chips": ("nvidia-v100", "nvidia-p100"), "speed": {"nvidia-p100": 0.5}}
    jobs = [
        job("a", 0, 4, 1000, **only_v100),
        job("b", 10, 4, 100, **either),
        job("c", 20, 4, 100, chips=("nvidia-p100",), speed={"nvidia-p100": 0.5}),
    ]
    outcome = simulate(two_chip_fleet(tmp_path), jobs, resolve_policy(policy), EVENTS)
    assert ends(outcome) == {"a": 1000, "b": 210, "c": 410}
    chips = {a.job_id: a.chip for a in outcome.attempts}
    assert chips == {"a": "nvidia-v100", "b": "nvidia-p100", "c": "nvidia-p100"}
