"""Table tests of EASY backfill, reservations and strict FIFO.

Fleet: two 8-card ``ascend-910b`` nodes in ``c1``; ``now`` is 1,000 s. Node 2 is held
for good by a job with no known end. On node 1 a job ends at 2,000 s, so the head job
``big`` (priority 5) is reserved node 1 from t=2000. Later jobs (priority 0) may start
now only if they do not delay that.
"""

from __future__ import annotations

import dataclasses

import pytest
from builders import Brief, brief, make_snapshot
from builders import make_job as J
from builders import make_node as N
from builders import make_running as R

from suanwang.domain.ids import JobId, NodeId
from suanwang.scheduler import Pending, PendingJob, cycle
from suanwang.scheduler.backfill import Reservation, Start, Timeline, earliest_start
from suanwang.scheduler.decisions import Placement
from suanwang.scheduler.fit import build_pools
from suanwang.scheduler.placement import draw
from suanwang.scheduler.policy import FIFO, KUEUE, SLURM, SUANWANG, Policy
from suanwang.scheduler.snapshot import RunningJob

NOW = 1_000.0
NO_FLOOR = dataclasses.replace(SUANWANG, share_floor=False)
"""Backfill on its own: the pending jobs' tenant holds nothing while ``t9`` holds more than
its fair share, so with the fair-share floor the head job would preempt instead."""
NODES = [N(1), N(2)]


def busy(on_node_1: int, end: float | None = 2_000.0) -> list[RunningJob]:
    return [R("r1", {1: on_node_1}, tenant="t9", expected_end=end), R("r2", {2: 8}, tenant="t9")]


def decide(
    running: list[RunningJob], jobs: list[PendingJob], policy: Policy = NO_FLOOR
) -> list[Brief]:
    snapshot = make_snapshot(NODES, jobs, running=running, now=NOW)
    return [brief(d) for d in cycle(snapshot, policy)]


BIG = J("big", priority=5, cards_per_node=8)


@pytest.mark.parametrize(
    ("job", "admitted"),
    [
        pytest.param(J("x", cards_per_node=2, duration_s=500), True, id="ends-before"),
        pytest.param(J("x", cards_per_node=2, duration_s=1_000), True, id="ends-at"),
        pytest.param(J("x", cards_per_node=2, duration_s=5_000), False, id="ends-after"),
        pytest.param(J("x", cards_per_node=2), False, id="unknown-end"),
        pytest.param(J("x", cards_per_node=2, max_runtime_s=800), True, id="max-runtime"),
        pytest.param(
            J("x", cards_per_node=2, duration_s=500, max_runtime_s=5_000),
            True,
            id="duration-under-max-runtime",
        ),
        pytest.param(
            J("x", cards_per_node=2, duration_s=5_000, max_runtime_s=800),
            True,
            id="max-runtime-under-duration",
        ),
        pytest.param(J("x", cards_per_node=2, duration_s=1_500), False, id="slow-chip"),
        pytest.param(
            J("x", cards_per_node=2, duration_s=1_500, speed={"ascend-910b": 2.0}),
            True,
            id="fast-chip",
        ),
    ],
)
def test_backfill_only_before_the_reservation(job: PendingJob, admitted: bool) -> None:
    expected = ("x", "c1:ascend-910b") if admitted else ("x", "capacity")
    assert decide(busy(6), [BIG, job]) == [("big", "capacity"), expected]


def test_spare_cards_of_the_reservation_may_be_used() -> None:
    big = J("big", priority=5, cards_per_node=6)
    jobs = [big, J("x", seq=1, cards_per_node=2), J("y", seq=2, cards_per_node=2)]
    assert decide(busy(4), jobs) == [
        ("big", "capacity"),
        ("x", "c1:ascend-910b"),
        ("y", "capacity"),
    ]


def test_no_reservation_without_known_ends() -> None:
    jobs = [BIG, J("x", cards_per_node=2)]
    assert decide(busy(6, end=None), jobs) == [("big", "capacity"), ("x", "c1:ascend-910b")]


def test_reservation_is_named_in_the_reason() -> None:
    snapshot = make_snapshot(NODES, [BIG], running=busy(6), now=NOW)
    assert cycle(snapshot, NO_FLOOR) == [
        Pending(
            JobId("big"),
            "waiting for 8 free ascend-910b cards on 1 node; reserved on c1 from t=2000",
            "capacity",
        )
    ]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(NO_FLOOR, ("x", "capacity"), id="suanwang-backfills"),
        pytest.param(SLURM, ("x", "capacity"), id="slurm-backfills"),
        pytest.param(KUEUE, ("x", "c1:ascend-910b"), id="kueue-skips"),
        pytest.param(FIFO, ("x", "blocked"), id="fifo-blocks"),
    ],
)
def test_what_a_long_job_behind_a_blocked_head_does(policy: Policy, expected: Brief) -> None:
    jobs = [J("big", seq=0, priority=5, cards_per_node=8), J("x", seq=1, cards_per_node=2)]
    assert decide(busy(6), jobs, policy) == [("big", "capacity"), expected]


