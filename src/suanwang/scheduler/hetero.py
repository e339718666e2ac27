"""Heterogeneity: how fast a job runs on each chip type, and how much it gains from one.

The relative speed of a job on a chip is ``job.speed[chip]`` when the job states it (e.g.
from a throughput matrix of its kind), else ``Snapshot.chip_speed[chip]``, else 1.0.
Expected run time on a chip is ``duration_s / speed``. A speed of 0 (or less) means the
job cannot run on that chip at all.

:func:`gain` is the Gavel-style heuristic the ``priority`` ordering uses to let jobs that
profit most from a fast chip pick first: the job's best speed over the chips it accepts,
relative to its mean speed over them (1.0 when every chip is the same to it).

Not here: choosing a pool (``placement.py``), the wait for one (``backfill.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from suanwang.domain.ids import ChipName
from suanwang.scheduler.snapshot import PendingJob


def speed_on(job: PendingJob, chip: ChipName, chip_speed: Mapping[ChipName, float]) -> float:
    """The job's relative speed on ``chip`` (1.0 = the reference chip)."""
    speed = job.speed.get(chip)
    if speed is None:
        speed = chip_speed.get(chip, 1.0)
    return speed


def can_run_on(job: PendingJob, chip: ChipName, chip_speed: Mapping[ChipName, float]) -> bool:
    """Whether the job makes any progress on ``chip`` (its speed there is above 0)."""
    return speed_on(job, chip, chip_speed) > 0


def run_time_s(
    job: PendingJob, chip: ChipName, chip_speed: Mapping[ChipName, float]
) -> float | None:
    """Expected run time on ``chip``: ``duration_s / speed``, or None when unknown."""
    if job.duration_s is None:
        return None
    return job.duration_s / speed_on(job, chip, chip_speed)


def planned_run_s(
    job: PendingJob, chip: ChipName, chip_speed: Mapping[ChipName, float]
) -> float | None:
    """How long the job holds its cards at most, for backfill: ``min(run time, max
    runtime)``, whichever is known; None when neither is."""
    known = [t for t in (run_time_s(job, chip, chip_speed), job.max_runtime_s) if t is not None]
    return min(known) if known else None


def gain(job: PendingJob, chips: Iterable[ChipName], chip_speed: Mapping[ChipName, float]) -> float:
    """Best speed over mean speed across the chips the job accepts (>= 1.0).

    Example: speeds 3.0 on ``a`` and 1.0 on ``b`` give ``3.0 / 2.0 = 1.5``; a job with
    the same speed everywhere gains 1.0.
    """
    speeds = [s for s in (speed_on(job, c, chip_speed) for c in chips) if s > 0]
    if len(speeds) < 2:
        return 1.0
    return max(speeds) * len(speeds) / sum(speeds)
