"""The fleet as declared: regions, clusters, nodes and the WAN links between regions.

A :class:`FleetSpec` is what an operator writes in a fleet file; :func:`validate_fleet`
checks it against the chip catalogue; :func:`fleet_totals` sums cards and PFLOPS.
Parsing YAML and storing rows happen elsewhere.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from suanwang.domain.chips import Catalogue
from suanwang.domain.connections import Connection, check_connection
from suanwang.domain.errors import ValidationError
from suanwang.domain.ids import ChipName, ClusterName, RegionName

MAX_CARDS_PER_NODE = 64


class ClusterKind(enum.StrEnum):
    """Whether a cluster's jobs really run (``real``) or run on the simulated clock."""

    REAL = "real"
    SIMULATED = "simulated"


BACKENDS_BY_KIND: dict[ClusterKind, frozenset[str]] = {
    ClusterKind.REAL: frozenset({"local", "ray", "slurm", "kubernetes"}),
    ClusterKind.SIMULATED: frozenset({"simulated"}),
}


@dataclass(frozen=True, slots=True)
class RegionSpec:
    name: RegionName
    display_name: str


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    chip: ChipName
    cards: int
    network_group: str = ""


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    name: ClusterName
    region: RegionName
    kind: ClusterKind
    backend: str
    nodes: tuple[NodeSpec, ...]
    description: str = ""
    connection: Connection | None = None
    """How to reach the cluster's engine (ray/slurm/kubernetes); None for local/simulated."""


@dataclass(frozen=True, slots=True)
class WanLinkSpec:
    region_a: RegionName
    region_b: RegionName
    bandwidth_gbps: float
    rtt_ms: float
    distance_km: float
    transfer_cap_bytes_per_s: float | None = None
    """The operator's cap on dataset transfers over this link, shared by all of them."""


@dataclass(frozen=True, slots=True)
class FleetSpec:
    regions: tuple[RegionSpec, ...]
    clusters: tuple[ClusterSpec, ...]
    wan_links: tuple[WanLinkSpec, ...] = ()


def _unique(names: Iterable[str], what: str, field: str) -> None:
    dupes = [n for n, count in Counter(names).items() if count > 1]
    if dupes:
        raise ValidationError(f"duplicate {what} {dupes[0]!r}", field=field)


def _check_cluster(cluster: ClusterSpec, index: int, catalogue: Catalogue) -> None:
    where = f"clusters[{index}]"
    allowed = BACKENDS_BY_KIND[cluster.kind]
    if cluster.backend not in allowed:
        raise ValidationError(
            f"cluster {cluster.name!r} of kind {cluster.kind} "
            f"cannot use backend {cluster.backend!r}",
            field=f"{where}.backend",
            hint=f"use one of: {', '.join(sorted(allowed))}",
        )
    check_connection(cluster.backend, cluster.connection, where)
    _unique((n.name for n in cluster.nodes), "node", f"{where}.nodes")
    for j, node in enumerate(cluster.nodes):
        catalogue.get(node.chip, field_name=f"{where}.nodes[{j}].chip")
        if not 1 <= node.cards <= MAX_CARDS_PER_NODE:
            raise ValidationError(
                f"node {node.name!r} has {node.cards} cards",
                field=f"{where}.nodes[{j}].cards",
                hint=f"a node has between 1 and {MAX_CARDS_PER_NODE} cards",
            )


def validate_fleet(spec: FleetSpec, catalogue: Catalogue) -> FleetSpec:
    """Check names, references and chips; return the spec unchanged or raise ValidationError."""
    _unique((r.name for r in spec.regions), "region", "regions")
    _unique((c.name for c in spec.clusters), "cluster", "clusters")
    regions = {r.name for r in spec.regions}
    for i, cluster in enumerate(spec.clusters):
        if cluster.region not in regions:
            raise ValidationError(
                f"cluster {cluster.name!r} names unknown region {cluster.region!r}",
                field=f"clusters[{i}].region",
                hint="declare the region under 'regions' in the same file",
            )
        _check_cluster(cluster, i, catalogue)
    for i, link in enumerate(spec.wan_links):
        for end in (link.region_a, link.region_b):
            if end not in regions:
                raise ValidationError(
                    f"WAN link names unknown region {end!r}", field=f"wan_links[{i}]"
                )
        if link.region_a == link.region_b:
            raise ValidationError("a WAN link joins two different regions", field=f"wan_links[{i}]")
        if min(link.bandwidth_gbps, link.rtt_ms, link.distance_km) <= 0:
            raise ValidationError(
                "bandwidth_gbps, rtt_ms and distance_km must be positive", field=f"wan_links[{i}]"
            )
    return spec


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """One node's contribution to fleet totals."""

    region: RegionName
    cluster_kind: ClusterKind
    chip: ChipName
    cards: int


@dataclass(frozen=True, slots=True)
class FleetTotals:
    """Cards by chip and dense FP16 PFLOPS, for one region or the whole fleet."""

    scope: str
    cards_by_chip: dict[str, int]
    pflops_fp16: float
    simulated_cards: int
    real_cards: int


def fleet_totals(
    nodes: Iterable[NodeCapacity], catalogue: Catalogue
) -> tuple[FleetTotals, list[FleetTotals]]:
    """Totals overall and per region (regions sorted by name)."""
    by_scope: dict[str, list[NodeCapacity]] = {}
    everything: list[NodeCapacity] = []
    for node in nodes:
        by_scope.setdefault(node.region, []).append(node)
        everything.append(node)
    overall = _totals("fleet", everything, catalogue)
    return overall, [_totals(r, by_scope[r], catalogue) for r in sorted(by_scope)]


def _totals(scope: str, nodes: list[NodeCapacity], catalogue: Catalogue) -> FleetTotals:
    cards: Counter[str] = Counter()
    tflops = 0.0
    simulated = 0
    for node in nodes:
        cards[node.chip] += node.cards
        tflops += node.cards * catalogue.get(node.chip).fp16_tflops
        if node.cluster_kind is ClusterKind.SIMULATED:
            simulated += node.cards
    total = sum(cards.values())
    return FleetTotals(
        scope=scope,
        cards_by_chip=dict(sorted(cards.items())),
        pflops_fp16=round(tflops / 1000.0, 3),
        simulated_cards=simulated,
        real_cards=total - simulated,
    )
