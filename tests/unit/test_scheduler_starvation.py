"""Table and property tests of the starvation guard (``Policy.starvation_guard``).

A job is overdue once it has waited longer than ``starvation_factor`` times its run time,
run times under ``starvation_floor_s`` counting as the floor (bounded slowdown). Overdue
jobs go before every other job of their priority — by share, then oldest first — so a gang
that lighter tenants' small jobs keep passing becomes the head job that holds its pool's
backfill reservation. Defaults: factor 10, floor 1 day, so a short job is overdue after
10 days. Fleet: 8-card ``ascend-910b`` nodes in cluster ``c1``.
"""

from __future__ import annotations

import dataclasses

import pytest
from builders import brief, make_running, make_snapshot
from builders import make_job as J
from builders import make_node as N
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.scheduler import PendingJob, cycle
from suanwang.scheduler.policy import KUEUE, SUANWANG, Policy, Tuning
from suanwang.scheduler.queues import overdue, priority_key

DAY = 86_400.0
OFF = dataclasses.replace(SUANWANG, starvation_guard=False)
NO_FLOOR = dataclasses.replace(SUANWANG, share_floor=False)
"""The guard alone: with the fair-share floor, ``b`` (1 card held, fair share 12) may
also stop one of ``a``'s jobs (16 held) for ``pb``, which the reservation keeps off node 3."""


def tuned(**knobs: float) -> Policy:
    return dataclasses.replace(SUANWANG, tuning=dataclasses.replace(Tuning(), **knobs))


@pytest.mark.parametrize(
    ("policy", "duration_s", "max_runtime_s", "waited_s", "expected"),
    [
        pytest.param(SUANWANG, 3_600.0, None, 10 * DAY + 1, True, id="short-job-past-floor"),
        pytest.param(SUANWANG, 3_600.0, None, 10 * DAY, False, id="boundary-not-overdue"),
        pytest.param(SUANWANG, 3_600.0, None, 9 * DAY, False, id="short-job-under-floor"),
        pytest.param(SUANWANG, 2 * DAY, None, 11 * DAY, False, id="long-job-scales-bound"),
        pytest.param(SUANWANG, 2 * DAY, None, 20 * DAY + 1, True, id="long-job-past-bound"),
        pytest.param(SUANWANG, None, 3 * DAY, 25 * DAY, False, id="max-runtime-when-no-estimate"),
        pytest.param(SUANWANG, None, 3 * DAY, 30 * DAY + 1, True, id="max-runtime-past-bound"),
        pytest.param(SUANWANG, None, None, 10 * DAY + 1, True, id="unknown-run-uses-floor"),
        pytest.param(OFF, 3_600.0, None, 100 * DAY, False, id="switch-off"),
        pytest.param(KUEUE, 3_600.0, None, 100 * DAY, False, id="kueue-has-no-guard"),
        pytest.param(tuned(starvation_factor=0.0), 3_600.0, None, 100 * DAY, False, id="factor-0"),
        pytest.param(
            tuned(starvation_factor=2.0, starvation_floor_s=60.0),
            600.0,
            None,
            1_201.0,
            True,
            id="custom-knobs",
        ),
    ],
)
def test_overdue(
    policy: Policy,
    duration_s: float | None,
    max_runtime_s: float | None,
    waited_s: float,
    expected: bool,
) -> None:
    job = J("p", duration_s=duration_s, max_runtime_s=max_runtime_s, submitted_at=1_000.0)
    assert overdue(job, 1_000.0 + waited_s, policy) is expected


@pytest.mark.parametrize(
    ("policy", "waited_s", "gang_duration_s", "light_priority", "expected"),
    [
        pytest.param(
            NO_FLOOR, 11 * DAY, 3_600.0, 0, [("pa", "capacity"), ("pb", "capacity")], id="overdue"
        ),
        pytest.param(
            dataclasses.replace(SUANWANG, share_floor=True),
            11 * DAY,
            3_600.0,
            0,
            [("pa", "capacity"), ("ra1", "preempt:pb"), ("pb", "preempting")],
            id="overdue-then-the-floor",
        ),
        pytest.param(
            SUANWANG,
            9 * DAY,
            3_600.0,
            0,
            [("pb", "c1:ascend-910b"), ("pa", "capacity")],
            id="not-yet-overdue",
        ),
        pytest.param(
            SUANWANG,
            11 * DAY,
            2 * DAY,
            0,
            [("pb", "c1:ascend-910b"), ("pa", "capacity")],
            id="long-gang-bound-scales",
        ),
        pytest.param(
            OFF,
            11 * DAY,
            3_600.0,
            0,
            [("pb", "c1:ascend-910b"), ("pa", "capacity")],
            id="switch-off",
        ),
        pytest.param(
            SUANWANG,
            11 * DAY,
            3_600.0,
            1,
            [("pb", "c1:ascend-910b"), ("pa", "capacity")],
            id="priority-still-first",
        ),
    ],
)
def test_overdue_gang_holds_the_reservation(
    policy: Policy,
    waited_s: float,
    gang_duration_s: float,
    light_priority: int,
    expected: list[tuple[str, str]],
) -> None:
    """Heavy tenant ``a`` holds nodes 1-2; node 3 has 7 free cards until ``b``'s job ends
    in 1 h. ``a``'s 8-card gang ``pa`` waits; ``b``'s 1-card job ``pb`` runs 10 h. Without
    the guard ``b`` (the lighter tenant) goes first and takes node 3, so ``pa`` can never
    reserve it; overdue, ``pa`` goes first, reserves node 3 and ``pb`` may not delay it."""
    now = 30 * DAY
    running = [
        make_running("ra1", {1: 8}, tenant="a", started_at=0.0),
        make_running("ra2", {2: 8}, tenant="a", started_at=0.0),
        make_running("rb", {3: 1}, tenant="b", started_at=0.0, expected_end=now + 3_600.0),
    ]
    jobs = [
        J(
            "pa",
            tenant="a",
            seq=0,
            cards_per_node=8,
            duration_s=gang_duration_s,
            submitted_at=now - waited_s,
        ),
        J("pb", tenant="b", seq=1, priority=light_priority, duration_s=36_000.0, submitted_at=now),
    ]
    snapshot = make_snapshot([N(1), N(2), N(3)], jobs, running=running, now=now)
    assert [brief(d) for d in cycle(snapshot, policy)] == expected


