"""Table tests of preemption: who may be preempted, which victims, and what follows.

Fleet: 8-card ``ascend-910b`` nodes in cluster ``c1``; ``now`` is 1,000 s. Running jobs
start at 0 unless a row says otherwise. Rows list every decision of the cycle with
:func:`~builders.brief`: ``("r1", "preempt:p")`` is a preemption of ``r1`` for ``p``.
"""

from __future__ import annotations

import dataclasses

import pytest
from builders import Brief, brief, make_queue, make_running, make_snapshot
from builders import make_job as J
from builders import make_node as N
from builders import make_running as R
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.ids import JobId
from suanwang.scheduler import Admit, Decision, NodeView, Pending, PendingJob, Snapshot, cycle
from suanwang.scheduler.decisions import Preempt
from suanwang.scheduler.policy import FIFO, KUEUE, POLICIES, SLURM, SUANWANG, Policy
from suanwang.scheduler.preempt import lost_work_s
from suanwang.scheduler.snapshot import RunningJob, TenantQueue

NOW = 1_000.0
TWO = [N(1), N(2)]


def decide(
    nodes: list[NodeView],
    running: list[RunningJob],
    jobs: list[PendingJob],
    tenant_queues: list[TenantQueue] | None = None,
    policy: Policy = SUANWANG,
) -> list[Brief]:
    snapshot = make_snapshot(nodes, jobs, running=running, queues=tenant_queues or [], now=NOW)
    return [brief(d) for d in cycle(snapshot, policy)]


@pytest.mark.parametrize(
    ("running", "job", "expected"),
    [
        pytest.param(
            [R("r1", {1: 8}), R("r2", {2: 8}, priority=3)],
            J("p", priority=5, cards_per_node=8),
            [("r1", "preempt:p"), ("p", "preempting")],
            id="lower-priority-of-same-tenant",
        ),
        pytest.param(
            [R("r1", {1: 8}, priority=5), R("r2", {2: 8}, priority=5)],
            J("p", priority=5, cards_per_node=8),
            [("p", "capacity")],
            id="never-equal-priority",
        ),
        pytest.param(
            [R("r1", {1: 8}, tenant="t2"), R("r2", {2: 8}, priority=9)],
            J("p", priority=5, cards_per_node=8),
            [("p", "capacity")],
            id="never-another-tenants-work-within-its-fair-share",
        ),
        pytest.param(
            [R("r1", {1: 8}, tenant="t2"), R("r2", {2: 8}, tenant="t2")],
            J("p", priority=5, cards_per_node=8),
            [("p", "capacity")],
            id="never-another-tenants-work-without-the-floor",
        ),
        pytest.param(
            [R("r1", {1: 8}, preemptible=False), R("r2", {2: 8}, preemptible=False)],
            J("p", priority=5, cards_per_node=8),
            [("p", "capacity")],
            id="never-non-preemptible",
        ),
        pytest.param(
            [R("r1", {1: 4}, preemptible=False), R("r2", {1: 4}), R("r3", {2: 8}, priority=9)],
            J("p", priority=5, cards_per_node=8),
            [("p", "capacity")],
            id="never-when-it-would-not-fit-anyway",
        ),
        pytest.param(
            [R("r1", {1: 8}), R("r2", {2: 8})],
            J("p", priority=5, cards_per_node=16),
            [("p", "too_large")],
            id="never-for-a-job-too-large",
        ),
        pytest.param(
            [R("r1", {1: 8}), R("r2", {2: 8})],
            J("p", priority=5, cards_per_node=8, nodes=2),
            [("r1", "preempt:p"), ("r2", "preempt:p"), ("p", "preempting")],
            id="whole-gang",
        ),
    ],
)
def test_who_may_be_preempted(
    running: list[RunningJob], job: PendingJob, expected: list[Brief]
) -> None:
    assert decide(TWO, running, [job]) == expected


def test_the_fair_share_floor_takes_work_of_a_tenant_over_its_share() -> None:
    """With ``share_floor`` (off in ``suanwang``): t2 holds both nodes, over its fair
    share of 8 cards, so p (t1 holds nothing) stops one of its jobs; work of a tenant
    within its share is never taken."""
    floor = dataclasses.replace(SUANWANG, share_floor=True)
    over = [R("r1", {1: 8}, tenant="t2"), R("r2", {2: 8}, tenant="t2")]
    job = J("p", priority=5, cards_per_node=8)
    assert decide(TWO, over, [job], policy=floor) == [("r1", "preempt:p"), ("p", "preempting")]
    within = [R("r1", {1: 8}, tenant="t2"), R("r2", {2: 8}, priority=9)]
    assert decide(TWO, within, [job], policy=floor) == [("p", "capacity")]


