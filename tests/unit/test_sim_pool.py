"""The train+infer pool simulation pieces (fast; the day-long run is
benchmarks/train_infer_pool.py): the demand day, the serving model, SLO-aware placement in
the simulator (two chip types of different measured speed), and Hypothesis properties: a
production replica is never preempted by training, every preempted training job resumes."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanwang.domain.autoscaling import AutoscaleSpec, ScalingTarget
from suanwang.domain.ids import ChipName, JobId, TenantId
from suanwang.domain.slo_placement import ChipProfile, ServingSlo, prior_profiles
from suanwang.services.fleet_file import parse_fleet_data
from suanwang.simulator.chips import simulation_catalogue
from suanwang.simulator.demand import MINUTES_PER_DAY, demand_day, diurnal_share
from suanwang.simulator.engine import SimConfig
from suanwang.simulator.fleet import SimFleet
from suanwang.simulator.policies import resolve_policy
from suanwang.simulator.pool import Deployment, PoolSimulation
from suanwang.simulator.pool_metrics import slo_attainment, static_inference, training_result
from suanwang.simulator.serving import ReferenceReplica, erlang_c, serve
from suanwang.simulator.state import CostModel, JobState, SimJob
from suanwang.simulator.trace import TraceJob

REPLICA = ReferenceReplica(slots=8, max_rps=4.0, first_token_s=0.02, tokens_per_request=48)
SLO = ServingSlo(ttft_p95_s=0.5, tokens_per_s_per_request=10.0)
FAST, SLOW = ChipName("ascend-910b"), ChipName("nvidia-h20")
UNITS = {FAST: 2.24, SLOW: 1.184}
PRIOR_SPEED = {FAST: 1.0, SLOW: 148 / 280}
CONFIG = SimConfig(cost_model=CostModel.REALISTIC, restart_delay_s=30.0, decision_interval_s=15.0)
TENANT = TenantId("org")


# --- demand ------------------------------------------------------------------------------


def test_the_curve_passes_its_anchors_and_repeats() -> None:
    assert diurnal_share(4) == pytest.approx(0.15)
    assert diurnal_share(14) == pytest.approx(1.0)
    assert diurnal_share(20) == pytest.approx(0.70)
    assert diurnal_share(38) == pytest.approx(1.0)
    assert all(0.15 <= diurnal_share(h / 10) <= 1.0 for h in range(240))


def test_a_day_is_seeded_with_ten_separate_bursts() -> None:
    day = demand_day(10.0, seed=7)
    assert day == demand_day(10.0, seed=7)
    assert day.arrivals != demand_day(10.0, seed=8).arrivals
    assert len(day.arrivals) == MINUTES_PER_DAY
    starts = day.burst_starts
    assert len(starts) == 10
    assert all(b - a > 15 for a, b in itertools.pairwise(starts))
    inside = starts[0] + 7
    assert day.in_burst(inside)
    assert day.rate_rps[inside] == pytest.approx(20.0 * diurnal_share((inside + 0.5) / 60))
    # Poisson arrivals follow the rate: within 1 % over the day.
    assert sum(day.arrivals) / 60 == pytest.approx(sum(day.rate_rps), rel=0.01)


# --- serving model -----------------------------------------------------------------------


def test_erlang_c_known_values() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(4, 4.0) == 1.0
    assert erlang_c(4, 0.0) == 0.0


def test_more_replicas_miss_less_and_overload_backs_up() -> None:
    light = serve(REPLICA, [1.0] * 4, 10.0, 0.0, 60.0, 0.5)
    heavy = serve(REPLICA, [1.0] * 3, 11.5, 0.0, 60.0, 0.5)
    over = serve(REPLICA, [1.0] * 2, 12.0, 0.0, 60.0, 0.5)
    assert light.miss_share < 0.05 < heavy.miss_share < 0.95 < over.miss_share
    assert over.backlog == pytest.approx((12.0 - 8.0) * 60)
    drained = serve(REPLICA, [1.0] * 8, 12.0, over.backlog, 60.0, 0.5)
    assert drained.backlog == pytest.approx(max(0.0, over.backlog - 20 * 60))
    # A slow replica counts for less: two at half speed are one reference replica.
    assert serve(REPLICA, [0.5, 0.5], 3.0, 0, 60, 0.5).backlog == pytest.approx(0.0)
    assert serve(REPLICA, [0.5, 0.5], 5.0, 0, 60, 0.5).backlog == pytest.approx(60.0)


def test_static_inference_on_enough_replicas_meets_the_slo_all_day() -> None:
    day = demand_day(4.0, seed=7)
    ample = static_inference(REPLICA, [1.0] * 4, day, 0.5, 60.0)
    short = static_inference(REPLICA, [1.0] * 1, day, 0.5, 60.0)
    assert ample.slo_attainment == 1.0
    assert short.slo_attainment < 0.8
    assert slo_attainment({}, {}) == 1.0


# --- the pool ----------------------------------------------------------------------------


def fleet(fast_cards: int = 4, slow_cards: int = 4) -> SimFleet:
    groups = [
        ("lingang-ascend", FAST, fast_cards),
        ("lingang-nvidia", SLOW, slow_cards),
    ]
    data = {
        "regions": [{"name": "r1"}],
        "clusters": [
            {
                "name": name,
                "region": "r1",
                "kind": "simulated",
                "node_groups": [{"name_prefix": name, "count": 1, "chip": chip, "cards": n}],
            }
            for name, chip, n in groups
            if n
        ],
        "wan_links": [],
    }
    catalogue = simulation_catalogue()
    return SimFleet("test", parse_fleet_data(data, catalogue), catalogue)


def deployment(slow_speed: float, max_replicas: int = 8) -> Deployment:
    reference = ChipProfile(str(FAST), REPLICA.first_token_s, 24.0, 1.0)
    return Deployment(
        tenant=TenantId("maas-public"),
        autoscale=AutoscaleSpec(
            1, max_replicas, ScalingTarget(tokens_per_s_per_replica=0.7 * 192.0)
        ),
        slo=SLO,
        replica=REPLICA,
        serving_speed={FAST: 1.0, SLOW: slow_speed},
        priors=prior_profiles(reference, 1.0, {str(c): s for c, s in PRIOR_SPEED.items()}),
        units_per_card=UNITS,
    )


def training_job(i: int, submit: float, cards: int, duration: float) -> TraceJob:
    return TraceJob(
        job_id=JobId(f"t{i}"),
        tenant=TENANT,
        submit_s=submit,
        cards=cards,
        duration_s=duration,
        checkpoint_interval_s=600.0,
    )


PLACEMENT = [
    # (true speed of the slow chip's replicas, where the replicas placed after learning go)
    pytest.param(0.2, FAST, id="slow-chip-measured-slower-than-its-tflops"),
    pytest.param(0.9, SLOW, id="slow-chip-measured-faster-than-its-tflops"),
]


@pytest.mark.parametrize(("slow_speed", "chip"), PLACEMENT)
def test_new_replicas_go_to_the_chip_meeting_the_slo_at_lowest_cost(
    slow_speed: float, chip: ChipName
) -> None:
    """Two chip types, the slow one's replicas measuring slower or faster than its TFLOPS
    prior: once replicas have measured, new ones go where the SLO is met at the lowest
    capacity units per unit of service."""
    day = demand_day(12.0, seed=7)
    sim = PoolSimulation(
        fleet(8, 8),
        [],
        resolve_policy("suanwang"),
        CONFIG,
        deployment(slow_speed, 16),
        day,
        day_s=12 * 3600.0,
    )
    sim.run()
    placed = sim.record.placements
    assert placed[0][1] == SLOW  # the prior: equal cost per weight, cheaper replica
    later = [c for t, c, _ in placed if t >= 6 * 3600]
    assert later, "the demand grows from 04:00 to 14:00"
    assert later.count(chip) > len(later) / 2


@st.composite
def trainings(draw: st.DrawFn) -> list[TraceJob]:
    count = draw(st.integers(1, 6))
    return [
        dataclasses.replace(
            training_job(
                i,
                draw(st.floats(0, 3_600)),
                draw(st.sampled_from([1, 2, 4])),
                draw(st.floats(300, 7_200)),
            ),
            preemption_grace_s=draw(st.sampled_from([0.0, 20.0, 60.0])),
            checkpoint_save_s=draw(st.sampled_from([0.0, 30.0])),
        )
        for i in range(count)
    ]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    jobs=trainings(),
    peak=st.floats(1.0, 12.0),
    seed=st.integers(0, 3),
    slow_speed=st.sampled_from([0.3, 0.53, 1.0]),
)
def test_replicas_are_never_preempted_and_preempted_training_resumes(
    jobs: list[TraceJob], peak: float, seed: int, slow_speed: float
) -> None:
    day = demand_day(peak, seed=seed)
    sim = PoolSimulation(
        fleet(),
        jobs,
        resolve_policy("suanwang"),
        CONFIG,
        deployment(slow_speed),
        day,
        day_s=3 * 3600.0,
    )
    sim.run()
    for replica in sim.replicas.values():
        outcomes = [a.outcome for a in sim.jobs[replica.job_id].attempts]
        assert "preempted" not in outcomes
    for job in jobs:
        done = sim.jobs[job.job_id]
        assert done.state is JobState.COMPLETED
        if done.preemptions:
            assert len(done.attempts) == done.preemptions + 1
            assert done.attempts[-1].outcome == "completed"
        # the work its attempts kept adds up to the job, whatever was lost or saved
        kept = math.fsum(a.work_s for a in done.attempts)
        assert kept == pytest.approx(job.duration_s, rel=1e-9, abs=1e-6)
    result = training_result(sim.jobs, [j.job_id for j in jobs], 3 * 3600.0)
    assert result.resumed_jobs == result.preempted_jobs
    assert math.isfinite(result.avg_jct_s)


def test_replicas_take_cards_back_from_training_which_resumes() -> None:
    """Training fills every card first; the replicas the demand needs preempt it (least
    work lost), it resumes from its checkpoint and finishes; the replicas never stop."""
    jobs = [training_job(i, 4 * 3600.0, 1, 5 * 3600.0) for i in range(8)]
    sim = PoolSimulation(
        fleet(),
        jobs,
        resolve_policy("suanwang"),
        CONFIG,
        deployment(0.53),
        demand_day(12.0),
        day_s=12 * 3600.0,
    )
    sim.run()
    result = training_result(sim.jobs, [j.job_id for j in jobs], 12 * 3600.0)
    assert result.completed == 8
    assert result.preemptions > 0
    assert result.resumed_jobs == result.preempted_jobs > 0
    assert result.lost_card_hours > 0
    for replica in sim.replicas.values():
        assert "preempted" not in [a.outcome for a in sim.jobs[replica.job_id].attempts]
    assert max(sim.record.replicas_ready) >= 2


@pytest.mark.parametrize(
    ("grace_s", "save_s", "hold_s", "loses_work"),
    [(0.0, 0.0, 0.0, True), (60.0, 30.0, 30.0, False), (20.0, 30.0, 20.0, True)],
)
def test_a_grace_period_long_enough_to_save_loses_nothing_and_holds_the_cards(
    grace_s: float, save_s: float, hold_s: float, loses_work: bool
) -> None:
    """Checkpoint on preemption: with a grace period at least the save time the job
    keeps all its work and its cards stay busy for the save (the replica waits for them);
    a grace too short holds the cards the whole grace and loses the work since the last
    periodic checkpoint; no grace loses it and frees the cards at once."""
    jobs = [
        dataclasses.replace(
            training_job(i, 4 * 3600.0, 1, 5 * 3600.0),
            preemption_grace_s=grace_s,
            checkpoint_save_s=save_s,
        )
        for i in range(8)
    ]
    sim = PoolSimulation(
        fleet(),
        jobs,
        resolve_policy("suanwang"),
        CONFIG,
        deployment(0.53),
        demand_day(12.0),
        day_s=12 * 3600.0,
    )
    sim.run()
    result = training_result(sim.jobs, [j.job_id for j in jobs], 12 * 3600.0)
    assert result.completed == 8
    assert result.preemptions > 0
    assert result.resumed_jobs == result.preempted_jobs > 0
    assert (result.lost_card_hours > 0) is loses_work
    preempted = [a for j in jobs for a in sim.jobs[j.job_id].attempts if a.outcome == "preempted"]
    for replica in sim.replicas.values():
        for attempt in sim.jobs[replica.job_id].attempts:
            assert attempt.outcome != "preempted"
    for attempt in preempted:
        if hold_s == 0:
            assert attempt.stopping_for is None
            continue
        # the replica it stopped for waited until the save freed the card
        assert attempt.stopping_for is not None
        replica = sim.jobs[attempt.stopping_for].attempts[0]
        assert attempt.ended_at is not None
        assert replica.admitted_at >= attempt.ended_at


def test_training_result_splits_the_jct_into_wait_median_p90_and_the_longest_tenth() -> None:
    """Ten completed jobs with JCTs of 1..10 h, each waiting a quarter of it."""
    jobs = {}
    for i in range(10):
        spec = training_job(i, 0.0, 1, 3600.0)
        job = SimJob(spec, i, ("any",), 0.0)
        job.state, job.end, job.first_start = JobState.COMPLETED, (i + 1) * 3600.0, (i + 1) * 900.0
        jobs[spec.job_id] = job
    result = training_result(jobs, list(jobs), 24 * 3600.0)
    assert result.avg_jct_s == pytest.approx(5.5 * 3600)
    assert result.avg_wait_s == pytest.approx(5.5 * 900)
    assert result.median_jct_s == 6 * 3600.0
    assert result.p90_jct_s == 10 * 3600.0
    assert result.longest_tenth_jct_share == pytest.approx(10 / 55)
