"""Operator pages: utilisation and the training/inference split over time, queues with the
reasons work waits, WAN links and transfers (rate, ETA), usage and revenue by tenant and model.

Each page stands for an operator-only API route (``allow``) and calls the same
:class:`~suanwang.services.oversight.Oversight` method as that route, so the numbers on the
page are the API's. Charts travel as JSON in ``data-ops-chart`` (drawn by
``static/ops_charts.js``: no inline scripts)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from suanwang.adapters.http.console.i18n import translator
from suanwang.adapters.http.console.paging import page_number, page_of
from suanwang.adapters.http.console.web import (
    PAGE_SIZE,
    PREFIX,
    ConsoleRoute,
    Short,
    UserDep,
    allow,
    render,
)
from suanwang.adapters.http.routers.billing import CSV
from suanwang.adapters.http.routers.operations import oversight, revenue_csv, revenue_public
from suanwang.adapters.http.security import current_platform
from suanwang.domain.billing import format_micro
from suanwang.domain.errors import ValidationError
from suanwang.domain.transfers import TransferState
from suanwang.domain.utilisation import UtilBy, UtilWindow
from suanwang.services.oversight import Utilisation

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
PageQuery = Annotated[str | None, Query(max_length=8)]
WINDOWS = [w.value for w in UtilWindow]
BYS = [b.value for b in UtilBy]
TRANSFER_STATES = [s.value for s in TransferState]
PALETTE = ("#2f6fde", "#e8743b", "#19a979", "#945ecf", "#ed4a7b", "#13a4b4", "#bf399e", "#6c8893")


def _label(at: float, window: UtilWindow) -> str:
    fmt = "%m-%d %H:%M" if window is UtilWindow.WEEK else "%H:%M"
    return datetime.fromtimestamp(at, tz=UTC).strftime(fmt)


def _utilisation_charts(u: Utilisation, sim_label: str, roles: tuple[str, str]) -> Any:
    labels = [_label(at, u.window) for at in u.grid.times]
    series = [
        {
            "label": f"{s.group} ({sim_label})" if s.simulated else s.group,
            "data": list(s.busy),
            "color": PALETTE[i % len(PALETTE)],
            "dashed": s.simulated,
        }
        for i, s in enumerate(u.series)
    ]
    split = [
        {"label": roles[0], "data": list(u.training), "color": PALETTE[0], "dashed": False},
        {"label": roles[1], "data": list(u.inference), "color": PALETTE[1], "dashed": False},
    ]
    return (
        {"type": "line", "stacked": True, "labels": labels, "datasets": series},
        {"type": "line", "stacked": True, "labels": labels, "datasets": split},
    )


@router.get("/utilisation")
def utilisation_page(
    request: Request, user: UserDep, window: Short = None, by: Short = None
) -> Response:
    """Cards busy over 1 h / 24 h / 7 d by region or chip, the split, and the cards now."""
    allow(user, "GET", "/api/v1/fleet/utilisation")
    chosen = UtilWindow(window) if window in WINDOWS else UtilWindow.DAY
    grouping = UtilBy(by) if by in BYS else UtilBy.REGION
    platform = current_platform(request)
    report = oversight(platform).utilisation(user.principal, chosen, grouping)
    tr = translator(user.lang)
    by_group, split = _utilisation_charts(
        report, tr("simulated"), (tr("ops_training"), tr("ops_inference"))
    )
    return render(
        request,
        "utilisation.html",
        report=report,
        windows=WINDOWS,
        bys=BYS,
        window=chosen.value,
        by=grouping.value,
        chart=by_group,
        split_chart=split,
    )


@router.get("/queues")
def queues_page(request: Request, user: UserDep, page: PageQuery = None) -> Response:
    """Queued work by tenant and chip, and a page of groups by reason too."""
    allow(user, "GET", "/api/v1/queues")
    views = oversight(current_platform(request))
    number = page_number(page)
    report = views.queues(user.principal, PAGE_SIZE + 1, (number - 1) * PAGE_SIZE)
    return render(
        request,
        "queues.html",
        groups=report.groups,
        reasons=page_of(report.reasons, number),
        now=views.now(),
    )


@router.get("/wan")
def wan_page(
    request: Request, user: UserDep, state: Short = None, page: PageQuery = None
) -> Response:
    """The WAN links and the transfers between regions, newest first, by state."""
    allow(user, "GET", "/api/v1/wan")
    chosen = TransferState(state) if state in TRANSFER_STATES else None
    number = page_number(page)
    report = oversight(current_platform(request)).wan(
        user.principal, chosen, PAGE_SIZE + 1, (number - 1) * PAGE_SIZE
    )
    return render(
        request,
        "wan.html",
        links=report.links,
        transfers=page_of(report.transfers, number),
        states=TRANSFER_STATES,
        state=chosen.value if chosen else "",
    )


@router.get("/revenue")
def revenue_page(request: Request, user: UserDep, period: Short = None) -> Response:
    """Amount, tokens and card-hours by tenant and by model for a month (default: this one)."""
    allow(user, "GET", "/api/v1/revenue")
    platform = current_platform(request)
    try:
        chosen = platform.billing.period(period or None)
    except ValidationError as exc:
        return render(
            request, "revenue.html", status=422, report=None, period=period, error=exc.message
        )
    report = oversight(platform).revenue(user.principal, chosen)
    chart = {
        "type": "bar",
        "stacked": False,
        "labels": [r.name for r in report.tenants],
        "datasets": [
            {
                "label": translator(user.lang)("amount"),
                "data": [r.amount / 1_000_000 for r in report.tenants],
                "color": PALETTE[0],
                "dashed": False,
            }
        ],
    }
    return render(
        request,
        "revenue.html",
        report=report,
        period=chosen.name,
        error="",
        chart=chart,
        money=format_micro,
    )


@router.get("/revenue.csv")
def revenue_download(request: Request, user: UserDep, period: Short = None) -> Response:
    """The same bytes as ``GET /api/v1/revenue?period=…&format=csv``."""
    allow(user, "GET", "/api/v1/revenue")
    platform = current_platform(request)
    report = oversight(platform).revenue(user.principal, platform.billing.period(period or None))
    name = f"revenue-{report.period.name}.csv"
    return Response(
        revenue_csv(revenue_public(report)),
        media_type=CSV,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