@pytest.mark.parametrize(
    ("running", "job", "victim"),
    [
        pytest.param(
            [
                R("early", {1: 8}, checkpoint_interval_s=300),  # saved at 900: loses 100
                R("late", {2: 8}, started_at=700),  # never saved: loses 300
            ],
            J("p", priority=5, cards_per_node=8),
            "early",
            id="checkpoint-interval",
        ),
        pytest.param(
            [
                R("saved", {1: 8}, last_checkpoint_at=990),  # loses 10
                R("fresh", {2: 8}, started_at=900),  # loses 100
            ],
            J("p", priority=5, cards_per_node=8),
            "saved",
            id="last-checkpoint",
        ),
        pytest.param(
            [
                R("big", {1: 8}, started_at=999),  # loses 1 s but frees 4 cards too many
                R("small", {2: 4}),  # loses 1,000 s, frees exactly what is needed
                R("pinned", {2: 4}, preemptible=False),
            ],
            J("p", priority=5, cards_per_node=4),
            "small",
            id="fewest-cards-over-freed-first",
        ),
    ],
)
def test_victims_lose_least(running: list[RunningJob], job: PendingJob, victim: str) -> None:
    assert decide(TWO, running, [job]) == [(victim, "preempt:p"), ("p", "preempting")]


def test_no_more_victims_than_needed() -> None:
    running = [R(f"r{i}", {1: 2}, started_at=100 * i) for i in range(4)]
    running.append(R("other", {2: 8}, preemptible=False))
    got = decide(TWO, running, [J("p", priority=5, cards_per_node=4)])
    assert got == [("r3", "preempt:p"), ("r2", "preempt:p"), ("p", "preempting")]


@pytest.mark.parametrize(
    ("cards", "victim"),
    [
        pytest.param(4, "r2", id="free-two-plus-two"),
        pytest.param(6, "r1", id="free-two-plus-four"),
    ],
)
def test_free_cards_count_before_victims(cards: int, victim: str) -> None:
    running = [R("r1", {1: 4}), R("r2", {1: 2}, started_at=500), R("x", {2: 8}, priority=9)]
    got = decide(TWO, running, [J("p", priority=5, cards_per_node=cards)])
    assert got == [(victim, "preempt:p"), ("p", "preempting")]


def test_claimed_cards_are_not_given_to_later_jobs() -> None:
    running = [R("r1", {1: 4}), R("x", {2: 8}, priority=9)]
    jobs = [J("p", priority=5, cards_per_node=8), J("q", priority=1, seq=1, cards_per_node=4)]
    assert decide(TWO, running, jobs) == [
        ("r1", "preempt:p"),
        ("p", "preempting"),
        ("q", "capacity"),
    ]


def test_each_victim_is_preempted_once_per_cycle() -> None:
    running = [R("r1", {1: 8}), R("x", {2: 8}, priority=9)]
    jobs = [J("p", priority=5, cards_per_node=8), J("q", priority=5, seq=1, cards_per_node=8)]
    assert decide(TWO, running, jobs) == [
        ("r1", "preempt:p"),
        ("p", "preempting"),
        ("q", "capacity"),
    ]


@pytest.mark.parametrize(
    ("running", "expected"),
    [
        pytest.param(
            [R("r1", {1: 8}, preempted_for="p"), R("x", {2: 8}, priority=9)],
            [("p", "preempting")],
            id="waits-for-its-victims",
        ),
        pytest.param(
            [R("r1", {1: 8}, preempted_for="gone"), R("x", {2: 8}, priority=9)],
            [("p", "capacity")],
            id="leaves-orphans-to-stop",
        ),
        pytest.param(
            [R("r1", {1: 8}, preempted_for="p", preemptible=False), R("x", {2: 8}, priority=9)],
            [("p", "preempting")],
            id="stopping-whatever-its-flag",
        ),
    ],
)
def test_stopping_victims_are_not_preempted_again(
    running: list[RunningJob], expected: list[Brief]
) -> None:
    assert decide(TWO, running, [J("p", priority=5, cards_per_node=8)]) == expected


