"""Property tests of the scheduling cycle over random fleets, queues and quotas.

The invariants: no node over-allocated or mismatched, no quota exceeded, gangs whole and
in one (cluster, chip), decisions independent of input order, a second cycle on the
updated snapshot admits nothing, and no Pending for a job a brute-force search could
have placed at that point of the cycle.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from builders import REGION_OF_CLUSTER, make_job, make_node
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.chips import ANY_CHIP
from suanwang.domain.ids import ChipFamily, JobId, NodeId, TenantId
from suanwang.scheduler import Admit, Decision, NodeView, Pending, PendingJob, Snapshot, cycle
from suanwang.scheduler.cycle import NO_ELIGIBLE_CLUSTER
from suanwang.scheduler.queues import order_pending

CHIPS = ("ascend-910b", "ascend-310p", "metax-c500", "hygon-k100")
FAMILIES = ("ascend", "metax", "hygon-dcu")
SELECTORS = (*CHIPS, *FAMILIES, ANY_CHIP)
CLUSTERS = ("c1", "c2", "c3")
TENANTS = ("t1", "t2", "t3")

REGIONS = tuple(sorted(set(REGION_OF_CLUSTER.values())))

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)

Table = dict[TenantId, dict[ChipFamily, int]]


def combos(*choices: Sequence[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    """One draw picks a whole combination of field values.

    Hypothesis pays per draw; drawing whole rows keeps the file well under 20 s, and
    rows shrink towards the first value of every field. Repeat a value to weight it.
    """
    return st.sampled_from(tuple(itertools.product(*choices)))


NODE_FIELDS = combos(
    CLUSTERS,
    CHIPS,
    (1, 2, 4, 8),  # cards_total
    (None, None, 0, 1, 2, 3, 4, 5, 6, 7, 8),  # cards_free: None is all, else capped
    ("", "g1", "g2"),  # network_group
    (True, True, True, False),  # schedulable
)
JOB_FIELDS = st.tuples(
    combos(
        (False, False, False, True),  # simulated
        TENANTS,
        range(4),  # priority
        range(6),  # seq
    ),
    combos(
        (*SELECTORS, *FAMILIES, ANY_CHIP),  # selector, weighted to families and any
        (0, 1, 1, 2, 2, 4, 8),  # cards_per_node, at least 1 for real jobs
        (1, 1, 1, 2, 2, 3, 4),  # nodes
    ),
    combos((None,) * 6 + CLUSTERS, (None,) * 6 + REGIONS),  # pins
).map(lambda parts: parts[0] + parts[1] + parts[2])
SIMULATED_CLUSTERS = st.sampled_from(((), ("c3",), ("c3",), ("c2", "c3")))


@st.composite
def fleets(draw: st.DrawFn) -> list[NodeView]:
    """1 to 30 nodes over three clusters (each real or simulated) and four chips."""
    simulated_clusters = draw(SIMULATED_CLUSTERS)
    size = draw(st.integers(1, 30))  # plain lists would be mostly tiny
    fields = draw(st.lists(NODE_FIELDS, min_size=size, max_size=size))
    return [
        make_node(
            node_id,
            cluster=cluster,
            chip=chip,
            cards_total=total,
            cards_free=total if free is None else min(free, total),
            simulated=cluster in simulated_clusters,
            network_group=group,
            schedulable=schedulable,
        )
        for node_id, (cluster, chip, total, free, group, schedulable) in enumerate(fields, 1)
    ]


@st.composite
def queues(draw: st.DrawFn) -> list[PendingJob]:
    """0 to 15 valid pending jobs with mixed selectors, sizes, priorities and pins."""
    fields = draw(st.lists(JOB_FIELDS, max_size=15))
    return [
        make_job(
            f"j{index}",
            tenant=tenant,
            priority=priority,
            seq=seq,
            chip=chip,
            cards_per_node=cards if simulated else max(cards, 1),
            nodes=nodes,
            simulated=simulated,
            cluster=cluster,
            region=region,
        )
        for index, (
            simulated,
            tenant,
            priority,
            seq,
            chip,
            cards,
            nodes,
            cluster,
            region,
        ) in enumerate(fields)
    ]


def family_tables(max_cards: int) -> st.SearchStrategy[Table]:
    """``{tenant: {family: cards}}`` maps with some tenants and families missing."""
    families = st.dictionaries(
        st.sampled_from(FAMILIES).map(ChipFamily), st.integers(0, max_cards), max_size=3
    )
    return st.dictionaries(st.sampled_from(TENANTS).map(TenantId), families, max_size=3)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    """A random snapshot: fleet, queue, quotas (0-32 cards) and usage (0-16 cards)."""
    return Snapshot(
        now=0.0,
        nodes=tuple(draw(fleets())),
        pending=tuple(draw(queues())),
        quotas=draw(family_tables(32)),
        usage=draw(family_tables(16)),
    )


def admits(decisions: Iterable[Decision]) -> list[Admit]:
    return [d for d in decisions if isinstance(d, Admit)]


def node_accepts(node: NodeView, job: PendingJob) -> bool:
    """Reference eligibility, written independently of the scheduler's pools."""
    return (
        node.schedulable
        and node.simulated == job.simulated
        and job.chip in (ANY_CHIP, node.chip, node.family)
        and job.cluster in (None, node.cluster)
        and job.region in (None, node.region)
    )


