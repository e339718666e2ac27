"""``/api/v1/fleet``, ``/api/v1/chips``, ``/api/v1/priority-classes`` and ``/api/v1/demo``."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from suanwang.adapters.http.responses import errors, request_body
from suanwang.adapters.http.schemas import (
    ApplyResultPublic,
    ChipPublic,
    ClusterHealthPublic,
    ClusterPublic,
    FleetPublic,
    FleetTotalsPublic,
    NodePublic,
    PriorityClassPublic,
    RegionPublic,
    TotalsPublic,
    WanLinkPublic,
)
from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
from suanwang.domain.connections import connection_data
from suanwang.domain.errors import ValidationError
from suanwang.domain.fleet import FleetTotals
from suanwang.domain.records import ClusterHealth, ClusterRecord, NodeShape
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.demo import load_demo
from suanwang.services.fleet import ApplyResult
from suanwang.services.fleet_file import FleetIn
from suanwang.services.platform import Platform

router = APIRouter(prefix="/api/v1", route_class=AuthorizedRoute, tags=["fleet"])
PlatformDep = Annotated[Platform, Depends(current_platform)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]


def apply_public(result: ApplyResult) -> ApplyResultPublic:
    return ApplyResultPublic(
        created=result.created,
        updated=result.updated,
        deleted=result.deleted,
        unchanged=result.unchanged,
        changed=result.changed,
    )


def _totals(t: FleetTotals) -> TotalsPublic:
    return TotalsPublic(
        scope=t.scope,
        cards_by_chip=t.cards_by_chip,
        cards=sum(t.cards_by_chip.values()),
        pflops_fp16=t.pflops_fp16,
        simulated_cards=t.simulated_cards,
        real_cards=t.real_cards,
    )


@router.post(
    "/fleet/apply",
    response_model=ApplyResultPublic,
    responses=errors((409, "Nodes with running work would be deleted or shrunk")),
    openapi_extra=request_body(FleetIn, "application/yaml"),
)
async def apply_fleet(
    request: Request, principal: PrincipalDep, platform: PlatformDep
) -> ApplyResultPublic:
    """Apply a fleet file (YAML or JSON body). Idempotent: applying it twice changes nothing."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            "the fleet file is not UTF-8 text", field="body", hint="save the file as UTF-8"
        ) from exc
    return apply_public(await run_in_threadpool(platform.fleet.apply_yaml, text, principal))


def clusters_public(
    platform: Platform,
    clusters: list[ClusterRecord],
    principal: Principal,
    shapes: list[NodeShape] | None = None,
) -> list[ClusterPublic]:
    """Clusters as shown; only the operator sees engine connections (a tenant who learns a
    Ray or Slurm endpoint must not be helped to submit around suanwang). Node counts come
    from ``shapes`` (default: the whole fleet's)."""
    operator = principal.scope is Scope.OPERATOR
    by_cluster: dict[str, list[NodeShape]] = {}
    for shape in platform.fleet.shapes() if shapes is None else shapes:
        by_cluster.setdefault(shape.cluster, []).append(shape)
    out = []
    for c in clusters:
        nodes = by_cluster.get(c.name, [])
        chips: Counter[str] = Counter()
        for node in nodes:
            chips[node.chip] += node.total_cards
        out.append(
            ClusterPublic(
                name=c.name,
                region=c.region,
                kind=c.kind,
                simulated=c.kind == "simulated",
                backend=c.backend,
                description=c.description,
                nodes=sum(n.count for n in nodes),
                cards_by_chip=dict(chips),
                cards_used=sum(n.used for n in nodes),
                connection=_connection(c, operator),
                health=_health(c.health),
                nodes_drained=sum(n.not_ready for n in nodes),
            )
        )
    return out


def _connection(cluster: ClusterRecord, operator: bool) -> dict[str, dict[str, Any]] | None:
    if cluster.connection is None or not operator:
        return None
    return connection_data(cluster.connection)


