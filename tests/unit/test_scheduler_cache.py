"""The cycle cache: pools updated in place equal pools rebuilt, and a cache (fresh, warm
from other snapshots, or none) never changes a cycle's decisions."""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Sequence

import pytest
from builders import make_job, make_node, make_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st
from test_scheduler_properties import applied, rich

from suanwang.domain.ids import JobId, NodeId, TenantId
from suanwang.scheduler import Admit, Decision, NodeView, Snapshot, cycle
from suanwang.scheduler.cache import CycleCache
from suanwang.scheduler.fit import Pool, build_pools
from suanwang.scheduler.inert import PendingMemo
from suanwang.scheduler.policy import POLICIES, Policy
from suanwang.scheduler.quota import UNITS, QuotaLedger
from suanwang.scheduler.running import RunningWork

CACHE_SETTINGS = settings(max_examples=60, deadline=None, database=None)


def state_of(pools: Sequence[Pool]) -> list[tuple[object, ...]]:
    """Everything a pool holds, for comparison (the version is cycle-local)."""
    return [
        (
            p.key,
            p.slots,
            p.groups,
            p.group_of,
            p.free_of,
            p.group_free_cards,
            p.order,
            p.totals_cards,
            p.free_cards,
        )
        for p in pools
    ]


def keep_unchanged(before: Snapshot, after: Snapshot) -> Snapshot:
    """``after`` with every node equal to its old view replaced by that very object, as
    the simulator does (it replaces only the nodes that changed)."""
    old = {n.id: n for n in before.nodes}
    nodes = tuple(old[n.id] if old.get(n.id) == n else n for n in after.nodes)
    return dataclasses.replace(after, nodes=nodes)


@st.composite
def node_changes(draw: st.DrawFn) -> tuple[list[NodeView], list[list[NodeView]]]:
    """A fleet and a few later versions of it: free cards change, sometimes more."""
    count = draw(st.integers(1, 12))
    nodes = [
        make_node(
            i + 1,
            cluster=draw(st.sampled_from(("c1", "c2"))),
            chip=draw(st.sampled_from(("ascend-910b", "metax-c500"))),
            cards_total=8,
            cards_free=draw(st.integers(0, 8)),
            network_group=draw(st.sampled_from(("", "g1", "g2"))),
        )
        for i in range(count)
    ]
    versions, current = [], list(nodes)
    for _ in range(draw(st.integers(1, 5))):
        current = list(current)
        for index in draw(st.lists(st.integers(0, len(current) - 1), max_size=4)):
            node = current[index]
            change = draw(st.sampled_from(("free", "free", "free", "group", "unschedulable")))
            if change == "free":
                node = dataclasses.replace(node, cards_free=draw(st.integers(-2, 8)))
            elif change == "group":
                node = dataclasses.replace(node, network_group="g3")
            else:
                node = dataclasses.replace(node, schedulable=not node.schedulable)
            current[index] = node
        if draw(st.booleans()) and len(current) > 1:
            current = current[:-1]
        versions.append(current)
    return nodes, versions


@CACHE_SETTINGS
@given(node_changes())
def test_cached_pools_equal_rebuilt_pools(
    case: tuple[list[NodeView], list[list[NodeView]]],
) -> None:
    first, versions = case
    cache = CycleCache()
    for nodes in (first, *versions, first):
        pools = cache.pools(tuple(nodes))
        assert state_of(pools) == state_of(build_pools(nodes))
        if pools and pools[0].slots:
            pools[0].hold(pools[0].slots[-1][1], 1)  # a cycle's changes stay its own
        assert state_of(cache.pools(tuple(nodes))) == state_of(build_pools(nodes))


@CACHE_SETTINGS
@given(rich())
def test_a_cache_never_changes_decisions(case: tuple[Snapshot, Policy]) -> None:
    snapshot, policy = case
    cache = CycleCache()
    first = cycle(snapshot, policy, cache)
    assert first == cycle(snapshot, policy)
    after = keep_unchanged(snapshot, applied(snapshot, first))
    assert cycle(after, policy, cache) == cycle(after, policy)
    assert cycle(snapshot, policy, cache) == first  # back to an older snapshot
    assert cache.updates >= 1


