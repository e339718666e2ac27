"""A seedable generator of Gavel-style workloads, drawn as Gavel's simulator draws them.

Gavel (Narayanan et al., OSDI '20; ``scheduler/utils.py``, ``generate_job``) makes a job
as follows, and :func:`generate` does the same with Python's ``random.Random(seed)``:

1. **Scale factor** (GPUs): ``r ~ U(0, 1)``; 2 if ``0.7 <= r <= 0.8``, 4 if
   ``0.8 < r <= 0.95``, 8 if ``r > 0.95``, else 1: 70 % / 10 % / 15 % / 5 %
   (:data:`SCALE_MIX`). Single-GPU only with ``multi_gpu=False``.
2. **Duration** (on a V100, at that scale factor): with probability 0.8,
   ``60 * 10**U(1.5, 3)`` seconds (31.6 min to 16.7 h), else ``60 * 10**U(3, 4)``
   (16.7 h to 6.9 days).
3. **Job type**: uniformly among the throughput matrix's job types, drawn again until the
   type has a row for that scale factor (Gavel's ``distributed`` types).
4. **Arrivals**: the first job at 0, then gaps ``-ln(1 - u) * mean_gap_s`` (Poisson
   arrivals, Gavel's ``-l``); with ``mean_gap_s`` None every job arrives at 0 (the batch
   mode of Gavel's makespan experiments).

Each job becomes a :class:`~suanwang.simulator.trace.TraceJob` as the importer makes one
for the V100/P100/K80 fleet: ``duration_s`` on the V100 (the reference chip), ``speed``
on the P100 and K80 from the matrix at the job's scale factor (a zero leaves the chip out
of ``chips``), ``kind`` the job type, on 4-GPU nodes (8 GPUs: 2 nodes of 4). Gavel's
draws come from one generator in this order too, but its job table and seeding differ,
so the same seed gives a different sequence here: same distributions, not the same jobs.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from suanwang.domain.ids import JobId, TenantId
from suanwang.simulator.errors import SimulationError
from suanwang.simulator.importers import (
    NODE_CARDS,
    FleetKind,
    ThroughputMatrix,
    gavel_speeds,
)
from suanwang.simulator.trace import TraceJob

SCALE_MIX: tuple[tuple[int, float], ...] = ((1, 0.70), (2, 0.10), (4, 0.15), (8, 0.05))
"""Gavel's scale factors and their probabilities (from the Philly trace)."""
LONG_JOB_P = 0.2
"""Probability of a long job (``10**U(3, 4)`` minutes instead of ``10**U(1.5, 3)``)."""
MAX_JOBS = 1_000_000


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What to generate.

    Attributes:
        jobs: How many jobs.
        seed: The seed; the same seed and matrix give the same jobs.
        mean_gap_s: Mean gap between arrivals (Poisson); None: all jobs at t = 0.
        multi_gpu: Draw scale factors (else every job has one GPU).
        tenant: The one tenant every job belongs to.
        checkpoint_interval_s: Given to every job (None: no checkpoints).
    """

    jobs: int
    seed: int = 0
    mean_gap_s: float | None = 300.0
    multi_gpu: bool = True
    tenant: str = "gavel"
    checkpoint_interval_s: float | None = 1800.0


def scale_factor(rng: random.Random) -> int:
    """One scale factor from :data:`SCALE_MIX` (Gavel's thresholds on one uniform draw)."""
    r = rng.uniform(0, 1)
    if 0.7 <= r <= 0.8:
        return 2
    if 0.8 <= r <= 0.95:
        return 4
    if r >= 0.95:
        return 8
    return 1


def duration_s(rng: random.Random) -> float:
    """One run time on the reference chip, in seconds (Gavel's Philly-like mix)."""
    if rng.random() >= 1.0 - LONG_JOB_P:
        return 60.0 * 10 ** rng.uniform(3, 4)
    return 60.0 * 10 ** rng.uniform(1.5, 3)


def generate(matrix: ThroughputMatrix, spec: WorkloadSpec) -> list[TraceJob]:
    """``spec.jobs`` jobs drawn as described in the module docstring, in submit order.

    Raises:
        SimulationError: the spec is out of range, or the matrix has no single-GPU rows.
    """
    _check(matrix, spec)
    rng = random.Random(spec.seed)
    types = sorted({job_type for job_type, _ in matrix})
    jobs: list[TraceJob] = []
    submit = 0.0
    for index in range(spec.jobs):
        gpus = scale_factor(rng) if spec.multi_gpu else 1
        run_s = duration_s(rng)
        job_type = _job_type(rng, types, matrix, gpus)
        if index > 0 and spec.mean_gap_s is not None:
            submit += -math.log(1.0 - rng.random()) * spec.mean_gap_s
        chips, speed = gavel_speeds(matrix[(job_type, gpus)])
        per_node = min(gpus, NODE_CARDS[FleetKind.GAVEL])
        jobs.append(
            TraceJob(
                job_id=JobId(str(index)),
                tenant=TenantId(spec.tenant),
                submit_s=submit,
                cards=per_node,
                nodes=gpus // per_node,
                duration_s=run_s,
                chips=chips,
                speed=speed,
                kind=job_type,
                checkpoint_interval_s=spec.checkpoint_interval_s,
            )
        )
    return jobs


def _job_type(rng: random.Random, types: list[str], matrix: ThroughputMatrix, gpus: int) -> str:
    """A job type drawn uniformly, again until it has a row for ``gpus`` GPUs."""
    while True:
        job_type = rng.choice(types)
        if (job_type, gpus) in matrix:
            return job_type


def _check(matrix: ThroughputMatrix, spec: WorkloadSpec) -> None:
    if not 1 <= spec.jobs <= MAX_JOBS:
        raise SimulationError(
            f"cannot generate {spec.jobs} jobs", field="--jobs", hint=f"1 to {MAX_JOBS:,}"
        )
    if spec.mean_gap_s is not None and not (math.isfinite(spec.mean_gap_s) and spec.mean_gap_s > 0):
        raise SimulationError(
            f"mean gap {spec.mean_gap_s} s", field="--mean-gap-s", hint="a number above 0"
        )
    sizes = {gpus for _, gpus in matrix}
    needed = {g for g, _ in SCALE_MIX} if spec.multi_gpu else {1}
    missing = sorted(needed - sizes)
    if missing:
        raise SimulationError(
            f"the throughput matrix has no rows for {', '.join(map(str, missing))} GPU(s)",
            field="--matrix",
            hint="use ../shared/traces/throughput-matrix.csv, or --single-gpu",
        )
