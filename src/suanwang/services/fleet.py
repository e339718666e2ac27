"""Fleet use cases: apply a fleet file idempotently, list what exists, sum it up.

``apply`` is declarative for what the file names: regions, clusters and WAN links in the
file are created or updated in place, and a named cluster's node list becomes exactly the
file's. Clusters and regions the file does not name are left alone. A node that holds
running work is never deleted: the whole apply is refused, and nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from suanwang.domain.audit import AuditAction
from suanwang.domain.chips import Catalogue
from suanwang.domain.errors import Conflict
from suanwang.domain.fleet import (
    ClusterKind,
    ClusterSpec,
    FleetSpec,
    FleetTotals,
    NodeCapacity,
    WanLinkSpec,
    fleet_totals,
)
from suanwang.domain.records import NodeShape
from suanwang.domain.tenancy import LOCAL_OPERATOR, Principal
from suanwang.ports import Clock, UnitOfWork, UnitOfWorkFactory
from suanwang.services import audit, fleet_audit


@dataclass(slots=True)
class ApplyResult:
    """What an apply changed. Applying the same file twice gives an all-zero second result."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


def apply_fleet(
    uows: UnitOfWorkFactory, spec: FleetSpec, clock: Clock, actor: Principal = LOCAL_OPERATOR
) -> ApplyResult:
    """Make the stored fleet match ``spec`` for everything ``spec`` names, in one transaction
    (audited as ``actor``'s ``fleet.apply`` when it changes anything)."""
    result = ApplyResult()
    now = clock.now()
    with uows() as uow:
        uow.lock_scheduler()
        stored = fleet_audit.stored_state(uow, spec)
        _apply_regions(uow, spec, now, result)
        existing_clusters = {c.name: c for c in uow.fleet.clusters()}
        for cluster in spec.clusters:
            old = existing_clusters.get(cluster.name)
            same = old is not None and (
                old.region,
                old.kind,
                old.backend,
                old.description,
                old.connection,
            ) == (
                cluster.region,
                cluster.kind.value,
                cluster.backend,
                cluster.description,
                cluster.connection,
            )
            if not same:
                uow.fleet.put_cluster(cluster, now)
                (result.updated if old else result.created).append(f"cluster/{cluster.name}")
            else:
                result.unchanged += 1
            _apply_nodes(uow, cluster, result)
        _apply_links(uow, spec, result)
        if result.changed:
            before, after = fleet_audit.change_values(result, stored, fleet_audit.spec_state(spec))
            audit.record(
                uow,
                actor,
                AuditAction.FLEET_APPLY,
                None,
                tenant=None,
                at=now,
                before=before,
                after=after,
            )
            uow.commit()
    return result


def _apply_regions(uow: UnitOfWork, spec: FleetSpec, now: float, result: ApplyResult) -> None:
    existing = {r.name: r for r in uow.fleet.regions()}
    for region in spec.regions:
        old = existing.get(region.name)
        if old == region:
            result.unchanged += 1
            continue
        uow.fleet.put_region(region, now)
        (result.updated if old else result.created).append(f"region/{region.name}")


def _apply_nodes(uow: UnitOfWork, cluster: ClusterSpec, result: ApplyResult) -> None:
    current = {n.name: n for n in uow.fleet.nodes(cluster.name)}
    wanted = {n.name: n for n in cluster.nodes}
    gone = [current[name] for name in current if name not in wanted]
    busy = [n for n in gone if n.cards_used > 0]
    if busy:
        names = ", ".join(n.name for n in busy[:5])
        raise Conflict(
            f"cluster {cluster.name!r}: nodes with running work would be deleted: {names}",
            field=f"clusters.{cluster.name}.nodes",
            hint="keep these nodes in the file until their jobs end, or cancel the jobs",
        )
    uow.fleet.delete_nodes(cluster.name, [n.name for n in gone])
    result.deleted.extend(f"node/{cluster.name}/{n.name}" for n in gone)
    new = [n for n in cluster.nodes if n.name not in current]
    uow.fleet.add_nodes(cluster.name, new)
    result.created.extend(f"node/{cluster.name}/{n.name}" for n in new)
    for node in cluster.nodes:
        old = current.get(node.name)
        if old is None:
            continue
        if (old.chip, old.cards, old.network_group) == (node.chip, node.cards, node.network_group):
            result.unchanged += 1
            continue
        if old.cards_used > node.cards:
            raise Conflict(
                f"node {node.name!r} has {old.cards_used} cards in use; "
                f"cannot shrink to {node.cards}",
                field=f"clusters.{cluster.name}.nodes.{node.name}.cards",
                hint="wait for its jobs to end",
            )
        uow.fleet.put_node(cluster.name, node)
        result.updated.append(f"node/{cluster.name}/{node.name}")


def _apply_links(uow: UnitOfWork, spec: FleetSpec, result: ApplyResult) -> None:
    existing = {tuple(sorted((w.region_a, w.region_b))): w for w in uow.fleet.wan_links()}
    for link in spec.wan_links:
        key = tuple(sorted((link.region_a, link.region_b)))
        old = existing.get(key)
        same = old is not None and _link_values(old) == _link_values(link)
        if same:
            result.unchanged += 1
            continue
        uow.fleet.put_wan_link(link)
        (result.updated if old else result.created).append(f"wan-link/{key[0]}--{key[1]}")


def _link_values(link: WanLinkSpec) -> tuple[float, float, float, float | None]:
    return link.bandwidth_gbps, link.rtt_ms, link.distance_km, link.transfer_cap_bytes_per_s


def totals_of(
    shapes: list[NodeShape], catalogue: Catalogue
) -> tuple[FleetTotals, list[FleetTotals]]:
    """Fleet totals (overall, per region) from stored nodes, counted by shape."""
    capacities = (
        NodeCapacity(
            region=n.region,  # type: ignore[arg-type]
            cluster_kind=ClusterKind.SIMULATED if n.simulated else ClusterKind.REAL,
            chip=n.chip,  # type: ignore[arg-type]
            cards=n.total_cards,
        )
        for n in shapes
    )
    return fleet_totals(capacities, catalogue)
