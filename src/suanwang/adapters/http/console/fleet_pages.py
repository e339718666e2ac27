"""Operator (and read-only) fleet pages: the overview by region, cluster and chip, and one
cluster with its nodes. Totals come from the same service function as
``GET /api/v1/fleet/totals``, so the page and the API cannot disagree."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from suanwang.adapters.http.console.paging import page_number, page_of
from suanwang.adapters.http.console.web import (
    PAGE_SIZE,
    PREFIX,
    ConsoleRoute,
    UserDep,
    allow,
    render,
)
from suanwang.adapters.http.routers.fleet import clusters_public
from suanwang.adapters.http.security import current_platform
from suanwang.domain.errors import NotFound
from suanwang.domain.records import NodeShape
from suanwang.services.fleet import totals_of

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a breakdown: cards, cards in use, PFLOPS and how much is simulated."""

    name: str
    cards: int
    used: int
    pflops: float
    simulated: int
    region: str = ""

    @property
    def busy_pct(self) -> float:
        return 100.0 * self.used / self.cards if self.cards else 0.0

    @property
    def marking(self) -> str:
        """``simulated``, ``mixed`` or ``real``: a message key."""
        if self.simulated == 0:
            return "real"
        return "simulated" if self.simulated == self.cards else "mixed"


def _rows(
    shapes: list[NodeShape],
    key: Callable[[NodeShape], str],
    total: Callable[[list[NodeShape]], float],
) -> list[Row]:
    groups: dict[str, list[NodeShape]] = {}
    for shape in shapes:
        groups.setdefault(key(shape), []).append(shape)
    return [
        Row(
            name=name,
            cards=sum(n.total_cards for n in group),
            used=sum(n.used for n in group),
            pflops=total(group),
            simulated=sum(n.total_cards for n in group if n.simulated),
            region=group[0].region,
        )
        for name, group in sorted(groups.items())
    ]


def _sum(rows: Iterable[Row]) -> Row:
    listed = list(rows)
    return Row(
        name="total",
        cards=sum(r.cards for r in listed),
        used=sum(r.used for r in listed),
        pflops=sum(r.pflops for r in listed),
        simulated=sum(r.simulated for r in listed),
    )


@router.get("/fleet")
def fleet_page(request: Request, user: UserDep) -> Response:
    """Cards and PFLOPS by region, cluster and chip; simulated capacity marked."""
    allow(user, "GET", "/api/v1/fleet/totals")
    platform = current_platform(request)
    shapes = platform.fleet.shapes()
    catalogue = platform.catalogue

    def pflops(group: list[NodeShape]) -> float:
        return totals_of(group, catalogue)[0].pflops_fp16

    overall, _ = totals_of(shapes, catalogue)
    regions = _rows(shapes, lambda n: n.region, pflops)
    total = _sum(regions)
    return render(
        request,
        "fleet.html",
        overall=overall,
        total=total,
        regions=regions,
        clusters=_rows(shapes, lambda n: n.cluster, pflops),
        chips=_rows(shapes, lambda n: n.chip, pflops),
        chart={
            "labels": [r.name for r in regions],
            "pflops": [round(r.pflops, 3) for r in regions],
        },
    )


@router.get("/clusters/{name}")
def cluster_page(
    request: Request,
    name: str,
    user: UserDep,
    page: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    """One cluster: backend, health, cards by chip, and its nodes a page at a time."""
    allow(user, "GET", "/api/v1/clusters")
    platform = current_platform(request)
    view = platform.fleet.view()
    found = [c for c in view.clusters if c.name == name]
    if not found:
        raise NotFound(f"no cluster {name!r}", field="name")
    shapes = [s for s in platform.fleet.shapes() if s.cluster == name]
    cluster = clusters_public(platform, found, user.principal, shapes)[0]
    number = page_number(page)
    nodes = platform.fleet.nodes_page(name, (number - 1) * PAGE_SIZE, PAGE_SIZE + 1)
    return render(
        request,
        "cluster.html",
        cluster=cluster,
        pflops=totals_of(shapes, platform.catalogue)[0].pflops_fp16,
        cards=sum(s.total_cards for s in shapes),
        nodes=page_of(nodes, number),
    )
