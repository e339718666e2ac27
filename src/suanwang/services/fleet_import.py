"""Discovery: read a cluster's nodes from its engine and write the fleet file for it.

:func:`import_cluster` asks a backend for the capacity of a cluster (``sinfo``, the Ray
cluster's resources, node allocatable, or this host for ``local``) and renders one fleet
file with the region, the cluster, its connection block and one entry per node, named as
the engine names it (so the health check can later tell which node disappeared). The file
is parsed back before it is returned: what this writes, ``fleet apply`` accepts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import yaml

from suanwang.domain.chips import Catalogue
from suanwang.domain.errors import ValidationError
from suanwang.domain.fleet import MAX_CARDS_PER_NODE, ClusterKind, ClusterSpec, FleetSpec
from suanwang.ports import Backend
from suanwang.services.fleet_file import parse_fleet_data


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """Which engine to read and what to call the result."""

    backend: str
    cluster: str
    region: str
    region_display_name: str = ""
    connection_block: dict[str, Any] | None = None
    """The fleet file's connection block as given on the command line (``{"ray": {...}}``)."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    """The fleet file, the spec it parses to, and the cards per chip the engine reported."""

    text: str
    spec: FleetSpec
    cards_by_chip: dict[str, int]


def draft_cluster(request: ImportRequest, catalogue: Catalogue) -> ClusterSpec:
    """The cluster without nodes, validated (the connection block's errors name its field)."""
    return parse_fleet_data(_document(request, []), catalogue).clusters[0]


def import_cluster(request: ImportRequest, backend: Backend, catalogue: Catalogue) -> ImportResult:
    """Read the engine's nodes and render the fleet file (ValidationError if it cannot)."""
    draft = draft_cluster(request, catalogue)
    capacity = backend.capacity(draft.name, draft.connection)
    if not capacity.healthy:
        raise ValidationError(
            f"cluster {request.cluster!r}: the {request.backend} engine did not answer: "
            f"{capacity.reason}",
            field="connection",
            hint="check the address / partition / kubeconfig, and that the engine runs",
        )
    if not capacity.nodes:
        raise ValidationError(
            f"the {request.backend} engine reports no nodes with known chips",
            field="connection",
            hint="see docs/backends.md for the resource names each chip needs",
        )
    nodes = []
    for node in capacity.nodes:
        catalogue.get(node.chip, field_name=f"nodes.{node.name}.chip")
        count = min(node.cards, MAX_CARDS_PER_NODE) if node.chip == "cpu" else node.cards
        nodes.append({"name": node.name, "chip": str(node.chip), "cards": count})
    document = _document(request, nodes)
    text = _HEADER.format(backend=request.backend) + yaml.safe_dump(document, sort_keys=False)
    spec = parse_fleet_data(yaml.safe_load(text), catalogue)
    cards: Counter[str] = Counter()
    for node in spec.clusters[0].nodes:
        cards[node.chip] += node.cards
    return ImportResult(text, spec, dict(sorted(cards.items())))


_HEADER = (
    "# written by 'suanwang fleet import --from {backend}': the engine's nodes as it reported\n"
    "# them; review, then 'suanwang fleet apply' this file\n"
)


def _document(request: ImportRequest, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": request.cluster,
        "region": request.region,
        "kind": ClusterKind.REAL.value,
        "backend": request.backend,
    }
    cluster.update(request.connection_block or {})
    cluster["nodes"] = nodes
    region = {"name": request.region, "display_name": request.region_display_name}
    if not request.region_display_name:
        del region["display_name"]
    return {"regions": [region], "clusters": [cluster]}
