"""The autoscaling policy (domain/autoscaling.py): table tests of its rules and Hypothesis
properties (bounds, no flapping under constant demand, to zero only after idle time)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.autoscaling import (
    AutoscaleSpec,
    Demand,
    ReplicaCapacity,
    ScaleDecision,
    ScaleMemory,
    ScalingTarget,
    decide,
)
from suanwang.domain.errors import ValidationError
from suanwang.domain.queueing import ServiceModel

CONCURRENCY = ScalingTarget(inflight_per_replica=4.0)
TOKENS = ScalingTarget(tokens_per_s_per_replica=100.0)
LATENCY = ScalingTarget(ttft_p95_s=0.5)


def spec(
    target: ScalingTarget = CONCURRENCY, min_replicas: int = 1, max_replicas: int = 10, **kw: float
) -> AutoscaleSpec:
    return AutoscaleSpec(min_replicas, max_replicas, target, **kw)


def demand(
    inflight: float = 0.0,
    queued: float = 0.0,
    tokens: float = 0.0,
    p95: float | None = None,
    last: float | None = 0.0,
    at: float = 1_000.0,
) -> Demand:
    return Demand(at, inflight, queued, tokens, p95, last)


def replicas(*weights: float) -> list[ReplicaCapacity]:
    return [ReplicaCapacity("nvidia-a100", w) for w in weights]


WATCHED = ScaleMemory(recent=((0.0, 1),))
"""Memory of a deployment watched since t=0 with nothing scaled: down may proceed."""


def run(
    s: AutoscaleSpec,
    current: list[ReplicaCapacity],
    d: Demand,
    memory: ScaleMemory = WATCHED,
    now: float = 1_000.0,
) -> ScaleDecision:
    return decide(s, current, d, memory, now)


def rule(
    name: str,
    s: AutoscaleSpec,
    weights: tuple[float, ...],
    d: Demand,
    expected: int,
    fragment: str,
    memory: ScaleMemory = WATCHED,
) -> object:
    return pytest.param(s, weights, d, memory, expected, fragment, id=name)


LOW = ScaleMemory(recent=((0.0, 1), (900.0, 4)))
UP_AT_800 = ScaleMemory(last_up_at=800.0, recent=((0.0, 1),))
UP_AT_990 = ScaleMemory(last_up_at=990.0)
LAT, TOK, ZERO = spec(LATENCY), spec(TOKENS), spec(min_replicas=0)

RULES = [
    rule("concurrency-up", spec(), (1, 1), demand(16), 4, "past up-cooldown"),
    rule("inside-tolerance-band", spec(), (1, 1), demand(8.5), 2, "within tolerance"),
    rule("down-after-window", spec(), (1, 1, 1, 1), demand(4), 1, "largest recommendation"),
    rule("no-down-unwatched", spec(), (1, 1, 1, 1), demand(4), 4, "watching", ScaleMemory()),
    rule("down-held-by-window-max", spec(), (1, 1, 1, 1), demand(4), 4, "4 recommended", LOW),
    rule("no-down-soon-after-up", spec(), (1, 1, 1, 1), demand(4), 4, "200 s ago", UP_AT_800),
    rule("up-held-by-cooldown", spec(), (1, 1), demand(12), 2, "cooldown 20 s left", UP_AT_990),
    rule("panic-past-cooldown", spec(), (1, 1), demand(40), 10, "panic", UP_AT_990),
    rule("slow-replicas-count-less", spec(), (0.5, 0.5), demand(8), 4, "needs 2.00"),
    rule("down-keeps-the-heaviest", spec(), (2.0, 0.5, 0.5), demand(8), 1, "needs 2.00"),
    rule("capped-at-max", spec(), (1,), demand(400), 10, "up 1 -> 10"),
    rule("tokens-up", TOK, (1,), demand(1, tokens=350), 4, "tokens/s"),
    rule("latency-up-in-proportion", LAT, (1, 1), demand(3, p95=1.0), 4, "p95 ttft"),
    rule("latency-within-band", LAT, (1, 1), demand(3, p95=0.52), 2, "tolerance"),
    rule("latency-down-one", LAT, (1, 1, 1), demand(1, p95=0.2), 2, "largest"),
    rule("latency-down-breaks-slo", LAT, (1, 1), demand(1, p95=0.3), 2, "tolerance"),
    rule("latency-unknown-holds", LAT, (1, 1), demand(3), 2, "no latency measured"),
    rule("from-zero-at-once", ZERO, (), demand(queued=1), 1, "from zero", UP_AT_990),
    rule("from-zero-to-need", ZERO, (), demand(queued=9), 3, "from zero"),
    rule("zero-stays-zero", ZERO, (), demand(last=900.0), 0, "stay"),
    rule("idle-to-zero", ZERO, (1, 1), demand(last=300.0), 0, "to zero"),
    rule("not-idle-long-enough", ZERO, (1,), demand(last=500.0), 1, "stay"),
    rule("idle-from-last-up", ZERO, (1,), demand(last=None), 1, "stay", UP_AT_800),
    rule("min-never-idles", spec(min_replicas=2), (1, 1), demand(), 2, "stay"),
    rule("below-min-at-once", spec(min_replicas=3), (1,), demand(), 3, "outside", UP_AT_990),
    rule("above-max-at-once", spec(max_replicas=2), (1,) * 4, demand(16), 2, "outside"),
]


@pytest.mark.parametrize(("s", "weights", "d", "memory", "expected", "fragment"), RULES)
def test_rules(
    s: AutoscaleSpec,
    weights: tuple[float, ...],
    d: Demand,
    memory: ScaleMemory,
    expected: int,
    fragment: str,
) -> None:
    decision = run(s, replicas(*weights), d, memory)
    assert decision.replicas == expected, decision.reason
    assert fragment in decision.reason


def test_memory_records_moves_and_keeps_the_window() -> None:
    old = ScaleMemory(recent=((0.0, 1), (500.0, 2), (800.0, 3)))
    up = run(spec(), replicas(1, 1), demand(inflight=16), old)
    assert up.memory.last_up_at == 1_000.0
    assert up.memory.last_down_at is None
    # The last entry before the window stays as proof it was watched; older ones go.
    assert up.memory.recent == ((500.0, 2), (800.0, 3), (1_000.0, 4))
    down = run(spec(), replicas(1, 1, 1, 1), demand(inflight=4), WATCHED)
    assert down.memory.last_down_at == 1_000.0


ERRORS = [
    (lambda: ScalingTarget(), "target"),
    (lambda: ScalingTarget(inflight_per_replica=1.0, ttft_p95_s=0.5), "target"),
    (lambda: ScalingTarget(tokens_per_s_per_replica=0.0), "target.tokens_per_s_per_replica"),
    (lambda: ScalingTarget(ttft_p95_s=float("nan")), "target.ttft_p95_s"),
    (lambda: AutoscaleSpec(3, 2, CONCURRENCY), "max_replicas"),
    (lambda: AutoscaleSpec(-1, 2, CONCURRENCY), "min_replicas"),
    (lambda: AutoscaleSpec(0, 2_000, CONCURRENCY), "max_replicas"),
    (lambda: AutoscaleSpec(0, 2, CONCURRENCY, scale_up_cooldown_s=-1), "scale_up_cooldown_s"),
    (lambda: AutoscaleSpec(0, 2, CONCURRENCY, idle_to_zero_s=float("inf")), "idle_to_zero_s"),
    (lambda: AutoscaleSpec(0, 2, CONCURRENCY, tolerance=1.0), "tolerance"),
    (lambda: Demand(0, -1, 0, 0, None, None), "inflight"),
    (lambda: Demand(0, 0, 0, 0, -0.1, None), "ttft_p95_s"),
    (lambda: ReplicaCapacity("x", 0.0), "weight"),
]


@pytest.mark.parametrize(("build", "field"), ERRORS)
def test_bad_input_names_the_field(build: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        build()  # type: ignore[operator]
    assert err.value.field == field


# --- Hypothesis properties ---------------------------------------------------------------

targets = st.one_of(
    st.floats(0.5, 50).map(lambda v: ScalingTarget(inflight_per_replica=v)),
    st.floats(1, 1_000).map(lambda v: ScalingTarget(tokens_per_s_per_replica=v)),
    st.floats(0.05, 5).map(lambda v: ScalingTarget(ttft_p95_s=v)),
    st.floats(0.05, 5).map(lambda v: ScalingTarget(slo_ttft_p95_s=v)),
)


@st.composite
def specs(draw: st.DrawFn) -> AutoscaleSpec:
    low = draw(st.integers(0, 6))
    return AutoscaleSpec(
        min_replicas=low,
        max_replicas=draw(st.integers(max(low, 1), 12)),
        target=draw(targets),
        scale_up_cooldown_s=draw(st.sampled_from([0.0, 15.0, 30.0, 120.0])),
        scale_down_cooldown_s=draw(st.sampled_from([0.0, 60.0, 300.0])),
        idle_to_zero_s=draw(st.sampled_from([0.0, 60.0, 600.0])),
        tolerance=draw(st.sampled_from([0.0, 0.1, 0.25])),
    )


@st.composite
def demands(draw: st.DrawFn, at: float = 10_000.0) -> Demand:
    busy = draw(st.booleans())
    return Demand(
        at=at,
        inflight=draw(st.floats(0, 200)) if busy else 0.0,
        queued=draw(st.floats(0, 200)) if busy else 0.0,
        tokens_per_s=draw(st.floats(0, 20_000)) if busy else 0.0,
        ttft_p95_s=draw(st.none() | st.floats(0, 10)),
        last_request_at=draw(st.none() | st.floats(0, at)),
        requests_per_s=draw(st.none() | st.floats(0, 300))
        if busy
        else draw(st.none() | st.just(0.0)),
    )


services = st.none() | st.builds(
    ServiceModel, st.integers(1, 16), st.floats(0.05, 20), st.floats(0.001, 2)
)
weights_lists = st.lists(st.floats(0.1, 4.0), max_size=14)


@st.composite
def memories(draw: st.DrawFn, now: float = 10_000.0) -> ScaleMemory:
    times = st.none() | st.floats(0, now)
    recent = draw(st.lists(st.tuples(st.floats(0, now), st.integers(0, 12)), max_size=6))
    return ScaleMemory(draw(times), draw(times), tuple(sorted(recent)))


@settings(max_examples=400)
@given(s=specs(), weights=weights_lists, d=demands(), memory=memories(), service=services)
def test_never_below_min_or_above_max(
    s: AutoscaleSpec,
    weights: list[float],
    d: Demand,
    memory: ScaleMemory,
    service: ServiceModel | None,
) -> None:
    decision = decide(s, replicas(*weights), d, memory, 10_000.0, service)
    assert s.min_replicas <= decision.replicas <= s.max_replicas
    assert "\n" not in decision.reason


@settings(max_examples=400)
@given(s=specs(), weights=weights_lists, d=demands(), memory=memories(), service=services)
def test_to_zero_only_after_idle_time(
    s: AutoscaleSpec,
    weights: list[float],
    d: Demand,
    memory: ScaleMemory,
    service: ServiceModel | None,
) -> None:
    now = 10_000.0
    decision = decide(s, replicas(*weights), d, memory, now, service)
    if decision.replicas == 0 and weights:
        assert s.min_replicas == 0
        assert d.inflight == 0
        assert d.queued == 0
        assert d.last_request_at is None or now - d.last_request_at >= s.idle_to_zero_s


def steady_demand(data: st.DataObject, target: ScalingTarget) -> Demand:
    """Constant demand of 0 to 12 reference replicas' worth, in the target's metric."""
    load = data.draw(st.floats(0, 12))
    requests = load * (target.inflight_per_replica or 4.0)
    p95 = None
    if target.latency_s is not None:
        p95 = data.draw(st.none() | st.floats(0.1, 3).map(lambda f: f * (target.latency_s or 1)))
    return Demand(
        at=0.0,
        inflight=requests / 2,
        queued=requests / 2,
        tokens_per_s=load * (target.tokens_per_s_per_replica or 100.0),
        ttft_p95_s=p95 if requests > 0 else None,
        last_request_at=data.draw(st.none() | st.just(0.0)),
        requests_per_s=data.draw(st.none() | st.just(load * 3.0)),
    )


@settings(max_examples=300)
@given(
    s=specs(),
    start=st.lists(st.floats(0.25, 4.0), max_size=8),
    new_weight=st.floats(0.25, 4.0),
    data=st.data(),
    step_s=st.sampled_from([5.0, 15.0, 60.0]),
    service=services,
)
def test_no_flapping_under_constant_demand(
    s: AutoscaleSpec,
    start: list[float],
    new_weight: float,
    data: st.DataObject,
    step_s: float,
    service: ServiceModel | None,
) -> None:
    """Replicas follow each decision (new ones of one weight, the lightest removed first):
    no scale-down within the down-cooldown of a scale-up, and no scale-up after a
    scale-down (other than from zero or up to min)."""
    d = steady_demand(data, s.target)
    current = replicas(*start)
    memory = ScaleMemory()
    last_up: float | None = None
    went_down = False
    for step in range(120):
        now = step * step_s
        decision = decide(s, current, d, memory, now, service)
        memory = decision.memory
        have = len(current)
        if decision.replicas > have:
            if have > 0 and have >= s.min_replicas:
                assert not went_down, decision.reason
            last_up = now
        elif decision.replicas < have and have <= s.max_replicas and decision.replicas > 0:
            assert last_up is None or now - last_up >= s.scale_down_cooldown_s
            went_down = True
        kept = sorted(current, key=lambda r: r.weight, reverse=True)[: decision.replicas]
        current = kept + replicas(*[new_weight] * (decision.replicas - len(kept)))
