"""The incremental cycle: a queue index kept across cycles (classes merged, inert
classes parked, deferred tenants carried to the second pass) makes the same decisions
as a cycle that sorts the whole queue afresh, snapshot after snapshot."""

from __future__ import annotations

import dataclasses
from collections import Counter

from builders import make_job, make_node, make_running, make_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st
from test_scheduler_properties import applied, rich

from suanwang.domain.ids import ChipFamily, JobId, TenantId
from suanwang.scheduler import PendingJob, Snapshot, cycle
from suanwang.scheduler.cache import CycleCache
from suanwang.scheduler.inert import InertFilter
from suanwang.scheduler.policy import POLICIES, Policy
from suanwang.scheduler.queue_index import QueueIndex, _delta
from suanwang.scheduler.snapshot import FlavorQuota, TenantQueue
from suanwang.scheduler.state import CycleState

HISTORY_SETTINGS = settings(max_examples=120, deadline=None, database=None)


def indexed_cache() -> CycleCache:
    """A cache whose queue index serves from the first job on."""
    return CycleCache(queue=QueueIndex(min_jobs=0))


def tight(policy: Policy, reports: int, admissions: int, attempts: int) -> Policy:
    """``policy`` with small per-cycle caps, so parking and the caps are reached."""
    tuning = dataclasses.replace(
        policy.tuning,
        max_pending_reports=reports,
        max_admissions_per_cycle=admissions,
        max_preemption_attempts=attempts,
    )
    return dataclasses.replace(policy, tuning=tuning)


class Arrivals:
    """New look-alike jobs, submitted later than every earlier one (seq follows)."""

    def __init__(self, templates: tuple[PendingJob, ...]) -> None:
        self.templates, self.count = templates, 0

    def make(self, draw: st.DrawFn, now: float) -> PendingJob:
        template = draw(st.sampled_from(self.templates))
        self.count += 1
        return dataclasses.replace(
            template,
            id=JobId(f"a{self.count}"),
            tenant=draw(st.sampled_from((template.tenant, template.tenant, "t2"))),
            seq=1_000 + self.count,
            submitted_at=now + self.count,
            priority=draw(st.sampled_from((template.priority, 0, 3, 5))),
        )


@st.composite
def histories(draw: st.DrawFn) -> tuple[Policy, list[Snapshot], bool]:
    """A rich snapshot with a queue of look-alikes, and what follows it: decisions
    applied, jobs cancelled or arriving, the queue reordered, running jobs gone (their
    cards free), time moving on (ages cross the overdue and waited thresholds)."""
    first, policy = draw(rich())
    if not first.pending:
        first = dataclasses.replace(first, pending=(make_job("j0", chip="any"),))
    agree = draw(st.integers(0, 5)) > 0
    arrivals = Arrivals(first.pending)
    queue = [
        dataclasses.replace(job, seq=index, submitted_at=float(index * 10))
        for index, job in enumerate(first.pending)
    ]
    queue += [arrivals.make(draw, first.now) for _ in range(draw(st.integers(0, 60)))]
    if not agree:  # two look-alikes, seq against submission order: the index gives up
        queue += [
            dataclasses.replace(queue[0], id=JobId("x1"), seq=5_000, submitted_at=0.0),
            dataclasses.replace(queue[0], id=JobId("x2"), seq=4_999, submitted_at=1.0),
        ]
    policy = draw(st.sampled_from((policy, POLICIES["fifo"], POLICIES["suanwang"])))
    policy = tight(
        policy,
        draw(st.sampled_from((0, 0, 1, 3, 2_000))),
        draw(st.sampled_from((1, 5, 2_000, 2_000))),
        draw(st.sampled_from((0, 1, 64, 64))),
    )
    running = list(first.running)
    for index in draw(st.lists(st.integers(0, 15), max_size=3)):
        if running:  # stopping for a queued job: its cards are promised to that job
            pick = draw(st.sampled_from(queue))
            victim = running[index % len(running)]
            running[index % len(running)] = dataclasses.replace(victim, preempted_for=pick.id)
    current = dataclasses.replace(first, pending=tuple(queue), running=tuple(running))
    return policy, evolve(draw, current, policy, arrivals), agree


