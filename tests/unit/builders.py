"""Small builders of scheduler inputs for tests: nodes, pending jobs, snapshots.

Every argument has a dull default so a test names only what it is about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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
) -> PendingJob:
    """A pending job asking for ``nodes`` x ``cards_per_node`` cards of ``chip``."""
    return PendingJob(
        id=JobId(job_id),
        tenant=TenantId(tenant),
        priority=priority,
        seq=seq,
        chip=chip,
        cards_per_node=cards_per_node,
        nodes=nodes,
        simulated=simulated,
        cluster=None if cluster is None else ClusterName(cluster),
        region=None if region is None else RegionName(region),
    )


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
) -> Snapshot:
    """A snapshot of the given nodes and pending jobs, quotas and usage."""
    return Snapshot(
        now=now,
        nodes=tuple(nodes),
        pending=tuple(jobs),
        quotas=family_map(quotas),
        usage=family_map(usage),
    )


def summarize(decision: Decision) -> Summary:
    """``(job, cluster or pending reason, sorted node ids)``: easy to compare in tables."""
    if isinstance(decision, Admit):
        return (decision.job, decision.cluster, tuple(sorted(p.node for p in decision.placements)))
    assert isinstance(decision, Pending)
    return (decision.job, decision.reason, ())