def held(
    table: Mapping[TenantId, Mapping[ChipFamily, int]], tenant: TenantId, family: ChipFamily
) -> int:
    return table.get(tenant, {}).get(family, 0)


def apply_decisions(snapshot: Snapshot, decisions: Sequence[Decision]) -> Snapshot:
    """The snapshot after the admissions: cards taken, usage grown, admitted jobs gone."""
    taken: Counter[NodeId] = Counter()
    usage: Table = {t: dict(per_family) for t, per_family in snapshot.usage.items()}
    jobs = {j.id: j for j in snapshot.pending}
    for admit in admits(decisions):
        taken.update({p.node: p.cards for p in admit.placements})
        per_family = usage.setdefault(jobs[admit.job].tenant, {})
        cards = sum(p.cards for p in admit.placements)
        per_family[admit.family] = per_family.get(admit.family, 0) + cards
    admitted = {a.job for a in admits(decisions)}
    return dataclasses.replace(
        snapshot,
        nodes=tuple(
            dataclasses.replace(n, cards_free=n.cards_free - taken[n.id]) for n in snapshot.nodes
        ),
        pending=tuple(j for j in snapshot.pending if j.id not in admitted),
        usage=usage,
    )


def check_capacity_and_eligibility(snapshot: Snapshot, decisions: Sequence[Decision]) -> None:
    """(a) Placements only on matching schedulable nodes, never beyond their free cards."""
    nodes = {n.id: n for n in snapshot.nodes}
    jobs = {j.id: j for j in snapshot.pending}
    taken: Counter[NodeId] = Counter()
    for admit in admits(decisions):
        for placement in admit.placements:
            node = nodes[placement.node]
            assert node_accepts(node, jobs[admit.job])
            assert (node.cluster, node.chip, node.family) == (
                admit.cluster,
                admit.chip,
                admit.family,
            )
            taken[node.id] += placement.cards
    assert all(cards <= nodes[node_id].cards_free for node_id, cards in taken.items() if cards)


def check_quotas(snapshot: Snapshot, decisions: Sequence[Decision]) -> None:
    """(b) Usage plus this cycle's admissions stays within every quota."""
    jobs = {j.id: j for j in snapshot.pending}
    admitted: Counter[tuple[TenantId, ChipFamily]] = Counter()
    for admit in admits(decisions):
        admitted[(jobs[admit.job].tenant, admit.family)] += sum(p.cards for p in admit.placements)
    for (tenant, family), cards in admitted.items():
        cap = snapshot.quotas.get(tenant, {}).get(family)
        if cap is not None and cards > 0:
            assert held(snapshot.usage, tenant, family) + cards <= cap


def check_gangs(snapshot: Snapshot, decisions: Sequence[Decision]) -> None:
    """(d) Each admission has ``nodes`` distinct nodes of one cluster and chip, each
    with exactly ``cards_per_node`` cards."""
    nodes = {n.id: n for n in snapshot.nodes}
    jobs = {j.id: j for j in snapshot.pending}
    for admit in admits(decisions):
        job = jobs[admit.job]
        placed = [nodes[p.node] for p in admit.placements]
        assert len(placed) == job.nodes == len({n.id for n in placed})
        assert all(p.cards == job.cards_per_node for p in admit.placements)
        assert {(n.cluster, n.chip) for n in placed} == {(admit.cluster, admit.chip)}