def evolve(
    draw: st.DrawFn, current: Snapshot, policy: Policy, arrivals: Arrivals
) -> list[Snapshot]:
    """``current`` and the snapshots after it (see :func:`histories`)."""
    snapshots = [current]
    for _ in range(draw(st.integers(1, 5))):
        current = applied(current, cycle(current, policy))
        pending = list(current.pending)
        for _ in range(draw(st.integers(0, 3))):
            if pending:
                pending.pop(draw(st.integers(0, len(pending) - 1)))
        now = current.now + draw(st.sampled_from((0.0, 60.0, 5_000.0, 100_000.0)))
        for _ in range(draw(st.integers(0, 4))):
            job = arrivals.make(draw, now)
            pending.insert(draw(st.sampled_from((len(pending), 0))), job)
        if draw(st.integers(0, 5)) == 0:
            pending.reverse()
        running = list(current.running)
        for _ in range(draw(st.integers(0, 2))):
            if running:
                running.pop(draw(st.integers(0, len(running) - 1)))
        nodes = current.nodes
        if draw(st.booleans()):
            nodes = tuple(dataclasses.replace(n, cards_free=n.cards_total) for n in nodes)
        current = dataclasses.replace(
            current, pending=tuple(pending), running=tuple(running), nodes=nodes, now=now
        )
        snapshots.append(current)
    return snapshots


KIND = st.tuples(
    st.sampled_from(("t1", "t1", "t2", "t3")),  # tenant
    st.sampled_from((0, 1, 1, 2)),  # priority
    st.sampled_from((1, 2, 8, 8)),  # cards per node
    st.sampled_from((1, 1, 2)),  # nodes
    st.sampled_from((None, 600.0, 50_000.0)),  # duration
)


@st.composite
def contended(draw: st.DrawFn) -> tuple[Policy, list[Snapshot]]:
    """A full fleet run by three tenants (two of them a cohort that lends and borrows),
    and a long queue of a few kinds of job interleaved: inert classes park while jobs of
    other classes preempt (the token changes) or are deferred to the borrowing pass."""
    nodes = [make_node(i, cards_total=8) for i in range(1, 7)]
    running = [
        make_running(
            f"r{i}",
            {i: 8},
            tenant=draw(st.sampled_from(("t1", "t2", "t3"))),
            priority=draw(st.sampled_from((0, 0, 1))),
            expected_end=draw(st.sampled_from((None, 500.0, 20_000.0))),
        )
        for i in range(1, 7)
        if draw(st.integers(0, 5)) > 0
    ]
    kinds = draw(st.lists(KIND, min_size=1, max_size=6, unique=True))
    order = draw(st.lists(st.integers(0, len(kinds) - 1), min_size=10, max_size=80))
    jobs = []
    for index, pick in enumerate(order):
        tenant, priority, per_node, count, duration = kinds[pick]
        jobs.append(
            make_job(
                f"q{index}",
                tenant=tenant,
                priority=priority,
                seq=index,
                cards_per_node=per_node,
                nodes=count,
                duration_s=duration,
                submitted_at=float(index),
            )
        )
    for index in draw(st.lists(st.integers(0, len(running) + 5), max_size=2)):
        if index < len(running):
            promised = draw(st.sampled_from(jobs)).id
            running[index] = dataclasses.replace(running[index], preempted_for=promised)
    nominal = draw(st.sampled_from((8, 16, 24)))
    quota = FlavorQuota(nominal=nominal, borrowing_limit=None)
    queues = [
        TenantQueue(TenantId(t), {ChipFamily("ascend"): quota}, cohort="co") for t in ("t1", "t2")
    ]
    snapshot = make_snapshot(nodes, jobs, now=100.0, running=running, queues=queues)
    policy = tight(
        draw(st.sampled_from((POLICIES["suanwang"], POLICIES["kueue"], POLICIES["slurm"]))),
        draw(st.sampled_from((0, 1, 2))),
        draw(st.sampled_from((1, 3, 2_000))),
        draw(st.sampled_from((1, 2, 64))),
    )
    return policy, evolve(draw, snapshot, policy, Arrivals(snapshot.pending))