def test_stopping_victims_are_promised_to_their_preemptor() -> None:
    running = [R("r1", {1: 8}, preempted_for="p"), R("x", {2: 8}, priority=9)]
    jobs = [J("q", priority=7, cards_per_node=8), J("p", priority=5, cards_per_node=8)]
    assert decide(TWO, running, jobs) == [("q", "capacity"), ("p", "preempting")]


def cohort(a: int | tuple[int, int | None, int | None], b: int = 8) -> list[TenantQueue]:
    return [
        make_queue("a", {"ascend": a}),
        make_queue("b", {"ascend": (b, None, None)}),
    ]


@pytest.mark.parametrize(
    ("running", "job", "expected"),
    [
        pytest.param(
            [R("b1", {1: 8}, tenant="b", priority=9), R("b2", {2: 8}, tenant="b", started_at=500)],
            J("p", tenant="a", cards_per_node=8),
            [("b2", "preempt:p"), ("p", "preempting")],
            id="reclaims-borrowed-work-whatever-its-priority",
        ),
        pytest.param(
            [R("b1", {1: 8}, tenant="b"), R("b2", {2: 8}, tenant="b")],
            J("p", tenant="a", cards_per_node=8, nodes=2),
            [("p", "quota")],
            id="never-below-the-lenders-nominal",
        ),
        pytest.param(
            [R("b1", {1: 8}, tenant="b"), R("z", {2: 8}, tenant="z")],
            J("p", tenant="a", cards_per_node=8),
            [("p", "capacity")],
            id="not-borrowing-not-reclaimed",
        ),
        pytest.param(
            [R("b1", {1: 8}, tenant="b"), R("b2", {2: 8}, tenant="b", preemptible=False)],
            J("p", tenant="a", cards_per_node=8),
            [("b1", "preempt:p"), ("p", "preempting")],
            id="skips-non-preemptible-borrower",
        ),
    ],
)
def test_reclaim(running: list[RunningJob], job: PendingJob, expected: list[Brief]) -> None:
    assert decide(TWO, running, [job], cohort(8)) == expected


@pytest.mark.parametrize(
    ("running", "job", "lender", "expected"),
    [
        pytest.param(
            [
                R("b1", {1: 8}, tenant="b", preemptible=False),
                R("b2", {2: 8}, tenant="b", preemptible=False, started_at=500),
            ],
            J("p", tenant="a", cards_per_node=8),
            8,
            [("b2", "preempt:p"), ("p", "preempting")],
            id="non-preemptible-borrowed-work-is-reclaimed",
        ),
        pytest.param(
            [
                R("b1", {1: 8}, tenant="b", preemptible=False, priority=1000),
                R("b2", {2: 8}, tenant="b", preemptible=False, priority=1000, started_at=500),
            ],
            J("p", tenant="a", cards_per_node=8),
            8,
            [("b2", "preempt:p"), ("p", "preempting")],
            id="critical-class-borrowed-work-is-reclaimed",
        ),
        pytest.param(
            [
                R("b1", {1: 8}, tenant="b", preemptible=False, started_at=900),
                R("b2", {2: 8}, tenant="b"),
            ],
            J("p", tenant="a", cards_per_node=8),
            8,
            [("b2", "preempt:p"), ("p", "preempting")],
            id="preemptible-borrowed-work-goes-first",
        ),
        pytest.param(
            [
                R("b1", {1: 8}, tenant="b", preemptible=False),
                R("b2", {2: 4}, tenant="b", preemptible=False, started_at=500),
            ],
            J("p", tenant="a", cards_per_node=8),
            8,
            [("b2", "preempt:p"), ("p", "preempting")],
            id="only-what-is-beyond-the-borrowers-nominal",
        ),
        pytest.param(
            [
                R("b1", {1: 8}, tenant="b", preemptible=False),
                R("b2", {2: 4}, tenant="b", preemptible=False, started_at=500),
            ],
            J("p", tenant="a", cards_per_node=8, nodes=2),
            16,
            [("p", "quota")],
            id="never-non-preemptible-work-within-the-borrowers-nominal",
        ),
    ],
)
def test_reclaim_ignores_the_borrowers_preemptible_flag(
    running: list[RunningJob], job: PendingJob, lender: int, expected: list[Brief]
) -> None:
    """Borrowed quota stays reclaimable: ``preemptible=False`` (or a non-preemptible
    priority class) protects a job only within its tenant's nominal quota."""
    assert decide(TWO, running, [job], cohort(lender)) == expected


