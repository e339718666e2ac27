"""Table tests of periodic reallocation (``scheduler/realloc.py``).

Fleet: node 1 is an 8-card ``ascend-910b`` node of ``c1`` (speed 2.0), node 2 an 8-card
``metax-c500`` node of ``c2`` (speed 1.0). ``now`` is 10,000 s. The running job ``r``
holds 4 ``metax-c500`` cards of node 2 and, left alone, ends at 30,000 s (20,000 s of
reference work left).
"""

from __future__ import annotations

import dataclasses

import pytest
from builders import make_job as J
from builders import make_node as N
from builders import make_running as R
from builders import make_snapshot

from suanwang.domain.ids import JobId
from suanwang.scheduler.decisions import Admit, Decision, Placement, Preempt
from suanwang.scheduler.policy import KUEUE, SUANWANG, Policy, Tuning
from suanwang.scheduler.realloc import MoveCost, reallocate
from suanwang.scheduler.snapshot import RunningJob

NOW = 10_000.0
SPEEDS = {"ascend-910b": 2.0, "metax-c500": 1.0}
FREE = MoveCost(restart_delay_s=0.0, round_s=360.0)


def running(**kw: object) -> RunningJob:
    """``r`` on the slow chip, accepting any chip (its request), started at 0, its last
    checkpoint now unless ``last_checkpoint_at`` says otherwise (as the simulator's
    snapshots say under the free cost model)."""
    chips = kw.pop("chips", ("any",))
    kw.setdefault("last_checkpoint_at", NOW)
    job = R("r", {2: 4}, cluster="c2", chip="metax-c500", expected_end=30_000.0, **kw)  # type: ignore[arg-type]
    request = J("r", chips=chips, cards_per_node=4, duration_s=20_000)  # type: ignore[arg-type]
    return dataclasses.replace(job, request=request)


def moves(
    job: RunningJob,
    cost: MoveCost = FREE,
    policy: Policy = SUANWANG,
    fast_free: int = 8,
    taken: tuple[Admit, ...] = (),
) -> list[Decision]:
    nodes = [
        N(1, cluster="c1", chip="ascend-910b", cards_free=fast_free),
        N(2, cluster="c2", chip="metax-c500"),
    ]
    snapshot = make_snapshot(nodes, [], running=[job], chip_speed=SPEEDS, now=NOW)
    return reallocate(snapshot, policy, cost, taken)


def test_moves_to_a_free_faster_chip() -> None:
    decisions = moves(running())
    assert [type(d) for d in decisions] == [Preempt, Admit]
    preempt, admit = decisions
    assert isinstance(preempt, Preempt)
    assert isinstance(admit, Admit)
    assert preempt.job == preempt.for_job == JobId("r")
    assert preempt.lost_work_s == 0.0
    assert "t=30000 -> t=20000" in preempt.reason  # 20,000 s of work at speed 2
    assert (admit.job, admit.cluster, admit.chip) == ("r", "c1", "ascend-910b")
    assert admit.placements == (Placement(admit.placements[0].node, 4),)
    assert admit.expected_duration_s == pytest.approx(10_000.0)


@pytest.mark.parametrize(
    ("case", "job", "kw"),
    [
        pytest.param("not preemptible", running(preemptible=False), {}, id="not-preemptible"),
        pytest.param("slow chip only", running(chips=("metax",)), {}, id="outside-accepted"),
        pytest.param(
            "no request", dataclasses.replace(running(), request=None), {}, id="no-request"
        ),
        pytest.param("fast node full", running(), {"fast_free": 2}, id="gang-does-not-fit"),
        pytest.param("heterogeneity-blind", running(), {"policy": KUEUE}, id="policy-off"),
        pytest.param(
            "gain under threshold",
            running(),
            {"policy": dataclasses.replace(SUANWANG, tuning=Tuning(realloc_min_gain_s=10_001))},
            id="small-gain",
        ),
        pytest.param(
            "cards taken this round",
            running(),
            {"taken": (Admit(JobId("x"), "c1", "ascend-910b", "ascend", (Placement(1, 6),)),)},  # type: ignore[arg-type]
            id="taken-by-admission",
        ),
    ],
)
def test_no_move(case: str, job: RunningJob, kw: dict[str, object]) -> None:
    assert moves(job, **kw) == [], case  # type: ignore[arg-type]


def test_realistic_cost_counts_lost_work_and_restart_delay() -> None:
    # Started at 0, checkpoints every 9,000 s: the last at 9,000, so 1,000 s are lost.
    job = running(checkpoint_interval_s=9_000.0, last_checkpoint_at=None)
    cost = MoveCost(restart_delay_s=30.0, round_s=360.0)
    preempt, admit = moves(job, cost)
    assert isinstance(preempt, Preempt)
    assert isinstance(admit, Admit)
    assert preempt.lost_work_s == pytest.approx(1_000.0)
    # (20,000 + 1,000) s of work at speed 2 after a 30 s restart: ends at 20,530.
    assert "t=30000 -> t=20530" in preempt.reason


def test_a_move_that_loses_more_than_it_gains_is_not_made() -> None:
    # Only 1,000 s left here (ends at 11,000); moving loses 9,999 s since the start.
    job = dataclasses.replace(running(last_checkpoint_at=None), expected_end=11_000.0)
    assert moves(job, MoveCost(restart_delay_s=30.0)) == []


def test_a_recently_placed_job_moves_again_only_if_the_gain_beats_its_cost() -> None:
    # Started 600 s ago (within 5 rounds of 360 s); 600 s lost, 30 s restart delay.
    recent = dataclasses.replace(running(last_checkpoint_at=None), started_at=NOW - 600.0)
    cost = MoveCost(restart_delay_s=30.0, round_s=360.0)
    # (20,000 + 600) s of work at speed 2 after 30 s: ends at 20,330, a gain of 9,670 s;
    # its cost is 30 s + 600 s of work redone at speed 2 = 330 s.
    assert len(moves(recent, cost)) == 2  # 9,670 s > 330 s + 600 s
    tight = dataclasses.replace(SUANWANG, tuning=Tuning(realloc_min_gain_s=9_500.0))
    # 9,670 s > 9,500 s, but not > 9,500 s + 330 s: no move yet
    assert moves(recent, cost, tight) == []
    # the same job placed long ago (and checkpointed now) moves
    assert len(moves(running(), cost, tight)) == 2
