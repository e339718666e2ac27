"""SLO-aware placement of a new model replica: which chip type it should go to.

A deployment's SLO is a p95 time to first token and a decode speed per request
(:class:`ServingSlo`). Each replica measures both over a window, with the requests per
second it served there (:class:`ReplicaSample`). :func:`learn_profiles` turns those samples
into a :class:`ChipProfile` per chip type, starting from a prior: the reference replica's
figures (e.g. the serving benchmark's measurement) scaled by the chip's relative speed
(catalogue FP16 TFLOPS over the reference chip's), worth :data:`PRIOR_SAMPLES` samples, so a
chip nobody measured yet still has an estimate and a few samples move it.

:func:`choose_chip` then picks, among the chip types a replica could be placed on now, one
whose profile meets the SLO at the lowest cost in capacity units per unit of service:
``units per replica / weight`` (a replica's weight is its throughput relative to a
reference replica, the same weight :mod:`suanwang.domain.autoscaling` counts it for). Ties
go to the cheaper replica, then the chip name. No chip meets the SLO: the one with the
lowest p95 TTFT, flagged as missing the SLO.

Pure: no I/O; the caller gathers samples and offers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from suanwang.domain.errors import ValidationError

PRIOR_SAMPLES = 3.0
"""How many samples the prior counts for in a chip's estimate."""


