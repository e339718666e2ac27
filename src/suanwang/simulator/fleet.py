"""The simulated fleet and quotas: fleet files (or built-in fleets) and quota files.

:func:`load_fleet` reads a fleet file with :func:`~suanwang.services.fleet_file.parse_fleet_yaml`
against the simulator's chip table (the product catalogue plus V100/P100/K80), or takes a
built-in fleet by name: ``demo`` (the demo fleet without this machine's real cluster) or
``gavel-hetero`` and ``gavel-hetero-768`` (``fleets/*.yaml``). Every cluster is simulated
here, whatever its kind. :func:`load_quotas` reads a quota file into Kueue-style tenant queues.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from suanwang.domain.chips import Catalogue
from suanwang.domain.errors import ValidationError
from suanwang.domain.fleet import ClusterKind, FleetSpec
from suanwang.domain.ids import ChipFamily, ChipName, NodeId, RegionName, TenantId
from suanwang.scheduler.snapshot import FlavorQuota, NodeView, TenantQueue, WanLinkView
from suanwang.services.demo import demo_fleet
from suanwang.services.fleet_file import parse_fleet_data, parse_fleet_yaml
from suanwang.simulator.chips import simulation_catalogue
from suanwang.simulator.errors import SimulationError, unreadable

BUILTIN_FLEETS = ("demo", "gavel-hetero", "gavel-hetero-768")


@dataclass(frozen=True, slots=True)
class SimFleet:
    """A validated fleet to simulate, with the chip table it was checked against."""

    name: str
    spec: FleetSpec
    catalogue: Catalogue

    def node_views(self) -> list[NodeView]:
        """Every node, empty and simulated, with ids 0..N-1 in file order."""
        views: list[NodeView] = []
        for cluster in self.spec.clusters:
            for node in cluster.nodes:
                chip = self.catalogue.get(node.chip)
                views.append(
                    NodeView(
                        id=NodeId(len(views)),
                        name=node.name,
                        cluster=cluster.name,
                        region=cluster.region,
                        simulated=True,
                        chip=chip.name,
                        family=chip.family,
                        cards_total=node.cards,
                        cards_free=node.cards,
                        network_group=node.network_group,
                    )
                )
        return views

    def cards_by_chip(self) -> dict[ChipName, int]:
        """Total cards of each chip type."""
        cards: dict[ChipName, int] = {}
        for cluster in self.spec.clusters:
            for node in cluster.nodes:
                cards[node.chip] = cards.get(node.chip, 0) + node.cards
        return dict(sorted(cards.items()))

    def links(self) -> tuple[WanLinkView, ...]:
        """The WAN links as the scheduler sees them."""
        return tuple(
            WanLinkView(w.region_a, w.region_b, w.bandwidth_gbps, w.rtt_ms)
            for w in self.spec.wan_links
        )

    def regions(self) -> frozenset[RegionName]:
        """Names of the fleet's regions."""
        return frozenset(r.name for r in self.spec.regions)


def load_fleet(source: str, catalogue: Catalogue | None = None) -> SimFleet:
    """A built-in fleet by name (see :data:`BUILTIN_FLEETS`) or a fleet file by path.

    Raises:
        SimulationError: the file cannot be read or is invalid (field and hint included).
    """
    catalogue = catalogue or simulation_catalogue()
    try:
        if source == "demo":
            spec = parse_fleet_data(_without_real_clusters(demo_fleet()), catalogue)
        elif source in BUILTIN_FLEETS:
            spec = parse_fleet_yaml(_builtin_text(source), catalogue)
        else:
            spec = parse_fleet_yaml(_read(Path(source), "--fleet"), catalogue)
    except ValidationError as exc:
        if isinstance(exc, SimulationError):
            raise
        raise SimulationError(f"{source}: {exc.message}", field=exc.field, hint=exc.hint) from None
    if not any(c.nodes for c in spec.clusters):
        raise SimulationError(f"fleet {source} has no nodes", field="--fleet")
    return SimFleet(name=Path(source).stem, spec=spec, catalogue=catalogue)


def _builtin_text(name: str) -> str:
    package = resources.files("suanwang.simulator")
    return package.joinpath(f"fleets/{name}.yaml").read_text(encoding="utf-8")


