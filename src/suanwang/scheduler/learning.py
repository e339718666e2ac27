"""Chip speeds learned from finished jobs, per job kind.

A job's ``duration_s`` is its run time on the reference chip (speed 1.0), so a finished
run of ``actual_s`` seconds on chip ``c`` observed a speed of ``duration_s / actual_s``
there. For each (kind, chip) with at least ``min_samples`` observations, the learned speed
is the median of the most recent ``window`` of them: robust to a few odd runs (a node that
was slow, a job that exited early), and it follows change (a new driver, a new engine).

The learned matrix sits between what a job states and the catalogue default: a job's own
``speed`` wins, then the learned speed of its kind, then ``Snapshot.chip_speed``
(:func:`merged_speeds`). Because the estimate itself is the yardstick, a tenant whose
estimates are twice too long learns speeds twice too high, which makes the scheduler's
expected run times right again; the ranking of chips for a kind is unaffected either way.

Pure: observations in, a matrix out. The control plane reads observations from its
database (``JobStore.finished_runs``); the simulator from its own finished jobs.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from suanwang.domain.ids import ChipName

MIN_SAMPLES = 3
WINDOW = 50
MAX_SPEED = 100.0
"""Observed speeds are clamped to ``(0, MAX_SPEED]``: a run that ends at once (a crash
that still exited 0) must not teach the scheduler that a chip is infinitely fast."""

SpeedMatrix = Mapping[str, Mapping[ChipName, float]]


@dataclass(frozen=True, slots=True)
class RunObservation:
    """One successful run: its kind, chip, estimate on the reference chip and run time."""

    kind: str
    chip: ChipName
    reference_s: float
    actual_s: float
    ended_at: float

    @property
    def speed(self) -> float:
        """The speed this run observed, clamped to ``(0, MAX_SPEED]``."""
        return min(MAX_SPEED, self.reference_s / max(self.actual_s, 1e-9))


def learn_speeds(
    runs: Iterable[RunObservation], min_samples: int = MIN_SAMPLES, window: int = WINDOW
) -> dict[str, dict[ChipName, float]]:
    """Median observed speed per kind and chip, over each pair's latest ``window`` runs.

    Runs without a positive estimate or run time teach nothing and are skipped. Pairs with
    fewer than ``min_samples`` usable runs are left out (the default applies to them).
    """
    by_pair: dict[tuple[str, ChipName], list[RunObservation]] = {}
    for run in runs:
        if run.kind and run.reference_s > 0 and run.actual_s > 0:
            by_pair.setdefault((run.kind, run.chip), []).append(run)
    learned: dict[str, dict[ChipName, float]] = {}
    for (kind, chip), observed in sorted(by_pair.items()):
        if len(observed) < min_samples:
            continue
        latest = sorted(observed, key=lambda r: r.ended_at)[-window:]
        learned.setdefault(kind, {})[chip] = statistics.median(r.speed for r in latest)
    return learned


def merged_speeds(
    kind: str | None, stated: Mapping[ChipName, float], learned: SpeedMatrix
) -> dict[ChipName, float]:
    """A job's per-chip speeds: what it states, over what its kind has learned."""
    merged = dict(learned.get(kind, {})) if kind else {}
    merged.update(stated)
    return merged
