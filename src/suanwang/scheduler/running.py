"""Running work by tenant: what every cycle derives from the running jobs, made once.

A cycle reads the running jobs several times: the quota ledger sums what each tenant
holds (and what its non-preemptible jobs hold), the fleet shares sum the units each
tenant holds, the victim index groups the jobs a preemption may stop, and the timelines
list when each pool's cards come free. A :class:`TenantWork` makes all of that once for
one tenant's running jobs; a :class:`RunningWork` is every tenant's, for one snapshot.

Between cycles most tenants run exactly the same jobs (the same :class:`RunningJob`
objects, as the simulator and the control loop keep them), so a
:class:`~.cache.CycleCache` keeps each tenant's :class:`TenantWork` and makes a new one
only for a tenant whose running jobs changed (compared by identity, in order).

Every sum runs over one tenant's jobs in snapshot order, as summing over the whole
snapshot would: floating-point results are the same to the last bit, cached or not.
Whatever depends on ``now`` (jobs that started at ``now`` or later, overdue releases)
is worked out per cycle.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from suanwang.domain.ids import ChipFamily, ChipName, JobId, NodeId, TenantId
from suanwang.scheduler.backfill import Event, Timeline
from suanwang.scheduler.fit import PoolKey
from suanwang.scheduler.snapshot import RunningJob

UNITS = ChipFamily("units")
"""Pseudo-family of normalised compute units (``Snapshot.chip_units`` per card); the
quota ledger's dimension (:mod:`~.quota` re-exports it)."""


@dataclass(slots=True)
class TenantWork:
    """One tenant's running jobs, in snapshot order, and the sums cycles need.

    Attributes:
        jobs: The running jobs.
        cards: Cards held by each job (over its placements).
        units: Normalised units held, summed job after job.
        families: Cards held per family.
        stopping: Per family and units: held by jobs already preempted.
        latest_start: The latest ``started_at`` (jobs at or after ``now`` are recent).
        preemptible: Jobs a preemption may still choose (preemptible, not preempted).
        protected: Non-preemptible jobs not preempted: only a cohort peer's reclaim may
            stop them, while they hold more than their tenant's nominal quota.
        protected_held: Per family and units: held by ``protected`` jobs.
        preempted: Jobs already preempted (stopping).
        lowest: The lowest priority of ``preemptible`` (None when empty).
        pools: Pools where ``preemptible`` or ``protected`` jobs run.
        releases: Per pool, ``(expected end, node, cards, job)`` of every job that
            releases cards there (not preempted, known end), unsorted, ends not clamped.
    """

    jobs: list[RunningJob]
    cards: list[int] = field(default_factory=list)
    units: float = 0.0
    families: dict[ChipFamily, float] = field(default_factory=dict)
    stopping: dict[ChipFamily, float] = field(default_factory=dict)
    latest_start: float = float("-inf")
    preemptible: list[RunningJob] = field(default_factory=list)
    protected: list[RunningJob] = field(default_factory=list)
    protected_held: dict[ChipFamily, float] = field(default_factory=dict)
    preempted: list[RunningJob] = field(default_factory=list)
    lowest: int | None = None
    pools: set[PoolKey] = field(default_factory=set)
    releases: dict[PoolKey, list[Event]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        jobs: list[RunningJob],
        chip_units: Mapping[ChipName, float],
        pool_of_node: Mapping[NodeId, PoolKey],
    ) -> TenantWork:
        """The work of ``jobs`` (one tenant's, in snapshot order)."""
        work = cls(jobs)
        for job in jobs:
            cards = sum(p.cards for p in job.placements)
            work.cards.append(cards)
            units = cards * chip_units.get(job.chip, 1.0)
            work.units += units
            work.families[job.family] = work.families.get(job.family, 0.0) + cards
            work.latest_start = max(work.latest_start, job.started_at)
            pool = pool_of_node.get(job.placements[0].node) if job.placements else None
            if job.preempted_for is not None:
                work.preempted.append(job)
                _add(work.stopping, job.family, float(cards))
                _add(work.stopping, UNITS, units)
                continue
            if job.preemptible:
                work.preemptible.append(job)
                lowest = work.lowest
                work.lowest = job.priority if lowest is None else min(lowest, job.priority)
            else:
                work.protected.append(job)
                _add(work.protected_held, job.family, float(cards))
                _add(work.protected_held, UNITS, units)
            if pool is not None:
                work.pools.add(pool)
            if pool is not None and job.expected_end is not None:
                events = work.releases.setdefault(pool, [])
                for placement in job.placements:
                    if placement.cards > 0:
                        events.append((job.expected_end, placement.node, placement.cards, job.id))
        return work

    def recent(self, now: float, chip_units: Mapping[ChipName, float]) -> dict[ChipFamily, float]:
        """Per family and units: held by jobs that started at ``now`` or later."""
        found: dict[ChipFamily, float] = {}
        if self.latest_start < now:
            return found
        for job, cards in zip(self.jobs, self.cards, strict=True):
            if job.started_at >= now:
                _add(found, job.family, float(cards))
                _add(found, UNITS, cards * chip_units.get(job.chip, 1.0))
        return found

    def units_before(self, now: float, chip_units: Mapping[ChipName, float]) -> float | None:
        """Units held by jobs started before ``now`` (None when there are none)."""
        if self.latest_start < now:
            return self.units
        held: float | None = None
        for job, cards in zip(self.jobs, self.cards, strict=True):
            if job.started_at < now:
                held = (held or 0.0) + cards * chip_units.get(job.chip, 1.0)
        return held


