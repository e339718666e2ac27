"""``/api/v1/usage``, ``/api/v1/tenants/{name}/usage``, ``…/bills/{period}`` and ``…/tier``.

Usage and bills answer JSON, or CSV with ``?format=csv`` or ``Accept: text/csv``. Money is
integer micro-units (``amount_micro``); ``amount`` repeats it as a decimal string. CSV text
cells are escaped against formula injection (:func:`spreadsheet_cell`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from suanwang.adapters.http.responses import csv_body, errors
from suanwang.adapters.http.schemas import checked_pattern
from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
from suanwang.domain.billing import PERIOD_PATTERN, Bill, Period, format_micro
from suanwang.domain.tenancy import Principal
from suanwang.services.billing import TIER_NAME, UsageReport
from suanwang.services.platform import Platform

router = APIRouter(prefix="/api/v1", tags=["billing"], route_class=AuthorizedRoute)
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PlatformDep = Annotated[Platform, Depends(current_platform)]
PERIOD_TEXT = "YYYY-MM (a month, UTC) or YYYY-MM-DD..YYYY-MM-DD (end day exclusive)"
PeriodQuery = Annotated[
    str | None,
    Query(
        max_length=40,
        json_schema_extra=checked_pattern(PERIOD_PATTERN),
        description=f"{PERIOD_TEXT}; default this month",
    ),
]
PeriodPath = Annotated[
    str,
    Path(max_length=40, json_schema_extra=checked_pattern(PERIOD_PATTERN), description=PERIOD_TEXT),
]
FormatQuery = Annotated[Literal["json", "csv"] | None, Query(description="json (default) or csv")]
CSV = "text/csv; charset=utf-8"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\0")
"""A spreadsheet may read a cell starting with one of these as a formula (OWASP CSV
injection; ASVS 1.2.10 adds NUL)."""


class PeriodPublic(BaseModel):
    name: str
    start: float
    end: float


class UsageTotalPublic(BaseModel):
    tenant: str
    kind: str
    item: str = Field(description="model (tokens), chip (compute) or 'storage' (datasets)")
    entries: int
    prompt_tokens: int
    completion_tokens: int
    card_ms: int
    byte_s: int = Field(0, description="stored byte-seconds of datasets (kind storage)")


class UsagePublic(BaseModel):
    period: PeriodPublic
    totals: list[UsageTotalPublic]


class BillLinePublic(BaseModel):
    kind: str
    item: str
    meter: str
    quantity: int
    unit_price_micro: int
    per: int = Field(description="the unit price is per this many units of quantity")
    amount_micro: int
    amount: str
    entries: int


class BillPublic(BaseModel):
    tenant: str
    tier: str
    period: PeriodPublic
    lines: list[BillLinePublic]
    total_micro: int
    total: str


class TierUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    tier: str = Field(
        json_schema_extra=checked_pattern(TIER_NAME.pattern),
        description="2-32 lowercase letters, digits and '-', e.g. standard or edu",
    )


def _period(p: Period) -> PeriodPublic:
    return PeriodPublic(name=p.name, start=p.start, end=p.end)


def usage_public(report: UsageReport) -> UsagePublic:
    return UsagePublic(
        period=_period(report.period),
        totals=[
            UsageTotalPublic(
                tenant=t.tenant,
                kind=t.kind.value,
                item=t.item,
                entries=t.entries,
                prompt_tokens=t.prompt_tokens,
                completion_tokens=t.completion_tokens,
                card_ms=t.card_ms,
                byte_s=t.byte_s,
            )
            for t in report.totals
        ],
    )


def bill_public(bill: Bill) -> BillPublic:
    return BillPublic(
        tenant=bill.tenant,
        tier=bill.tier,
        period=_period(bill.period),
        lines=[
            BillLinePublic(
                kind=line.kind.value,
                item=line.item,
                meter=line.meter.value,
                quantity=line.quantity,
                unit_price_micro=line.unit_price,
                per=line.per,
                amount_micro=line.amount,
                amount=format_micro(line.amount),
                entries=line.entries,
            )
            for line in bill.lines
        ],
        total_micro=bill.total,
        total=format_micro(bill.total),
    )


def wants_csv(request: Request, fmt: str | None) -> bool:
    """``?format=`` wins; otherwise an ``Accept`` naming text/csv (and not JSON first)."""
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept.split("text/csv")[0]


def spreadsheet_cell(value: Any) -> Any:
    """``value`` safe for a spreadsheet: text starting like a formula gets a leading ``'``
    (OWASP's CSV injection rule), so ``=HYPERLINK(…)`` shows as text instead of running."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _csv(header: list[str], rows: Iterable[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180; and CR or LF in a cell is quoted
    writer.writerow(header)
    writer.writerows([spreadsheet_cell(cell) for cell in row] for row in rows)
    return out.getvalue()


def usage_csv(usage: UsagePublic) -> str:
    rows = ([usage.period.name, *t.model_dump().values()] for t in usage.totals)
    return _csv(["period", *UsageTotalPublic.model_fields], rows)


def bill_csv(bill: BillPublic) -> str:
    head = [bill.tenant, bill.tier, bill.period.name]
    rows = [[*head, *line.model_dump().values()] for line in bill.lines]
    rows.append([*head, "total", "", "", "", "", "", bill.total_micro, bill.total, ""])
    return _csv(["tenant", "tier", "period", *BillLinePublic.model_fields], rows)


def _usage(request: Request, report: UsageReport, fmt: str | None) -> UsagePublic | Response:
    public = usage_public(report)
    if wants_csv(request, fmt):
        return Response(usage_csv(public), media_type=CSV)
    return public


@router.get(
    "/usage",
    response_model=UsagePublic,
    responses=csv_body("Usage totals") | errors((404, "No such tenant (or not yours)")),
)
def all_usage(
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    period: PeriodQuery = None,
    format: FormatQuery = None,
) -> UsagePublic | Response:
    """Ledger sums by tenant and model or chip: every visible tenant, or ``tenant``."""
    billing = platform.billing
    report = billing.usage(principal, tenant, billing.period(period))
    return _usage(request, report, format)


@router.get("/tenants/{name}/usage", response_model=UsagePublic, responses=csv_body("Usage totals"))
def tenant_usage(
    name: str,
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    period: PeriodQuery = None,
    format: FormatQuery = None,
) -> UsagePublic | Response:
    """One tenant's ledger sums by model (tokens) and chip (compute) over a period."""
    billing = platform.billing
    report = billing.usage(principal, name, billing.period(period))
    return _usage(request, report, format)


@router.get(
    "/tenants/{name}/bills/{period}", response_model=BillPublic, responses=csv_body("The bill")
)
def tenant_bill(
    name: str,
    period: PeriodPath,
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    format: FormatQuery = None,
) -> BillPublic | Response:
    """The tenant's bill for ``period`` (YYYY-MM or YYYY-MM-DD..YYYY-MM-DD)."""
    billing = platform.billing
    public = bill_public(billing.bill(principal, name, billing.period(period)))
    if wants_csv(request, format):
        return Response(bill_csv(public), media_type=CSV)
    return public


@router.put("/tenants/{name}/tier", response_model=TierUpdate)
def set_tier(
    name: str, body: TierUpdate, principal: PrincipalDep, platform: PlatformDep
) -> TierUpdate:
    """Set the tenant's price tier (operator only)."""
    return TierUpdate(tier=platform.billing.set_tier(principal, name, body.tier))