def test_overdue_reason_names_the_reservation() -> None:
    now = 30 * DAY
    running = [make_running("rb", {1: 1}, tenant="b", expected_end=now + 3_600.0)]
    jobs = [J("pa", tenant="a", cards_per_node=8, duration_s=60.0, submitted_at=0.0)]
    snapshot = make_snapshot([N(1)], jobs, running=running, now=now)
    (decision,) = cycle(snapshot)
    assert "reserved on c1" in getattr(decision, "reason", "")


@pytest.mark.parametrize(
    ("jobs", "shares", "expected"),
    [
        pytest.param(
            [("x", "a", 0.0, 0), ("y", "b", DAY, 0)],
            {"a": 2.0, "b": 0.0},
            ["y", "x"],
            id="both-overdue-share-first",
        ),
        pytest.param(
            [("x", "a", DAY, 0), ("y", "a", 0.0, 1)],
            {"a": 0.0},
            ["y", "x"],
            id="both-overdue-oldest-first",
        ),
        pytest.param(
            [("x", "b", 25 * DAY, 0), ("y", "a", 0.0, 1)],
            {"a": 2.0, "b": 0.0},
            ["y", "x"],
            id="overdue-before-lighter-tenant",
        ),
        pytest.param(
            [("x", "b", 25 * DAY, 0), ("y", "a", 22 * DAY, 1)],
            {"a": 2.0, "b": 0.0},
            ["x", "y"],
            id="neither-overdue-share-decides",
        ),
    ],
)
def test_priority_key_order(
    jobs: list[tuple[str, str, float, int]], shares: dict[str, float], expected: list[str]
) -> None:
    """``(id, tenant, submitted_at, seq)`` at ``now`` = 30 days; 1 h jobs (overdue after
    10 days of waiting)."""
    pending = [
        J(i, tenant=t, submitted_at=at, seq=seq, duration_s=3_600.0) for i, t, at, seq in jobs
    ]
    key = priority_key(SUANWANG, 30 * DAY, None, lambda t: shares[t])
    assert [j.id for j in sorted(pending, key=key)] == expected


job_rows = st.lists(
    st.tuples(
        st.sampled_from("abc"),
        st.integers(min_value=0, max_value=2),
        st.floats(min_value=0.0, max_value=30 * DAY),
        st.sampled_from([None, 60.0, 3_600.0, DAY, 3 * DAY]),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=80, deadline=None)
@given(
    rows=job_rows,
    shares=st.fixed_dictionaries({t: st.sampled_from([0.0, 1.0, 2.0]) for t in "abc"}),
    gain=st.booleans(),
)
def test_guard_order_properties(
    rows: list[tuple[str, int, float, float | None]], shares: dict[str, float], gain: bool
) -> None:
    """Property: priority is never overridden; within a priority every overdue job sorts
    before every job that is not; among overdue jobs of equal share the older goes first."""
    now = 30 * DAY
    jobs = [
        J(f"j{i}", tenant=t, priority=p, seq=i, submitted_at=at, duration_s=d)
        for i, (t, p, at, d) in enumerate(rows)
    ]
    gain_of = (lambda job: 1.0 + job.seq % 3) if gain else None
    key = priority_key(SUANWANG, now, gain_of, lambda t: shares[t])
    ordered = sorted(jobs, key=key)

    def late(job: PendingJob) -> bool:
        return overdue(job, now, SUANWANG)

    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            assert first.priority >= second.priority
            if first.priority != second.priority:
                continue
            assert late(first) or not late(second)
            same_share = shares[first.tenant] == shares[second.tenant]
            if late(first) and late(second) and same_share:
                assert first.submitted_at <= second.submitted_at
