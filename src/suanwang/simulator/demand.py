"""A day of inference demand for one deployment: a diurnal curve, bursts, Poisson arrivals.

:func:`diurnal_share` is the curve as a share of its peak: 15 % at the 04:00 trough, 100 % at
the 14:00 peak, 70 % at the 20:00 evening shoulder, joined by half-cosines (smooth, no
corners at the anchors), and periodic over days. :func:`demand_day` scales it to a peak
rate, lays ``bursts`` non-overlapping bursts at ``burst_factor`` times the curve at seeded
random minutes, and draws each minute's arrivals from a Poisson law (seeded), so a run is
reproducible. Serving those arrivals is :mod:`suanwang.simulator.serving`'s job.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from suanwang.simulator.errors import SimulationError

MINUTES_PER_DAY = 1440
ANCHORS: tuple[tuple[float, float], ...] = ((4.0, 0.15), (14.0, 1.0), (20.0, 0.70))
"""(hour of day, share of the peak) the curve passes through; it wraps from 20:00 to 04:00."""


def diurnal_share(hour: float) -> float:
    """The curve's share of its peak at ``hour`` (any real number; periodic over 24 h)."""
    hour %= 24.0
    points = [*ANCHORS, (ANCHORS[0][0] + 24.0, ANCHORS[0][1])]
    if hour < points[0][0]:
        hour += 24.0
    for (h0, s0), (h1, s1) in itertools.pairwise(points):
        if h0 <= hour <= h1:
            phase = (hour - h0) / (h1 - h0)
            return s0 + (s1 - s0) * (1 - math.cos(math.pi * phase)) / 2
    raise AssertionError("the anchors cover the whole day")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class DemandDay:
    """One day, minute by minute: the expected rate (requests/s) and the drawn arrivals."""

    peak_rps: float
    rate_rps: tuple[float, ...]
    arrivals: tuple[int, ...]
    burst_starts: tuple[int, ...]
    """First minute of each burst, sorted."""
    burst_minutes: int
    seed: int

    def rate_at(self, minute: int) -> float:
        """Arrivals per second in ``minute`` (the day repeats)."""
        return self.arrivals[minute % MINUTES_PER_DAY] / 60.0

    def in_burst(self, minute: int) -> bool:
        """Whether ``minute`` (of the day) falls in a burst."""
        minute %= MINUTES_PER_DAY
        return any(s <= minute < s + self.burst_minutes for s in self.burst_starts)


def demand_day(
    peak_rps: float,
    *,
    seed: int = 7,
    bursts: int = 10,
    burst_minutes: int = 15,
    burst_factor: float = 2.0,
) -> DemandDay:
    """The day's demand: the curve at ``peak_rps``, bursts, Poisson arrivals per minute.

    Burst starts are drawn uniformly (seeded) among the minutes where a whole burst fits
    without touching another.
    """
    if not (math.isfinite(peak_rps) and peak_rps > 0):
        raise SimulationError(f"peak rate must be > 0, not {peak_rps}", field="peak_rps")
    if bursts * burst_minutes * 2 > MINUTES_PER_DAY:
        raise SimulationError("too many bursts for one day", field="bursts")
    rng = np.random.default_rng(seed)
    starts = _burst_starts(rng, bursts, burst_minutes)
    rates = []
    for minute in range(MINUTES_PER_DAY):
        rate = peak_rps * diurnal_share((minute + 0.5) / 60.0)
        if any(s <= minute < s + burst_minutes for s in starts):
            rate *= burst_factor
        rates.append(rate)
    arrivals = tuple(int(n) for n in rng.poisson(np.array(rates) * 60.0))
    return DemandDay(peak_rps, tuple(rates), arrivals, starts, burst_minutes, seed)


def _burst_starts(rng: np.random.Generator, count: int, minutes: int) -> tuple[int, ...]:
    """``count`` burst starts with at least one quiet minute between bursts."""
    starts: list[int] = []
    while len(starts) < count:
        start = int(rng.integers(0, MINUTES_PER_DAY - minutes))
        if all(abs(start - other) > minutes for other in starts):
            starts.append(start)
    return tuple(sorted(starts))
