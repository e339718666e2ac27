"""Pricing, periods and bills (pure): tables of cases and Hypothesis properties."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.billing import (
    CARD_MS_PER_HOUR,
    TOKENS_PER_UNIT,
    Meter,
    Period,
    PriceBook,
    UsageTotal,
    format_micro,
    make_bill,
    month_of,
    parse_period,
    price,
)
from suanwang.domain.chips import Catalogue, ChipType
from suanwang.domain.errors import ValidationError
from suanwang.domain.ids import ChipFamily, ChipName
from suanwang.domain.serving import TokenPrice
from suanwang.domain.usage import UsageKind
from suanwang.services.catalogue import default_catalogue
from suanwang.services.prices import compute_prices, default_prices

PRICES = PriceBook(
    tokens={
        "chat": {"standard": TokenPrice(100_000, 200_000), "edu": TokenPrice(50_000, 100_000)},
        "embed": {"standard": TokenPrice(20_000, 0)},
    },
    compute={"npu": {"standard": 12_000_000, "edu": 8_400_000}, "cpu": {"standard": 50_000}},
)
NOV = parse_period("2026-11")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, sec, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("quantity", "unit", "per", "amount"),
    [
        (0, 100_000, TOKENS_PER_UNIT, 0),
        (1_000_000, 100_000, TOKENS_PER_UNIT, 100_000),
        (15, 100_000, TOKENS_PER_UNIT, 2),  # 1.5 → 2: half up
        (14, 100_000, TOKENS_PER_UNIT, 1),  # 1.4 → 1
        (5, 100_000, TOKENS_PER_UNIT, 1),  # 0.5 → 1
        (4, 100_000, TOKENS_PER_UNIT, 0),  # 0.4 → 0
        (CARD_MS_PER_HOUR, 12_000_000, CARD_MS_PER_HOUR, 12_000_000),  # one card-hour
        (8 * CARD_MS_PER_HOUR // 2, 12_000_000, CARD_MS_PER_HOUR, 48_000_000),  # 8 cards, 30 min
        (1, 50_000, CARD_MS_PER_HOUR, 0),  # one card-ms of a core
        (10**15, 20_000_000, TOKENS_PER_UNIT, 2 * 10**16),  # no overflow, no float
    ],
)
def test_price_table(quantity: int, unit: int, per: int, amount: int) -> None:
    assert price(quantity, unit, per) == amount


@pytest.mark.parametrize(
    ("model", "tier", "expected"),
    [
        ("chat", "standard", TokenPrice(100_000, 200_000)),
        ("chat", "edu", TokenPrice(50_000, 100_000)),
        ("embed", "edu", TokenPrice(20_000, 0)),  # no edu price: standard
        ("unknown", "standard", TokenPrice(0, 0)),
    ],
)
def test_token_price_by_tier(model: str, tier: str, expected: TokenPrice) -> None:
    assert PRICES.token_price(model, tier) == expected


@pytest.mark.parametrize(
    ("chip", "tier", "expected"),
    [("npu", "standard", 12_000_000), ("npu", "edu", 8_400_000), ("cpu", "edu", 50_000)],
)
def test_card_hour_price_by_tier(chip: str, tier: str, expected: int) -> None:
    assert PRICES.card_hour_price(chip, tier) == expected


def test_every_catalogue_chip_and_model_has_a_price() -> None:
    prices = default_prices()
    assert set(prices.compute) == {str(name) for name in default_catalogue().chips}
    assert all("standard" in by_tier for by_tier in prices.tokens.values())


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-11", utc(2026, 11, 1), utc(2026, 12, 1)),
        ("2026-12", utc(2026, 12, 1), utc(2027, 1, 1)),
        ("2024-02", utc(2024, 2, 1), utc(2024, 3, 1)),
        ("2026-11-01..2026-11-15", utc(2026, 11, 1), utc(2026, 11, 15)),
    ],
)
def test_periods(text: str, start: float, end: float) -> None:
    assert parse_period(text) == Period(text, start, end)


@pytest.mark.parametrize(
    "text", ["2026-13", "2026-00", "26-11", "2026-11-15..2026-11-01", "2026-02-30..2026-03-01", ""]
)
def test_bad_periods_name_the_field(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_period(text)
    assert info.value.field == "period"


def test_month_of() -> None:
    assert month_of(utc(2026, 11, 30, 23, 59, 59)).name == "2026-11"
    assert month_of(utc(2026, 12, 1)).name == "2026-12"


def test_a_bill_has_token_lines_per_model_and_compute_lines_per_chip() -> None:
    totals = [
        UsageTotal("acme", UsageKind.TOKENS, "chat", 3, 1_500_000, 250_000),
        UsageTotal("acme", UsageKind.COMPUTE, "npu", 2, card_ms=2 * CARD_MS_PER_HOUR),
    ]
    bill = make_bill("acme", "edu", NOV, totals, PRICES)
    assert [(line.item, line.meter, line.quantity, line.amount) for line in bill.lines] == [
        ("npu", Meter.CARD_MS, 2 * CARD_MS_PER_HOUR, 16_800_000),
        ("chat", Meter.PROMPT_TOKENS, 1_500_000, 75_000),
        ("chat", Meter.COMPLETION_TOKENS, 250_000, 25_000),
    ]
    assert bill.total == 16_900_000
    assert format_micro(bill.total) == "16.900000"


def test_usage_of_another_tenant_never_lands_on_a_bill() -> None:
    with pytest.raises(ValueError, match="bill of acme"):
        make_bill(
            "acme", "standard", NOV, [UsageTotal("other", UsageKind.TOKENS, "chat", 1)], PRICES
        )


def test_negative_usage_cannot_be_summed() -> None:
    with pytest.raises(ValueError, match="negative"):
        UsageTotal("acme", UsageKind.TOKENS, "chat", 1, prompt_tokens=-1)


counts = st.integers(min_value=0, max_value=10**9)
totals_strategy = st.lists(
    st.one_of(
        st.builds(
            UsageTotal,
            st.just("acme"),
            st.just(UsageKind.TOKENS),
            st.sampled_from(["chat", "embed", "unknown"]),
            st.integers(1, 10**6),
            counts,
            counts,
        ),
        st.builds(
            UsageTotal,
            st.just("acme"),
            st.just(UsageKind.COMPUTE),
            st.sampled_from(["npu", "cpu"]),
            st.integers(1, 10**6),
            card_ms=counts,
        ),
    ),
    max_size=8,
    unique_by=lambda t: (t.kind, t.item),
)


@settings(max_examples=100, deadline=None)
@given(totals=totals_strategy, tier=st.sampled_from(["standard", "edu", "gold"]))
def test_bill_lines_sum_the_usage_exactly(totals: list[UsageTotal], tier: str) -> None:
    bill = make_bill("acme", tier, NOV, totals, PRICES)
    by_meter = dict.fromkeys(Meter, 0)
    for line in bill.lines:
        by_meter[line.meter] += line.quantity
        assert line.amount >= 0
        exact = line.quantity * line.unit_price
        assert abs(2 * (line.amount * line.per - exact)) <= line.per  # within half a micro-unit
    assert by_meter[Meter.PROMPT_TOKENS] == sum(t.prompt_tokens for t in totals)
    assert by_meter[Meter.COMPLETION_TOKENS] == sum(t.completion_tokens for t in totals)
    assert by_meter[Meter.CARD_MS] == sum(t.card_ms for t in totals)
    assert bill.total == sum(line.amount for line in bill.lines)


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_format_micro_round_trips(amount: int) -> None:
    text = format_micro(amount)
    assert round(float(text) * 1_000_000) == amount or abs(amount) > 10**14
    whole, frac = text.lstrip("-").split(".")
    assert (-1 if text.startswith("-") else 1) * (int(whole) * 1_000_000 + int(frac)) == amount


def _chip(name: str, tflops: float) -> ChipType:
    return ChipType(ChipName(name), "v", ChipFamily("f"), 64, tflops, tflops, "s", "", "")


UNIT_CASES = [
    # (chip TFLOPS, per-unit-hour price, card-hour price)
    pytest.param(125.0, 3_600_000, 3_600_000, id="one-unit-pays-the-unit-price"),
    pytest.param(280.0, 3_600_000, 8_064_000, id="910b-is-2.24-units"),
    pytest.param(119.5, 1_000_000, 956_000, id="decimal-tflops-stay-exact"),
    pytest.param(0.5, 125, 1, id="half-a-micro-unit-rounds-up"),
    pytest.param(0.5, 124, 0, id="under-half-rounds-down"),
]


@pytest.mark.parametrize(("tflops", "unit_price", "expected"), UNIT_CASES)
def test_chips_priced_per_unit_hour(tflops: float, unit_price: int, expected: int) -> None:
    catalogue = Catalogue.of([_chip("x", tflops)])
    prices = compute_prices({}, {"standard": unit_price}, catalogue)
    assert prices["x"] == {"standard": expected}


def test_a_chip_line_wins_over_the_unit_price_and_cpu_needs_a_line() -> None:
    catalogue = Catalogue.of([_chip("a", 250.0), _chip("b", 250.0), _chip("cpu", 0.0)])
    prices = compute_prices({"a": {"standard": 7}}, {"standard": 1_000, "edu": 500}, catalogue)
    assert prices == {"a": {"standard": 7}, "b": {"standard": 2_000, "edu": 1_000}}


def test_the_packaged_book_prices_some_chips_by_units() -> None:
    compute = default_prices().compute
    assert compute["kunlunxin-p800"] == {"standard": 9_936_000, "edu": 6_955_200}  # 2.76 units
