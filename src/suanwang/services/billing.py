"""Usage reports and bills from the metering ledger, with tenant isolation.

A tenant's keys see only that tenant's usage and bills (anything else is 404, the same
as a tenant that does not exist); the operator sees every tenant. Quantities come
straight from ledger sums and bills are priced by :func:`suanwang.domain.billing.make_bill`
(each line once, integer micro-units, half up). See ``docs/metering.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from suanwang.domain.audit import AuditAction
from suanwang.domain.billing import (
    DEFAULT_TIER,
    Bill,
    Period,
    PriceBook,
    UsageTotal,
    make_bill,
    month_of,
    parse_period,
)
from suanwang.domain.daily_usage import DayUsage, daily_usage, days_of
from suanwang.domain.errors import Forbidden, NotFound, ValidationError
from suanwang.domain.serving import TokenPrice
from suanwang.domain.tenancy import Principal
from suanwang.ports import Clock, UnitOfWorkFactory
from suanwang.services import audit

TIER_NAME = re.compile(r"^[a-z][a-z0-9-]{1,31}$")


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Ledger sums over ``period``, by tenant and model or chip."""

    period: Period
    totals: tuple[UsageTotal, ...]


class Billing:
    """Use cases over the ledger: usage, bills and price tiers."""

    def __init__(
        self,
        uows: UnitOfWorkFactory,
        clock: Clock,
        prices: PriceBook,
        extra_token_prices: Callable[[], Mapping[str, TokenPrice]] | None = None,
    ) -> None:
        """``extra_token_prices``: standard prices of models outside the catalogue (external
        endpoints), read at each bill; the catalogue's prices win for its models."""
        self._uows = uows
        self._clock = clock
        self.prices = prices
        self._extra = extra_token_prices

    def period(self, text: str | None) -> Period:
        """``text`` parsed (see :func:`parse_period`), or the current month when absent."""
        return month_of(self._clock.now()) if text is None else parse_period(text)

    def usage(
        self, principal: Principal, tenant: str | None, period: Period | None = None
    ) -> UsageReport:
        """Usage over ``period`` (default: this month) of ``tenant``, or of every tenant the
        principal may see when ``tenant`` is ``None``."""
        period = period or self.period(None)
        if tenant is None and not principal.is_operator:
            tenant = principal.tenant_id
        with self._uows() as uow:
            if tenant is not None:
                self._visible(principal, tenant, uow.usage.tier(tenant))
            totals = uow.usage.totals(tenant, period.start, period.end)
        return UsageReport(period, tuple(totals))

    def bill(self, principal: Principal, tenant: str, period: Period) -> Bill:
        """``tenant``'s bill for ``period`` at its current price tier."""
        with self._uows() as uow:
            tier = self._visible(principal, tenant, uow.usage.tier(tenant))
            totals = uow.usage.totals(tenant, period.start, period.end)
        return make_bill(tenant, tier, period, totals, self._price_book())

    def daily(self, principal: Principal, tenant: str, period: Period) -> list[DayUsage]:
        """``tenant``'s usage of each UTC day of ``period`` (at most 92 days), with the
        period's bill (the one :meth:`bill` makes) apportioned over the days: they add up
        to :meth:`usage` and :meth:`bill` exactly (see :mod:`suanwang.domain.daily_usage`)."""
        days = days_of(period)
        with self._uows() as uow:
            tier = self._visible(principal, tenant, uow.usage.tier(tenant))
            whole = uow.usage.totals(tenant, period.start, period.end)
            totals = [uow.usage.totals(tenant, day.start, day.end) for day in days]
        bill = make_bill(tenant, tier, period, whole, self._price_book())
        return daily_usage(bill, days, totals)

    def bills(self, principal: Principal, period: Period) -> list[Bill]:
        """Every tenant's bill for ``period`` (operator only), in tenant order: one ledger
        query, priced exactly as :meth:`bill` prices each tenant's."""
        if not principal.is_operator:
            raise Forbidden("only the operator sees every tenant's bill", field="tenant")
        with self._uows() as uow:
            tiers = uow.reports.tiers()
            totals = uow.usage.totals(None, period.start, period.end)
        by_tenant: dict[str, list[UsageTotal]] = {}
        for total in totals:
            by_tenant.setdefault(total.tenant, []).append(total)
        book = self._price_book()
        return [
            make_bill(tenant, tiers.get(tenant, DEFAULT_TIER), period, rows, book)
            for tenant, rows in sorted(by_tenant.items())
        ]

    def _price_book(self) -> PriceBook:
        if self._extra is None:
            return self.prices
        extra = {model: {DEFAULT_TIER: p} for model, p in self._extra().items()}
        return replace(self.prices, tokens={**extra, **self.prices.tokens})

    def set_tier(self, principal: Principal, tenant: str, tier: str) -> str:
        """Set a tenant's price tier (operator only)."""
        if not principal.is_operator:
            raise Forbidden("only the operator sets price tiers", field="tier")
        if not TIER_NAME.fullmatch(tier):
            raise ValidationError(
                f"invalid tier {tier[:40]!r}",
                field="tier",
                hint="2-32 lowercase letters, digits and '-', e.g. standard or edu",
            )
        with self._uows() as uow:
            old = uow.usage.tier(tenant)
            if not uow.usage.set_tier(tenant, tier):
                raise _not_found(tenant)
            audit.record(
                uow,
                principal,
                AuditAction.TIER_UPDATE,
                tenant,
                tenant=tenant,
                at=self._clock.now(),
                before={"tier": old},
                after={"tier": tier},
            )
            uow.commit()
        return tier

    @staticmethod
    def _visible(principal: Principal, tenant: str, tier: str | None) -> str:
        if tier is None or not principal.can_see_tenant(tenant):
            raise _not_found(tenant)
        return tier


def _not_found(tenant: str) -> NotFound:
    return NotFound(
        f"no tenant {tenant[:64]!r}", field="tenant", hint="see 'suanwang tenants list'"
    )
