"""Max-min fairness over throughput-normalised allocations, as a linear program.

The allocation of Gavel's heterogeneity-aware max-min fairness policy (Narayanan et al.,
OSDI '20, §4.1 "LAS / max-min fairness"), written from the paper's description: each job
``j`` gets a fraction ``x[j][k]`` of each round on chip type ``k`` (time-sharing), and

    maximise   t
    subject to t <= sum_k speed[j][k] * x[j][k] / equal_share[j]   for every job j
               sum_k x[j][k] <= 1                                   for every job j
               sum_j scale[j] * x[j][k] <= cards[k]                for every chip k
               0 <= x[j][k] <= 1, and x[j][k] = 0 where j cannot run on k

``equal_share[j]`` is the job's throughput if it had an equal share of the cluster: its
time split across chip types in proportion to their card counts,
``sum_k speed[j][k] * cards[k] / sum(cards)`` (over the types it may use). So the
objective is the smallest *normalised* effective throughput, which is what makes the
policy heterogeneity-aware: a job that gains little from a V100 gives its V100 time to
one that gains more, each ending no worse off than with an equal share.

The LP alone leaves capacity idle whenever the minimum is pinned by one job; as a
documented tie-break the objective also adds ``TIE_WEIGHT`` times the mean normalised
throughput, so among max-min optimal allocations the LP prefers one that uses more of the
cluster (Gavel reaches the same end with water-filling; this is one LP per round).

Solved with SciPy's HiGHS (``scipy.optimize.linprog``). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from suanwang.domain.ids import ChipName, JobId

TIE_WEIGHT = 1e-3
"""Weight of the mean normalised throughput next to the minimum (see the module doc)."""
EPSILON = 1e-7
"""Allocations below this are zero."""


@dataclass(frozen=True, slots=True)
class Demand:
    """One job for the LP: its gang size and its speed on each chip type it may use
    (a chip absent or at speed 0 is not allowed)."""

    job: JobId
    scale: int
    speed: Mapping[ChipName, float]


class AllocationError(RuntimeError):
    """The solver did not return an optimal allocation (it should always: the LP is
    feasible at x = 0 and bounded)."""


Allocation = dict[JobId, dict[ChipName, float]]
"""Per job, the fraction of a round on each chip type (only positive entries)."""


def max_min_allocation(demands: Sequence[Demand], cards: Mapping[ChipName, int]) -> Allocation:
    """The max-min fair allocation of ``cards`` (per chip type) among ``demands``.

    Jobs that fit no chip type (every allowed type has fewer cards than the gang) get
    nothing and are left out of the LP.
    """
    chips = sorted(k for k, n in cards.items() if n > 0)
    total = sum(cards[k] for k in chips)
    usable: list[tuple[Demand, list[float]]] = []
    for demand in demands:
        speeds = [demand.speed.get(k, 0.0) if demand.scale <= cards[k] else 0.0 for k in chips]
        equal = sum(s * cards[k] / total for s, k in zip(speeds, chips, strict=True))
        if equal > 0:
            usable.append((demand, [s / equal for s in speeds]))
    if not usable:
        return {}
    return _solve(usable, chips, cards)


def _solve(
    usable: list[tuple[Demand, list[float]]], chips: list[ChipName], cards: Mapping[ChipName, int]
) -> Allocation:
    # SciPy takes ~1 s to import: only runs that use this policy pay it.
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    n, width = len(usable), len(chips)
    t = n * width  # index of the variable t
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    cost = np.zeros(t + 1)
    cost[t] = -1.0
    bounds: list[tuple[float, float | None]] = []
    for j, (demand, weights) in enumerate(usable):
        rows.append(j)
        cols.append(t)
        vals.append(1.0)
        for k, w in enumerate(weights):
            var = j * width + k
            bounds.append((0.0, 1.0 if w > 0 else 0.0))
            cost[var] = -TIE_WEIGHT * w / n
            rows += [j, n + j, 2 * n + k]
            cols += [var, var, var]
            vals += [-w, 1.0, float(demand.scale)]
    bounds.append((0.0, None))
    upper = np.concatenate([np.zeros(n), np.ones(n), [float(cards[k]) for k in chips]])
    matrix = coo_matrix((vals, (rows, cols)), shape=(2 * n + width, t + 1)).tocsr()
    result = linprog(cost, A_ub=matrix, b_ub=upper, bounds=bounds, method="highs")
    if result.status != 0:
        raise AllocationError(f"max-min LP: {result.message}")
    x = result.x
    allocation: Allocation = {}
    for j, (demand, _weights) in enumerate(usable):
        shares = {
            chips[k]: float(x[j * width + k]) for k in range(width) if x[j * width + k] > EPSILON
        }
        if shares:
            allocation[demand.job] = shares
    return allocation