def _positive(value: float, field: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValidationError(f"{field} must be a finite number > 0, not {value}", field=field)


@dataclass(frozen=True, slots=True)
class ServingSlo:
    """A deployment's latency SLO: p95 time to first token, decode tokens/s per request."""

    ttft_p95_s: float
    tokens_per_s_per_request: float

    def __post_init__(self) -> None:
        _positive(self.ttft_p95_s, "slo.ttft_p95_s")
        _positive(self.tokens_per_s_per_request, "slo.tokens_per_s_per_request")


@dataclass(frozen=True, slots=True)
class ReplicaSample:
    """One replica's own measurement over a window at the deployment's target load."""

    chip: str
    ttft_p95_s: float
    tokens_per_s_per_request: float
    requests_per_s: float

    def __post_init__(self) -> None:
        _positive(self.ttft_p95_s, "ttft_p95_s")
        _positive(self.tokens_per_s_per_request, "tokens_per_s_per_request")
        _positive(self.requests_per_s, "requests_per_s")


@dataclass(frozen=True, slots=True)
class ChipProfile:
    """What a replica on ``chip`` delivers, as estimated; ``weight`` is its throughput
    relative to the reference replica; ``samples`` counts the measurements behind it."""

    chip: str
    ttft_p95_s: float
    tokens_per_s_per_request: float
    weight: float
    samples: int = 0

    def meets(self, slo: ServingSlo) -> bool:
        """Whether this chip's replicas meet ``slo``."""
        return (
            self.ttft_p95_s <= slo.ttft_p95_s
            and self.tokens_per_s_per_request >= slo.tokens_per_s_per_request
        )


@dataclass(frozen=True, slots=True)
class ChipOffer:
    """A chip type a new replica could be placed on now, and what one replica of the
    deployment costs there in capacity units (cards × units per card)."""

    chip: str
    units_per_replica: float

    def __post_init__(self) -> None:
        _positive(self.units_per_replica, "units_per_replica")


@dataclass(frozen=True, slots=True)
class PlacementChoice:
    """The chip for a new replica, whether it meets the SLO, and why (one line)."""

    chip: str
    meets_slo: bool
    units_per_weight: float
    reason: str


def prior_profiles(
    reference: ChipProfile, reference_speed: float, speeds: Mapping[str, float]
) -> dict[str, ChipProfile]:
    """Each chip's prior: ``reference`` (measured on a chip of ``reference_speed``)
    scaled by the chip's speed: TTFT divided by, decode speed and weight multiplied by
    the speed ratio. A chip of speed 0 (a ``cpu`` slot) gets no prior."""
    _positive(reference_speed, "reference_speed")
    priors: dict[str, ChipProfile] = {}
    for chip, speed in speeds.items():
        if speed <= 0:
            continue
        ratio = speed / reference_speed
        priors[chip] = ChipProfile(
            chip=chip,
            ttft_p95_s=reference.ttft_p95_s / ratio,
            tokens_per_s_per_request=reference.tokens_per_s_per_request * ratio,
            weight=reference.weight * ratio,
        )
    return priors


def learn_profiles(
    priors: Mapping[str, ChipProfile],
    reference_requests_per_s: float,
    samples: Iterable[ReplicaSample],
) -> dict[str, ChipProfile]:
    """Per-chip estimates: the prior (worth :data:`PRIOR_SAMPLES`) averaged with the samples.

    A sample's weight is its requests/s over ``reference_requests_per_s``, what a reference
    replica serves at the same target load. A chip with samples but no prior is estimated
    from its samples alone.
    """
    _positive(reference_requests_per_s, "reference_requests_per_s")
    by_chip: dict[str, list[ReplicaSample]] = {}
    for sample in samples:
        by_chip.setdefault(sample.chip, []).append(sample)
    profiles = dict(priors)
    for chip, chip_samples in by_chip.items():
        profiles[chip] = _blend(priors.get(chip), chip, chip_samples, reference_requests_per_s)
    return profiles


def _blend(
    prior: ChipProfile | None,
    chip: str,
    samples: Sequence[ReplicaSample],
    reference_requests_per_s: float,
) -> ChipProfile:
    """The prior's figures and the samples' averaged, the prior counting for
    :data:`PRIOR_SAMPLES` samples."""
    n = float(len(samples))
    ttft = sum(s.ttft_p95_s for s in samples)
    tps = sum(s.tokens_per_s_per_request for s in samples)
    weight = sum(s.requests_per_s / reference_requests_per_s for s in samples)
    if prior is not None:
        ttft += PRIOR_SAMPLES * prior.ttft_p95_s
        tps += PRIOR_SAMPLES * prior.tokens_per_s_per_request
        weight += PRIOR_SAMPLES * prior.weight
        n += PRIOR_SAMPLES
    return ChipProfile(chip, ttft / n, tps / n, weight / n, samples=len(samples))


def choose_chip(
    slo: ServingSlo, profiles: Mapping[str, ChipProfile], offers: Iterable[ChipOffer]
) -> PlacementChoice | None:
    """The chip for a new replica (see the module doc); ``None`` when nothing is offered
    or no offered chip has a profile."""
    known = [(offer, profiles[offer.chip]) for offer in offers if offer.chip in profiles]
    if not known:
        return None
    meeting = [(o, p) for o, p in known if p.meets(slo)]
    if meeting:
        offer, profile = min(
            meeting,
            key=lambda op: (
                op[0].units_per_replica / op[1].weight,
                op[0].units_per_replica,
                op[0].chip,
            ),
        )
        cost = offer.units_per_replica / profile.weight
        reason = (
            f"{offer.chip}: meets the SLO (p95 ttft {profile.ttft_p95_s:.3g} s, "
            f"{profile.tokens_per_s_per_request:.3g} tokens/s) at {cost:.3g} units per "
            f"reference replica, lowest of {len(meeting)} meeting it"
        )
        return PlacementChoice(offer.chip, True, cost, reason)
    offer, profile = min(known, key=lambda op: (op[1].ttft_p95_s, op[0].chip))
    reason = (
        f"{offer.chip}: no offered chip meets the SLO (p95 ttft {slo.ttft_p95_s:g} s, "
        f"{slo.tokens_per_s_per_request:g} tokens/s); lowest p95 ttft {profile.ttft_p95_s:.3g} s"
    )
    return PlacementChoice(offer.chip, False, offer.units_per_replica / profile.weight, reason)
