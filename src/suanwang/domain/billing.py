"""Prices, billing periods and bills, computed from ledger totals. Pure: no I/O, no clock.

The ledger holds quantities, never money. A bill groups a tenant's ledger rows of one
period into lines — tokens by model (one line for prompt, one for completion tokens),
compute by chip (card-milliseconds) and dataset storage (byte-seconds) — and prices
**each line once, from its summed quantity**, in integer micro-units (1e-6 of the
currency unit)::

    amount = round_half_up(quantity × unit_price / per)

with ``per`` = 1,000,000 tokens, 3,600,000 card-milliseconds (one card-hour) or
2.592e15 byte-seconds (one GB-month: 10^9 bytes for 30 days). The bill's
total is the sum of its line amounts. So, exactly: Σ ledger rows == usage totals == bill
line quantities, and Σ line amounts == bill total; each line is within half a micro-unit
of its exact price. Bills of two halves of a period may differ from the whole period's
bill by that rounding, which is why a bill is always priced over its own period.
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from suanwang.domain.errors import ValidationError
from suanwang.domain.serving import TokenPrice
from suanwang.domain.usage import UsageKind

TOKENS_PER_UNIT = 1_000_000
CARD_MS_PER_HOUR = 3_600_000
BYTE_S_PER_GB_MONTH = 1_000_000_000 * 30 * 86_400
"""One GB (10^9 bytes) stored for a 30-day month, in byte-seconds."""
STORAGE_ITEM = "storage"
DEFAULT_TIER = "standard"
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
PERIOD_PATTERN = r"^(\d{4}-\d{2}|\d{4}-\d{2}-\d{2}\.\.\d{4}-\d{2}-\d{2})$"
"""The shape of a period (the calendar checks come after)."""


class Meter(enum.StrEnum):
    """What a bill line counts."""

    PROMPT_TOKENS = "prompt_tokens"
    COMPLETION_TOKENS = "completion_tokens"
    CARD_MS = "card_ms"
    BYTE_S = "byte_s"


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open interval ``[start, end)`` of UNIX seconds (UTC) with a display name."""

    name: str
    start: float
    end: float

    def __post_init__(self) -> None:
        if not self.end > self.start:
            raise ValidationError("a period must end after it starts", field="period")


def parse_period(text: str) -> Period:
    """``YYYY-MM`` (a calendar month, UTC) or ``YYYY-MM-DD..YYYY-MM-DD`` (end exclusive)."""
    if match := _MONTH.fullmatch(text):
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12 or year < 1970:
            raise _bad_period(text)
        days = calendar.monthrange(year, month)[1]
        start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
        return Period(text, start.timestamp(), (start + dt.timedelta(days=days)).timestamp())
    if match := _RANGE.fullmatch(text):
        try:
            start_day = dt.date.fromisoformat(match.group(1))
            end_day = dt.date.fromisoformat(match.group(2))
        except ValueError:
            raise _bad_period(text) from None
        return Period(text, _midnight(start_day), _midnight(end_day))
    raise _bad_period(text)


def month_of(at: float) -> Period:
    """The calendar month (UTC) holding the instant ``at``."""
    day = dt.datetime.fromtimestamp(at, tz=dt.UTC)
    return parse_period(f"{day.year:04d}-{day.month:02d}")


