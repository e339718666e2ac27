"""The application facade the edges (HTTP, CLI server) talk to: one object per use-case area."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from suanwang.domain.chips import Catalogue
from suanwang.domain.fleet import FleetTotals, RegionSpec, WanLinkSpec
from suanwang.domain.records import ClusterRecord, NodeRecord, NodeShape
from suanwang.domain.tenancy import LOCAL_OPERATOR, Principal
from suanwang.ports import Backend, Clock, UnitOfWorkFactory
from suanwang.services.agents import Agents
from suanwang.services.apps import Apps
from suanwang.services.billing import Billing
from suanwang.services.cluster_health import ClusterHealthCheck
from suanwang.services.control import ControlLoop
from suanwang.services.datasets import Datasets
from suanwang.services.deployments import Deployments
from suanwang.services.external import ExternalEndpoints
from suanwang.services.fleet import ApplyResult, apply_fleet, totals_of
from suanwang.services.fleet_file import parse_fleet_data, parse_fleet_yaml
from suanwang.services.jobs import Jobs
from suanwang.services.knowledge import KnowledgeBases
from suanwang.services.orphans import OrphanSweep
from suanwang.services.tenancy import Tenancy
from suanwang.services.transfers import Transfers


@dataclass(frozen=True, slots=True)
class FleetView:
    regions: list[RegionSpec]
    clusters: list[ClusterRecord]
    wan_links: list[WanLinkSpec]


class Fleet:
    """Fleet use cases bound to a store and clock."""

    def __init__(self, uows: UnitOfWorkFactory, clock: Clock, catalogue: Catalogue) -> None:
        self._uows = uows
        self._clock = clock
        self.catalogue = catalogue

    def apply_yaml(self, text: str, actor: Principal = LOCAL_OPERATOR) -> ApplyResult:
        spec = parse_fleet_yaml(text, self.catalogue)
        return apply_fleet(self._uows, spec, self._clock, actor)

    def apply_data(self, data: Any, actor: Principal = LOCAL_OPERATOR) -> ApplyResult:
        spec = parse_fleet_data(data, self.catalogue)
        return apply_fleet(self._uows, spec, self._clock, actor)

    def view(self) -> FleetView:
        with self._uows() as uow:
            return FleetView(uow.fleet.regions(), uow.fleet.clusters(), uow.fleet.wan_links())

    def nodes(self, cluster: str | None = None) -> list[NodeRecord]:
        with self._uows() as uow:
            return uow.fleet.nodes(cluster)

    def nodes_page(self, cluster: str, offset: int, limit: int) -> list[NodeRecord]:
        """One page of a cluster's nodes (in node id order)."""
        with self._uows() as uow:
            return uow.fleet.nodes(cluster, offset=offset, limit=limit)

    def shapes(self) -> list[NodeShape]:
        """Nodes counted by cluster, chip and size, with cards in use and nodes not ready:
        what the overviews need, in a few rows instead of thousands."""
        with self._uows() as uow:
            return uow.fleet.node_shapes()

    def totals(self) -> tuple[FleetTotals, list[FleetTotals]]:
        return totals_of(self.shapes(), self.catalogue)

    def is_empty(self) -> bool:
        with self._uows() as uow:
            return not uow.fleet.regions()


@dataclass(frozen=True, slots=True)
class Platform:
    """Everything the edges need, wired once by the composition root."""

    fleet: Fleet
    tenancy: Tenancy
    jobs: Jobs
    control: ControlLoop
    deployments: Deployments
    catalogue: Catalogue
    clock: Clock
    backends: Mapping[str, Backend]
    uows: UnitOfWorkFactory
    billing: Billing
    externals: ExternalEndpoints
    cluster_health: ClusterHealthCheck
    orphans: OrphanSweep
    datasets: Datasets
    transfers: Transfers
    agents: Agents
    knowledge: KnowledgeBases
    apps: Apps
    local_nodes: tuple[dict[str, Any], ...] = ()

    def job_counts(self) -> dict[str, int]:
        with self.uows() as uow:
            return uow.jobs.count_by_state()
