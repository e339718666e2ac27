"""The operator views' pure parts (domain/oversight.py): revenue roll-ups add up to the
bills, ETAs, link marking, waits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.billing import PriceBook, UsageTotal, make_bill, parse_period
from suanwang.domain.fleet import WanLinkSpec
from suanwang.domain.oversight import QueueGroup, TransferListing, link_views, revenue_of
from suanwang.domain.serving import TokenPrice
from suanwang.domain.transfers import TransferRecord, TransferState
from suanwang.domain.usage import UsageKind

PERIOD = parse_period("2026-11")
PRICES = PriceBook(
    tokens={"m1": {"standard": TokenPrice(1_000_000, 2_000_000)}},
    compute={"ascend-910b": {"standard": 9_000_000}},
    storage={"standard": 100_000},
)
totals = st.lists(
    st.one_of(
        st.builds(
            lambda t, m, p, c: UsageTotal(t, UsageKind.TOKENS, m, 1, p, c),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["m1", "m2"]),
            st.integers(0, 10**9),
            st.integers(0, 10**9),
        ),
        st.builds(
            lambda t, ms: UsageTotal(t, UsageKind.COMPUTE, "ascend-910b", 1, card_ms=ms),
            st.sampled_from(["a", "b"]),
            st.integers(0, 10**10),
        ),
    ),
    max_size=12,
)


@given(totals)
def test_revenue_totals_are_the_bills_totals(rows: list[UsageTotal]) -> None:
    tenants = sorted({r.tenant for r in rows})
    bills = [make_bill(t, "standard", PERIOD, [r for r in rows if r.tenant == t], PRICES)
             for t in tenants]  # fmt: skip
    report = revenue_of(PERIOD, bills)
    assert report.total.amount == sum(b.total for b in bills)
    assert {r.name: r.amount for r in report.tenants} == {b.tenant: b.total for b in bills}
    assert sum(r.amount for r in report.items) == report.total.amount
    assert sum(r.tokens for r in report.items) == sum(
        r.prompt_tokens + r.completion_tokens for r in rows
    )
    assert report.total.card_ms == sum(r.card_ms for r in rows)


def transfer(state: TransferState, done: int, rate: float, eta: float | None) -> TransferRecord:
    return TransferRecord("t1", "d1", "r1", "r2", state, 1000, done, rate, eta, "", 0, 0.0)


def test_eta_from_the_agent_or_the_rate_and_none_when_ended() -> None:
    assert TransferListing(transfer(TransferState.RUNNING, 0, 10, 42), "a", "d").eta_s == 42
    assert TransferListing(transfer(TransferState.RUNNING, 500, 10, None), "a", "d").eta_s == 50
    assert TransferListing(transfer(TransferState.PENDING, 0, 0, None), "a", "d").eta_s is None
    assert TransferListing(transfer(TransferState.VERIFIED, 1000, 0, 0), "a", "d").eta_s is None


def test_links_are_real_only_with_agents_at_both_ends() -> None:
    links = [
        WanLinkSpec("sh", "bj", 100, 30, 1000),  # type: ignore[arg-type]
        WanLinkSpec("bj", "gz", 40, 40, 2000),  # type: ignore[arg-type]
    ]
    views = link_views(links, ["sh", "bj"])
    assert [(v.link.region_a, v.real) for v in views] == [("bj", False), ("sh", True)]


def test_wait_is_never_negative() -> None:
    group = QueueGroup("a", "any", None, 2, 16, 100.0)
    assert group.wait_s(160.0) == 60.0
    assert group.wait_s(50.0) == 0.0
