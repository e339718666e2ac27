"""Table tests of heterogeneity- and data-aware placement.

Fleet: ``c1`` has 8-card ``ascend-910b`` nodes (relative speed 2.0), ``c2`` has 8-card
``metax-c500`` nodes (speed 1.0); both are in region ``r1``. ``c3`` (region ``r2``) has
``metax-c500`` nodes. ``now`` is 1,000 s. Jobs accept any chip unless a row says.
"""

from __future__ import annotations

import dataclasses

import pytest
from builders import Brief, brief, make_dataset, make_link, make_snapshot
from builders import make_job as J
from builders import make_node as N
from builders import make_running as R

from suanwang.domain.ids import JobId, RegionName
from suanwang.scheduler import Admit, NodeView, Pending, PendingJob, cycle
from suanwang.scheduler.data import DataMap, Transfer
from suanwang.scheduler.decisions import StageDataset
from suanwang.scheduler.hetero import gain, planned_run_s, run_time_s, speed_on
from suanwang.scheduler.policy import KUEUE, SLURM, SUANWANG, Policy
from suanwang.scheduler.snapshot import RunningJob, WanLinkView

NOW = 1_000.0
SPEEDS = {"ascend-910b": 2.0, "metax-c500": 1.0}
FAST, SLOW, REMOTE = "c1:ascend-910b", "c2:metax-c500", "c3:metax-c500"


def fast(node: int, cluster: str = "c1", **kw: object) -> NodeView:
    return N(node, cluster=cluster, chip="ascend-910b", **kw)  # type: ignore[arg-type]


def slow(node: int, cluster: str = "c2", **kw: object) -> NodeView:
    return N(node, cluster=cluster, chip="metax-c500", **kw)  # type: ignore[arg-type]


def decide(
    nodes: list[NodeView],
    jobs: list[PendingJob],
    running: list[RunningJob] | None = None,
    policy: Policy = SUANWANG,
    links: list[WanLinkView] | None = None,
) -> list[Brief]:
    snapshot = make_snapshot(
        nodes, jobs, running=running or [], chip_speed=SPEEDS, now=NOW, links=links or []
    )
    return [brief(d) for d in cycle(snapshot, policy)]


@pytest.mark.parametrize(
    ("nodes", "job", "expected"),
    [
        pytest.param(
            [fast(1), slow(2, cards_free=4)],
            J("x", chip="any", cards_per_node=4, duration_s=1_000),
            ("x", FAST),
            id="fastest-finish-beats-best-fit",
        ),
        pytest.param(
            [fast(1), slow(2)],
            J("x", chip="any", cards_per_node=4, duration_s=1_000, speed={"metax-c500": 4.0}),
            ("x", SLOW),
            id="job-speed-overrides-chip-speed",
        ),
        pytest.param(
            [fast(1), slow(2)],
            J("x", chip="any", cards_per_node=4),
            ("x", FAST),
            id="unknown-duration-still-faster",
        ),
        pytest.param(
            [fast(1), slow(2)],
            J("x", chip="any", cards_per_node=4, speed={"ascend-910b": 0.0}),
            ("x", SLOW),
            id="speed-zero-cannot-run",
        ),
        pytest.param(
            [fast(1)],
            J("x", chip="any", cards_per_node=4, speed={"ascend-910b": 0.0}),
            ("x", "no_match"),
            id="speed-zero-everywhere",
        ),
    ],
)
def test_chip_choice(nodes: list[NodeView], job: PendingJob, expected: Brief) -> None:
    assert decide(nodes, [job]) == [expected]


def test_heterogeneity_blind_policies_pick_by_fit() -> None:
    nodes = [fast(1), slow(2, cards_free=4)]
    job = J("x", chip="any", cards_per_node=4, duration_s=1_000)
    assert decide(nodes, [job], policy=SLURM) == [("x", SLOW)]
    assert decide(nodes, [job], policy=KUEUE) == [("x", FAST)]  # first by name


