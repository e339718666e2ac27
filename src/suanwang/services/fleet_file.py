"""Parses a fleet file (YAML) into a :class:`~suanwang.domain.fleet.FleetSpec`.

Errors name the field as a path (``clusters[0].node_groups[1].cards``) and say what is
expected. Node groups expand to many nodes, so a 1,250-node cluster is four lines.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from suanwang.domain.chips import Catalogue
from suanwang.domain.errors import ValidationError
from suanwang.domain.fleet import (
    MAX_CARDS_PER_NODE,
    ClusterKind,
    ClusterSpec,
    FleetSpec,
    NodeSpec,
    RegionSpec,
    WanLinkSpec,
    validate_fleet,
)
from suanwang.domain.ids import ChipName, ClusterName, RegionName

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
MAX_NODES_PER_GROUP = 20_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegionIn(_Strict):
    name: Name
    display_name: str = ""


Cards = Annotated[int, Field(ge=1, le=MAX_CARDS_PER_NODE)]
Positive = Annotated[float, Field(gt=0)]


class NodeIn(_Strict):
    name: Name
    chip: str
    cards: Cards
    network_group: str = ""


class NodeGroupIn(_Strict):
    name_prefix: Name
    count: Annotated[int, Field(ge=1, le=MAX_NODES_PER_GROUP)]
    chip: str
    cards: Cards
    nodes_per_network_group: Annotated[int, Field(ge=1)] | None = None


class ClusterIn(_Strict):
    name: Name
    region: Name
    kind: ClusterKind
    backend: str | None = None
    description: str = ""
    nodes: list[NodeIn] = []
    node_groups: list[NodeGroupIn] = []


class WanLinkIn(_Strict):
    between: Annotated[list[Name], Field(min_length=2, max_length=2)]
    bandwidth_gbps: Positive
    rtt_ms: Positive
    distance_km: Positive


class FleetIn(_Strict):
    regions: list[RegionIn] = []
    clusters: list[ClusterIn] = []
    wan_links: list[WanLinkIn] = []


def parse_fleet_yaml(text: str, catalogue: Catalogue) -> FleetSpec:
    """Parse and validate a fleet file; raise ValidationError with the field and a hint."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValidationError(
            f"the fleet file is not valid YAML{where}",
            field="body",
            hint="check indentation and quoting",
        ) from exc
    return parse_fleet_data(data, catalogue)


def parse_fleet_data(data: Any, catalogue: Catalogue) -> FleetSpec:
    """Validate already-decoded fleet data (a mapping)."""
    if not isinstance(data, dict):
        raise ValidationError(
            "a fleet file is a mapping with regions, clusters and wan_links",
            field="body",
            hint="see docs/fleet.md for an example",
        )
    try:
        parsed = FleetIn.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        raise ValidationError(
            f"invalid fleet file: {first['msg']}",
            field=_path(first["loc"]),
            hint="see docs/fleet.md for the fleet file format",
        ) from exc
    return validate_fleet(_to_spec(parsed), catalogue)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _to_spec(fleet: FleetIn) -> FleetSpec:
    return FleetSpec(
        regions=tuple(
            RegionSpec(RegionName(r.name), r.display_name or r.name) for r in fleet.regions
        ),
        clusters=tuple(_cluster(c) for c in fleet.clusters),
        wan_links=tuple(
            WanLinkSpec(
                RegionName(w.between[0]),
                RegionName(w.between[1]),
                w.bandwidth_gbps,
                w.rtt_ms,
                w.distance_km,
            )
            for w in fleet.wan_links
        ),
    )


def _cluster(cluster: ClusterIn) -> ClusterSpec:
    nodes = [NodeSpec(n.name, ChipName(n.chip), n.cards, n.network_group) for n in cluster.nodes]
    for group in cluster.node_groups:
        per_group = group.nodes_per_network_group
        nodes.extend(
            NodeSpec(
                name=f"{group.name_prefix}-{i:05d}",
                chip=ChipName(group.chip),
                cards=group.cards,
                network_group=f"{group.name_prefix}-g{i // per_group:04d}" if per_group else "",
            )
            for i in range(group.count)
        )
    default_backend = "local" if cluster.kind is ClusterKind.REAL else "simulated"
    return ClusterSpec(
        name=ClusterName(cluster.name),
        region=RegionName(cluster.region),
        kind=cluster.kind,
        backend=cluster.backend or default_backend,
        nodes=tuple(nodes),
        description=cluster.description,
    )
