"""What-if capacity planning: replay a trace with and without a change to the fleet.

A change adds or removes whole nodes of one chip type in one region
(:class:`AddCards`, :class:`RemoveCards`), or sets a WAN link's bandwidth
(:class:`LinkBandwidth`); a different quota file can be given as well.
:func:`apply_changes` returns the changed fleet (validated again); :func:`deltas`
compares a policy's metrics before and after (JCT, queueing, utilisation) and
:func:`delta_table` shows the comparison. Running both is
:func:`suanwang.simulator.runner.run_what_if`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.table import Table

from suanwang.domain.errors import ValidationError
from suanwang.domain.fleet import ClusterKind, ClusterSpec, FleetSpec, NodeSpec, validate_fleet
from suanwang.domain.ids import ChipName, ClusterName, RegionName
from suanwang.simulator.errors import SimulationError
from suanwang.simulator.fleet import SimFleet
from suanwang.simulator.metrics import PolicyMetrics

DEFAULT_NODE_CARDS = 8
NODES_PER_NETWORK_GROUP = 16


@dataclass(frozen=True, slots=True)
class AddCards:
    """Add ``cards`` cards of ``chip`` in ``region``, as whole nodes."""

    cards: int
    chip: ChipName
    region: RegionName


@dataclass(frozen=True, slots=True)
class RemoveCards:
    """Remove ``cards`` cards of ``chip`` in ``region``, as whole nodes (the last ones)."""

    cards: int
    chip: ChipName
    region: RegionName


@dataclass(frozen=True, slots=True)
class LinkBandwidth:
    """Set the bandwidth of the WAN link between two regions."""

    region_a: RegionName
    region_b: RegionName
    bandwidth_gbps: float


FleetChange = AddCards | RemoveCards | LinkBandwidth


def parse_cards_change(text: str, option: str) -> AddCards | RemoveCards:
    """``800:ascend-910b:shanghai-lingang`` as an AddCards (``--add-cards``) or RemoveCards."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or int(parts[0]) < 1:
        raise SimulationError(
            f"{option} {text!r} is not CARDS:CHIP:REGION",
            field=option,
            hint=f"e.g. {option} 800:ascend-910b:shanghai-lingang",
        )
    kind = AddCards if option == "--add-cards" else RemoveCards
    return kind(int(parts[0]), ChipName(parts[1]), RegionName(parts[2]))


def parse_link_change(text: str) -> LinkBandwidth:
    """``shanghai-lingang:ningxia-zhongwei:40`` as a LinkBandwidth."""
    parts = text.split(":")
    try:
        gbps = float(parts[2]) if len(parts) == 3 else 0.0
    except ValueError:
        gbps = 0.0
    if gbps <= 0:
        raise SimulationError(
            f"--link-bandwidth {text!r} is not REGION:REGION:GBPS with GBPS > 0",
            field="--link-bandwidth",
            hint="e.g. --link-bandwidth shanghai-lingang:ningxia-zhongwei:40",
        )
    return LinkBandwidth(RegionName(parts[0]), RegionName(parts[1]), gbps)


def apply_changes(fleet: SimFleet, changes: Sequence[FleetChange]) -> SimFleet:
    """The fleet with every change applied in order, validated again."""
    spec = fleet.spec
    for change in changes:
        if isinstance(change, AddCards):
            spec = _add(spec, change, fleet)
        elif isinstance(change, RemoveCards):
            spec = _remove(spec, change)
        else:
            spec = _link(spec, change)
    try:
        validate_fleet(spec, fleet.catalogue)
    except ValidationError as exc:
        raise SimulationError(f"the changed fleet is invalid: {exc.message}") from None
    return dataclasses.replace(fleet, spec=spec, name=f"{fleet.name} (changed)")


def _node_cards(spec: FleetSpec, chip: ChipName, region: RegionName) -> int:
    sizes = Counter(
        n.cards for c in spec.clusters if c.region == region for n in c.nodes if n.chip == chip
    )
    return sizes.most_common(1)[0][0] if sizes else DEFAULT_NODE_CARDS