def test_a_reclaimed_non_preemptible_job_is_told_why() -> None:
    borrowed = [
        R("b1", {1: 8}, tenant="b", preemptible=False),
        R("b2", {2: 8}, tenant="b", preemptible=False, started_at=500),
    ]
    snapshot = make_snapshot(
        TWO, [J("p", tenant="a", cards_per_node=8)], running=borrowed, queues=cohort(8), now=NOW
    )
    [preempt, _pending] = cycle(snapshot)
    assert preempt == Preempt(
        JobId("b2"),
        JobId("p"),
        "reclaim: tenant a needs its nominal ascend quota, lent to tenant b, for job p",
        500.0,
    )


def test_no_reclaim_when_the_job_itself_would_borrow() -> None:
    running = [R("b1", {1: 8}, tenant="b"), R("b2", {2: 8}, tenant="b")]
    job = J("p", tenant="a", cards_per_node=8)
    assert decide(TWO, running, [job], cohort((4, None, None))) == [("p", "quota")]


@pytest.mark.parametrize("policy", [FIFO, SLURM], ids=["fifo", "slurm"])
def test_policies_without_preemption_never_preempt(policy: Policy) -> None:
    running = [R("r1", {1: 8}), R("r2", {2: 8})]
    got = decide(TWO, running, [J("p", priority=5, cards_per_node=8)], policy=policy)
    assert got == [("p", "capacity")]


def test_kueue_preempts_by_priority_too() -> None:
    running = [R("r1", {1: 8}), R("r2", {2: 8}, priority=3)]
    got = decide(TWO, running, [J("p", priority=5, cards_per_node=8)], policy=KUEUE)
    assert got == [("r1", "preempt:p"), ("p", "preempting")]


def test_preemptions_carry_reason_and_lost_work() -> None:
    running = [R("r1", {1: 8}, checkpoint_interval_s=300), R("r2", {2: 8}, priority=9)]
    snapshot = make_snapshot(TWO, [J("p", priority=5, cards_per_node=8)], running=running, now=NOW)
    decisions = cycle(snapshot)
    assert decisions == [
        Preempt(
            JobId("r1"),
            JobId("p"),
            "priority: job p (priority 5) needs 8 ascend-910b cards on c1; this job has priority 0",
            100.0,
        ),
        Pending(JobId("p"), "preempting 1 job(s) to start on c1 (ascend-910b)", "preempting"),
    ]
    borrowed = [R("b1", {1: 8}, tenant="b"), R("b2", {2: 8}, tenant="b")]
    snapshot = make_snapshot(
        TWO, [J("p", tenant="a", cards_per_node=8)], running=borrowed, queues=cohort(8), now=NOW
    )
    [preempt, _pending] = cycle(snapshot)
    assert isinstance(preempt, Preempt)
    assert preempt.reason == (
        "reclaim: tenant a needs its nominal ascend quota, lent to tenant b, for job p"
    )


def test_waiting_reason_names_the_stopping_jobs() -> None:
    running = [R("r1", {1: 8}, preempted_for="p"), R("x", {2: 8}, priority=9)]
    snapshot = make_snapshot(TWO, [J("p", priority=5, cards_per_node=8)], running=running)
    [decision] = cycle(snapshot)
    assert decision == Pending(
        JobId("p"), "waiting for 1 preempted job(s) to stop on c1", "preempting"
    )


@pytest.mark.parametrize(
    ("running", "lost"),
    [
        pytest.param(make_running("r", {1: 1}, started_at=400), 600.0, id="since-start"),
        pytest.param(
            make_running("r", {1: 1}, started_at=400, last_checkpoint_at=900),
            100.0,
            id="checkpoint",
        ),
        pytest.param(
            make_running("r", {1: 1}, started_at=400, checkpoint_interval_s=250),
            100.0,
            id="interval",
        ),
        pytest.param(
            make_running(
                "r", {1: 1}, started_at=400, checkpoint_interval_s=250, last_checkpoint_at=990
            ),
            10.0,
            id="latest-of-both",
        ),
        pytest.param(make_running("r", {1: 1}, started_at=2_000), 0.0, id="not-started-yet"),
    ],
)
def test_lost_work(running: RunningJob, lost: float) -> None:
    assert lost_work_s(running, NOW) == pytest.approx(lost)


