"""A period's usage and bill split by UTC day. Pure: no I/O, no clock.

Each day's quantities are the ledger totals of that day (the days partition the period,
so they add up to the period's totals exactly). Money is not priced per day — a bill is
priced over its own period (see :mod:`suanwang.domain.billing`) — but **apportioned**:
each line of the period's bill is split over the days in proportion to the days'
quantities of that line, by largest remainder, so the daily amounts add up to the bill's
total to the micro-unit and each day's share of a line is within one micro-unit of exact.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from suanwang.domain.billing import Bill, Meter, Period, UsageTotal
from suanwang.domain.errors import ValidationError

DAY_S = 86_400
MAX_DAYS = 92
"""The longest period split by day (a quarter)."""


@dataclass(frozen=True, slots=True)
class Day:
    """One UTC day of a period: ``[start, end)`` in UNIX seconds, named ``YYYY-MM-DD``."""

    name: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class DayUsage:
    """One day's usage: tokens, card-milliseconds, and its share of the bill (micro-units)."""

    day: str
    prompt_tokens: int
    completion_tokens: int
    card_ms: int
    amount: int


def days_of(period: Period) -> list[Day]:
    """The UTC days covering ``period`` (the last one cut at the period's end)."""
    if period.end - period.start > MAX_DAYS * DAY_S:
        raise ValidationError(
            f"period {period.name!r} is longer than {MAX_DAYS} days",
            field="period",
            hint="ask for a month (YYYY-MM) or a shorter range",
        )
    days: list[Day] = []
    start = period.start
    while start < period.end:
        name = dt.datetime.fromtimestamp(start, tz=dt.UTC).strftime("%Y-%m-%d")
        end = min((start // DAY_S + 1) * DAY_S, period.end)
        days.append(Day(name, start, end))
        start = end
    return days


def _quantity(total: UsageTotal, meter: Meter) -> int:
    return {
        Meter.PROMPT_TOKENS: total.prompt_tokens,
        Meter.COMPLETION_TOKENS: total.completion_tokens,
        Meter.CARD_MS: total.card_ms,
        Meter.BYTE_S: total.byte_s,
    }[meter]


def apportion(amount: int, weights: Sequence[int]) -> list[int]:
    """``amount`` split in proportion to ``weights`` (largest remainder, ties to the
    earlier): the parts add up to ``amount``; all zero when the weights are."""
    whole = sum(weights)
    if whole == 0:
        return [0] * len(weights)
    parts = [amount * w // whole for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(amount * weights[i] % whole), i))
    for i in remainders[: amount - sum(parts)]:
        parts[i] += 1
    return parts


def daily_usage(
    bill: Bill, days: Sequence[Day], totals: Sequence[Sequence[UsageTotal]]
) -> list[DayUsage]:
    """The days' usage (``totals[i]``: the ledger totals of ``days[i]``) with the bill of
    the whole period apportioned over them."""
    amounts = [0] * len(days)
    for line in bill.lines:
        weights = [
            sum(_quantity(t, line.meter) for t in day if (t.kind, t.item) == (line.kind, line.item))
            for day in totals
        ]
        for i, part in enumerate(apportion(line.amount, weights)):
            amounts[i] += part
    return [
        DayUsage(
            day=day.name,
            prompt_tokens=sum(t.prompt_tokens for t in day_totals),
            completion_tokens=sum(t.completion_tokens for t in day_totals),
            card_ms=sum(t.card_ms for t in day_totals),
            amount=amount,
        )
        for day, day_totals, amount in zip(days, totals, amounts, strict=True)
    ]
