"""Property tests of the scheduling cycle over random fleets, queues and quotas.

Two families of snapshots:

- *plain* ones (nodes, pending jobs, caps and usage, as the live control plane sends
  today) under the default policy: no node over-allocated or mismatched, no quota
  exceeded, gangs whole and in one (cluster, chip), decisions independent of input
  order, a second cycle on the updated snapshot admits nothing, and no Pending for a job
  a brute-force search could have placed at that point of the cycle;
- *rich* ones (running jobs, Kueue queues in a cohort, speeds, units, datasets, links)
  under every named policy: the same capacity and gang invariants counting running jobs
  minus preempted ones, no tenant above nominal + borrowing limit (nor a cohort above
  what it can lend, nor a cap), only lower-priority preemptible work or borrowed work
  preempted (non-preemptible work only beyond its tenant's nominal quota), determinism under shuffled inputs, and a second cycle after applying the
  decisions admits, preempts and stages nothing new.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from builders import (
    REGION_OF_CLUSTER,
    make_dataset,
    make_job,
    make_link,
    make_node,
    make_queue,
    make_running,
    make_snapshot,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.chips import ANY_CHIP
from suanwang.domain.ids import ChipFamily, ChipName, JobId, NodeId, TenantId
from suanwang.scheduler import Admit, Decision, NodeView, Pending, PendingJob, Snapshot, cycle
from suanwang.scheduler.cycle import NO_ELIGIBLE_CLUSTER
from suanwang.scheduler.decisions import Preempt, StageDataset
from suanwang.scheduler.hetero import planned_run_s
from suanwang.scheduler.policy import POLICIES, SUANWANG, Policy
from suanwang.scheduler.queues import order_pending
from suanwang.scheduler.quota import UNITS, caps_of
from suanwang.scheduler.snapshot import RunningJob, TenantQueue

CHIPS = ("ascend-910b", "ascend-310p", "metax-c500", "hygon-k100")
FAMILIES = ("ascend", "metax", "hygon-dcu")
SELECTORS = (*CHIPS, *FAMILIES, ANY_CHIP)
ACCEPTED_LISTS = (
    ("ascend-910b", "metax-c500"),
    ("metax", "hygon-k100"),
    ("ascend-310p", "hygon-dcu", "ascend-910b"),
    ("hygon-k100", "ascend"),
)
"""Several accepted chips (mixed chips and families), as jobs list them."""
CLUSTERS = ("c1", "c2", "c3")
TENANTS = ("t1", "t2", "t3")

REGIONS = tuple(sorted(set(REGION_OF_CLUSTER.values())))

PROPERTY_SETTINGS = settings(max_examples=100, deadline=None, database=None)
RICH_SETTINGS = settings(max_examples=150, deadline=None, database=None)

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
        (
            *SELECTORS,
            *FAMILIES,
            ANY_CHIP,
            *ACCEPTED_LISTS,
        ),  # selector, weighted to families and any
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
            **accepting(chip),
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


def accepting(selector: str | tuple[str, ...]) -> dict[str, Any]:
    """``make_job`` keywords for one selector or a list of accepted ones."""
    return {"chip": selector} if isinstance(selector, str) else {"chips": selector}


def node_accepts(node: NodeView, job: PendingJob) -> bool:
    """Reference eligibility, written independently of the scheduler's pools."""
    return (
        node.schedulable
        and node.simulated == job.simulated
        and any(s in (ANY_CHIP, node.chip, node.family) for s in job.chips)
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
    # In queue order, but for jobs the fair-share floor decides in the second pass.
    assert sorted(d.job for d in first) == sorted(j.id for j in snapshot.pending)
    no_floor = cycle(snapshot, dataclasses.replace(SUANWANG, share_floor=False))
    assert [d.job for d in no_floor] == [j.id for j in order_pending(snapshot.pending)]


@PROPERTY_SETTINGS
@given(snapshots())
def test_second_cycle_on_applied_snapshot_admits_nothing(snapshot: Snapshot) -> None:
    first = cycle(snapshot)
    after = apply_decisions(snapshot, first)
    assert all(n.cards_free >= 0 for n in after.nodes)
    second = cycle(after)
    assert not admits(second)
    reasons: dict[JobId, str] = {d.job: d.reason for d in first if isinstance(d, Pending)}
    # The same jobs wait (the fair-share floor may decide some in the cycle's second pass).
    assert sorted(d.job for d in second) == sorted(d.job for d in first if isinstance(d, Pending))
    for decision in second:
        assert isinstance(decision, Pending)
        before = reasons[decision.job]
        if before == NO_ELIGIBLE_CLUSTER or before.startswith("invalid"):
            assert decision.reason == before
        if before.startswith("too large"):  # or refused once earlier admissions count
            assert decision.reason == before or decision.reason.startswith("quota:")
        if before.startswith("quota:"):
            assert decision.reason.startswith("quota:")


def reference_fits(
    job: PendingJob,
    nodes: Iterable[NodeView],
    free: Mapping[NodeId, int],
    snapshot: Snapshot,
    extra: Table,
) -> tuple[bool, bool, bool, bool]:
    """Brute force: (any eligible node, any quota-allowed pool that could ever hold the
    gang, a gang fits somewhere allowed now, some eligible pool could ever hold it)."""
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

    def some_pool(members: Iterable[NodeView], cards_of: Mapping[NodeId, int]) -> bool:
        per_pool = Counter(
            (n.cluster, n.chip) for n in members if cards_of[n.id] >= job.cards_per_node
        )
        return any(count >= job.nodes for count in per_pool.values())

    total = {n.id: n.cards_total for n in eligible}
    return (
        bool(eligible),
        some_pool(allowed, total),
        some_pool(allowed, free),
        some_pool(eligible, total),
    )


@PROPERTY_SETTINGS
@given(snapshots())
def test_pending_only_when_brute_force_finds_no_placement(snapshot: Snapshot) -> None:
    free = {n.id: n.cards_free for n in snapshot.nodes}
    jobs = {j.id: j for j in snapshot.pending}
    extra: Table = {}
    for decision in cycle(snapshot):
        job = jobs[decision.job]
        any_eligible, allowed_capable, fits, capable = reference_fits(
            job, snapshot.nodes, free, snapshot, extra
        )
        if isinstance(decision, Admit):
            assert fits
            for placement in decision.placements:
                free[placement.node] -= placement.cards
            per_family = extra.setdefault(job.tenant, {})
            per_family[decision.family] = per_family.get(decision.family, 0) + sum(
                p.cards for p in decision.placements
            )
            continue
        assert isinstance(decision, Pending)
        if decision.reason == NO_ELIGIBLE_CLUSTER:
            assert not any_eligible
        elif decision.reason.startswith("quota:"):  # only refused pools could hold it
            assert any_eligible
            assert not allowed_capable
            assert capable or not any(
                node_accepts(n, job) and n.family not in snapshot.quotas.get(job.tenant, {})
                for n in snapshot.nodes
            )
        elif decision.reason.startswith("too large"):
            assert not capable
        else:
            assert allowed_capable
            assert not fits


# --- rich snapshots, every policy -----------------------------------------------------
NOW = 1_000.0
RICH_NODE = combos(CLUSTERS, CHIPS, (1, 2, 4, 8), ("", "g1"), (True, True, True, False))
RUNNING_FIELDS = combos(
    TENANTS,
    (0, 0, 1, 2),  # priority
    (True, True, True, False),  # preemptible
    (None, 1_500.0, 3_000.0, 500.0),  # expected_end (500: overdue)
    (None, 300.0),  # checkpoint interval
    (None, None, None, None, "j0", "gone"),  # preempted_for
    (1, 2, 4, 8),  # cards per node
    (1, 1, 1, 2),  # nodes
)
RICH_JOB = st.tuples(
    combos(("t1", "t1", "t2", "t2", "t3"), (0, 1, 2, 3, 3), range(6)),  # tenant, priority, seq
    combos(
        ("ascend", "metax", ANY_CHIP, ANY_CHIP, *CHIPS, *ACCEPTED_LISTS),  # selector
        (1, 1, 2, 4, 8),  # cards per node
        (1, 1, 1, 2),  # nodes
        (None,) * 8 + CLUSTERS,  # cluster pin
    ),
    combos(
        (None, 100.0, 1_000.0, 10_000.0),  # duration_s
        (None, None, 2_000.0),  # max_runtime_s
        (0, 0, 1, 2),  # speed table: none, fast ascend, metax can't run
        (None, None, None, "d"),  # dataset
        (None,) * 6 + REGIONS,  # staging_to
        (0.0, 0.0, 500.0),  # submitted_at
        (True, True, False),  # preemptible
    ),
)
SPEED_TABLES: tuple[dict[str, float], ...] = (
    {},
    {"ascend-910b": 4.0, "metax-c500": 0.5},
    {"metax-c500": 0.0},
)
QUOTA_FIELDS = combos(
    (0, 4, 4, 8, 16),  # nominal
    (None, None, 0, 4, 16),  # borrowing limit
    (None, None, 0, 4),  # lending limit
)
LENDER_FIELDS = combos((16, 16, 8), (0, None), (None, None, 8))  # t3: mostly an idle lender
UNIT_VALUES = (0.5, 1.0, 2.0)  # exact in binary: sums do not depend on order


@st.composite
def rich_fleet(draw: st.DrawFn) -> list[NodeView]:
    """1 to 16 real nodes, all cards free (running jobs take theirs in :func:`rich`)."""
    size = draw(st.integers(1, 16))
    fields = draw(st.lists(RICH_NODE, min_size=size, max_size=size))
    return [
        make_node(
            node_id,
            cluster=cluster,
            chip=chip,
            cards_total=total,
            network_group=group,
            schedulable=schedulable,
        )
        for node_id, (cluster, chip, total, group, schedulable) in enumerate(fields, 1)
    ]


def place_running(
    nodes: list[NodeView], rows: Sequence[tuple[Any, ...]], picks: Sequence[int]
) -> list[RunningJob]:
    """Running jobs on the fleet, each within the cards left on its nodes."""
    left = {n.id: n.cards_total for n in nodes}
    running: list[RunningJob] = []
    for index, (row, pick) in enumerate(zip(rows, picks, strict=True)):
        tenant, priority, preemptible, end, interval, stopping, per_node, count = row
        first = nodes[pick % len(nodes)]
        mates = [
            n
            for n in nodes
            if (n.cluster, n.chip) == (first.cluster, first.chip) and left[n.id] >= 1
        ]
        mates = sorted(mates, key=lambda n: (n.id != first.id, n.id))[:count]
        if len(mates) < count or not mates:
            continue
        cards = min(per_node, *(left[n.id] for n in mates))
        for node in mates:
            left[node.id] -= cards
        running.append(
            make_running(
                f"r{index}",
                {n.id: cards for n in mates},
                tenant=tenant,
                priority=priority,
                cluster=first.cluster,
                chip=first.chip,
                started_at=100.0 * index,
                expected_end=end,
                preemptible=preemptible,
                checkpoint_interval_s=interval,
                preempted_for=stopping,
            )
        )
    return running


@st.composite
def rich_jobs(draw: st.DrawFn) -> list[PendingJob]:
    """0 to 12 pending jobs with durations, speeds, datasets and staging."""
    rows = draw(st.lists(RICH_JOB, max_size=12))
    replicas = draw(st.sampled_from([("r1",), ("r2",), ("r1", "r2")]))
    dataset = make_dataset("d", 100, *replicas)
    jobs = []
    for index, (who, ask, extra) in enumerate(rows):
        tenant, priority, seq = who
        chip, per_node, nodes, cluster = ask
        duration, max_runtime, speed, data, staging, submitted, preemptible = extra
        job = make_job(
            f"j{index}",
            tenant=tenant,
            priority=priority,
            seq=seq,
            **accepting(chip),
            cards_per_node=per_node,
            nodes=nodes,
            cluster=cluster,
            duration_s=duration,
            max_runtime_s=max_runtime,
            speed=SPEED_TABLES[speed],
            dataset=None if data is None else dataset,
            submitted_at=submitted,
            staging_to=staging,
        )
        jobs.append(dataclasses.replace(job, preemptible=preemptible))
    return jobs


@st.composite
def tenant_queues(draw: st.DrawFn) -> list[TenantQueue]:
    """Queues for some tenants, mostly in one cohort, some with a units quota."""
    found = []
    for tenant in TENANTS:
        if draw(st.integers(0, 3)) == 0:
            continue
        families = draw(st.lists(st.sampled_from(FAMILIES), unique=True, max_size=3))
        fields = LENDER_FIELDS if tenant == "t3" else QUOTA_FIELDS
        rows: dict[str, Any] = {f: draw(fields) for f in families}
        if draw(st.integers(0, 4)) == 0:
            rows["units"] = draw(QUOTA_FIELDS)
        cohort = draw(st.sampled_from(["co", "co", "co", None]))
        found.append(make_queue(tenant, rows, cohort=cohort, weight=draw(st.sampled_from([1, 2]))))
    return found


@st.composite
def rich(draw: st.DrawFn) -> tuple[Snapshot, Policy]:
    """A rich snapshot and the policy to run it under."""
    nodes = draw(rich_fleet())
    rows = draw(st.lists(RUNNING_FIELDS, max_size=12))
    picks = draw(st.lists(st.integers(0, 64), min_size=len(rows), max_size=len(rows)))
    links = draw(st.sampled_from([[make_link("r1", "r2", 10.0, 30.0)], []]))
    speeds = draw(st.dictionaries(st.sampled_from(CHIPS), st.sampled_from([0.5, 1.0, 2.0])))
    units = draw(st.dictionaries(st.sampled_from(CHIPS), st.sampled_from(UNIT_VALUES)))
    snapshot = make_snapshot(
        nodes,
        draw(rich_jobs()),
        quotas={
            t: {str(f): c for f, c in caps.items()} for t, caps in draw(family_tables(24)).items()
        },
        now=NOW,
        running=place_running(nodes, rows, picks),
        queues=draw(tenant_queues()),
        links=links,
        chip_speed=speeds,
        chip_units=units,
    )
    floor = dataclasses.replace(SUANWANG, share_floor=True)  # the switch, off by default
    return snapshot, draw(st.sampled_from([*reversed(POLICIES.values()), floor]))


def dims_of(
    chip: str, family: ChipFamily, cards: int, units: Mapping[ChipName, float]
) -> dict[ChipFamily, float]:
    return {family: float(cards), UNITS: cards * units.get(ChipName(chip), 1.0)}


def holdings(snapshot: Snapshot, decisions: Sequence[Decision]) -> dict[TenantId, Counter[str]]:
    """Cards (and units) per tenant after the cycle: running minus preempted (now or
    earlier: stopping jobs' quota already went to their preemptor) plus admitted."""
    jobs = {j.id: j for j in snapshot.pending}
    victims = {d.job for d in decisions if isinstance(d, Preempt)}
    result: dict[TenantId, Counter[str]] = {}
    for job in snapshot.running:
        if job.id not in victims and job.preempted_for is None:
            cards = sum(p.cards for p in job.placements)
            result.setdefault(job.tenant, Counter()).update(
                dims_of(job.chip, job.family, cards, snapshot.chip_units)
            )
    for admit in admits(decisions):
        cards = sum(p.cards for p in admit.placements)
        result.setdefault(jobs[admit.job].tenant, Counter()).update(
            dims_of(admit.chip, admit.family, cards, snapshot.chip_units)
        )
    return result


def admitted_dims(snapshot: Snapshot, decisions: Sequence[Decision]) -> set[tuple[TenantId, str]]:
    jobs = {j.id: j for j in snapshot.pending}
    found: set[tuple[TenantId, str]] = set()
    for admit in admits(decisions):
        if sum(p.cards for p in admit.placements):
            found |= {(jobs[admit.job].tenant, admit.family), (jobs[admit.job].tenant, UNITS)}
    return found


def check_rich_capacity(snapshot: Snapshot, decisions: Sequence[Decision], policy: Policy) -> None:
    """Admissions fit the free cards left by running jobs (victims still hold theirs),
    on nodes the job may use, gang whole; data-aware jobs start where their data is."""
    check_capacity_and_eligibility(snapshot, decisions)
    check_gangs(snapshot, decisions)
    jobs = {j.id: j for j in snapshot.pending}
    regions = {n.id: n.region for n in snapshot.nodes}
    for admit in admits(decisions):
        job = jobs[admit.job]
        speed = job.speed.get(admit.chip, snapshot.chip_speed.get(admit.chip, 1.0))
        assert speed > 0
        if policy.data_aware and job.dataset is not None:
            assert regions[admit.placements[0].node] in job.dataset.replicas


def check_rich_quotas(snapshot: Snapshot, decisions: Sequence[Decision], policy: Policy) -> None:
    """No tenant ends above what its queue or cap allows in a dimension it was admitted
    in, and no cohort lends more than it has."""
    held = holdings(snapshot, decisions)
    families = {n.family for n in snapshot.nodes}
    cohort_dims: set[tuple[str, str]] = set()
    for tenant, dim in admitted_dims(snapshot, decisions):
        queue = snapshot.queues.get(tenant)
        amount = held[tenant][dim]
        if queue is None or policy.quotas == "caps":
            caps: Mapping[Any, Any] = snapshot.quotas.get(tenant, {})
            if queue is not None and tenant not in snapshot.quotas:
                caps = caps_of(queue, families)
            cap = caps.get(dim)
            assert cap is None or amount <= cap + 1e-9
            continue
        quota = queue.quotas.get(ChipFamily(dim))
        if quota is None:
            assert dim == UNITS or UNITS in queue.quotas
            continue
        limit = float(quota.nominal)
        if queue.cohort is not None:
            borrow = quota.borrowing_limit
            limit = float("inf") if borrow is None else limit + borrow
            cohort_dims.add((queue.cohort, dim))
        assert amount <= limit + 1e-9
    for cohort, dim in cohort_dims:
        members = [q for q in snapshot.queues.values() if q.cohort == cohort]
        lendable = lent = 0.0
        for queue in members:
            quota = queue.quotas.get(ChipFamily(dim))
            if quota is not None:
                lends = quota.nominal if quota.lending_limit is None else quota.lending_limit
                lends = min(lends, quota.nominal)
                lendable += lends
                lent += max(0.0, held.get(queue.tenant, Counter())[dim] - (quota.nominal - lends))
        assert lent <= lendable + 1e-9


def protected_holding(snapshot: Snapshot, tenant: TenantId) -> Counter[str]:
    """Cards (and units) the tenant's non-preemptible running jobs hold, stopping ones
    left out."""
    held: Counter[str] = Counter()
    for job in snapshot.running:
        if job.tenant == tenant and not job.preemptible and job.preempted_for is None:
            cards = sum(p.cards for p in job.placements)
            held.update(dims_of(job.chip, job.family, cards, snapshot.chip_units))
    return held


def check_preemptions(snapshot: Snapshot, decisions: Sequence[Decision], policy: Policy) -> None:
    """Only preemptible, lower-priority work of the tenant or borrowed work of the cohort
    (non-preemptible work only while the tenant's non-preemptible jobs alone hold more
    than its nominal quota), each victim once, for a pending job that is not admitted in
    the same cycle."""
    preempts = [d for d in decisions if isinstance(d, Preempt)]
    if not policy.preemption:
        assert not preempts
        return
    running = {r.id: r for r in snapshot.running}
    jobs = {j.id: j for j in snapshot.pending}
    admitted = {a.job for a in admits(decisions)}
    assert len({p.job for p in preempts}) == len(preempts)
    grown = holdings(snapshot, [d for d in decisions if isinstance(d, Admit)])
    for preempt in preempts:
        victim, job = running[preempt.job], jobs[preempt.for_job]
        assert victim.preempted_for is None
        assert job.id not in admitted
        assert preempt.reason
        if victim.tenant == job.tenant:
            assert victim.preemptible
            assert victim.priority < job.priority
            continue
        mine, theirs = snapshot.queues.get(job.tenant), snapshot.queues.get(victim.tenant)
        if policy.share_floor and (theirs is None or not theirs.quotas):
            check_floor_victim(snapshot, victim, job, preempt)
            continue
        assert mine is not None
        assert theirs is not None
        assert mine.cohort is not None
        assert mine.cohort == theirs.cohort
        assert policy.quotas == "kueue"
        most = grown[victim.tenant]  # an upper bound of its holding at the time
        if not victim.preemptible:
            most = protected_holding(snapshot, victim.tenant)
        borrowing = [
            dim
            for dim in (victim.family, UNITS)
            if dim in theirs.quotas and most[dim] > theirs.quotas[ChipFamily(dim)].nominal
        ]
        assert borrowing


def check_floor_victim(
    snapshot: Snapshot, victim: RunningJob, job: PendingJob, preempt: Preempt
) -> None:
    """A fair-share floor preemption: preemptible work of no higher priority, of a tenant
    without nominal quotas holding more than its fair share of the fleet's units."""
    assert victim.preemptible
    assert victim.priority <= job.priority
    assert preempt.reason.startswith("fair share")
    units = snapshot.chip_units
    fleet = sum(n.cards_total * units.get(n.chip, 1.0) for n in snapshot.nodes)
    active = {j.tenant for j in snapshot.pending} | {r.tenant for r in snapshot.running}
    weight = {t: q.weight for t, q in snapshot.queues.items()}
    total = sum(weight.get(t, 1.0) for t in active)
    held = sum(
        sum(p.cards for p in r.placements) * units.get(r.chip, 1.0)
        for r in snapshot.running
        if r.tenant == victim.tenant and r.preempted_for is None
    )
    assert held > fleet * weight.get(victim.tenant, 1.0) / total


@RICH_SETTINGS
@given(rich())
def test_rich_cycles_keep_every_invariant(case: tuple[Snapshot, Policy]) -> None:
    snapshot, policy = case
    decisions = cycle(snapshot, policy)
    check_rich_capacity(snapshot, decisions, policy)
    check_rich_quotas(snapshot, decisions, policy)
    check_preemptions(snapshot, decisions, policy)
    decided = [d.job for d in decisions if isinstance(d, Admit | Pending)]
    assert sorted(decided) == sorted(j.id for j in snapshot.pending)


@RICH_SETTINGS
@given(rich(), st.lists(st.sampled_from(ACCEPTED_LISTS + tuple((c,) for c in CHIPS)), min_size=12))
def test_a_job_is_never_placed_on_a_chip_outside_its_accepted_list(
    case: tuple[Snapshot, Policy], lists: list[tuple[str, ...]]
) -> None:
    """Every pending job gets a list of accepted chips; under every policy each admission
    is on one of them (by chip name or family), and the decision names that chip."""
    snapshot, policy = case
    accepted = {job.id: lists[i] for i, job in enumerate(snapshot.pending)}
    pending = tuple(dataclasses.replace(j, chips=accepted[j.id]) for j in snapshot.pending)
    snapshot = dataclasses.replace(snapshot, pending=pending)
    nodes = {n.id: n for n in snapshot.nodes}
    for admit in admits(cycle(snapshot, policy)):
        chips = accepted[admit.job]
        assert admit.chip in chips or admit.family in chips, (admit, chips)
        assert {(nodes[p.node].chip, nodes[p.node].family) for p in admit.placements} == {
            (admit.chip, admit.family)
        }


@RICH_SETTINGS
@given(rich(), st.randoms(use_true_random=False))
def test_rich_cycles_are_deterministic(case: tuple[Snapshot, Policy], rnd: random.Random) -> None:
    snapshot, policy = case
    first = cycle(snapshot, policy)
    pending, nodes, running = list(snapshot.pending), list(snapshot.nodes), list(snapshot.running)
    queue_items = list(snapshot.queues.items())
    for part in (pending, nodes, running, queue_items):
        rnd.shuffle(part)
    shuffled = dataclasses.replace(
        snapshot,
        pending=tuple(pending),
        nodes=tuple(nodes),
        running=tuple(running),
        queues=dict(queue_items),
    )
    assert cycle(snapshot, policy) == first
    assert cycle(shuffled, policy) == first


def applied(snapshot: Snapshot, decisions: Sequence[Decision]) -> Snapshot:
    """The snapshot once the decisions are acted on and before anything else happens:
    admitted jobs run, victims are stopping, staged jobs wait for their data."""
    jobs = {j.id: j for j in snapshot.pending}
    taken: Counter[NodeId] = Counter()
    started: list[RunningJob] = []
    for admit in admits(decisions):
        job = jobs.pop(admit.job)
        taken.update({p.node: p.cards for p in admit.placements})
        planned = planned_run_s(job, admit.chip, snapshot.chip_speed)
        started.append(
            RunningJob(
                id=job.id,
                tenant=job.tenant,
                priority=job.priority,
                cluster=admit.cluster,
                chip=admit.chip,
                family=admit.family,
                placements=admit.placements,
                started_at=snapshot.now,
                expected_end=None if planned is None else snapshot.now + planned,
                preemptible=job.preemptible,
                checkpoint_interval_s=job.checkpoint_interval_s,
            )
        )
    stopping = {d.job: d.for_job for d in decisions if isinstance(d, Preempt)}
    staged = {d.job: d.target_region for d in decisions if isinstance(d, StageDataset)}
    return dataclasses.replace(
        snapshot,
        nodes=tuple(
            dataclasses.replace(n, cards_free=n.cards_free - taken[n.id]) for n in snapshot.nodes
        ),
        pending=tuple(
            dataclasses.replace(j, staging_to=staged[j.id]) if j.id in staged else j
            for j in jobs.values()
        ),
        running=tuple(
            dataclasses.replace(r, preempted_for=stopping[r.id]) if r.id in stopping else r
            for r in snapshot.running
        )
        + tuple(started),
    )


@RICH_SETTINGS
@given(rich())
def test_rich_cycle_with_nothing_new_changes_nothing(case: tuple[Snapshot, Policy]) -> None:
    snapshot, policy = case
    after = applied(snapshot, cycle(snapshot, policy))
    assert all(n.cards_free >= 0 for n in after.nodes if n.cards_free != n.cards_total)
    second = cycle(after, policy)
    assert [d for d in second if not isinstance(d, Pending)] == []
