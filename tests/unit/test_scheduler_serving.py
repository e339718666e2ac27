"""Production inference replicas preempt training (训推一体), and never the other way round.

A serving job (``PendingJob.serving``: a deployment's replica) may stop preemptible,
lower-priority, non-serving work of its own tenant and of tenants whose nominal quota does
not protect it (here: tenants without queues; the quota side is
test_scheduler_serving_quota.py); a serving running job is never a victim and
never moved by reallocation; a replica's preemption is neither held back by reallocation's
churn limit (a victim that just started or was just moved) nor by the cap on preemption
searches per cycle. Fleet: 8-card ``ascend-910b`` nodes in ``c1``; ``now`` is 1,000 s.
"""

from __future__ import annotations

import dataclasses

import pytest
from builders import Brief, brief, make_queue, make_snapshot
from builders import make_job as J
from builders import make_node as N
from builders import make_running as R
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.scheduler import NodeView, PendingJob, cycle
from suanwang.scheduler.decisions import Preempt
from suanwang.scheduler.policy import SUANWANG, Tuning
from suanwang.scheduler.realloc import MoveCost, reallocate
from suanwang.scheduler.snapshot import RunningJob

NOW = 1_000.0
TWO = [N(1), N(2)]
REPLICA = 500


def replica(job_id: str = "rep", cards: int = 8, tenant: str = "maas-public") -> PendingJob:
    return dataclasses.replace(
        J(job_id, tenant=tenant, priority=REPLICA, cards_per_node=cards), serving=True
    )


def serving(job: RunningJob) -> RunningJob:
    return dataclasses.replace(job, serving=True)


def decide(
    nodes: list[NodeView], running: list[RunningJob], jobs: list[PendingJob], **kw: object
) -> list[Brief]:
    policy = kw.pop("policy", SUANWANG)
    snapshot = make_snapshot(nodes, jobs, running=running, now=NOW, **kw)  # type: ignore[arg-type]
    return [brief(d) for d in cycle(snapshot, policy)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("running", "job", "expected"),
    [
        pytest.param(
            [R("a", {1: 8}, tenant="t1"), R("b", {2: 8}, tenant="t2")],
            replica(),
            [("a", "preempt:rep"), ("rep", "preempting")],
            id="unprotected-training-of-any-tenant-first-by-id-when-equal",
        ),
        pytest.param(
            [
                R("a", {1: 8}, tenant="t1", last_checkpoint_at=100.0),
                R("b", {2: 8}, tenant="t2", last_checkpoint_at=990.0),
            ],
            replica(),
            [("b", "preempt:rep"), ("rep", "preempting")],
            id="least-work-lost-since-checkpoint",
        ),
        pytest.param(
            [R("a", {1: 8}, tenant="t1", preemptible=False), R("b", {2: 8}, priority=600)],
            replica(),
            [("rep", "capacity")],
            id="never-non-preemptible-or-higher-priority",
        ),
        pytest.param(
            [serving(R("a", {1: 8}, priority=REPLICA - 1)), R("b", {2: 8}, priority=600)],
            replica(),
            [("rep", "capacity")],
            id="never-another-replica",
        ),
        pytest.param(
            [R("a", {1: 8}, tenant="t1"), R("b", {2: 8}, tenant="t1")],
            J("p", tenant="t2", priority=REPLICA, cards_per_node=8),
            [("p", "capacity")],
            id="a-training-job-of-another-tenant-may-not",
        ),
    ],
)
def test_replica_preemption_table(
    running: list[RunningJob], job: PendingJob, expected: list[Brief]
) -> None:
    assert decide(TWO, running, [job]) == expected


@pytest.mark.parametrize("protection", ["own-tenant", "reclaim"])
def test_training_never_preempts_a_replica(protection: str) -> None:
    """Not by priority within the replica's tenant, nor by reclaim while it borrows; the
    same job not serving is stopped (so the table can fail)."""
    queues = []
    if protection == "own-tenant":
        job = J("train", tenant="t2", priority=1000, cards_per_node=8)
        running = R("rep", {1: 8, 2: 8}, tenant="t2")
    else:
        job = J("train", tenant="t1", priority=1000, cards_per_node=8)
        running = R("rep", {1: 8, 2: 8}, tenant="t2", preemptible=False)
        queues = [
            make_queue("t1", {"ascend": (16, 16, None)}),
            make_queue("t2", {"ascend": (0, 16, None)}),
        ]
    plain = decide(TWO, [running], [job], queues=queues)
    assert plain == [("rep", "preempt:train"), ("train", "preempting")]
    protected = decide(TWO, [serving(running)], [job], queues=queues)
    assert not [d for d in protected if d[1].startswith("preempt:")], protected


def test_the_reason_says_serving() -> None:
    snapshot = make_snapshot(TWO, [replica()], running=[R("a", {1: 8}), R("b", {2: 8})], now=NOW)
    preempts = [d for d in cycle(snapshot, SUANWANG) if isinstance(d, Preempt)]
    assert [p.job for p in preempts] == ["a"]
    assert preempts[0].reason.startswith("serving: production replica job rep")


