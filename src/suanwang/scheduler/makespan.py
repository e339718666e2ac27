"""The batch packing LP: this round's share of each chip type per job, makespan first.

For a batch (:mod:`~suanwang.scheduler.batch`) the remaining work of every job is known,
so the least time in which the fleet could still finish all of it is a linear program, in
the spirit of Gavel's throughput-normalised makespan policy (Narayanan et al., OSDI '20,
"minimize total duration"), split into *this round* and *the rest*:

    x[j][k]  fraction of this round (``round_s``) job j runs on chip type k
    y[j][k]  seconds j runs on k after this round
    H        the makespan from now

    work      sum_k speed[j][k] * (round_s * x[j][k] + y[j][k]) >= work[j]
    no waste  sum_k speed[j][k] * round_s * x[j][k]             <= work[j]
    one place sum_k x[j][k] <= 1,   sum_k y[j][k] <= H - round_s   (a job runs on one
              type at a time: in the round, and over the rest)
    capacity  sum_j cards[j] * x[j][k] <= cards[k],
              sum_j cards[j] * y[j][k] <= cards[k] * (H - round_s)
    pinned    x[j][k] = 1 on its type for a running job that is not worth stopping

Phase 1 minimises ``H`` (``H*``; at t = 0 it is the lower bound on the batch's makespan
with free time-slicing). Phase 2 keeps ``H <= H* + slack_s`` and maximises this round's
progress weighted towards short jobs, ``sum speed * round_s * x / work ** short_first``:
among the rounds that keep the makespan optimal, one that brings short jobs nearer their
end (shortest-remaining-first, for the average JCT; ``short_first`` 1 weighs progress
relative to the work left, 0 weighs only throughput, 0.5 between: on the tuning rows it
gave the lowest average JCT of 0.5 and 1, and 1 gave the longer makespans). A long job
runs now when the makespan needs it to; otherwise it leaves the cards to shorter ones.

The LP treats each chip type as one pool of cards (gangs and nodes are the caller's
business: :mod:`~suanwang.scheduler.batch` rounds the shares onto real pools). Solved
with SciPy's HiGHS (``scipy.optimize.linprog``). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from suanwang.domain.ids import ChipName, JobId

EPSILON = 1e-6
"""Shares below this are zero."""


@dataclass(frozen=True, slots=True)
class BatchJob:
    """One job of the batch for the LP.

    Attributes:
        job: Its id.
        cards: Gang size (cards it holds while it runs).
        work_s: Remaining work in reference-chip seconds (> 0).
        speed: Its speed on each chip type it may use (types absent: not allowed).
        pinned: The type it keeps this round (running, and stopping it costs more than
            the plan may gain), or None.
    """

    job: JobId
    cards: int
    work_s: float
    speed: Mapping[ChipName, float]
    pinned: ChipName | None = None


@dataclass(frozen=True, slots=True)
class RoundShares:
    """The LP's answer: the makespan from now, and this round's shares per job and type."""

    horizon_s: float
    shares: dict[JobId, dict[ChipName, float]]


class PackingError(RuntimeError):
    """The solver returned no optimal solution (a pinned set over capacity, or HiGHS
    failing): the caller falls back to its usual cycle."""


def round_shares(
    jobs: Sequence[BatchJob],
    cards: Mapping[ChipName, int],
    round_s: float,
    slack_s: float = 0.0,
    short_first: float = 0.5,
) -> RoundShares:
    """This round's shares (module doc): makespan first, then progress of short jobs.

    Args:
        jobs: The batch (every job with work left and at least one allowed type).
        cards: Cards per chip type available to the batch.
        round_s: The round length (> 0).
        slack_s: Phase 2 may lengthen the makespan by this much over phase 1's.
        short_first: Exponent of the remaining work in phase 2's weights (module doc).
    """
    lp = _Program(jobs, sorted(k for k, n in cards.items() if n > 0), cards, round_s)
    horizon = lp.solve(lp.makespan_cost(), None)[lp.h]
    x = lp.solve(lp.progress_cost(short_first), horizon + slack_s)
    shares: dict[JobId, dict[ChipName, float]] = {}
    for j, job in enumerate(jobs):
        row = {k: float(x[lp.x(j, i)]) for i, k in enumerate(lp.chips) if x[lp.x(j, i)] > EPSILON}
        if row:
            shares[job.job] = row
    return RoundShares(float(horizon), shares)


class _Program:
    """The constraint matrix of the module doc, built once for both phases."""

    def __init__(
        self,
        jobs: Sequence[BatchJob],
        chips: list[ChipName],
        cards: Mapping[ChipName, int],
        round_s: float,
    ) -> None:
        self.jobs, self.chips, self.round_s = jobs, chips, round_s
        n, m = len(jobs), len(chips)
        self.n, self.m = n, m
        self.h = 2 * n * m
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        upper: list[float] = []
        self.bounds: list[tuple[float, float | None]] = [(0.0, 0.0)] * (2 * n * m)
        for j, job in enumerate(jobs):
            base = 5 * j
            for i, chip in enumerate(chips):
                speed = job.speed.get(chip, 0.0)
                if speed <= 0 or job.cards > cards[chip]:
                    continue
                full = min(1.0, job.work_s / (speed * round_s))
                lo = full if job.pinned == chip else 0.0
                self.bounds[self.x(j, i)] = (lo, 1.0)
                self.bounds[self.y(j, i)] = (0.0, None)
                entries = (
                    (base, self.x(j, i), -speed * round_s),  # work (negated >=)
                    (base, self.y(j, i), -speed),
                    (base + 1, self.x(j, i), speed * round_s),  # no waste
                    (base + 2, self.x(j, i), 1.0),  # one place this round
                    (base + 3, self.y(j, i), 1.0),  # one place later
                    (5 * n + i, self.x(j, i), float(job.cards)),  # capacity this round
                    (5 * n + m + i, self.y(j, i), float(job.cards)),  # capacity later
                )
                for r, c, v in entries:
                    rows.append(r)
                    cols.append(c)
                    vals.append(v)
            rows.append(base + 3)
            cols.append(self.h)
            vals.append(-1.0)
            rows.append(base + 4)  # an empty row keeps the indexing regular
            cols.append(self.h)
            vals.append(0.0)
            upper += [-job.work_s, job.work_s, 1.0, -round_s, 0.0]
        for i, chip in enumerate(chips):
            rows.append(5 * n + m + i)
            cols.append(self.h)
            vals.append(-float(cards[chip]))
        upper += [float(cards[k]) for k in chips]
        upper += [-float(cards[k]) * round_s for k in chips]
        self.bounds.append((round_s, None))
        self.rows, self.cols, self.vals = rows, cols, vals
        self.upper = np.array(upper)

    def x(self, j: int, i: int) -> int:
        return j * self.m + i

    def y(self, j: int, i: int) -> int:
        return self.n * self.m + j * self.m + i

    def makespan_cost(self) -> np.ndarray:
        cost = np.zeros(self.h + 1)
        cost[self.h] = 1.0
        return cost

    def progress_cost(self, short_first: float) -> np.ndarray:
        cost = np.zeros(self.h + 1)
        for j, job in enumerate(self.jobs):
            weight = self.round_s / job.work_s**short_first
            for i, chip in enumerate(self.chips):
                cost[self.x(j, i)] = -job.speed.get(chip, 0.0) * weight
        return cost

    def solve(self, cost: np.ndarray, horizon_cap: float | None) -> np.ndarray:
        # SciPy takes ~1 s to import: only runs that pack batches pay it.
        from scipy.optimize import linprog
        from scipy.sparse import coo_matrix

        bounds = list(self.bounds)
        if horizon_cap is not None:
            bounds[self.h] = (self.round_s, max(self.round_s, horizon_cap))
        shape = (5 * self.n + 2 * self.m, self.h + 1)
        matrix = coo_matrix((self.vals, (self.rows, self.cols)), shape=shape).tocsr()
        result = linprog(cost, A_ub=matrix, b_ub=self.upper, bounds=bounds, method="highs")
        if result.status != 0:
            raise PackingError(f"batch packing LP: {result.message}")
        return np.asarray(result.x)
