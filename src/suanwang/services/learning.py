"""Chip speeds learned from finished jobs, kept fresh for the control loop.

Speeds are learned per (tenant, kind): a tenant's runs teach that tenant only, and the
runs of the operator's benchmark tenant (``operator``, by default the platform's own
``maas-public``) teach every tenant, as the fallback before the catalogue default.

Reading the history of one (tenant, kind) costs one query, so the control loop does not
repeat it every tick: each pair's learned speeds are kept for ``refresh_s`` seconds of the
clock, and only the pairs that jobs in the queue name (and the operator's pair of each of
their kinds) are ever read. The learning itself is the pure
:func:`suanwang.scheduler.learning.learn_book`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from suanwang.domain.deployments import PUBLIC_TENANT
from suanwang.domain.ids import ChipName
from suanwang.ports import Clock, UnitOfWork
from suanwang.scheduler.learning import MIN_SAMPLES, WINDOW, SpeedBook, learn_book

REFRESH_S = 60.0
PER_PAIR = 500
"""Runs read per (tenant, kind) at most: enough for ``WINDOW`` runs on each of ten chip
types."""

Pair = tuple[str, str]
"""(tenant, kind)."""


@dataclass(slots=True)
class _Learned:
    at: float
    speeds: dict[ChipName, float]


class LearnedSpeeds:
    """Per-(tenant, kind) speeds, re-learned at most every ``refresh_s`` seconds per pair.

    Args:
        clock: What "every ``refresh_s`` seconds" is measured with.
        operator: The tenant whose runs teach everyone (None: nobody's do).
    """

    def __init__(
        self,
        clock: Clock,
        refresh_s: float = REFRESH_S,
        min_samples: int = MIN_SAMPLES,
        operator: str | None = PUBLIC_TENANT,
    ) -> None:
        self._clock = clock
        self._refresh_s = refresh_s
        self._min_samples = min_samples
        self._operator = operator
        self._by_pair: dict[Pair, _Learned] = {}

    def book(self, uow: UnitOfWork, wanted: Collection[Pair]) -> SpeedBook:
        """Learned speeds for the (tenant, kind) pairs ``wanted`` and the operator's for
        their kinds (pairs without enough history are absent)."""
        kinds = {kind for _tenant, kind in wanted if kind}
        pairs = {(t, k) for t, k in wanted if k}
        if self._operator is not None:
            pairs |= {(self._operator, kind) for kind in kinds}
        now = self._clock.now()
        stale = {
            p
            for p in pairs
            if p not in self._by_pair or now - self._by_pair[p].at >= self._refresh_s
        }
        if stale:
            runs = uow.jobs.finished_runs(stale, PER_PAIR)
            fresh = learn_book(runs, self._operator, self._min_samples, WINDOW)
            for pair in stale:
                self._by_pair[pair] = _Learned(now, dict(fresh.own.get(pair, {})))
        own = {p: self._by_pair[p].speeds for p in pairs if self._by_pair[p].speeds}
        shared = {k: s for (t, k), s in own.items() if t == self._operator}
        return SpeedBook(own, shared)