def test_not_capped_by_preemption_searches_per_cycle() -> None:
    """The cap (``Tuning.max_preemption_attempts``) holds back training's searches only."""
    capped = dataclasses.replace(SUANWANG, tuning=Tuning(max_preemption_attempts=0))
    running = [R("a", {1: 8}), R("b", {2: 8})]
    assert decide(TWO, running, [J("p", priority=5, cards_per_node=8)], policy=capped) == [
        ("p", "capacity")
    ]
    assert decide(TWO, running, [replica()], policy=capped)[0] == ("a", "preempt:rep")


def test_reallocation_never_moves_a_replica() -> None:
    """A replica on a slow chip with a fast chip free stays; a training job there moves."""
    nodes = [N(1, chip="ascend-310p"), N(2, chip="ascend-910b")]
    slow = {"ascend-310p": 0.2, "ascend-910b": 1.0}
    moves = []
    for is_serving in (False, True):
        job = R("j", {1: 8}, chip="ascend-310p", expected_end=NOW + 10_000)
        request = J("j", cards_per_node=8, chips=["ascend-310p", "ascend-910b"], speed=slow)
        job = dataclasses.replace(job, request=request, serving=is_serving)
        snapshot = make_snapshot(nodes, [], running=[job], now=NOW)
        policy = dataclasses.replace(SUANWANG, reallocation=True)
        moves.append([brief(d) for d in reallocate(snapshot, policy, MoveCost())])
    assert moves[0] == [("j", "preempt:j"), ("j", "c1:ascend-910b")]
    assert moves[1] == []


# --- properties ----------------------------------------------------------------------------

running_rows = st.lists(
    st.tuples(
        st.integers(1, 3),  # node
        st.integers(1, 4),  # cards
        st.sampled_from(["t1", "t2", "t3"]),
        st.integers(-100, 1000),  # priority
        st.booleans(),  # preemptible
        st.booleans(),  # serving
        st.floats(0, NOW),  # started (a just-started or just-moved job too)
        st.one_of(st.none(), st.floats(0, NOW)),  # last checkpoint
    ),
    max_size=8,
)


def _fleet(
    rows: list[tuple[int, int, str, int, bool, bool, float, float | None]],
) -> tuple[list[NodeView], list[RunningJob]]:
    nodes = [N(n) for n in (1, 2, 3)]
    free = {1: 8, 2: 8, 3: 8}
    running = []
    for i, (node, cards, tenant, priority, preemptible, is_serving, started, ckpt) in enumerate(
        rows
    ):
        take = min(cards, free[node])
        if take == 0:
            continue
        free[node] -= take
        job = R(
            f"r{i}",
            {node: take},
            tenant=tenant,
            priority=priority,
            preemptible=preemptible and not is_serving,
            started_at=started,
            last_checkpoint_at=None if ckpt is None else max(ckpt, started),
        )
        running.append(dataclasses.replace(job, serving=is_serving))
    return nodes, running


@settings(max_examples=150, deadline=None)
@given(
    rows=running_rows,
    pending=st.lists(
        st.tuples(
            st.sampled_from(["t1", "t2", "t3", "maas-public"]),
            st.integers(-100, 1000),
            st.integers(1, 8),
            st.booleans(),
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_a_serving_job_is_never_preempted_and_replicas_stop_only_training_below_them(
    rows: list[tuple[int, int, str, int, bool, bool, float, float | None]],
    pending: list[tuple[str, int, int, bool]],
) -> None:
    nodes, running = _fleet(rows)
    jobs = [
        dataclasses.replace(J(f"p{i}", tenant=t, priority=p, cards_per_node=c, seq=i), serving=s)
        for i, (t, p, c, s) in enumerate(pending)
    ]
    by_id = {j.id: j for j in jobs}
    by_running = {r.id: r for r in running}
    snapshot = make_snapshot(nodes, jobs, running=running, now=NOW)
    for decision in cycle(snapshot, SUANWANG):
        if not isinstance(decision, Preempt):
            continue
        victim, preemptor = by_running[decision.job], by_id[decision.for_job]
        assert not victim.serving, (victim, preemptor)
        if preemptor.serving and victim.tenant != preemptor.tenant:
            assert victim.preemptible
            assert victim.priority < preemptor.priority


@settings(max_examples=150, deadline=None)
@given(rows=running_rows, cards=st.integers(1, 8), policy_cap=st.integers(0, 3))
def test_a_replica_that_fits_once_training_below_it_stops_is_never_left_waiting(
    rows: list[tuple[int, int, str, int, bool, bool, float, float | None]],
    cards: int,
    policy_cap: int,
) -> None:
    """Whatever the victims' start times (a job just moved by reallocation is as good a
    victim as any: the churn limit is reallocation's own) and the search cap."""
    nodes, running = _fleet(rows)
    rep = replica(cards=cards)
    freeable = {n.id: n.cards_total for n in nodes}
    for job in running:
        if not (job.preemptible and not job.serving and job.priority < REPLICA):
            for p in job.placements:
                freeable[p.node] -= p.cards
    policy = dataclasses.replace(SUANWANG, tuning=Tuning(max_preemption_attempts=policy_cap))
    decisions = [
        brief(d) for d in cycle(make_snapshot(nodes, [rep], running=running, now=NOW), policy)
    ]
    if any(free >= cards for free in freeable.values()):
        assert decisions[-1][1] in ("c1:ascend-910b", "preempting"), decisions
    else:
        assert decisions == [("rep", "capacity")], decisions