def _without_real_clusters(data: dict[str, Any]) -> dict[str, Any]:
    """Fleet data without ``real`` clusters, nor the regions only they used."""
    clusters = [c for c in data["clusters"] if c.get("kind") != ClusterKind.REAL]
    used = {c["region"] for c in clusters}
    regions = [r for r in data["regions"] if r["name"] in used]
    return {**data, "clusters": clusters, "regions": regions}


def _read(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise unreadable(path, exc, option) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _FlavorIn(_Strict):
    nominal: Annotated[int, Field(ge=0)]
    borrowing_limit: Annotated[int, Field(ge=0)] | None = 0
    lending_limit: Annotated[int, Field(ge=0)] | None = None


class _QueueIn(_Strict):
    cohort: str | None = None
    weight: Annotated[float, Field(gt=0)] = 1.0
    quotas: dict[str, _FlavorIn] = {}


class _QuotasIn(_Strict):
    default: _QueueIn | None = None
    tenants: dict[str, _QueueIn] = {}


@dataclass(frozen=True, slots=True)
class QuotaPlan:
    """Tenant queues from a quota file; ``default`` applies to tenants it does not name."""

    tenants: Mapping[TenantId, TenantQueue] = field(default_factory=dict)
    default: TenantQueue | None = None

    def queues_for(self, tenants: Iterable[TenantId]) -> dict[TenantId, TenantQueue]:
        """A queue for every tenant that has one, named or by default."""
        queues: dict[TenantId, TenantQueue] = {}
        for tenant in sorted(set(tenants) | set(self.tenants)):
            queue = self.tenants.get(tenant)
            if queue is None and self.default is not None:
                queue = TenantQueue(
                    tenant, self.default.quotas, self.default.cohort, self.default.weight
                )
            if queue is not None:
                queues[tenant] = queue
        return queues


def quota_caps(
    queues: Mapping[TenantId, TenantQueue], families: Iterable[ChipFamily]
) -> dict[TenantId, dict[ChipFamily, int]]:
    """Plain caps for policies that ignore queues: nominal + borrowing limit per family.

    A family with no borrowing limit (None) is left out (unlimited); a fleet family the
    queue does not name is capped at 0, as a queue forbids it.
    """
    caps: dict[TenantId, dict[ChipFamily, int]] = {}
    for tenant, queue in queues.items():
        held = {family: 0 for family in families if family not in queue.quotas}
        for family, q in queue.quotas.items():
            if q.borrowing_limit is not None:
                held[family] = q.nominal + q.borrowing_limit
        caps[tenant] = dict(sorted(held.items()))
    return caps


def load_quotas(path: Path, families: Iterable[ChipFamily]) -> QuotaPlan:
    """Read a quota file (YAML); every family named must exist in the fleet.

    Raises:
        SimulationError: the file is invalid; the message names the field.
    """
    try:
        data = yaml.safe_load(_read(path, "--quotas"))
        parsed = _QuotasIn.model_validate(data or {})
    except yaml.YAMLError:
        raise SimulationError(f"{path}: not valid YAML", field="--quotas") from None
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SimulationError(f"{path}: {first['msg']}", field=where) from None
    known = frozenset(families)
    entries = {"default": parsed.default} if parsed.default else {}
    entries.update({f"tenants.{t}": q for t, q in parsed.tenants.items()})
    for where, queue in entries.items():
        for family in queue.quotas:
            if family not in known:
                raise SimulationError(
                    f"{path}: unknown chip family {family!r}",
                    field=f"{where}.quotas.{family}",
                    hint=f"the fleet has: {', '.join(sorted(known))}",
                )
    return QuotaPlan(
        tenants={TenantId(t): _queue(TenantId(t), q) for t, q in parsed.tenants.items()},
        default=_queue(TenantId("*"), parsed.default) if parsed.default else None,
    )


def _queue(tenant: TenantId, queue: _QueueIn) -> TenantQueue:
    quotas = {
        ChipFamily(f): FlavorQuota(q.nominal, q.borrowing_limit, q.lending_limit)
        for f, q in queue.quotas.items()
    }
    return TenantQueue(tenant, quotas, queue.cohort, queue.weight)