def _add(spec: FleetSpec, change: AddCards, fleet: SimFleet) -> FleetSpec:
    if change.chip not in fleet.catalogue.chips:
        raise SimulationError(
            f"--add-cards: unknown chip {change.chip!r}",
            field="--add-cards",
            hint=f"known chips: {', '.join(sorted(fleet.catalogue.chips))}",
        )
    if change.region not in {r.name for r in spec.regions}:
        raise SimulationError(f"--add-cards: unknown region {change.region!r}", field="--add-cards")
    per_node = _node_cards(spec, change.chip, change.region)
    if change.cards % per_node:
        raise SimulationError(
            f"--add-cards: {change.cards} is not a whole number of {per_node}-card nodes",
            field="--add-cards",
            hint=f"use a multiple of {per_node}",
        )
    new = [
        NodeSpec(
            f"whatif-{change.chip}-{i:05d}",
            change.chip,
            per_node,
            f"whatif-{change.chip}-g{i // NODES_PER_NETWORK_GROUP:04d}",
        )
        for i in range(change.cards // per_node)
    ]
    clusters = list(spec.clusters)
    for i, cluster in enumerate(clusters):
        if cluster.region == change.region and any(n.chip == change.chip for n in cluster.nodes):
            clusters[i] = dataclasses.replace(cluster, nodes=(*cluster.nodes, *new))
            return dataclasses.replace(spec, clusters=tuple(clusters))
    name = ClusterName(f"whatif-{change.region}-{change.chip}"[:63])
    clusters.append(
        ClusterSpec(name, change.region, ClusterKind.SIMULATED, "simulated", tuple(new))
    )
    return dataclasses.replace(spec, clusters=tuple(clusters))


def _remove(spec: FleetSpec, change: RemoveCards) -> FleetSpec:
    left = change.cards
    clusters = list(spec.clusters)
    for i in reversed(range(len(clusters))):
        cluster = clusters[i]
        if cluster.region != change.region:
            continue
        kept = list(cluster.nodes)
        for j in reversed(range(len(kept))):
            if left > 0 and kept[j].chip == change.chip and kept[j].cards <= left:
                left -= kept.pop(j).cards
        clusters[i] = dataclasses.replace(cluster, nodes=tuple(kept))
    if left:
        raise SimulationError(
            f"--remove-cards: cannot remove {change.cards} {change.chip} cards in "
            f"{change.region} as whole nodes",
            field="--remove-cards",
            hint="check the chip, the region and the cards per node",
        )
    return dataclasses.replace(spec, clusters=tuple(c for c in clusters if c.nodes))


def _link(spec: FleetSpec, change: LinkBandwidth) -> FleetSpec:
    ends = {change.region_a, change.region_b}
    links = list(spec.wan_links)
    for i, link in enumerate(links):
        if {link.region_a, link.region_b} == ends:
            links[i] = dataclasses.replace(link, bandwidth_gbps=change.bandwidth_gbps)
            return dataclasses.replace(spec, wan_links=tuple(links))
    raise SimulationError(
        f"--link-bandwidth: no WAN link joins {change.region_a} and {change.region_b}",
        field="--link-bandwidth",
    )


def describe(change: FleetChange) -> str:
    """A change in a few words, for report titles."""
    if isinstance(change, AddCards):
        return f"+{change.cards} {change.chip} in {change.region}"
    if isinstance(change, RemoveCards):
        return f"-{change.cards} {change.chip} in {change.region}"
    return f"{change.region_a}<->{change.region_b} at {change.bandwidth_gbps:g} Gb/s"


def _change(before: float, after: float) -> float | None:
    return None if before == 0 else (after - before) / before


def deltas(before: PolicyMetrics, after: PolicyMetrics) -> dict[str, Any]:
    """Relative change after/before of a pair of PolicyMetrics (None where before is 0)."""
    return {
        "avg_jct": _change(before.jct_s.avg, after.jct_s.avg),
        "p95_jct": _change(before.jct_s.p95, after.jct_s.p95),
        "avg_queueing": _change(before.queueing_s.avg, after.queueing_s.avg),
        "makespan": _change(before.makespan_s, after.makespan_s),
        "utilisation": {
            chip: after.utilisation.get(chip, 0.0) - before.utilisation.get(chip, 0.0)
            for chip in sorted({*before.utilisation, *after.utilisation})
        },
    }


def delta_table(pairs: Sequence[tuple[str, dict[str, Any]]]) -> Table:
    """A Rich table of the relative changes, one column per policy."""
    table = Table(
        title="What-if: change after vs before", title_justify="left", box=box.SIMPLE_HEAD
    )
    table.add_column("metric")
    for policy, _ in pairs:
        table.add_column(policy, justify="right")
    for key in ("avg_jct", "p95_jct", "avg_queueing", "makespan"):
        cells = [_percent(d[key]) for _, d in pairs]
        table.add_row(key.replace("_", " "), *cells)
    chips = sorted({chip for _, d in pairs for chip in d["utilisation"]})
    for chip in chips:
        cells = [f"{100 * d['utilisation'].get(chip, 0.0):+.1f} pt" for _, d in pairs]
        table.add_row(f"utilisation {chip}", *cells)
    return table


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f} %"
