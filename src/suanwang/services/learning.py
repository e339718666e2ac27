"""Chip speeds learned from finished jobs, kept fresh for the control loop.

Reading the history of a kind costs one indexed query, so the control loop does not repeat it
every tick: each kind's learned speeds are kept for ``refresh_s`` seconds of the clock, and
only the kinds that jobs in the queue name are ever read. The learning itself is the pure
:func:`suanwang.scheduler.learning.learn_speeds`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from suanwang.domain.ids import ChipName
from suanwang.ports import Clock, UnitOfWork
from suanwang.scheduler.learning import MIN_SAMPLES, WINDOW, SpeedMatrix, learn_speeds

REFRESH_S = 60.0
PER_KIND = 500
"""Runs read per kind at most: enough for ``WINDOW`` runs on each of ten chip types."""


@dataclass(slots=True)
class _Learned:
    at: float
    speeds: dict[ChipName, float]


class LearnedSpeeds:
    """Per-kind speed matrix, re-learned at most every ``refresh_s`` seconds per kind."""

    def __init__(
        self, clock: Clock, refresh_s: float = REFRESH_S, min_samples: int = MIN_SAMPLES
    ) -> None:
        self._clock = clock
        self._refresh_s = refresh_s
        self._min_samples = min_samples
        self._by_kind: dict[str, _Learned] = {}

    def matrix(self, uow: UnitOfWork, kinds: Collection[str]) -> SpeedMatrix:
        """Learned speeds for ``kinds`` (kinds without enough history are absent)."""
        now = self._clock.now()
        stale = {
            k
            for k in kinds
            if k and (k not in self._by_kind or now - self._by_kind[k].at >= self._refresh_s)
        }
        if stale:
            runs = uow.jobs.finished_runs(stale, PER_KIND)
            fresh = learn_speeds(runs, self._min_samples, WINDOW)
            for kind in stale:
                self._by_kind[kind] = _Learned(now, fresh.get(kind, {}))
        return {k: self._by_kind[k].speeds for k in kinds if k and self._by_kind[k].speeds}
