"""The operator's views as API routes: ``/api/v1/fleet/utilisation``, ``/api/v1/queues``,
``/api/v1/wan`` and ``/api/v1/revenue`` (operator keys only). The console's operator
pages call the same :class:`~suanwang.services.oversight.Oversight` methods."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from suanwang.adapters.http.responses import csv_body
from suanwang.adapters.http.routers.billing import (
    CSV,
    FormatQuery,
    PeriodPublic,
    PeriodQuery,
    spreadsheet_cell,
    wants_csv,
)
from suanwang.adapters.http.routers.transfers import TransferPublic, transfer_public
from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
from suanwang.domain.billing import format_micro
from suanwang.domain.oversight import QueueGroup, Revenue, RevenueRow
from suanwang.domain.tenancy import Principal
from suanwang.domain.transfers import TransferState
from suanwang.domain.utilisation import UtilBy, UtilWindow
from suanwang.services.oversight import Oversight, Queues, Utilisation, Wan
from suanwang.services.platform import Platform

router = APIRouter(prefix="/api/v1", route_class=AuthorizedRoute, tags=["operations"])
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PlatformDep = Annotated[Platform, Depends(current_platform)]
Limit = Annotated[int, Query(ge=1, le=500, description="groups or transfers per page")]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


def oversight(platform: Platform) -> Oversight:
    """The operator views over the platform's store, clock and billing."""
    return Oversight(platform.uows, platform.clock, platform.billing)


class SeriesPublic(BaseModel):
    group: str = Field(description="the region or chip")
    simulated: bool = Field(description="this series is the group's simulated clusters")
    busy_cards: list[float] = Field(description="average busy cards per step")


class CurrentPublic(BaseModel):
    group: str
    cards: int
    simulated_cards: int
    busy_cards: int = Field(description="cards held by attempts now")


class UtilisationPublic(BaseModel):
    window: str
    by: str
    start: float = Field(description="UNIX seconds of the first step")
    step_s: float
    times: list[float] = Field(description="the start of each step")
    series: list[SeriesPublic]
    training_cards: list[float] = Field(description="busy cards of ordinary jobs per step")
    inference_cards: list[float] = Field(description="busy cards of serving replicas per step")
    current: list[CurrentPublic]
    training_now: int
    inference_now: int


class QueueGroupPublic(BaseModel):
    tenant: str
    chip: str = Field(description="the chip selector the jobs asked for")
    reason: str | None = Field(description="the scheduler's reason (null in the summary)")
    jobs: int
    cards: int = Field(description="cards asked, summed")
    oldest_at: float
    oldest_wait_s: float


class QueuesPublic(BaseModel):
    groups: list[QueueGroupPublic] = Field(description="by tenant and chip")
    reasons: list[QueueGroupPublic] = Field(description="by tenant, chip and reason (a page)")


class LinkPublic(BaseModel):
    region_a: str
    region_b: str
    bandwidth_gbps: float
    rtt_ms: float
    transfer_cap_bytes_per_s: float | None
    real: bool = Field(description="both regions have a transfer agent")


class TransferRowPublic(BaseModel):
    tenant: str
    dataset_name: str
    transfer: TransferPublic
    eta_s: float | None = Field(description="from the recent rate; null when not moving")


class WanPublic(BaseModel):
    links: list[LinkPublic]
    transfers: list[TransferRowPublic]


class RevenueRowPublic(BaseModel):
    name: str
    kind: str = Field(description="tenant, or tokens / compute / storage for an item")
    amount_micro: int
    amount: str
    tokens: int
    card_hours: float


class RevenuePublic(BaseModel):
    period: PeriodPublic
    tenants: list[RevenueRowPublic]
    items: list[RevenueRowPublic] = Field(description="by model (tokens), chip, storage")
    total: RevenueRowPublic


def utilisation_public(u: Utilisation) -> UtilisationPublic:
    return UtilisationPublic(
        window=u.window.value,
        by=u.by.value,
        start=u.grid.start,
        step_s=u.grid.step_s,
        times=u.grid.times,
        series=[SeriesPublic(group=s.group, simulated=s.simulated, busy_cards=list(s.busy))
                for s in u.series],
        training_cards=list(u.training),
        inference_cards=list(u.inference),
        current=[
            CurrentPublic(
                group=c.capacity.group,
                cards=c.capacity.cards,
                simulated_cards=c.capacity.simulated_cards,
                busy_cards=c.busy_cards,
            )
            for c in u.current
        ],
        training_now=u.training_now,
        inference_now=u.inference_now,
    )  # fmt: skip