@pytest.mark.parametrize(
    ("fast_free_at", "expected"),
    [
        pytest.param(1_100.0, ("x", "capacity"), id="short-wait-for-faster"),
        pytest.param(3_000.0, ("x", SLOW), id="long-wait-not-worth-it"),
        pytest.param(None, ("x", SLOW), id="unknown-wait"),
    ],
)
def test_waiting_for_a_faster_chip(fast_free_at: float | None, expected: Brief) -> None:
    running = [R("r", {1: 8}, tenant="t9", chip="ascend-910b", expected_end=fast_free_at)]
    job = J("x", chip="any", cards_per_node=8, duration_s=1_000)
    assert decide([fast(1), slow(2)], [job], running) == [expected]


def test_waiting_job_holds_the_fast_pool() -> None:
    running = [R("r", {1: 8}, tenant="t9", chip="ascend-910b", expected_end=1_100.0)]
    jobs = [
        J("x", chip="any", cards_per_node=8, duration_s=1_000),
        J("y", chip="ascend", seq=1, cards_per_node=8, duration_s=10_000),
    ]
    snapshot = make_snapshot(
        [fast(1), fast(3, cards_free=0), slow(2)], jobs, running=running, chip_speed=SPEEDS, now=NOW
    )
    decisions = cycle(snapshot)
    assert decisions[0] == Pending(
        JobId("x"),
        "waiting for faster ascend-910b cards on c1: expected to finish at t=1600, "
        "not t=2000 on metax-c500 now",
        "capacity",
    )
    assert [brief(d) for d in decisions[1:]] == [("y", "capacity")]


def _queue_behind_reservation(duration_s: float) -> list[Brief]:
    """Fast node 1 frees at 1,100 and node 3 at 1,200; ``a`` (fast chips only) reserves
    the first; ``x`` (any chip) could start now on the slow pool."""
    running = [
        R("r1", {1: 8}, tenant="t9", chip="ascend-910b", expected_end=1_100.0),
        R("r3", {3: 8}, tenant="t9", chip="ascend-910b", expected_end=1_200.0),
    ]
    jobs = [
        J("a", chip="ascend", priority=1, cards_per_node=8, duration_s=1_000),
        J("x", chip="any", seq=1, cards_per_node=8, duration_s=duration_s),
    ]
    nodes = [fast(1), fast(3), slow(2)]
    # Without the fair-share floor: t9 holds 16 of the 24 cards, so x would preempt.
    return decide(nodes, jobs, running, dataclasses.replace(SUANWANG, share_floor=False))


def test_long_job_queues_behind_a_reservation_for_the_faster_chip() -> None:
    # 10,000 s of work: 5,000 s on the fast chip from t=1,200 (after the reservation
    # holder's node) ends at 6,200, before 11,000 on the slow chip now. Before the
    # queued look-ahead the pool was reserved, so x took the slow chip.
    assert _queue_behind_reservation(10_000) == [("a", "capacity"), ("x", "capacity")]


def test_short_job_takes_the_slow_chip_rather_than_queue() -> None:
    # 100 s of work: 1,100 now on the slow chip beats 1,250 behind the reservation.
    assert _queue_behind_reservation(100) == [("a", "capacity"), ("x", SLOW)]


def test_waiters_count_ahead_of_later_jobs() -> None:
    running = [
        R("r1", {1: 8}, tenant="t9", chip="ascend-910b", expected_end=1_100.0),
        R("r3", {3: 8}, tenant="t9", chip="ascend-910b", expected_end=9_000.0),
    ]
    jobs = [
        J("a", chip="ascend", priority=1, cards_per_node=8, duration_s=1_000),
        J("x", chip="any", seq=1, cards_per_node=8, duration_s=10_000),
        J("y", chip="any", seq=2, cards_per_node=8, duration_s=10_000),
    ]
    nodes = [fast(1), fast(3), slow(2), slow(4)]
    # Node 3 frees at 9,000: on the fast chip x would end at 14,000, on the slow chip
    # now at 11,000, so both take the slow chip now.
    assert decide(nodes, jobs, running) == [("a", "capacity"), ("x", SLOW), ("y", SLOW)]
    running[1] = R("r3", {3: 8}, tenant="t9", chip="ascend-910b", expected_end=1_200.0)
    # Node 3 frees at 1,200: x queues for it (ends 6,200); y would need a third fast
    # node, which no release frees, so it starts on the slow chip.
    assert decide(nodes, jobs, running) == [("a", "capacity"), ("x", "capacity"), ("y", SLOW)]


