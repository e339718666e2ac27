"""Small builders of scheduler inputs for tests: nodes, jobs, queues, snapshots.

Every argument has a dull default so a test names only what it is about.
:func:`make_snapshot` takes running jobs' cards off their nodes, so a test states
each node's size and the work on it, not the arithmetic.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from suanwang.domain.chips import accepted_selectors
from suanwang.domain.ids import (
    ChipFamily,
    ChipName,
    ClusterName,
    JobId,
    NodeId,
    RegionName,
    TenantId,
)
from suanwang.scheduler import Admit, Decision, NodeView, Pending, PendingJob, Snapshot
from suanwang.scheduler.decisions import Placement, Preempt, StageDataset
from suanwang.scheduler.snapshot import (
    DatasetRef,
    FlavorQuota,
    RunningJob,
    TenantQueue,
    WanLinkView,
)

FAMILY_OF_CHIP: dict[str, str] = {
    "ascend-910b": "ascend",
    "ascend-310p": "ascend",
    "metax-c500": "metax",
    "hygon-k100": "hygon-dcu",
    "nvidia-h20": "nvidia",
}
FamilyTable = Mapping[str, Mapping[str, int]]
"""``{tenant: {family: cards}}`` with plain strings, as tests write quotas and usage."""
Summary = tuple[str, str, tuple[int, ...]]
"""``(job, cluster or pending reason, sorted node ids)``: see :func:`summarize`."""
REGION_OF_CLUSTER: dict[str, str] = {"c1": "r1", "c2": "r1", "c3": "r2", "sim": "r2"}


def make_node(
    node_id: int,
    *,
    cluster: str = "c1",
    region: str | None = None,
    chip: str = "ascend-910b",
    family: str | None = None,
    cards_total: int = 8,
    cards_free: int | None = None,
    simulated: bool = False,
    network_group: str = "",
    schedulable: bool = True,
) -> NodeView:
    """A node; region and family follow from cluster and chip unless given."""
    return NodeView(
        id=NodeId(node_id),
        name=f"node-{node_id}",
        cluster=ClusterName(cluster),
        region=RegionName(region or REGION_OF_CLUSTER.get(cluster, "r1")),
        simulated=simulated,
        chip=ChipName(chip),
        family=ChipFamily(family or FAMILY_OF_CHIP.get(chip, chip)),
        cards_total=cards_total,
        cards_free=cards_total if cards_free is None else cards_free,
        network_group=network_group,
        schedulable=schedulable,
    )


def make_job(
    job_id: str,
    *,
    tenant: str = "t1",
    priority: int = 0,
    seq: int = 0,
    chip: str = "ascend-910b",
    cards_per_node: int = 1,
    nodes: int = 1,
    simulated: bool = False,
    cluster: str | None = None,
    region: str | None = None,
    duration_s: float | None = None,
    max_runtime_s: float | None = None,
    speed: Mapping[str, float] | None = None,
    dataset: DatasetRef | None = None,
    submitted_at: float = 0.0,
    staging_to: str | None = None,
    chips: Sequence[str] | None = None,
) -> PendingJob:
    """A pending job asking for ``nodes`` x ``cards_per_node`` cards of ``chip`` (or of
    any of ``chips``, when given)."""
    return PendingJob(
        id=JobId(job_id),
        tenant=TenantId(tenant),
        priority=priority,
        seq=seq,
        chips=accepted_selectors(chips) if chips else (chip,),
        cards_per_node=cards_per_node,
        nodes=nodes,
        simulated=simulated,
        cluster=None if cluster is None else ClusterName(cluster),
        region=None if region is None else RegionName(region),
        duration_s=duration_s,
        max_runtime_s=max_runtime_s,
        speed={ChipName(c): v for c, v in (speed or {}).items()},
        dataset=dataset,
        submitted_at=submitted_at,
        staging_to=None if staging_to is None else RegionName(staging_to),
    )


def make_running(
    job_id: str,
    on: Mapping[int, int],
    *,
    tenant: str = "t1",
    priority: int = 0,
    cluster: str = "c1",
    chip: str = "ascend-910b",
    started_at: float = 0.0,
    expected_end: float | None = None,
    preemptible: bool = True,
    last_checkpoint_at: float | None = None,
    checkpoint_interval_s: float | None = None,
    preempted_for: str | None = None,
) -> RunningJob:
    """A running job holding ``on[node]`` cards of each node it runs on."""
    return RunningJob(
        id=JobId(job_id),
        tenant=TenantId(tenant),
        priority=priority,
        cluster=ClusterName(cluster),
        chip=ChipName(chip),
        family=ChipFamily(FAMILY_OF_CHIP.get(chip, chip)),
        placements=tuple(Placement(NodeId(n), cards) for n, cards in sorted(on.items())),
        started_at=started_at,
        expected_end=expected_end,
        preemptible=preemptible,
        last_checkpoint_at=last_checkpoint_at,
        checkpoint_interval_s=checkpoint_interval_s,
        preempted_for=None if preempted_for is None else JobId(preempted_for),
    )


QuotaRow = tuple[int, int | None, int | None]
"""``(nominal, borrowing limit, lending limit)`` as tests write a flavor quota."""


def make_queue(
    tenant: str,
    quotas: Mapping[str, QuotaRow | int],
    *,
    cohort: str | None = "co",
    weight: float = 1.0,
) -> TenantQueue:
    """A tenant queue; a bare int is a nominal quota with no borrowing, lend all."""
    flavors = {}
    for family, row in quotas.items():
        nominal, borrowing, lending = (row, 0, None) if isinstance(row, int) else row
        flavors[ChipFamily(family)] = FlavorQuota(nominal, borrowing, lending)
    return TenantQueue(TenantId(tenant), flavors, cohort=cohort, weight=weight)


def make_dataset(name: str, size_gb: float, *replicas: str) -> DatasetRef:
    """A dataset of ``size_gb`` GB (10^9 bytes) held in ``replicas``."""
    return DatasetRef(name, int(size_gb * 1e9), tuple(RegionName(r) for r in replicas))


def make_link(a: str, b: str, bandwidth_gbps: float = 10.0, rtt_ms: float = 0.0) -> WanLinkView:
    """A WAN link between regions ``a`` and ``b``."""
    return WanLinkView(RegionName(a), RegionName(b), bandwidth_gbps, rtt_ms)


def family_map(
    table: FamilyTable | None,
) -> dict[TenantId, dict[ChipFamily, int]]:
    """``{"t1": {"ascend": 8}}`` with the id types applied."""
    return {
        TenantId(tenant): {ChipFamily(f): cards for f, cards in per_family.items()}
        for tenant, per_family in (table or {}).items()
    }


def make_snapshot(
    nodes: Iterable[NodeView],
    jobs: Iterable[PendingJob],
    *,
    quotas: FamilyTable | None = None,
    usage: FamilyTable | None = None,
    now: float = 0.0,
    running: Iterable[RunningJob] = (),
    queues: Iterable[TenantQueue] = (),
    links: Iterable[WanLinkView] = (),
    chip_speed: Mapping[str, float] | None = None,
    chip_units: Mapping[str, float] | None = None,
) -> Snapshot:
    """A snapshot of the given nodes and jobs; running jobs' cards are taken off the
    nodes they run on."""
    running = tuple(running)
    taken: Counter[NodeId] = Counter()
    for job in running:
        taken.update({p.node: p.cards for p in job.placements})
    return Snapshot(
        now=now,
        nodes=tuple(
            dataclasses.replace(n, cards_free=n.cards_free - taken[n.id]) if taken[n.id] else n
            for n in nodes
        ),
        pending=tuple(jobs),
        quotas=family_map(quotas),
        usage=family_map(usage),
        running=running,
        queues={q.tenant: q for q in queues},
        links=tuple(links),
        chip_speed={ChipName(c): v for c, v in (chip_speed or {}).items()},
        chip_units={ChipName(c): v for c, v in (chip_units or {}).items()},
    )


def summarize(decision: Decision) -> Summary:
    """``(job, cluster or pending reason, sorted node ids)``: easy to compare in tables.

    A preemption reads ``(victim, "preempt for <job>", ())``, a staging
    ``(job, "stage <dataset> to <region>", ())``.
    """
    if isinstance(decision, Admit):
        return (decision.job, decision.cluster, tuple(sorted(p.node for p in decision.placements)))
    if isinstance(decision, Preempt):
        return (decision.job, f"preempt for {decision.for_job}", ())
    if isinstance(decision, StageDataset):
        return (decision.job, f"stage {decision.dataset} to {decision.target_region}", ())
    assert isinstance(decision, Pending)
    return (decision.job, decision.reason, ())


Brief = tuple[str, str]
"""``(job, what)``: ``what`` is ``cluster:chip`` for an admission, ``preempt:<for>``,
``stage:<region>``, or the Pending code: see :func:`brief`."""


def brief(decision: Decision) -> Brief:
    """A short, reason-free summary of a decision, for tables about *what* happens."""
    if isinstance(decision, Admit):
        return (decision.job, f"{decision.cluster}:{decision.chip}")
    if isinstance(decision, Preempt):
        return (decision.job, f"preempt:{decision.for_job}")
    if isinstance(decision, StageDataset):
        return (decision.job, f"stage:{decision.target_region}")
    assert isinstance(decision, Pending)
    return (decision.job, decision.code)