@HISTORY_SETTINGS
@given(histories())
def test_the_incremental_cycle_decides_as_a_cycle_from_scratch(
    case: tuple[Policy, list[Snapshot], bool],
) -> None:
    policy, snapshots, agree = case
    cache = indexed_cache()
    for snapshot in snapshots:
        assert cycle(snapshot, policy, cache) == cycle(snapshot, policy)
    assert cache.queue.builds == 1
    assert (cache.queue.disabled == "") == agree
    if agree:  # the index holds exactly the last queue
        last = snapshots[-1].pending
        assert sorted(cache.queue.by_id) == sorted(j.id for j in last)
        assert sum(map(len, cache.queue.classes.values())) == len(last)


@HISTORY_SETTINGS
@given(contended())
def test_parked_and_deferred_classes_decide_as_a_cycle_from_scratch(
    case: tuple[Policy, list[Snapshot]],
) -> None:
    policy, snapshots = case
    cache = indexed_cache()
    for snapshot in snapshots:
        assert cycle(snapshot, policy, cache) == cycle(snapshot, policy)
    assert not cache.queue.disabled


@HISTORY_SETTINGS
@given(
    st.lists(st.integers(0, 30), max_size=40),
    st.lists(st.integers(0, 60), max_size=40),
)
def test_the_queue_delta_turns_the_old_queue_into_the_new_one(
    old_picks: list[int], new_picks: list[int]
) -> None:
    jobs = [make_job(f"j{i}") for i in range(61)]
    old = tuple(jobs[i] for i in dict.fromkeys(old_picks))
    new = tuple(jobs[i] for i in dict.fromkeys(new_picks))
    gone, added = _delta(old, new, {j.id: j for j in old})
    ids = lambda jobs: Counter(j.id for j in jobs)  # noqa: E731
    assert ids(old) - ids(gone) + ids(added) == ids(new)
    assert all(any(j is o for o in old) for j in gone)
    assert all(any(j is n for n in new) for j in added)


def saturated(jobs: int) -> Snapshot:
    """A full fleet of 64 nodes and ``jobs`` queued look-alikes of 24 kinds."""
    nodes = [make_node(i, cards_total=8, cards_free=0, simulated=True) for i in range(1, 65)]
    pending = [
        make_job(
            f"q{i:05d}",
            tenant=f"t{i % 4}",
            priority=i % 3,
            seq=i,
            cards_per_node=(1, 2)[i % 2],
            simulated=True,
            duration_s=600.0,
            submitted_at=float(i),
        )
        for i in range(jobs)
    ]
    return make_snapshot(nodes, pending, now=1e6)


def test_a_saturated_cycle_looks_at_classes_not_jobs() -> None:
    snapshot, policy, cache = saturated(20_000), POLICIES["suanwang"], indexed_cache()
    first = cycle(snapshot, policy, cache)
    original = InertFilter.is_inert
    calls = Counter[bool]()

    def counted(self: InertFilter, job: PendingJob, st: CycleState, final: bool) -> bool:
        calls[cache.queue is st.queue] += 1
        return original(self, job, st, final)

    InertFilter.is_inert = counted  # type: ignore[method-assign]
    try:
        again = cycle(snapshot, policy, cache)
        sorting = cycle(snapshot, policy)
    finally:
        InertFilter.is_inert = original  # type: ignore[method-assign]
    assert first == again == sorting
    assert len(sorting) == policy.tuning.max_pending_reports
    assert calls[False] > 15_000  # the sorting cycle looks at every job
    assert calls[True] < 100  # the merged one at each of its 12 classes, about
