"""Cards busy over time: attempt intervals averaged into equal buckets of a window.

- :class:`UtilWindow` (1 h, 24 h, 7 d) and :func:`grid_for`: the window ending now, cut
  into at most :data:`MAX_POINTS` buckets (60, 144 and 168 points).
- :class:`BusySpan`: one attempt's hold on cards (admission to end, or still held).
- :func:`busy_series`: the average number of busy cards in each bucket, per series key,
  each span clipped to the window (a span still running is clipped at ``now``).
- :func:`busy_now`: cards held at one instant, per key.

Pure: no I/O, no clock of its own (``now`` is passed in). Loading the spans is
``services/oversight.py``'s job; drawing them is the console's.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Final, TypeVar

K = TypeVar("K", bound=Hashable)
MAX_POINTS: Final = 200


class UtilWindow(enum.StrEnum):
    """How far back a utilisation chart looks."""

    HOUR = "1h"
    DAY = "24h"
    WEEK = "7d"

    @property
    def seconds(self) -> float:
        return {"1h": 3600.0, "24h": 86_400.0, "7d": 604_800.0}[self.value]

    @property
    def step_s(self) -> float:
        """A minute, ten minutes, an hour: 60, 144 and 168 points."""
        return {"1h": 60.0, "24h": 600.0, "7d": 3600.0}[self.value]


class UtilBy(enum.StrEnum):
    """What the series are split by."""

    REGION = "region"
    CHIP = "chip"


@dataclass(frozen=True, slots=True)
class Grid:
    """``steps`` buckets of ``step_s`` seconds from ``start``."""

    start: float
    step_s: float
    steps: int

    def __post_init__(self) -> None:
        if self.step_s <= 0 or not 0 < self.steps <= MAX_POINTS:
            raise ValueError(f"a grid needs a positive step and 1..{MAX_POINTS} steps")

    @property
    def end(self) -> float:
        return self.start + self.step_s * self.steps

    @property
    def times(self) -> list[float]:
        """The start of each bucket."""
        return [self.start + i * self.step_s for i in range(self.steps)]


def grid_for(window: UtilWindow, now: float) -> Grid:
    """The window ending at ``now``, in its standard step."""
    steps = round(window.seconds / window.step_s)
    return Grid(now - window.seconds, window.step_s, steps)


@dataclass(frozen=True, slots=True)
class BusySpan:
    """Cards held by one attempt from ``start`` to ``end`` (``None``: still held)."""

    start: float
    end: float | None
    cards: int
    region: str
    chip: str
    simulated: bool
    serving: bool
    """Held by a model-serving replica (inference) rather than an ordinary job."""

    def clipped(self, low: float, high: float, now: float) -> tuple[float, float]:
        """The part of the span inside ``[low, high)``; empty when ``end <= start``."""
        end = now if self.end is None else self.end
        return max(self.start, low), min(end, high, now)


def busy_series(
    spans: Iterable[BusySpan], grid: Grid, now: float, key: Callable[[BusySpan], K]
) -> dict[K, list[float]]:
    """Average busy cards per bucket for each ``key``: each bucket gets ``cards × overlap /
    step_s`` from every span overlapping it, so the area under a series is exactly the
    clipped card-seconds of its spans."""
    series: dict[K, list[float]] = {}
    for span in spans:
        start, end = span.clipped(grid.start, grid.end, now)
        if end <= start or span.cards <= 0:
            continue
        values = series.setdefault(key(span), [0.0] * grid.steps)
        first = int((start - grid.start) // grid.step_s)
        last = min(math.ceil((end - grid.start) / grid.step_s), grid.steps)
        for i in range(max(first, 0), last):
            low = grid.start + i * grid.step_s
            overlap = min(end, low + grid.step_s) - max(start, low)
            if overlap > 0:
                values[i] += span.cards * overlap / grid.step_s
    return series


def busy_now(spans: Iterable[BusySpan], now: float, key: Callable[[BusySpan], K]) -> dict[K, int]:
    """Cards held at ``now`` (admitted at or before it, not yet ended) per ``key``."""
    held: dict[K, int] = {}
    for span in spans:
        if span.start <= now and (span.end is None or span.end > now):
            held[key(span)] = held.get(key(span), 0) + span.cards
    return held


@dataclass(frozen=True, slots=True)
class GroupCapacity:
    """The cards of one region or chip, and how many of them are on simulated clusters."""

    group: str
    cards: int
    simulated_cards: int

    @property
    def marking(self) -> str:
        """``simulated``, ``mixed`` or ``real`` (the fleet page's words)."""
        if self.simulated_cards == 0:
            return "real"
        return "simulated" if self.simulated_cards >= self.cards else "mixed"
