"""The queueing model the ``slo_ttft_p95_s`` autoscaling target sizes with."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.errors import ValidationError
from suanwang.domain.queueing import (
    ServiceModel,
    erlang_c,
    predicted_miss,
    replicas_for_slo,
)
from suanwang.simulator.serving import ReferenceReplica, serve

BENCH = ServiceModel(slots=8, slot_rps=3.96 / 8, first_token_s=0.0172)
"""The serving benchmark's llama-server replica (benchmarks/results/serving.json)."""


def test_erlang_c_known_values() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(4, 4.0) == 1.0
    assert erlang_c(4, 0.0) == 0.0


def highest_utilisation(replicas: int, target_s: float = 0.5) -> float:
    low, high = 0.0, 1.0
    for _ in range(40):
        mid = (low + high) / 2
        rate = mid * replicas * BENCH.slots * BENCH.slot_rps
        if predicted_miss(BENCH, replicas, replicas, rate, target_s) <= 0.05:
            low = mid
        else:
            high = mid
    return low


@pytest.mark.parametrize(
    ("replicas", "utilisation"), [(1, 0.57), (4, 0.82), (12, 0.92), (20, 0.95)]
)
def test_pooling_lets_more_replicas_run_busier(replicas: int, utilisation: float) -> None:
    """The numbers in the module's docstring: why a fixed per-replica target is wrong."""
    assert highest_utilisation(replicas) == pytest.approx(utilisation, abs=0.005)


@pytest.mark.parametrize(
    ("rate", "target_s", "weight", "expected"),
    [
        (0.0, 0.5, 1.0, 0),
        (0.5, 0.5, 1.0, 1),
        (3.0, 0.5, 1.0, 2),  # one replica at 76 % busy misses the p95
        (28.2, 0.5, 1.0, 9),
        (28.2, 0.5, 148 / 280, 16),  # slower chips: more of them
        (28.2, 0.01, 1.0, 40),  # first token alone misses: as many as allowed
    ],
)
def test_replicas_for_slo_table(rate: float, target_s: float, weight: float, expected: int) -> None:
    assert replicas_for_slo(BENCH, rate, target_s, weight=weight, most=40) == expected


@settings(max_examples=300)
@given(
    slots=st.integers(1, 16),
    slot_rps=st.floats(0.05, 10),
    first_token_s=st.floats(0.001, 0.3),
    rate=st.floats(0.01, 200),
    target_s=st.floats(0.05, 3),
    weight=st.floats(0.25, 4),
)
def test_the_fewest_that_meet_the_slo(
    slots: int, slot_rps: float, first_token_s: float, rate: float, target_s: float, weight: float
) -> None:
    model = ServiceModel(slots, slot_rps, first_token_s)
    most = 64
    count = replicas_for_slo(model, rate, target_s, weight=weight, most=most)
    assert 1 <= count <= most
    meets = predicted_miss(model, weight * count, count, rate, target_s) <= 0.03
    assert meets or count == most
    if count > 1 and meets:
        assert predicted_miss(model, weight * (count - 1), count - 1, rate, target_s) > 0.03
    more = replicas_for_slo(model, rate * 1.5, target_s, weight=weight, most=most)
    assert more >= count


@settings(max_examples=200)
@given(replicas=st.integers(1, 20), busy=st.floats(0.05, 0.99), target_s=st.floats(0.1, 2))
def test_the_simulator_serves_by_the_same_model(
    replicas: int, busy: float, target_s: float
) -> None:
    """One owner: without a backlog the simulator's miss share is the model's prediction."""
    ref = ReferenceReplica(slots=8, max_rps=3.96, first_token_s=0.0172, tokens_per_request=48)
    rate = busy * replicas * ref.max_rps
    served = serve(ref, [1.0] * replicas, rate, 0.0, 15.0, target_s)
    assert served.miss_share == pytest.approx(
        predicted_miss(BENCH, replicas, replicas, rate, target_s), abs=1e-9
    )


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0, 1.0, 0.1), "slots"),
        ((8, 0.0, 0.1), "slot_rps"),
        ((8, 1.0, float("nan")), "first_token_s"),
    ],
)
def test_bad_models_name_the_field(args: tuple[int, float, float], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        ServiceModel(*args)
    assert err.value.field == field