def _midnight(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def _bad_period(text: str) -> ValidationError:
    return ValidationError(
        f"invalid period {text[:40]!r}",
        field="period",
        hint="use YYYY-MM (a month) or YYYY-MM-DD..YYYY-MM-DD (end day exclusive)",
    )


@dataclass(frozen=True, slots=True)
class UsageTotal:
    """Summed ledger rows of one tenant for one model (tokens) or one chip (compute)."""

    tenant: str
    kind: UsageKind
    item: str
    """The model for tokens, the chip for compute."""
    entries: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    card_ms: int = 0
    byte_s: int = 0
    """Stored byte-seconds (``storage`` totals)."""

    def __post_init__(self) -> None:
        counts = (self.entries, self.prompt_tokens, self.completion_tokens, self.card_ms)
        if min(*counts, self.byte_s) < 0:
            raise ValueError(f"negative usage for {self.tenant}/{self.item}")


@dataclass(frozen=True, slots=True)
class PriceBook:
    """Token prices by model and tier; compute prices by chip and tier (per card-hour);
    dataset storage by tier (per GB-month)."""

    tokens: Mapping[str, Mapping[str, TokenPrice]]
    compute: Mapping[str, Mapping[str, int]]
    storage: Mapping[str, int] = field(default_factory=dict)

    def gb_month_price(self, tier: str) -> int:
        """Micro-units per GB-month of dataset storage for ``tier`` (else ``standard``, else 0)."""
        return self.storage.get(tier, self.storage.get(DEFAULT_TIER, 0))

    def token_price(self, model: str, tier: str) -> TokenPrice:
        """The model's price for ``tier`` (else ``standard``; free if the model is unknown)."""
        by_tier = self.tokens.get(model, {})
        return by_tier.get(tier) or by_tier.get(DEFAULT_TIER) or TokenPrice(0, 0)

    def card_hour_price(self, chip: str, tier: str) -> int:
        """Micro-units per card-hour of ``chip`` for ``tier`` (else ``standard``, else 0)."""
        by_tier = self.compute.get(chip, {})
        return by_tier.get(tier, by_tier.get(DEFAULT_TIER, 0))


def card_hour_from_units(units: Fraction, unit_hour_price: int) -> int:
    """The card-hour price of a chip of ``units`` normalised units, priced per unit-hour:
    ``units × unit_hour_price`` rounded half up to a micro-unit (exact: no floats)."""
    if units < 0 or unit_hour_price < 0:
        raise ValueError("units and prices cannot be negative")
    return math.floor(units * unit_hour_price + Fraction(1, 2))


def price(quantity: int, unit_price: int, per: int) -> int:
    """``quantity × unit_price / per`` rounded half up, in integers (no floats)."""
    if quantity < 0 or unit_price < 0 or per <= 0:
        raise ValueError("quantities and prices cannot be negative")
    return (quantity * unit_price + per // 2) // per


@dataclass(frozen=True, slots=True)
class BillLine:
    kind: UsageKind
    item: str
    meter: Meter
    quantity: int
    unit_price: int
    """Micro-units per ``per`` units of ``quantity``."""
    per: int
    amount: int
    """Micro-units."""
    entries: int


@dataclass(frozen=True, slots=True)
class Bill:
    tenant: str
    tier: str
    period: Period
    lines: tuple[BillLine, ...]

    @property
    def total(self) -> int:
        """Micro-units: the sum of the line amounts."""
        return sum(line.amount for line in self.lines)


def make_bill(
    tenant: str, tier: str, period: Period, totals: Iterable[UsageTotal], prices: PriceBook
) -> Bill:
    """The bill for ``tenant``'s ``totals`` over ``period``, lines sorted by kind and item."""
    lines: list[BillLine] = []
    for total in sorted(totals, key=lambda t: (t.kind, t.item)):
        if total.tenant != tenant:
            raise ValueError(f"usage of {total.tenant} on the bill of {tenant}")
        lines.extend(_lines(total, tier, prices))
    return Bill(tenant, tier, period, tuple(lines))


def _lines(total: UsageTotal, tier: str, prices: PriceBook) -> list[BillLine]:
    if total.kind is UsageKind.STORAGE:
        unit = prices.gb_month_price(tier)
        return [_line(total, Meter.BYTE_S, total.byte_s, unit, BYTE_S_PER_GB_MONTH)]
    if total.kind is UsageKind.COMPUTE:
        unit = prices.card_hour_price(total.item, tier)
        return [_line(total, Meter.CARD_MS, total.card_ms, unit, CARD_MS_PER_HOUR)]
    token_price = prices.token_price(total.item, tier)
    return [
        _line(
            total,
            Meter.PROMPT_TOKENS,
            total.prompt_tokens,
            token_price.input_per_million,
            TOKENS_PER_UNIT,
        ),
        _line(
            total,
            Meter.COMPLETION_TOKENS,
            total.completion_tokens,
            token_price.output_per_million,
            TOKENS_PER_UNIT,
        ),
    ]


def _line(total: UsageTotal, meter: Meter, quantity: int, unit: int, per: int) -> BillLine:
    return BillLine(
        kind=total.kind,
        item=total.item,
        meter=meter,
        quantity=quantity,
        unit_price=unit,
        per=per,
        amount=price(quantity, unit, per),
        entries=total.entries,
    )


def format_micro(amount: int) -> str:
    """Micro-units as a decimal string with six places, e.g. ``1234567`` → ``1.234567``."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"
