"""Chip speeds learned from finished jobs, per tenant and job kind.

A job's ``duration_s`` is its run time on the reference chip (speed 1.0), so a finished
run of ``actual_s`` seconds on chip ``c`` observed a speed of ``duration_s / actual_s``
there. For each (kind, chip) with at least ``min_samples`` observations, the learned speed
is the median of the most recent ``window`` of them: robust to a few odd runs (a node that
was slow, a job that exited early), and it follows change (a new driver, a new engine).

Whose runs teach whom: a tenant's runs teach that tenant only, so one tenant cannot steer
another's placement by faking estimates or running slowly under a popular kind name. The
operator's runs (those of the platform's benchmark tenant) teach everyone, as a fallback.
A :class:`SpeedBook` holds both; for each chip a job's speed is, in order
(:func:`merged_speeds`): what the job states, what its tenant's runs of its kind taught,
what the operator's runs of its kind taught, then ``Snapshot.chip_speed`` (the catalogue
default). Because the estimate itself is the yardstick, a tenant whose estimates are twice
too long learns speeds twice too high, which makes the scheduler's expected run times
right again; the ranking of chips for a kind is unaffected either way.

Pure: observations in, a book out. The control plane reads observations from its
database (``JobStore.finished_runs``); the simulator from its own finished jobs.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from suanwang.domain.ids import ChipName

MIN_SAMPLES = 3
WINDOW = 50
MAX_SPEED = 100.0
"""Observed speeds are clamped to ``(0, MAX_SPEED]``: a run that ends at once (a crash
that still exited 0) must not teach the scheduler that a chip is infinitely fast."""

SpeedMatrix = Mapping[str, Mapping[ChipName, float]]
"""Learned speeds by kind, then chip."""


@dataclass(frozen=True, slots=True)
class RunObservation:
    """One successful run: whose, its kind, chip, estimate on the reference chip and run
    time."""

    tenant: str
    kind: str
    chip: ChipName
    reference_s: float
    actual_s: float
    ended_at: float

    @property
    def speed(self) -> float:
        """The speed this run observed, clamped to ``(0, MAX_SPEED]``."""
        return min(MAX_SPEED, self.reference_s / max(self.actual_s, 1e-9))


@dataclass(frozen=True, slots=True)
class SpeedBook:
    """Learned speeds: each tenant's own, by (tenant, kind), and the operator's, by kind.

    Attributes:
        own: What each tenant's runs taught, by (tenant, kind).
        shared: What the operator's benchmark runs taught, by kind (every tenant's
            fallback).
    """

    own: Mapping[tuple[str, str], Mapping[ChipName, float]] = field(default_factory=dict)
    shared: SpeedMatrix = field(default_factory=dict)

    def speeds(self, tenant: str, kind: str) -> dict[ChipName, float]:
        """The learned speeds for ``tenant``'s jobs of ``kind``: its own, over the
        operator's, chip by chip."""
        learned = dict(self.shared.get(kind, {}))
        learned.update(self.own.get((tenant, kind), {}))
        return learned


NOTHING_LEARNED = SpeedBook()


def learn_book(
    runs: Iterable[RunObservation],
    operator: str | None,
    min_samples: int = MIN_SAMPLES,
    window: int = WINDOW,
) -> SpeedBook:
    """Each tenant's speeds from its own runs; the ``operator`` tenant's are shared too."""
    by_tenant: dict[str, list[RunObservation]] = {}
    for run in runs:
        by_tenant.setdefault(run.tenant, []).append(run)
    own: dict[tuple[str, str], dict[ChipName, float]] = {}
    for tenant, theirs in sorted(by_tenant.items()):
        for kind, speeds in learn_speeds(theirs, min_samples, window).items():
            own[(tenant, kind)] = speeds
    shared = {kind: speeds for (tenant, kind), speeds in own.items() if tenant == operator}
    return SpeedBook(own, shared)


def learn_speeds(
    runs: Iterable[RunObservation], min_samples: int = MIN_SAMPLES, window: int = WINDOW
) -> dict[str, dict[ChipName, float]]:
    """Median observed speed per kind and chip, over each pair's latest ``window`` runs.

    Whoever ran them: the caller chooses whose runs teach (:func:`learn_book`). Runs
    without a positive estimate or run time teach nothing and are skipped. Pairs with
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
    tenant: str, kind: str | None, stated: Mapping[ChipName, float], learned: SpeedBook
) -> dict[ChipName, float]:
    """A job's per-chip speeds: what it states, over what its tenant's runs of its kind
    taught, over what the operator's taught (chips named nowhere: the catalogue's)."""
    merged = learned.speeds(tenant, kind) if kind else {}
    merged.update(stated)
    return merged