def _group(g: QueueGroup, now: float) -> QueueGroupPublic:
    return QueueGroupPublic(
        tenant=g.tenant,
        chip=g.chip,
        reason=g.reason,
        jobs=g.jobs,
        cards=g.cards,
        oldest_at=g.oldest_at,
        oldest_wait_s=g.wait_s(now),
    )


def queues_public(q: Queues, now: float) -> QueuesPublic:
    return QueuesPublic(
        groups=[_group(g, now) for g in q.groups], reasons=[_group(g, now) for g in q.reasons]
    )


def wan_public(w: Wan) -> WanPublic:
    return WanPublic(
        links=[
            LinkPublic(
                region_a=v.link.region_a,
                region_b=v.link.region_b,
                bandwidth_gbps=v.link.bandwidth_gbps,
                rtt_ms=v.link.rtt_ms,
                transfer_cap_bytes_per_s=v.link.transfer_cap_bytes_per_s,
                real=v.real,
            )
            for v in w.links
        ],
        transfers=[
            TransferRowPublic(
                tenant=t.tenant,
                dataset_name=t.dataset_name,
                transfer=transfer_public(t.transfer),
                eta_s=t.eta_s,
            )
            for t in w.transfers
        ],
    )


def revenue_row(r: RevenueRow) -> RevenueRowPublic:
    return RevenueRowPublic(
        name=r.name,
        kind=r.kind,
        amount_micro=r.amount,
        amount=format_micro(r.amount),
        tokens=r.tokens,
        card_hours=round(r.card_hours, 6),
    )


@router.get(
    "/fleet/utilisation",
    response_model=UtilisationPublic,
    summary="Cards busy over a window by region or chip, and the training/inference split",
)
def fleet_utilisation(
    principal: PrincipalDep,
    platform: PlatformDep,
    window: Annotated[UtilWindow, Query(description="1h, 24h or 7d")] = UtilWindow.DAY,
    by: Annotated[UtilBy, Query(description="region or chip")] = UtilBy.REGION,
) -> Any:
    return utilisation_public(oversight(platform).utilisation(principal, window, by))


@router.get(
    "/queues",
    response_model=QueuesPublic,
    summary="Queued jobs by tenant and chip, and by the reasons they wait",
)
def queues(
    principal: PrincipalDep, platform: PlatformDep, limit: Limit = 50, offset: Offset = 0
) -> Any:
    views = oversight(platform)
    return queues_public(views.queues(principal, limit, offset), views.now())


@router.get(
    "/wan",
    response_model=WanPublic,
    summary="WAN links and the transfers between regions, newest first",
)
def wan(
    principal: PrincipalDep,
    platform: PlatformDep,
    state: Annotated[TransferState | None, Query(description="only transfers in this state")] = (
        None
    ),
    limit: Limit = 50,
    offset: Offset = 0,
) -> Any:
    return wan_public(oversight(platform).wan(principal, state, limit, offset))


def revenue_public(report: Revenue) -> RevenuePublic:
    return RevenuePublic(
        period=PeriodPublic(
            name=report.period.name, start=report.period.start, end=report.period.end
        ),
        tenants=[revenue_row(r) for r in report.tenants],
        items=[revenue_row(r) for r in report.items],
        total=revenue_row(report.total),
    )


def revenue_csv(revenue: RevenuePublic) -> str:
    """One row per tenant, then per item, then the total (text cells made spreadsheet-safe)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["period", *RevenueRowPublic.model_fields])
    for row in (*revenue.tenants, *revenue.items, revenue.total):
        cells = [revenue.period.name, *row.model_dump().values()]
        writer.writerow([spreadsheet_cell(cell) for cell in cells])
    return out.getvalue()


@router.get(
    "/revenue",
    response_model=RevenuePublic,
    summary="A period's billed amount, tokens and card-hours by tenant and by model",
    responses=csv_body("Revenue by tenant and by item"),
)
def revenue(
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    period: PeriodQuery = None,
    format: FormatQuery = None,
) -> RevenuePublic | Response:
    report = oversight(platform).revenue(principal, platform.billing.period(period))
    public = revenue_public(report)
    if wants_csv(request, format):
        return Response(revenue_csv(public), media_type=CSV)
    return public