def test_strict_fifo_blocks_only_the_pools_of_the_blocked_job() -> None:
    nodes = [*NODES, N(3, cluster="c2")]
    jobs = [
        J("big", seq=0, cluster="c1", cards_per_node=8),
        J("x", seq=1, cards_per_node=2),
        J("y", seq=2, cluster="c2", cards_per_node=2),
    ]
    snapshot = make_snapshot(nodes, jobs, running=busy(6), now=NOW)
    decisions = cycle(snapshot, FIFO)
    assert [brief(d) for d in decisions] == [
        ("big", "capacity"),
        ("x", "c2:ascend-910b"),
        ("y", "c2:ascend-910b"),
    ]
    blocked = make_snapshot(NODES, jobs[:2], running=busy(6), now=NOW)
    assert cycle(blocked, FIFO)[1] == Pending(
        JobId("x"), "waiting behind job big (strict FIFO)", "blocked"
    )


def test_fifo_orders_by_submit_time_not_priority() -> None:
    jobs = [
        J("late", priority=9, seq=0, submitted_at=50.0, cards_per_node=8),
        J("early", priority=0, seq=1, submitted_at=10.0, cards_per_node=8),
    ]
    snapshot = make_snapshot([N(1)], jobs, now=NOW)
    assert [brief(d) for d in cycle(snapshot, FIFO)] == [
        ("early", "c1:ascend-910b"),
        ("late", "capacity"),
    ]


def test_fifo_draws_its_pool_and_slurm_takes_the_best_fit() -> None:
    """Neither takes a pool for its name: FIFO the pool of the job-seeded draw (the same
    whichever pool is fuller), Slurm the best fit (the one with 2 free cards)."""
    job = J("x", cards_per_node=2)
    for full in ("c1", "c2"):
        roomy = "c2" if full == "c1" else "c1"
        nodes = [N(1, cluster=roomy), N(2, cluster=full, cards_free=2)]
        snapshot = make_snapshot(nodes, [job], now=NOW)
        keys = [pool.key for pool in build_pools(nodes)]
        drawn = min(keys, key=lambda key: draw(job, key)).cluster
        assert [brief(d) for d in cycle(snapshot, FIFO)] == [("x", f"{drawn}:ascend-910b")]
        assert [brief(d) for d in cycle(snapshot, SLURM)] == [("x", f"{full}:ascend-910b")]


def timeline(*events: tuple[float, int, int]) -> Timeline:
    line = Timeline()
    for index, (end, node, cards) in enumerate(events):
        line.add(JobId(f"j{index}"), end, [Placement(NodeId(node), cards)])
    return line


@pytest.mark.parametrize(
    ("free", "events", "cards", "nodes", "withheld", "expected"),
    [
        pytest.param([8, 0], [], 8, 1, {}, Start(NOW, {NodeId(1): 8}), id="fits-now"),
        pytest.param(
            [0, 0],
            [(3_000.0, 2, 8), (2_000.0, 1, 8)],
            8,
            1,
            {},
            Start(2_000.0, {NodeId(1): 8}),
            id="first-release",
        ),
        pytest.param(
            [0, 0],
            [(3_000.0, 2, 8), (2_000.0, 1, 8)],
            8,
            2,
            {},
            Start(3_000.0, {NodeId(1): 8, NodeId(2): 8}),
            id="gang-waits-for-last",
        ),
        pytest.param(
            [4, 0], [(2_000.0, 1, 4)], 8, 1, {NodeId(1): 8}, None, id="withheld-never-counts"
        ),
        pytest.param([0, 0], [(2_000.0, 1, 4)], 8, 1, {}, None, id="never-enough"),
        pytest.param(
            [0, 0], [(500.0, 1, 8)], 8, 1, {}, Start(NOW, {NodeId(1): 8}), id="overdue-is-now"
        ),
    ],
)
def test_earliest_start(
    free: list[int],
    events: list[tuple[float, int, int]],
    cards: int,
    nodes: int,
    withheld: dict[NodeId, int],
    expected: Start | None,
) -> None:
    [pool] = build_pools([N(i, cards_free=f) for i, f in enumerate(free, 1)])
    assert earliest_start(pool, timeline(*events), cards, nodes, NOW, withheld) == expected


def test_timeline_forgets_a_preempted_job() -> None:
    line = timeline((2_000.0, 1, 8), (3_000.0, 2, 8))
    line.remove(JobId("j0"))
    assert line.events == [(3_000.0, NodeId(2), 8, JobId("j1"))]


def test_reservation_exclusion_and_spare() -> None:
    reservation = Reservation.of(JobId("big"), Start(2_000.0, {NodeId(1): 8, NodeId(2): 6}), 6)
    assert reservation.exclusion(1_500.0, 2) == frozenset()
    assert reservation.exclusion(None, 2) == {NodeId(2)}
    reservation.consume(None, [Placement(NodeId(1), 2)])
    assert reservation.exclusion(None, 2) == {NodeId(1), NodeId(2)}
    reservation.consume(1_000.0, [Placement(NodeId(1), 2)])
    assert reservation.spare[NodeId(1)] == 0