def test_only_changed_nodes_are_updated() -> None:
    nodes = tuple(make_node(i, cards_total=8, cards_free=8) for i in range(1, 5))
    jobs = (make_job("a", cards_per_node=8),)
    cache = CycleCache()
    decisions: list[Decision] = cycle(make_snapshot(nodes, jobs), cache=cache)
    (admit,) = [d for d in decisions if isinstance(d, Admit)]
    taken: Counter[NodeId] = Counter({p.node: p.cards for p in admit.placements})
    after = tuple(
        dataclasses.replace(n, cards_free=n.cards_free - taken[n.id]) if taken[n.id] else n
        for n in nodes
    )
    again = cycle(make_snapshot(after, (make_job("b", cards_per_node=8),)), cache=cache)
    assert (cache.rebuilds, cache.updates) == (1, 1)
    assert next(d for d in again if isinstance(d, Admit)).placements[0].node not in taken


def keep_running(before: Snapshot, after: Snapshot) -> Snapshot:
    """``after`` with every running job equal to its old view replaced by that very
    object, as the simulator and the control loop do."""
    old = {j.id: j for j in before.running}
    running = tuple(old[j.id] if old.get(j.id) == j else j for j in after.running)
    return dataclasses.replace(after, running=running)


@st.composite
def running_changes(draw: st.DrawFn) -> tuple[Snapshot, Policy, list[Snapshot]]:
    """A rich snapshot and later ones: decisions applied, time moved on, running jobs
    dropped, reordered, preempted, restarted or given other ends and units."""
    snapshot, policy = draw(rich())
    later, current = [], snapshot
    for _ in range(draw(st.integers(1, 4))):
        current = applied(current, cycle(current, policy))
        running = list(current.running)
        for index in draw(st.lists(st.integers(0, 15), max_size=4)):
            if not running:
                break
            job = running[index % len(running)]
            change = draw(st.sampled_from(("drop", "end", "start", "stop", "move")))
            if change == "drop":
                running.remove(job)
                continue
            if change == "move":
                running.remove(job)
                running.insert(0, job)
                continue
            if change == "end":
                job = dataclasses.replace(job, expected_end=current.now + draw(ENDS))
            elif change == "start":
                job = dataclasses.replace(job, started_at=current.now + draw(ENDS))
            else:
                job = dataclasses.replace(job, preempted_for=JobId("j0"))
            running[index % len(running)] = job
        now = current.now + draw(st.sampled_from((0.0, 60.0, 5_000.0)))
        units = current.chip_units
        if draw(st.integers(0, 4)) == 0:
            units = {chip: value * 2 for chip, value in units.items()} or {"nvidia-a100": 2.0}
        current = dataclasses.replace(current, running=tuple(running), now=now, chip_units=units)
        later.append(current)
    return snapshot, policy, later


ENDS = st.sampled_from((-100.0, 0.0, 30.0, 10_000.0))


@CACHE_SETTINGS
@given(running_changes())
def test_kept_running_work_never_changes_decisions(
    case: tuple[Snapshot, Policy, list[Snapshot]],
) -> None:
    first, policy, later = case
    cache = CycleCache()
    assert cycle(first, policy, cache) == cycle(first, policy)
    before = first
    for snapshot in later:
        kept = keep_running(before, keep_unchanged(before, snapshot))
        assert cycle(kept, policy, cache) == cycle(kept, policy)
        before = kept
    for snapshot in later:  # the control loop's case: every view a new object
        fresh = copy.deepcopy(snapshot)
        assert cycle(fresh, policy, cache) == cycle(fresh, policy)
    assert cycle(first, policy, cache) == cycle(first, policy)  # back to an older one


@CACHE_SETTINGS
@given(running_changes())
def test_kept_running_work_equals_work_made_afresh(
    case: tuple[Snapshot, Policy, list[Snapshot]],
) -> None:
    first, _policy, later = case
    cache = CycleCache()
    before = first
    for snapshot in (first, *later):
        kept = keep_running(before, keep_unchanged(before, snapshot))
        cache.pools(kept.nodes)
        work = cache.running(kept)
        fresh = RunningWork.of(kept.running, kept.chip_units, cache.node_keys())
        assert work.tenants == fresh.tenants
        assert work.fleet_held(kept.now) == fresh.fleet_held(kept.now)
        keys = sorted(set(cache.node_keys().values()))
        assert work.timelines(keys, kept.now) == fresh.timelines(keys, kept.now)
        before = kept


@CACHE_SETTINGS
@given(running_changes())
def test_holdings_sum_job_after_job_in_snapshot_order(
    case: tuple[Snapshot, Policy, list[Snapshot]],
) -> None:
    """Sums per tenant equal the plain sums over the snapshot's running jobs, to the
    last bit (floating-point sums depend on their order)."""
    for snapshot in (case[0], *case[2]):
        units = snapshot.chip_units
        held: dict[tuple[TenantId, str], float] = {}
        before_now: dict[TenantId, float] = {}
        for job in snapshot.running:
            amount = sum(p.cards for p in job.placements) * units.get(job.chip, 1.0)
            held[(job.tenant, UNITS)] = held.get((job.tenant, UNITS), 0.0) + amount
            if job.started_at < snapshot.now:
                before_now[job.tenant] = before_now.get(job.tenant, 0.0) + amount
        ledger = QuotaLedger(dataclasses.replace(snapshot, usage={}))
        assert {k: v for k, v in ledger.held.items() if k[1] == UNITS} == held
        work = RunningWork.of(snapshot.running, units, {})
        assert work.fleet_held(snapshot.now) == before_now


