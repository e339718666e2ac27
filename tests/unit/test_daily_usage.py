"""A period split by UTC day: the days cover the period, and the bill's amounts are
apportioned so the days add up to the bill to the micro-unit (Hypothesis)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.billing import PriceBook, UsageTotal, make_bill, parse_period
from suanwang.domain.daily_usage import DAY_S, apportion, daily_usage, days_of
from suanwang.domain.errors import ValidationError
from suanwang.domain.usage import UsageKind

PRICES = PriceBook(
    tokens={},
    compute={"ascend-910b": {"standard": 7_654_321}},
)


@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**9), min_size=1, max_size=40))
def test_apportion_adds_up_and_each_part_is_within_one_of_exact(
    amount: int, weights: list[int]
) -> None:
    parts = apportion(amount, weights)
    whole = sum(weights)
    if whole == 0:
        assert parts == [0] * len(weights)
        return
    assert sum(parts) == amount
    for part, weight in zip(parts, weights, strict=True):
        assert abs(part * whole - amount * weight) < whole  # |part - exact| < 1


def test_days_cover_a_month_and_a_range_and_refuse_a_year() -> None:
    january = days_of(parse_period("2027-01"))
    assert [d.name for d in (january[0], january[-1])] == ["2027-01-01", "2027-01-31"]
    assert all(d.end - d.start == DAY_S for d in january)
    assert january[0].start == dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()
    assert len(days_of(parse_period("2027-02-27..2027-03-02"))) == 3
    with pytest.raises(ValidationError):
        days_of(parse_period("2026-01-01..2027-01-01"))


@given(st.lists(st.integers(0, 10**8), min_size=31, max_size=31))
def test_the_days_add_up_to_the_bill(card_ms: list[int]) -> None:
    period = parse_period("2027-01")
    totals = [
        [UsageTotal("t", UsageKind.COMPUTE, "ascend-910b", 1, card_ms=ms)] if ms else []
        for ms in card_ms
    ]
    whole = [UsageTotal("t", UsageKind.COMPUTE, "ascend-910b", 31, card_ms=sum(card_ms))]
    bill = make_bill("t", "standard", period, whole, PRICES)
    days = daily_usage(bill, days_of(period), totals)
    assert sum(d.amount for d in days) == bill.total
    assert [d.card_ms for d in days] == card_ms
