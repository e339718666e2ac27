"""Demand as gateways report it (domain/demand.py) and as one gateway tracks it
(gateway/demand.py, the router's in-flight leases)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fakes import FakeClock
from hypothesis import given
from hypothesis import strategies as st

from gateway_support import CHAT, StaticDirectory, replica
from suanwang.domain.demand import (
    DRAIN_TIMEOUT_S,
    ROUTING_MARGIN_S,
    STALE_AFTER_S,
    DemandReport,
    drained,
    measured_service,
    total_demand,
)
from suanwang.gateway.demand import RATE_WINDOW_S, TTFT_WINDOW_S, DemandTracker
from suanwang.gateway.routing import Router

NOW = 1_000.0


def report(
    gateway: str = "g1",
    deployment: str = "dep-aaaa",
    *,
    at: float = NOW,
    inflight: int = 0,
    queued: int = 0,
    tokens_per_s: float = 0.0,
    ttft: float | None = None,
    last: float | None = None,
    routed_at: float = NOW,
    replicas: tuple[tuple[str, int], ...] = (),
) -> DemandReport:
    return DemandReport(
        gateway, deployment, at, inflight, queued, tokens_per_s, ttft, last, routed_at, replicas
    )


def test_demand_is_summed_over_fresh_gateways_and_stale_ones_are_left_out() -> None:
    reports = [
        report("g1", inflight=3, queued=1, tokens_per_s=10.0, ttft=0.2, last=990.0),
        report("g2", inflight=2, tokens_per_s=5.0, ttft=0.5, last=995.0),
        report("g3", inflight=100, at=NOW - STALE_AFTER_S - 0.1),  # dead gateway
        report("g1", "dep-bbbb", inflight=7),  # another deployment
    ]
    demand = total_demand("dep-aaaa", reports, NOW)
    assert (demand.inflight, demand.queued, demand.tokens_per_s) == (5.0, 1.0, 15.0)
    assert (demand.ttft_p95_s, demand.last_request_at, demand.at) == (0.5, 995.0, NOW)
    nothing = total_demand("dep-cccc", reports, NOW)
    assert (nothing.inflight, nothing.ttft_p95_s, nothing.last_request_at) == (0.0, None, None)


def test_a_draining_replica_is_done_only_when_every_gateway_has_reloaded_and_none_uses_it() -> None:
    since = NOW - 10.0
    after = since + ROUTING_MARGIN_S + 0.1
    busy = report("g1", routed_at=after, replicas=(("dep-aaaa-1", 2),))
    idle = report("g1", routed_at=after)
    not_reloaded = report("g2", routed_at=since + 0.5)
    assert not drained("dep-aaaa-1", since, [busy], NOW)
    assert drained("dep-aaaa-1", since, [idle], NOW)
    assert not drained("dep-aaaa-1", since, [idle, not_reloaded], NOW)
    assert drained("dep-aaaa-1", since, [], NOW)  # no live gateway routes to it
    stale = report("g2", at=NOW - STALE_AFTER_S - 1, replicas=(("dep-aaaa-1", 1),))
    assert drained("dep-aaaa-1", since, [idle, stale], NOW)
    long_ago = NOW - DRAIN_TIMEOUT_S
    assert drained("dep-aaaa-1", long_ago, [busy], NOW)  # the drain timeout


@given(
    st.lists(
        st.tuples(st.floats(0, 20), st.integers(0, 3), st.floats(0, 20)), min_size=1, max_size=6
    ),
    st.floats(0, 30),
)
def test_never_drained_while_a_live_gateway_has_a_request_on_it(
    rows: list[tuple[float, int, float]], since_ago: float
) -> None:
    since = NOW - since_ago
    reports = [
        report(f"g{i}", at=NOW - age, routed_at=NOW - routed_ago, replicas=(("r", n),) if n else ())
        for i, (age, n, routed_ago) in enumerate(rows)
    ]
    live_busy = any(NOW - r.at <= STALE_AFTER_S and r.replica_inflight for r in reports)
    if live_busy:
        assert not drained("r", since, reports, NOW)


def test_the_tracker_reports_rates_p95_queued_and_last_request() -> None:
    clock = FakeClock(NOW)
    tracker = DemandTracker(clock, "gw-1")
    for i in range(20):
        tracker.arrived("dep-aaaa")
        tracker.answered("dep-aaaa", 10, 0.1 * (i + 1), 0.1 * (i + 1) + 2.0, streamed=True)
    with tracker.waiting(["dep-bbbb"]):
        (a, b) = tracker.reports(["dep-aaaa"], {"dep-aaaa": {"dep-aaaa-0": 2}}, NOW - 0.5)
        assert (b.deployment, b.queued, b.last_request_at) == ("dep-bbbb", 1, NOW)
    assert a.tokens_per_s == 200 / RATE_WINDOW_S
    assert a.ttft_p95_s == pytest.approx(1.9)  # nearest rank: the 19th of 20
    assert a.requests_per_s == 20 / RATE_WINDOW_S
    assert a.first_token_s == pytest.approx(0.2)  # nearest rank: the 2nd of 20
    # each answer: 2 s after its first token; its wait (TTFT above 0.2 s) is not slot time
    assert a.service_s == pytest.approx(2.2 - 0.1 / 20)  # the first answer waited less
    assert (a.inflight, a.replica_inflight, a.routed_at) == (2, (("dep-aaaa-0", 2),), NOW - 0.5)
    clock.advance(RATE_WINDOW_S + 1)
    (a, b) = tracker.reports(["dep-aaaa", "dep-bbbb"], {}, NOW)
    assert (a.tokens_per_s, a.ttft_p95_s, b.queued) == (0.0, pytest.approx(1.9), 0)
    clock.advance(TTFT_WINDOW_S)
    (a,) = tracker.reports(["dep-aaaa"], {}, NOW)  # dep-bbbb is gone and quiet: forgotten
    assert a.ttft_p95_s is None


def test_in_flight_leases_outlive_the_replica_leaving_the_routing_table() -> None:
    clock = FakeClock(NOW)
    router = Router(StaticDirectory([]), clock, refresh_s=1.0, eject_s=5.0)
    router.load([replica("r1"), replica("r2")])
    (s1, s2) = router.visible(CHAT, "acme")
    deployment = s1.replica.deployment_id
    with router.lease(s1), router.lease(s1), router.lease(s2):
        router.load([replica("r2")])  # r1 is draining: no longer routed
        assert [s.replica.replica_id for s in router.visible(CHAT, "acme")] == ["r2"]
        assert router.inflight() == {deployment: {"r1": 2, "r2": 1}}
    assert router.inflight() == {}


def test_answers_not_streamed_count_their_whole_time_as_service() -> None:
    tracker = DemandTracker(FakeClock(NOW), "gw-1")
    tracker.answered("dep-aaaa", 10, 3.0, 3.0, streamed=False)
    tracker.answered("dep-aaaa", 10, 1.0, 1.0, streamed=False)
    (a,) = tracker.reports(["dep-aaaa"], {}, NOW)
    assert (a.first_token_s, a.service_s) == (1.0, 2.0)


def test_measured_service_weights_gateways_by_their_rate_and_takes_the_lowest_first_token() -> None:
    reports = [
        replace(report("g1"), requests_per_s=3.0, service_s=2.0, first_token_s=0.05),
        replace(report("g2"), requests_per_s=1.0, service_s=4.0, first_token_s=0.02),
        replace(report("g3", at=NOW - STALE_AFTER_S - 1), service_s=100.0, first_token_s=0.001),
    ]
    model = measured_service("dep-aaaa", reports, NOW, slots=8)
    assert model is not None
    assert (model.slots, model.first_token_s) == (8, 0.02)
    assert 1 / model.slot_rps == pytest.approx((3 * 2.0 + 1 * 4.0) / 4)
    assert total_demand("dep-aaaa", reports, NOW).requests_per_s == 4.0
    assert measured_service("dep-aaaa", [report("g1")], NOW, slots=8) is None
