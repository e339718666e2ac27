"""The named policies: their switches, what sets each apart, and the per-cycle work cap.

Each policy's rules have their own table tests (quota, preempt, backfill, hetero); this
module pins what tells the four apart on one small scene, and the pieces that belong to
no single rule: the default policy, multifactor ordering and the report cap.
"""

from __future__ import annotations

import dataclasses

import pytest
from builders import Brief, brief, make_queue, make_snapshot
from builders import make_job as J
from builders import make_node as N
from builders import make_running as R

from suanwang.domain.ids import TenantId
from suanwang.scheduler import Snapshot, cycle
from suanwang.scheduler.policy import FIFO, KUEUE, POLICIES, SLURM, SUANWANG, Policy, Tuning
from suanwang.scheduler.queues import fair_share_factors

NOW = 1_000.0


def test_four_named_policies() -> None:
    assert list(POLICIES) == ["fifo", "slurm", "kueue", "suanwang"]
    assert all(name == policy.name for name, policy in POLICIES.items())


@pytest.mark.parametrize(
    ("policy", "switches"),
    [
        pytest.param(FIFO, ("fifo", True, False, "caps", False, False, False, "random")),
        pytest.param(SLURM, ("multifactor", False, True, "caps", False, False, False, "best_fit")),
        pytest.param(
            KUEUE, ("priority", False, False, "kueue", True, False, False, "flavor_order")
        ),
        pytest.param(SUANWANG, ("priority", False, True, "kueue", True, True, True, "best_fit")),
    ],
    ids=lambda p: getattr(p, "name", ""),
)
def test_switches(policy: Policy, switches: tuple[object, ...]) -> None:
    assert (
        policy.ordering,
        policy.strict_fifo,
        policy.backfill,
        policy.quotas,
        policy.preemption,
        policy.heterogeneity,
        policy.data_aware,
        policy.pool_choice,
    ) == switches


def scene() -> Snapshot:
    """One scene that every policy reads differently.

    Node 1 (ascend, fast) is busy until t=2000 with t9's work; node 2 (metax, slow) is
    free; node 3 (ascend) runs t1's low-priority job. Queue: ``old`` (submitted first,
    priority 0, 8 ascend cards, unknown end), ``urgent`` (priority 5, 8 any cards),
    ``short`` (2 metax cards, ends in 100 s).
    """
    nodes = [N(1), N(2, chip="metax-c500"), N(3)]
    running = [
        R("busy", {1: 8}, tenant="t9", expected_end=2_000.0),
        R("low", {3: 8}, tenant="t1", priority=0),
    ]
    jobs = [
        J("old", seq=0, submitted_at=0.0, chip="ascend", cards_per_node=8),
        J("urgent", seq=1, submitted_at=10.0, priority=5, chip="ascend", cards_per_node=8),
        J("short", seq=2, submitted_at=20.0, chip="metax", cards_per_node=2, duration_s=100),
    ]
    return make_snapshot(nodes, jobs, running=running, now=NOW, chip_speed={"ascend-910b": 2.0})


PREEMPTED = [
    ("low", "preempt:urgent"),
    ("urgent", "preempting"),
    ("old", "capacity"),
    ("short", "c1:metax-c500"),
]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(
            FIFO,
            [("old", "capacity"), ("urgent", "blocked"), ("short", "c1:metax-c500")],
            id="fifo-head-of-line",
        ),
        pytest.param(
            SLURM,
            [("urgent", "capacity"), ("old", "capacity"), ("short", "c1:metax-c500")],
            id="slurm-priority-no-preemption",
        ),
        pytest.param(
            KUEUE,
            PREEMPTED,
            id="kueue-preempts",
        ),
        pytest.param(
            SUANWANG,
            PREEMPTED,
            id="suanwang-preempts",
        ),
    ],
)
def test_each_policy_on_one_scene(policy: Policy, expected: list[Brief]) -> None:
    assert [brief(d) for d in cycle(scene(), policy)] == expected


