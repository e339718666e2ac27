"""What the scheduler sees: nodes with free cards, pending jobs, quotas and usage.

A snapshot is a frozen value. Building one from the database is the control plane's job
(``services/control.py``); building one from a trace is the simulator's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from suanwang.domain.ids import (
    ChipFamily,
    ChipName,
    ClusterName,
    JobId,
    NodeId,
    RegionName,
    TenantId,
)


@dataclass(frozen=True, slots=True)
class NodeView:
    """One schedulable node and how many of its cards are free now."""

    id: NodeId
    name: str
    cluster: ClusterName
    region: RegionName
    simulated: bool
    chip: ChipName
    family: ChipFamily
    cards_total: int
    cards_free: int
    network_group: str = ""
    schedulable: bool = True


@dataclass(frozen=True, slots=True)
class PendingJob:
    """A queued job waiting for a placement.

    ``chip`` is a selector: a chip name, a family, or ``any``. ``seq`` orders jobs of equal
    priority (smaller first: submission order). ``simulated`` jobs go only to simulated
    clusters, others only to real ones.
    """

    id: JobId
    tenant: TenantId
    priority: int
    seq: int
    chip: str
    cards_per_node: int
    nodes: int
    simulated: bool
    cluster: ClusterName | None = None
    region: RegionName | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one scheduling cycle needs.

    ``quotas[tenant][family]`` is the most cards of that family the tenant may hold at
    once; a family absent from a tenant's map is unlimited. ``usage[tenant][family]`` is
    what the tenant holds now (admitted or running work).
    """

    now: float
    nodes: tuple[NodeView, ...]
    pending: tuple[PendingJob, ...]
    quotas: Mapping[TenantId, Mapping[ChipFamily, int]] = field(default_factory=dict)
    usage: Mapping[TenantId, Mapping[ChipFamily, int]] = field(default_factory=dict)