def _health(health: ClusterHealth | None) -> ClusterHealthPublic:
    if health is None:
        return ClusterHealthPublic(status="unchecked")
    return ClusterHealthPublic(
        status="healthy" if health.healthy else "unhealthy",
        reason=health.reason,
        checked_at=health.checked_at,
    )


@router.get("/fleet", response_model=FleetPublic)
def show_fleet(platform: PlatformDep, principal: PrincipalDep) -> FleetPublic:
    """Regions, clusters (simulated ones are labelled; engine connection and health) and WAN
    links."""
    view = platform.fleet.view()
    return FleetPublic(
        regions=[RegionPublic(name=r.name, display_name=r.display_name) for r in view.regions],
        clusters=clusters_public(platform, view.clusters, principal),
        wan_links=[
            WanLinkPublic(
                between=[w.region_a, w.region_b],
                bandwidth_gbps=w.bandwidth_gbps,
                rtt_ms=w.rtt_ms,
                distance_km=w.distance_km,
            )
            for w in view.wan_links
        ],
    )


@router.get("/clusters", response_model=list[ClusterPublic])
def list_clusters(platform: PlatformDep, principal: PrincipalDep) -> list[ClusterPublic]:
    """Every cluster with its backend, engine connection, health (healthy, unhealthy with the
    reason, or not yet checked, and when) and nodes drained because the engine lost them."""
    return clusters_public(platform, platform.fleet.view().clusters, principal)


@router.get("/fleet/totals", response_model=FleetTotalsPublic)
def fleet_totals(platform: PlatformDep) -> FleetTotalsPublic:
    """Cards by chip and dense FP16 PFLOPS, overall and per region."""
    overall, regions = platform.fleet.totals()
    return FleetTotalsPublic(overall=_totals(overall), regions=[_totals(r) for r in regions])


@router.get("/fleet/nodes", response_model=list[NodePublic])
def list_nodes(
    platform: PlatformDep, cluster: Annotated[str | None, Query(max_length=64)] = None
) -> list[NodePublic]:
    return [
        NodePublic(
            id=n.id,
            name=n.name,
            cluster=n.cluster,
            region=n.region,
            simulated=n.simulated,
            chip=n.chip,
            cards=n.cards,
            cards_used=n.cards_used,
            network_group=n.network_group,
            state=n.state,
        )
        for n in platform.fleet.nodes(cluster)
    ]


@router.get("/chips", response_model=list[ChipPublic])
def list_chips(platform: PlatformDep) -> list[ChipPublic]:
    """The chip catalogue."""
    return [
        ChipPublic(
            name=c.name,
            vendor=c.vendor,
            family=c.family,
            memory_gb=c.memory_gb,
            fp16_tflops=c.fp16_tflops,
            bf16_tflops=c.bf16_tflops,
            stack=c.stack,
            k8s_resource=c.k8s_resource,
            hami_resource=c.hami_resource,
            figures_uncertain=c.figures_uncertain,
        )
        for c in sorted(platform.catalogue.chips.values(), key=lambda c: c.name)
    ]


@router.get("/priority-classes", response_model=list[PriorityClassPublic])
def list_priority_classes(platform: PlatformDep) -> list[PriorityClassPublic]:
    """The priority classes a job may name, highest first."""
    return [
        PriorityClassPublic(
            name=pc.name, value=pc.value, preemptible=pc.preemptible, description=pc.description
        )
        for pc in platform.jobs.priority_classes.ordered()
    ]


@router.post(
    "/demo/load",
    response_model=ApplyResultPublic,
    responses=errors((409, "Nodes with running work would be deleted or shrunk")),
)
def load_demo_fleet(principal: PrincipalDep, platform: PlatformDep) -> ApplyResultPublic:
    """Apply the demo fleet (simulated Lingang and Ningxia clusters plus this machine)."""
    return apply_public(load_demo(platform, principal))
