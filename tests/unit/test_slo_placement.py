"""SLO-aware placement (domain/slo_placement.py): per-chip profiles learned from replicas'
samples over a TFLOPS prior, and the chip chosen for a new replica (a table test with two
chip types of different measured speed)."""

from __future__ import annotations

import pytest

from suanwang.domain.errors import ValidationError
from suanwang.domain.slo_placement import (
    PRIOR_SAMPLES,
    ChipOffer,
    ChipProfile,
    ReplicaSample,
    ServingSlo,
    choose_chip,
    learn_profiles,
    prior_profiles,
)

# The reference replica: measured on a chip of speed 1.0 (serving benchmark figures).
REFERENCE = ChipProfile("ref", ttft_p95_s=0.1, tokens_per_s_per_request=24.0, weight=1.0)
REF_RPS = 4.0
SPEEDS = {"fast": 1.0, "slow": 0.5, "cpu": 0.0}
OFFERS = [ChipOffer("fast", 2.0), ChipOffer("slow", 1.0)]
"""Capacity units per replica in proportion to TFLOPS: equal cost per weight on paper."""


def samples(chip: str, count: int, ttft: float, tps: float, rps: float) -> list[ReplicaSample]:
    return [ReplicaSample(chip, ttft, tps, rps) for _ in range(count)]


def test_priors_scale_the_reference_by_speed() -> None:
    priors = prior_profiles(REFERENCE, 1.0, SPEEDS)
    assert set(priors) == {"fast", "slow"}  # a cpu slot has no speed, no prior
    slow = priors["slow"]
    assert (slow.ttft_p95_s, slow.tokens_per_s_per_request, slow.weight) == (0.2, 12.0, 0.5)


def test_samples_move_the_prior() -> None:
    priors = prior_profiles(REFERENCE, 1.0, SPEEDS)
    learned = learn_profiles(priors, REF_RPS, samples("slow", 3, 0.4, 6.0, 1.0))
    slow = learned["slow"]
    # Three samples against a prior worth three: halfway.
    assert PRIOR_SAMPLES == 3.0
    assert slow.ttft_p95_s == pytest.approx(0.3)
    assert slow.tokens_per_s_per_request == pytest.approx(9.0)
    assert slow.weight == pytest.approx((0.5 + 0.25) / 2)
    assert slow.samples == 3
    assert learned["fast"] == priors["fast"]


def test_a_chip_without_prior_learns_from_samples_alone() -> None:
    learned = learn_profiles({}, REF_RPS, samples("new", 2, 0.05, 30.0, 8.0))
    assert learned["new"] == ChipProfile("new", 0.05, 30.0, 2.0, samples=2)


SLO = ServingSlo(ttft_p95_s=0.3, tokens_per_s_per_request=10.0)
PLACEMENT = [
    # (samples of fast, samples of slow, slo, chosen chip, meets slo)
    pytest.param([], [], SLO, "slow", True, id="prior-only-tie-goes-to-the-cheaper-replica"),
    pytest.param(
        samples("fast", 10, 0.1, 24.0, 4.0),
        samples("slow", 10, 0.25, 11.0, 1.0),
        SLO,
        "fast",
        True,
        id="slow-measured-slower-than-its-tflops-costs-more-per-weight",
    ),
    pytest.param(
        samples("fast", 10, 0.1, 24.0, 3.0),
        samples("slow", 10, 0.15, 14.0, 2.4),
        SLO,
        "slow",
        True,
        id="slow-measured-faster-than-its-tflops-is-cheaper",
    ),
    pytest.param(
        samples("fast", 10, 0.1, 24.0, 4.0),
        samples("slow", 10, 0.5, 11.0, 4.0),
        SLO,
        "fast",
        True,
        id="slow-misses-the-ttft-slo",
    ),
    pytest.param(
        [],
        [],
        ServingSlo(ttft_p95_s=0.3, tokens_per_s_per_request=20.0),
        "fast",
        True,
        id="slow-misses-the-decode-speed-slo",
    ),
    pytest.param(
        [],
        [],
        ServingSlo(ttft_p95_s=0.05, tokens_per_s_per_request=10.0),
        "fast",
        False,
        id="none-meets-lowest-ttft-flagged",
    ),
]


@pytest.mark.parametrize(("fast", "slow", "slo", "chip", "meets"), PLACEMENT)
def test_choose_chip(
    fast: list[ReplicaSample],
    slow: list[ReplicaSample],
    slo: ServingSlo,
    chip: str,
    meets: bool,
) -> None:
    profiles = learn_profiles(prior_profiles(REFERENCE, 1.0, SPEEDS), REF_RPS, fast + slow)
    choice = choose_chip(slo, profiles, OFFERS)
    assert choice is not None
    assert (choice.chip, choice.meets_slo) == (chip, meets), choice.reason
    assert choice.chip in choice.reason


def test_only_offered_chips_are_chosen() -> None:
    profiles = prior_profiles(REFERENCE, 1.0, SPEEDS)
    choice = choose_chip(SLO, profiles, [ChipOffer("fast", 2.0)])
    assert choice is not None
    assert choice.chip == "fast"
    assert choose_chip(SLO, profiles, []) is None
    assert choose_chip(SLO, profiles, [ChipOffer("unknown", 1.0)]) is None


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ServingSlo(0.0, 1.0), "slo.ttft_p95_s"),
        (lambda: ServingSlo(1.0, float("nan")), "slo.tokens_per_s_per_request"),
        (lambda: ReplicaSample("x", 0.1, 1.0, -1.0), "requests_per_s"),
        (lambda: ChipOffer("x", 0.0), "units_per_replica"),
        (lambda: prior_profiles(REFERENCE, 0.0, SPEEDS), "reference_speed"),
    ],
)
def test_bad_input_names_the_field(build: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        build()  # type: ignore[operator]
    assert err.value.field == field