def test_high_gain_jobs_pick_first_among_equal_priority() -> None:
    nodes = [fast(1), slow(2)]
    flat = J("flat", seq=0, chip="any", cards_per_node=8, speed={"ascend-910b": 1.1})
    steep = J("steep", seq=1, chip="any", cards_per_node=8, speed={"ascend-910b": 4.0})
    assert decide(nodes, [flat, steep]) == [("steep", FAST), ("flat", SLOW)]
    blind = decide(nodes, [flat, steep], policy=KUEUE)  # submit order; the pool is drawn
    assert [job for job, _ in blind] == ["flat", "steep"]
    assert {where for _, where in blind} == {FAST, SLOW}
    waited = J("flat", seq=0, chip="any", cards_per_node=8, speed={"ascend-910b": 1.1})
    old = make_snapshot(nodes, [waited, steep], chip_speed=SPEEDS, now=NOW + 4_000)
    assert [brief(d) for d in cycle(old)] == [("flat", FAST), ("steep", SLOW)]


def test_admit_carries_expected_duration_on_the_chip() -> None:
    snapshot = make_snapshot(
        [fast(1)], [J("x", chip="any", duration_s=1_000)], chip_speed=SPEEDS, now=NOW
    )
    [admit] = cycle(snapshot)
    assert isinstance(admit, Admit)
    assert admit.expected_duration_s == pytest.approx(500.0)


@pytest.mark.parametrize(
    ("speeds", "chips", "expected"),
    [
        pytest.param({"a": 3.0, "b": 1.0}, ["a", "b"], 1.5, id="gains"),
        pytest.param({"a": 2.0, "b": 2.0}, ["a", "b"], 1.0, id="indifferent"),
        pytest.param({"a": 3.0}, ["a"], 1.0, id="one-chip"),
        pytest.param({"a": 3.0, "b": 0.0}, ["a", "b"], 1.0, id="ignores-unusable"),
    ],
)
def test_gain(speeds: dict[str, float], chips: list[str], expected: float) -> None:
    job = J("x", speed=speeds)
    assert gain(job, chips, {}) == pytest.approx(expected)  # type: ignore[arg-type]


def test_speeds_and_run_times() -> None:
    job = J("x", duration_s=1_000, max_runtime_s=400, speed={"a": 4.0})
    chip_speed = {"b": 0.5}
    assert speed_on(job, "a", chip_speed) == 4.0  # type: ignore[arg-type]
    assert speed_on(job, "b", chip_speed) == 0.5  # type: ignore[arg-type]
    assert speed_on(job, "c", chip_speed) == 1.0  # type: ignore[arg-type]
    assert run_time_s(job, "b", chip_speed) == 2_000.0  # type: ignore[arg-type]
    assert planned_run_s(job, "a", chip_speed) == 250.0  # type: ignore[arg-type]
    assert planned_run_s(job, "b", chip_speed) == 400.0  # type: ignore[arg-type]
    assert planned_run_s(J("y"), "a", chip_speed) is None  # type: ignore[arg-type]


# --- data awareness -------------------------------------------------------------------
DATA = make_dataset("d", 100, "r1")  # 100 GB in r1: 80 s over 10 Gbit/s
LINK = make_link("r1", "r2", bandwidth_gbps=10.0, rtt_ms=30.0)
LOCAL_BUSY = [R("r", {1: 8}, tenant="t9", chip="metax-c500")]


def test_transfer_time() -> None:
    data = DataMap.of([LINK, make_link("r2", "r3", 40.0)])
    assert data.transfer(DATA, RegionName("r1")) == Transfer(RegionName("r1"), 0.0)
    assert data.transfer(DATA, RegionName("r2")) == Transfer(RegionName("r1"), 80.03)
    assert data.transfer(DATA, RegionName("r3")) is None