# --- property: a lender always gets its nominal quota back ------------------------------
RECLAIMING = [p for p in POLICIES.values() if p.preemption and p.quotas == "kueue"]
BORROWED_JOB = st.tuples(
    st.integers(1, 8),  # cards
    st.booleans(),  # preemptible
    st.sampled_from([0, 100, 1000]),  # priority (1000: like the critical class)
)


@st.composite
def lent_out(draw: st.DrawFn) -> tuple[list[NodeView], list[RunningJob], list[TenantQueue], int]:
    """A cohort of a lender ``a`` and a borrower ``b`` that may borrow without limit, on
    8-card nodes; ``b`` runs work of every kind packed first-fit, perhaps far beyond its
    nominal quota. Returns the nodes, b's jobs, the queues and a's nominal quota (>= 1)."""
    nodes = [N(i) for i in range(1, draw(st.integers(1, 4)) + 1)]
    total = 8 * len(nodes)
    b_nominal = draw(st.integers(0, total - 1))
    free = {n.id: n.cards_total for n in nodes}
    running = []
    for index, (cards, preemptible, priority) in enumerate(draw(st.lists(BORROWED_JOB))):
        node = next((n for n, left in free.items() if left >= cards), None)
        if node is not None:
            free[node] -= cards
            started = 10.0 * index
            running.append(
                R(
                    f"b{index}",
                    {node: cards},
                    tenant="b",
                    preemptible=preemptible,
                    priority=priority,
                    started_at=started,
                )
            )
    queues = [
        make_queue("a", {"ascend": (total - b_nominal, 0, None)}),
        make_queue("b", {"ascend": (b_nominal, None, None)}),
    ]
    return nodes, running, queues, total - b_nominal


def act(
    snapshot: Snapshot, decisions: list[Decision], waiting: dict[JobId, PendingJob]
) -> Snapshot:
    """The next snapshot once the decisions are acted on and the victims have stopped:
    admitted jobs run, victims give their cards back and queue again."""
    pending = {j.id: j for j in snapshot.pending}
    running = {r.id: r for r in snapshot.running}
    for decision in decisions:
        if isinstance(decision, Preempt):
            victim = running.pop(decision.job)
            cards = sum(p.cards for p in victim.placements)
            requeued = J(
                str(victim.id),
                tenant=victim.tenant,
                cards_per_node=cards,
                priority=victim.priority,
                seq=len(waiting),
            )
            waiting[victim.id] = dataclasses.replace(requeued, preemptible=victim.preemptible)
            pending[victim.id] = waiting[victim.id]
        elif isinstance(decision, Admit):
            job = pending.pop(decision.job)
            on = {int(p.node): p.cards for p in decision.placements}
            running[job.id] = R(
                str(job.id),
                on,
                tenant=job.tenant,
                priority=job.priority,
                preemptible=job.preemptible,
                started_at=snapshot.now,
            )
    nodes = [dataclasses.replace(n, cards_free=n.cards_total) for n in snapshot.nodes]
    return make_snapshot(
        nodes,
        list(pending.values()),
        running=list(running.values()),
        queues=snapshot.queues.values(),
        now=snapshot.now + 1,
    )


@settings(max_examples=200, deadline=None, database=None)
@given(lent_out(), st.data(), st.sampled_from(RECLAIMING))
def test_a_lender_always_gets_its_nominal_quota_back(
    case: tuple[list[NodeView], list[RunningJob], list[TenantQueue], int],
    data: st.DataObject,
    policy: Policy,
) -> None:
    """Whatever the borrower's flags and priorities, the lender's jobs within its nominal
    quota (one card each: no fragmentation) all run within a few cycles: no borrowed
    card is beyond reclaim."""
    nodes, running, queues, nominal = case
    count = data.draw(st.integers(1, nominal))
    own = {JobId(f"a{i}"): J(f"a{i}", tenant="a", seq=i) for i in range(count)}
    snapshot = make_snapshot(nodes, own.values(), running=running, queues=queues, now=NOW)
    waiting: dict[JobId, PendingJob] = {}
    for _ in range(count + 2):
        snapshot = act(snapshot, cycle(snapshot, policy), waiting)
    started = {r.id for r in snapshot.running if r.tenant == "a"}
    assert started == set(own), [(j.id, j.tenant) for j in snapshot.pending]
