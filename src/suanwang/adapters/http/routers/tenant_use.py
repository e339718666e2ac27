"""``/api/v1/tenants/{name}/usage/daily`` (a period's usage and bill by UTC day) and
``/api/v1/tenants/{name}/quota-use`` (cards in use now and borrowed, per chip family).

Both answer 404 for another tenant, as for a missing one. The daily figures add up to
``GET /api/v1/tenants/{name}/usage`` and ``…/bills/{period}`` of the same period exactly.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from suanwang.adapters.http.responses import errors
from suanwang.adapters.http.routers.billing import PeriodPublic, PeriodQuery
from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
from suanwang.domain.billing import CARD_MS_PER_HOUR, Period, format_micro
from suanwang.domain.daily_usage import MAX_DAYS, DayUsage
from suanwang.domain.tenancy import Principal
from suanwang.services.platform import Platform
from suanwang.services.quota_use import QuotaUse, QuotaUseView

router = APIRouter(prefix="/api/v1/tenants", tags=["tenants"], route_class=AuthorizedRoute)
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PlatformDep = Annotated[Platform, Depends(current_platform)]
NOT_FOUND = (404, "No such tenant (or not yours)")


class DayPublic(BaseModel):
    day: str = Field(description="YYYY-MM-DD (UTC)")
    prompt_tokens: int
    completion_tokens: int
    tokens: int = Field(description="prompt + completion tokens")
    card_ms: int
    card_hours: float
    amount_micro: int = Field(description="the day's share of the period's bill")
    amount: str


class DailyUsagePublic(BaseModel):
    tenant: str
    period: PeriodPublic
    days: list[DayPublic]
    total_micro: int = Field(description="the sum of the days: the period's bill total")
    total: str


class FamilyUsePublic(BaseModel):
    family: str = Field(description="a chip family, or 'units' (normalised units, not cards)")
    nominal: int | None = Field(description="the nominal quota; null: no quota (unlimited)")
    borrowing_limit: int | None = Field(description="null: no limit (or not in a cohort)")
    in_use: float = Field(description="cards held now (units for 'units')")
    borrowed: float = Field(description="the part above nominal, borrowed from the cohort")


class QuotaUsePublic(BaseModel):
    tenant: str
    cohort: str | None
    families: list[FamilyUsePublic]


def day_public(day: DayUsage) -> DayPublic:
    return DayPublic(
        day=day.day,
        prompt_tokens=day.prompt_tokens,
        completion_tokens=day.completion_tokens,
        tokens=day.prompt_tokens + day.completion_tokens,
        card_ms=day.card_ms,
        card_hours=day.card_ms / CARD_MS_PER_HOUR,
        amount_micro=day.amount,
        amount=format_micro(day.amount),
    )


def daily_public(tenant: str, period: Period, days: list[DayUsage]) -> DailyUsagePublic:
    return DailyUsagePublic(
        tenant=tenant,
        period=PeriodPublic(name=period.name, start=period.start, end=period.end),
        days=[day_public(d) for d in days],
        total_micro=sum(d.amount for d in days),
        total=format_micro(sum(d.amount for d in days)),
    )


def quota_use_public(use: QuotaUse) -> QuotaUsePublic:
    return QuotaUsePublic(
        tenant=use.tenant,
        cohort=use.cohort,
        families=[
            FamilyUsePublic(
                family=f.family,
                nominal=f.nominal,
                borrowing_limit=f.borrowing_limit,
                in_use=f.in_use,
                borrowed=f.borrowed,
            )
            for f in use.families
        ],
    )


@router.get(
    "/{name}/usage/daily",
    response_model=DailyUsagePublic,
    summary="A tenant's usage and bill by UTC day",
    responses=errors(NOT_FOUND, (422, f"Not a period, or longer than {MAX_DAYS} days")),
)
def daily_usage(
    name: str, principal: PrincipalDep, platform: PlatformDep, period: PeriodQuery = None
) -> DailyUsagePublic:
    """Tokens, card-hours and the day's share of the bill, for every day of the period
    (default this month); the days add up to the period's usage and bill."""
    chosen = platform.billing.period(period)
    return daily_public(name, chosen, platform.billing.daily(principal, name, chosen))


def quota_use_view(platform: Platform) -> QuotaUseView:
    return QuotaUseView(platform.uows, platform.clock, platform.catalogue, platform.tenancy)


@router.get(
    "/{name}/quota-use",
    response_model=QuotaUsePublic,
    summary="Cards in use now and borrowed from the cohort, per chip family",
    responses=errors(NOT_FOUND),
)
def quota_use(name: str, principal: PrincipalDep, platform: PlatformDep) -> QuotaUsePublic:
    """From the snapshot the scheduler builds: cards held now (jobs still stopping
    included), and the part above the nominal quota a cohort member borrows."""
    return quota_use_public(quota_use_view(platform).of(principal, name))