@PROPERTY_SETTINGS
@given(snapshots())
def test_admissions_respect_capacity_eligibility_quotas_and_gangs(snapshot: Snapshot) -> None:
    """(a), (b) and (d) on one cycle: checking them together halves generation time."""
    decisions = cycle(snapshot)
    check_capacity_and_eligibility(snapshot, decisions)
    check_quotas(snapshot, decisions)
    check_gangs(snapshot, decisions)


@PROPERTY_SETTINGS
@given(snapshots(), st.randoms(use_true_random=False))
def test_same_snapshot_same_decisions_whatever_the_input_order(
    snapshot: Snapshot, rnd: random.Random
) -> None:
    first = cycle(snapshot)
    assert cycle(snapshot) == first
    shuffled_jobs, shuffled_nodes = list(snapshot.pending), list(snapshot.nodes)
    rnd.shuffle(shuffled_jobs)
    rnd.shuffle(shuffled_nodes)
    shuffled = dataclasses.replace(
        snapshot, pending=tuple(shuffled_jobs), nodes=tuple(shuffled_nodes)
    )
    assert cycle(shuffled) == first
    assert [d.job for d in first] == [j.id for j in order_pending(snapshot.pending)]


@PROPERTY_SETTINGS
@given(snapshots())
def test_second_cycle_on_applied_snapshot_admits_nothing(snapshot: Snapshot) -> None:
    first = cycle(snapshot)
    after = apply_decisions(snapshot, first)
    assert all(n.cards_free >= 0 for n in after.nodes)
    second = cycle(after)
    assert not admits(second)
    reasons: dict[JobId, str] = {d.job: d.reason for d in first if isinstance(d, Pending)}
    assert [d.job for d in second] == [d.job for d in first if isinstance(d, Pending)]
    for decision in second:
        assert isinstance(decision, Pending)
        before = reasons[decision.job]
        if before == NO_ELIGIBLE_CLUSTER or before.startswith(("invalid", "too large")):
            assert decision.reason == before
        if before.startswith("quota:"):
            assert decision.reason.startswith("quota:")


def reference_fits(
    job: PendingJob,
    nodes: Iterable[NodeView],
    free: Mapping[NodeId, int],
    snapshot: Snapshot,
    extra: Table,
) -> tuple[bool, bool, bool]:
    """Brute force: (any eligible node, any quota-allowed family, a gang fits somewhere)."""
    eligible = [n for n in nodes if node_accepts(n, job)]
    cards = job.cards_per_node * job.nodes
    allowed = []
    for node in eligible:
        cap = snapshot.quotas.get(job.tenant, {}).get(node.family)
        holding = held(snapshot.usage, job.tenant, node.family) + held(
            extra, job.tenant, node.family
        )
        if cap is None or cards == 0 or holding + cards <= cap:
            allowed.append(node)
    per_pool = Counter((n.cluster, n.chip) for n in allowed if free[n.id] >= job.cards_per_node)
    return bool(eligible), bool(allowed), any(count >= job.nodes for count in per_pool.values())


@PROPERTY_SETTINGS
@given(snapshots())
def test_pending_only_when_brute_force_finds_no_placement(snapshot: Snapshot) -> None:
    free = {n.id: n.cards_free for n in snapshot.nodes}
    jobs = {j.id: j for j in snapshot.pending}
    extra: Table = {}
    for decision in cycle(snapshot):
        job = jobs[decision.job]
        any_eligible, any_allowed, fits = reference_fits(job, snapshot.nodes, free, snapshot, extra)
        if isinstance(decision, Admit):
            assert fits
            for placement in decision.placements:
                free[placement.node] -= placement.cards
            per_family = extra.setdefault(job.tenant, {})
            per_family[decision.family] = per_family.get(decision.family, 0) + sum(
                p.cards for p in decision.placements
            )
        elif decision.reason == NO_ELIGIBLE_CLUSTER:
            assert not any_eligible
        elif decision.reason.startswith("quota:"):
            assert any_eligible
            assert not any_allowed
        else:
            assert any_allowed
            assert not fits