def test_default_policy_is_suanwang() -> None:
    assert cycle(scene()) == cycle(scene(), SUANWANG)


def test_plain_snapshot_is_priority_fifo_best_fit_for_every_priority_policy() -> None:
    nodes = [N(1, cards_free=4), N(2), N(3, cluster="c2")]
    jobs = [J("a", seq=1, cards_per_node=4), J("b", priority=2, seq=2, cards_per_node=8)]
    snapshot = make_snapshot(nodes, jobs)
    expected = [("b", "c2:ascend-910b"), ("a", "c1:ascend-910b")]
    for policy in (SUANWANG, dataclasses.replace(KUEUE, pool_choice="best_fit")):
        assert [brief(d) for d in cycle(snapshot, policy)] == expected


@pytest.mark.parametrize(
    ("age_s", "expected"),
    [
        pytest.param(0.0, ["high", "low"], id="priority-wins-when-young"),
        pytest.param(7 * 86_400.0, ["low", "high"], id="age-catches-up"),
    ],
)
def test_multifactor_age(age_s: float, expected: list[str]) -> None:
    now = 7 * 86_400.0
    jobs = [
        J("low", seq=0, priority=0, submitted_at=now - age_s),
        J("high", seq=1, priority=1, submitted_at=now),
    ]
    snapshot = make_snapshot([N(1)], jobs, now=now)
    assert [d.job for d in cycle(snapshot, SLURM)] == expected


def test_multifactor_fair_share() -> None:
    running = [R("r", {2: 8}, tenant="heavy")]
    jobs = [
        J("h", tenant="heavy", seq=0, cards_per_node=8),
        J("l", tenant="light", seq=1, cards_per_node=8),
    ]
    snapshot = make_snapshot([N(1), N(2)], jobs, running=running, now=NOW)
    assert [brief(d) for d in cycle(snapshot, SLURM)] == [
        ("l", "c1:ascend-910b"),
        ("h", "capacity"),
    ]


def test_fair_share_factors() -> None:
    a, b = TenantId("a"), TenantId("b")
    factors = fair_share_factors({a: 8.0}, {b: 3.0}, [a, b])
    assert factors[a] == pytest.approx(2 ** (-1 / 0.25))
    assert factors[b] == 1.0
    assert fair_share_factors({}, {}, [a]) == {a: 1.0}
    assert fair_share_factors({a: 1.0}, {a: 0.0}, [a]) == {a: 0.0}


def test_work_cap_skips_only_jobs_that_can_change_nothing() -> None:
    capped = dataclasses.replace(SUANWANG, tuning=Tuning(max_pending_reports=1))
    jobs = [
        J("fits", seq=0, cards_per_node=4),
        J("blocked", seq=1, cards_per_node=8, nodes=2),
        J("also-blocked", seq=2, cards_per_node=8, nodes=2),
        J("fits-later", seq=3, cards_per_node=4),
    ]
    snapshot = make_snapshot([N(1)], jobs)
    assert [brief(d) for d in cycle(snapshot, capped)] == [
        ("fits", "c1:ascend-910b"),
        ("blocked", "too_large"),
        ("fits-later", "c1:ascend-910b"),
    ]
    full = [brief(d) for d in cycle(snapshot)]
    assert ("also-blocked", "too_large") in full


def test_custom_policy_mixes_switches() -> None:
    strict_priority = Policy(name="strict", ordering="priority", strict_fifo=True)
    jobs = [J("a", priority=3, cards_per_node=16), J("b", cards_per_node=8, seq=1)]
    running = [R("r", {1: 8}, tenant="t9", expected_end=2_000.0)]
    snapshot = make_snapshot([N(1, cards_total=16)], jobs, running=running, now=NOW)
    assert [brief(d) for d in cycle(snapshot, strict_priority)] == [
        ("a", "capacity"),
        ("b", "blocked"),
    ]
    queue = make_queue("t1", {"ascend": 8}, cohort=None)
    assert queue.cohort is None