@pytest.mark.parametrize(
    ("nodes", "running", "job", "links", "expected"),
    [
        pytest.param(
            [slow(1), slow(2, cluster="c3")],
            LOCAL_BUSY,
            J("x", chip="metax", cards_per_node=8, duration_s=1_000, dataset=DATA),
            [LINK],
            [("x", "stage:r2"), ("x", "staging")],
            id="stages-to-free-remote",
        ),
        pytest.param(
            [slow(1), slow(2, cluster="c3")],
            [],
            J("x", chip="metax", cards_per_node=8, duration_s=1_000, dataset=DATA),
            [LINK],
            [("x", SLOW)],
            id="local-first",
        ),
        pytest.param(
            [slow(1), fast(2, cluster="c4", region="r2")],
            [],
            J(
                "x",
                chip="any",
                cards_per_node=8,
                duration_s=10_000,
                dataset=DATA,
                speed={"ascend-910b": 4.0},
            ),
            [LINK],
            [("x", "stage:r2"), ("x", "staging")],
            id="remote-chip-wins-despite-transfer",
        ),
        pytest.param(
            [slow(1), slow(2, cluster="c3")],
            LOCAL_BUSY,
            J("x", chip="metax", cards_per_node=8, duration_s=1_000, dataset=DATA),
            [],
            [("x", "capacity")],
            id="no-link-no-remote",
        ),
        pytest.param(
            [slow(2, cluster="c3")],
            [],
            J("x", chip="metax", cards_per_node=8, dataset=DATA),
            [],
            [("x", "no_match")],
            id="unreachable-everywhere",
        ),
        pytest.param(
            [slow(1), slow(2, cluster="c3")],
            LOCAL_BUSY,
            J("x", chip="metax", cards_per_node=8, dataset=DATA, staging_to="r2"),
            [LINK],
            [("x", "staging")],
            id="waits-for-staging",
        ),
        pytest.param(
            [slow(1), slow(2, cluster="c3")],
            [],
            J(
                "x",
                chip="metax",
                cards_per_node=8,
                dataset=make_dataset("d", 100, "r1", "r2"),
                staging_to="r2",
            ),
            [LINK],
            [("x", REMOTE)],
            id="goes-where-it-staged",
        ),
    ],
)
def test_data_aware_region_choice(
    nodes: list[NodeView],
    running: list[RunningJob],
    job: PendingJob,
    links: list[WanLinkView],
    expected: list[Brief],
) -> None:
    assert decide(nodes, [job], running, links=links) == expected


def test_stage_decision_and_reasons() -> None:
    job = J("x", chip="metax", cards_per_node=8, duration_s=1_000, dataset=DATA)
    snapshot = make_snapshot(
        [slow(1), slow(2, cluster="c3")], [job], running=LOCAL_BUSY, links=[LINK], now=NOW
    )
    assert cycle(snapshot) == [
        StageDataset(JobId("x"), "d", RegionName("r1"), RegionName("r2"), 100 * 10**9, 80.03),
        Pending(JobId("x"), "staging dataset d from r1 to r2 (about 80 s)", "staging"),
    ]
    waiting = make_snapshot(
        [slow(1), slow(2, cluster="c3")],
        [J("x", chip="metax", dataset=DATA, staging_to="r2")],
        links=[LINK],
    )
    assert cycle(waiting) == [Pending(JobId("x"), "waiting for dataset d to reach r2", "staging")]


def test_data_blind_policies_ignore_datasets() -> None:
    job = J("x", chip="metax", cards_per_node=8, duration_s=1_000, dataset=DATA)
    nodes = [slow(1), slow(2, cluster="c3")]
    assert decide(nodes, [job], LOCAL_BUSY, policy=KUEUE) == [("x", REMOTE)]


def test_jobs_that_waited_go_shortest_remaining_work_first() -> None:
    # Both waited longer than gain_max_wait_s (1 h) at equal priority: the shorter one
    # takes the only node (shortest remaining work first lowers the average JCT);
    # before, submission order put the 50,000 s job first.
    jobs = [
        J("long", chip="any", seq=0, cards_per_node=8, duration_s=50_000),
        J("short", chip="any", seq=1, cards_per_node=8, duration_s=1_000),
    ]
    snapshot = make_snapshot([fast(1)], jobs, chip_speed=SPEEDS, now=NOW + 7_200)
    assert [brief(d) for d in cycle(snapshot)] == [("short", FAST), ("long", "capacity")]