def _add(sums: dict[ChipFamily, float], key: ChipFamily, amount: float) -> None:
    sums[key] = sums.get(key, 0.0) + amount


@dataclass(frozen=True, slots=True)
class RunningWork:
    """Every tenant's :class:`TenantWork` for one snapshot, tenants in order of first
    appearance among the running jobs."""

    tenants: dict[TenantId, TenantWork]
    chip_units: Mapping[ChipName, float]

    @classmethod
    def of(
        cls,
        running: Iterable[RunningJob],
        chip_units: Mapping[ChipName, float],
        pool_of_node: Mapping[NodeId, PoolKey],
        known: Mapping[TenantId, TenantWork] | None = None,
    ) -> RunningWork:
        """The work of ``running``, reusing each tenant's ``known`` work when that tenant
        runs exactly the same jobs (same objects, same order)."""
        groups: dict[TenantId, list[RunningJob]] = {}
        for job in running:
            jobs = groups.get(job.tenant)
            if jobs is None:
                groups[job.tenant] = [job]
            else:
                jobs.append(job)
        tenants: dict[TenantId, TenantWork] = {}
        for tenant, jobs in groups.items():
            old = None if known is None else known.get(tenant)
            if old is not None and old.jobs == jobs:
                tenants[tenant] = old
            else:
                tenants[tenant] = TenantWork.of(jobs, chip_units, pool_of_node)
        return cls(tenants, chip_units)

    def fleet_held(self, now: float) -> dict[TenantId, float]:
        """Units each tenant holds by work started before ``now`` (tenants with none
        absent)."""
        held: dict[TenantId, float] = {}
        for tenant, work in self.tenants.items():
            units = work.units_before(now, self.chip_units)
            if units is not None:
                held[tenant] = units
        return held

    def timelines(self, keys: Iterable[PoolKey], now: float) -> dict[PoolKey, Timeline]:
        """When each pool's cards come free: releases due before ``now`` happen at ``now``."""
        timelines: dict[PoolKey, Timeline] = {}
        for key in keys:
            events: list[Event] = []
            for work in self.tenants.values():
                found = work.releases.get(key)
                if found:
                    events += found
            if events and min(events)[0] < now:
                events = [(max(e[0], now), e[1], e[2], e[3]) for e in events]
            events.sort()
            timelines[key] = Timeline(events)
        return timelines

    def promised(self, pending: Collection[JobId]) -> dict[JobId, list[RunningJob]]:
        """Stopping jobs by the pending job they were preempted for."""
        found: dict[JobId, list[RunningJob]] = {}
        for work in self.tenants.values():
            for job in work.preempted:
                preemptor = job.preempted_for
                if preemptor is not None and preemptor in pending:
                    found.setdefault(preemptor, []).append(job)
        return found