@st.composite
def look_alike_queues(draw: st.DrawFn) -> tuple[Snapshot, Policy]:
    """A rich snapshot whose queue repeats its jobs with other priorities, durations and
    submission order (look-alikes for the shape and behind memos)."""
    snapshot, policy = draw(rich())
    copies = []
    for index, job in enumerate(snapshot.pending * draw(st.integers(1, 3))):
        copies.append(
            dataclasses.replace(
                job,
                id=JobId(f"c{index}"),
                priority=draw(st.sampled_from((0, 0, 1))),
                seq=job.seq + index,
                duration_s=draw(st.sampled_from((None, 100.0, 5_000.0))),
            )
        )
    policy = draw(st.sampled_from((policy, POLICIES["fifo"])))
    return dataclasses.replace(snapshot, pending=(*snapshot.pending, *copies)), policy


@CACHE_SETTINGS
@given(look_alike_queues())
def test_the_pending_memos_never_change_decisions(case: tuple[Snapshot, Policy]) -> None:
    snapshot, policy = case
    memoised = cycle(snapshot, policy)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PendingMemo, "get", lambda *_args: None)
        assert cycle(snapshot, policy) == memoised


@CACHE_SETTINGS
@given(node_changes(), st.lists(st.tuples(st.integers(0, 11), st.integers(-2, 8)), max_size=12))
def test_a_working_copy_changes_apart_from_its_pool(
    case: tuple[list[NodeView], list[list[NodeView]]], changes: list[tuple[int, int]]
) -> None:
    # Copy on write: a working copy shares its pool's lists until it changes, then
    # holds exactly what a pool built from the changed nodes holds; its pool is untouched.
    nodes, _versions = case
    kept = build_pools(nodes)
    copies = [pool.copy() for pool in kept]
    before = copy.deepcopy(state_of(kept))
    free = {n.id: n.cards_free for n in nodes if n.schedulable}
    pool_of = {node: pool for pool in copies for node in pool.free_of}
    for index, cards in changes:
        node = nodes[index % len(nodes)]
        if node.id in pool_of:
            pool_of[node.id].set_free(node.id, cards)
            free[node.id] = cards
    changed = [dataclasses.replace(n, cards_free=free.get(n.id, n.cards_free)) for n in nodes]
    assert state_of(copies) == state_of(build_pools(changed))
    assert state_of(kept) == before


def test_fleet_facts_are_kept_while_only_free_cards_change() -> None:
    nodes = tuple(
        make_node(i, chip="ascend-910b" if i % 2 else "metax-c500", cards_total=8, cards_free=8)
        for i in range(1, 5)
    )
    cache = CycleCache()
    snapshot = dataclasses.replace(make_snapshot(nodes, ()), chip_units={"ascend-910b": 2.0})
    cache.pools(snapshot.nodes)
    facts = cache.fleet(snapshot)
    assert facts.units == 2 * 8 * 2.0 + 2 * 8 * 1.0
    assert facts.flavors == {("ascend", "ascend-910b"), ("metax", "metax-c500")}
    busy = dataclasses.replace(
        snapshot, nodes=(dataclasses.replace(nodes[0], cards_free=0), *nodes[1:])
    )
    cache.pools(busy.nodes)
    assert cache.fleet(busy) is facts
    cheaper = dataclasses.replace(busy, chip_units={"ascend-910b": 1.0})
    assert cache.fleet(cheaper).units == 4 * 8 * 1.0
    smaller = dataclasses.replace(cheaper, nodes=cheaper.nodes[:3])
    cache.pools(smaller.nodes)
    assert cache.fleet(smaller).units == 3 * 8 * 1.0


def test_a_tenant_without_quota_is_unlimited() -> None:
    nodes = (make_node(1, cards_total=8, cards_free=8),)
    snapshot = dataclasses.replace(
        make_snapshot(nodes, ()), quotas={TenantId("capped"): {UNITS: 4}}
    )
    ledger = QuotaLedger(snapshot)
    assert ledger.unlimited(TenantId("free"))
    assert not ledger.unlimited(TenantId("capped"))
