"""Preemption: which running jobs to stop so that a blocked job can start.

Who may be preempted for a pending job ``J``:

- **priority**: preemptible running jobs of ``J``'s own tenant with a lower priority
  (Kueue's ``withinClusterQueue: LowerPriority``); never a ``preemptible=False`` job;
- **reclaim**: running jobs of other tenants of ``J``'s cohort while their tenant holds
  more than its nominal quota of that family (or of units), provided ``J`` itself stays
  within its nominal quota (Kueue's ``reclaimWithinCohort: Any``). Borrowed quota is
  always reclaimable, whatever the borrower's flag: a tenant's non-preemptible jobs fill
  its nominal quota first, so they are reclaimed only while they alone hold more than it
  (and after its preemptible jobs, in greedy order); ``preemptible=False`` protects a job
  from preemption within its tenant's nominal quota, not from the lender;
- **fair-share floor** (``Policy.share_floor``, :mod:`~.floor`): preemptible jobs of
  tenants over their fair share that no nominal quota protects, for a job whose tenant
  stays within its fair share with it;
- **serving** (训推一体): a production inference replica (``PendingJob.serving``) may
  stop preemptible, lower-priority work that is not serving itself: its own tenant's
  always, another tenant's only where that tenant's nominal quota does not protect it
  (:func:`serving_may_stop`: the tenant borrows that family or units, or has no quota
  for it). Training that borrows what inference leaves idle gives the cards back at peak;
  a tenant's private deployment never evicts work another tenant runs within its own
  nominal quota. A serving job is never a victim (``RunningJob.serving``), whoever asks,
  unless it is already stopping.

Jobs already stopping for ``J`` (``RunningJob.preempted_for``) come first and cost
nothing. A stopping job is never chosen again, and one whose preemptor is no longer
pending is left to stop: its cards free up for everyone once it has (claiming it for
someone else would make the next cycle undo this one's choices).

Victims are chosen to free the fewest cards beyond ``J``'s request and to lose the least
work: a victim loses the work since its last checkpoint (:func:`lost_work_s`). For each
pool ``J`` could use, candidates are added greedily until ``J`` fits (all its nodes and
its quota), once least lost work first and once smallest first; then every victim that is
not needed is dropped again, last added first (Kueue's minimal set). Of all these plans,
the one that frees the fewest cards beyond the request wins, then the least lost
card-seconds, then the fewest victims, then the pool's name. No plan, no preemption:
nothing is ever preempted for a job that still would not fit.

Not here: issuing decisions and claiming the cards (``cycle.py``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from suanwang.domain.ids import ChipFamily, JobId, NodeId, TenantId
from suanwang.scheduler.fit import Pool, PoolKey
from suanwang.scheduler.floor import ShareFloor
from suanwang.scheduler.quota import UNITS, QuotaLedger, Relief
from suanwang.scheduler.running import RunningWork
from suanwang.scheduler.snapshot import PendingJob, RunningJob


def serving_outranks(job: PendingJob, running: RunningJob) -> bool:
    """Whether ``job`` is a production replica and ``running`` preemptible,
    lower-priority and not serving (whose quota it uses is :func:`serving_may_stop`'s)."""
    return (
        job.serving
        and running.preemptible
        and not running.serving
        and running.priority < job.priority
    )


def serving_may_stop(
    job: PendingJob, running: RunningJob, ledger: QuotaLedger, release: Relief | None = None
) -> bool:
    """Whether the serving preemption rule lets ``job`` stop ``running``: ``job``
    outranks it (:func:`serving_outranks`) and ``running`` is its own tenant's work or
    work no nominal quota protects (:meth:`QuotaLedger.guarantees`, counting ``release``
    as given back: a borrower gives back what it borrows, no more)."""
    return serving_outranks(job, running) and (
        running.tenant == job.tenant
        or not ledger.guarantees(running.tenant, running.family, release)
    )


def lost_work_s(job: RunningJob, now: float) -> float:
    """Seconds of work a preemption at ``now`` throws away.

    ``now - max(started_at, last_checkpoint_at, latest multiple of
    checkpoint_interval_s since the start)``, never negative.
    """
    saved = job.started_at
    if job.last_checkpoint_at is not None:
        saved = max(saved, job.last_checkpoint_at)
    interval = job.checkpoint_interval_s
    if interval and interval > 0 and now > job.started_at:
        saved = max(
            saved, job.started_at + math.floor((now - job.started_at) / interval) * interval
        )
    return max(0.0, now - saved)


@dataclass(frozen=True, slots=True)
class Victim:
    """A running job that could be stopped, with what stopping it frees and costs."""

    job: RunningJob
    cards: int
    lost_work_s: float
    pool: PoolKey | None

    @property
    def stopping(self) -> bool:
        """Already preempted earlier: free of charge, no new decision needed."""
        return self.job.preempted_for is not None

    @property
    def protected(self) -> bool:
        """Non-preemptible and not stopping: only reclaim may choose it."""
        return not (self.job.preemptible or self.stopping)

    def order(self) -> tuple[bool, bool, float, int, float, JobId]:
        """Greedy order: stopping first, preemptible before non-preemptible, then least
        lost work, fewest cards, latest start."""
        job = self.job
        return (
            not self.stopping,
            self.protected,
            self.lost_work_s,
            self.cards,
            -job.started_at,
            job.id,
        )

    def order_by_size(self) -> tuple[bool, bool, int, float, float, JobId]:
        """Second greedy order: stopping first, preemptible before non-preemptible, then
        fewest cards, least lost work."""
        job = self.job
        return (
            not self.stopping,
            self.protected,
            self.cards,
            self.lost_work_s,
            -job.started_at,
            job.id,
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """Stop ``victims`` so the job fits on ``nodes`` of ``pool``."""

    pool: Pool
    victims: tuple[Victim, ...]
    nodes: tuple[NodeId, ...]
    cost: tuple[int, float, int, PoolKey]
    """(cards freed beyond what the job needs from its victims, lost card-seconds, new
    victims, pool)."""


class VictimIndex:
    """Running jobs that may be preempted this cycle, by tenant, minus claimed ones:
    preemptible jobs (``by_tenant``) and non-preemptible ones that only reclaim may
    choose (``protected``).

    :class:`Victim` records (with their lost work) are made only for jobs a search
    actually looks at.
    """

    def __init__(
        self,
        work: RunningWork,
        pool_of_node: Mapping[NodeId, PoolKey],
        now: float,
        pending: Collection[JobId],
    ) -> None:
        self.pool_of_node, self.now = pool_of_node, now
        self.by_tenant: dict[TenantId, list[RunningJob]] = {}
        self.protected: dict[TenantId, list[RunningJob]] = {}
        self.promised = work.promised(pending)
        self.claimed: set[JobId] = set()
        self.lowest: dict[TenantId, int] = {}
        self.tenants_in: dict[PoolKey, set[TenantId]] = {}
        self._victims: dict[JobId, Victim] = {}
        for tenant, tenant_work in work.tenants.items():
            if tenant_work.lowest is not None:
                self.by_tenant[tenant] = tenant_work.preemptible  # shared: never changed here
                self.lowest[tenant] = tenant_work.lowest
            if tenant_work.protected:
                self.protected[tenant] = tenant_work.protected  # shared too
            for pool in tenant_work.pools:
                self.tenants_in.setdefault(pool, set()).add(tenant)

    def victim(self, job: RunningJob) -> Victim:
        """The :class:`Victim` record of a running job (made once)."""
        victim = self._victims.get(job.id)
        if victim is None:
            first = job.placements[0].node if job.placements else NodeId(-1)
            cards = sum(p.cards for p in job.placements)
            pool = self.pool_of_node.get(first)
            victim = self._victims[job.id] = Victim(job, cards, lost_work_s(job, self.now), pool)
        return victim

    def could_serve(self, job: PendingJob, reclaim: bool, floor: ShareFloor | None) -> bool:
        """Cheap test: could any candidate exist for ``job``?"""
        return (
            self.has_lower(job.tenant, job.priority)
            or job.id in self.promised
            or (job.serving and bool(self.by_tenant))
            or (reclaim and bool(self.by_tenant or self.protected))
            or (floor is not None and floor.may_serve(job))
        )

    def others_in(self, pool: PoolKey, tenant: TenantId, cohort: str, ledger: QuotaLedger) -> bool:
        """Whether other tenants of ``cohort`` run work on ``pool`` that a reclaim might
        stop (not yet preempted; borrowing or not)."""
        return any(
            other != tenant and ledger.cohort_of(other) == cohort
            for other in self.tenants_in.get(pool, ())
        )

    def has_lower(self, tenant: TenantId, priority: int) -> bool:
        """Whether the tenant runs any preemptible job below ``priority`` (O(1))."""
        return self.lowest.get(tenant, priority) < priority

    def candidates(
        self, job: PendingJob, ledger: QuotaLedger, reclaim: bool, floor: ShareFloor | None
    ) -> list[Victim]:
        """Who ``job`` may preempt, in greedy order; ``reclaim`` adds cohort borrowers,
        ``floor`` the preemptible work of tenants over their fair share."""
        found = list(self.promised.get(job.id, ()))
        if job.serving:
            for tenant in sorted(self.by_tenant):
                found += [r for r in self.by_tenant[tenant] if serving_may_stop(job, r, ledger)]
        else:
            found += [r for r in self.by_tenant.get(job.tenant, ()) if r.priority < job.priority]
        if floor is not None and floor.may_serve(job):
            for tenant in sorted(floor.over - {job.tenant}):
                found += [r for r in self.by_tenant.get(tenant, ()) if r.priority <= job.priority]
        cohort = ledger.cohort_of(job.tenant)
        if reclaim and cohort is not None:
            for group, protected in ((self.by_tenant, False), (self.protected, True)):
                for tenant, running in group.items():
                    if tenant != job.tenant and ledger.cohort_of(tenant) == cohort:
                        found += [
                            r
                            for r in running
                            if ledger.is_borrowing(tenant, r.family, protected=protected)
                        ]
        if job.serving:
            found = list({r.id: r for r in found}.values())  # reclaim may list them again
        victims = [
            self.victim(r)
            for r in found
            if r.id not in self.claimed and (r.preempted_for is not None or not r.serving)
        ]
        victims.sort(key=Victim.order)
        return victims

    def claim(self, victims: Iterable[Victim]) -> None:
        """Take ``victims`` out of the running for later preemptors of this cycle."""
        self.claimed.update(v.job.id for v in victims)


def plan_preemption(
    job: PendingJob,
    targets: Iterable[tuple[Pool, Collection[NodeId]]],
    candidates: list[Victim],
    ledger: QuotaLedger,
    limit: int,
    floor: ShareFloor | None = None,
) -> Plan | None:
    """The cheapest way to make ``job`` fit in one of ``targets``, or None.

    At most ``limit`` useful candidates are tried per pool. Pools the gang fits already
    need only quota back, which is the same search for every pool of one flavor: only
    the first of them (by key, the tie-break anyway) is searched.
    """
    by_family: dict[ChipFamily, list[Victim]] = {}
    for victim in candidates:
        by_family.setdefault(victim.job.family, []).append(victim)
    queue = ledger.queues.get(job.tenant)
    units = queue is not None and UNITS in queue.quotas
    best: Plan | None = None
    quota_only: set[tuple[ChipFamily, str]] = set()
    for pool, exclude in sorted(targets, key=lambda target: target[0].key):
        if pool.fits(job.cards_per_node, job.nodes, exclude):
            flavor = (pool.key.family, pool.key.chip)
            if flavor in quota_only:
                continue
            quota_only.add(flavor)
        relevant = candidates if units else by_family.get(pool.key.family, [])
        by_size = sorted(relevant, key=Victim.order_by_size)
        for ordered in (relevant, by_size):
            plan = _plan_in(_Trial(job, pool, exclude, ledger, floor), ordered, limit)
            if plan is not None and (best is None or plan.cost < best.cost):
                best = plan
    return best


class _Trial:
    """The search for one job on one pool: the victims so far and what they free.

    Both halves of the fit test are kept incrementally: how many nodes the victims'
    cards push over the gang's per-node need, and the quota they give back.
    """

    def __init__(
        self,
        job: PendingJob,
        pool: Pool,
        exclude: Collection[NodeId],
        ledger: QuotaLedger,
        floor: ShareFloor | None = None,
    ) -> None:
        self.job, self.pool, self.exclude, self.ledger = job, pool, exclude, ledger
        self.floor = floor if floor is not None and floor.under(job, pool.key.chip) else None
        self.taken: dict[TenantId, float] = {}
        self.freed: dict[NodeId, int] = {}
        self.relief = Relief(ledger)
        self.base = pool.count_fitting(job.cards_per_node, exclude)
        self.crossed = 0

    def add(self, victim: Victim, sign: int = 1) -> None:
        """Count ``victim``'s cards and quota as freed (``sign=-1``: no longer)."""
        running = victim.job
        need = self.job.cards_per_node
        if victim.pool == self.pool.key:
            for p in running.placements:
                free = self.pool.free_of.get(p.node)
                if free is None or p.node in self.exclude:
                    continue
                before = self.freed.get(p.node, 0)
                after = self.freed[p.node] = before + sign * p.cards
                was, now = free < need <= free + before, free < need <= free + after
                self.crossed += int(now) - int(was)
        if self.floor is not None:
            units = sign * self.floor.victim_units(running, victim.cards)
            self.taken[running.tenant] = self.taken.get(running.tenant, 0.0) + units
        self.relief.add(
            running.tenant,
            running.family,
            running.chip,
            victim.cards,
            sign,
            stopping=victim.stopping,
            protected=victim.protected,
        )

    def capacity_fits(self) -> bool:
        """Whether the gang fits the pool once the victims have stopped."""
        return self.base + self.crossed >= self.job.nodes

    def quota_fits(self) -> bool:
        """Whether the job's quota allows it once the victims have stopped."""
        job, key = self.job, self.pool.key
        cards = job.cards_per_node * job.nodes
        return self.ledger.check(job.tenant, key.family, key.chip, cards, self.relief).ok

    def fits(self) -> bool:
        """Whether the job fits the pool and its quota once the victims have stopped."""
        return self.capacity_fits() and self.quota_fits()

    def reclaimable(self, victim: Victim) -> bool:
        """Own lower-priority work always; another tenant's only while it still borrows
        (a non-preemptible job: while its tenant's non-preemptible work does)."""
        running = victim.job
        if running.tenant == self.job.tenant or victim.stopping or self.for_floor(victim):
            return True
        if serving_may_stop(self.job, running, self.ledger, self.relief):
            return True
        return self.ledger.is_borrowing(
            running.tenant, running.family, self.relief, protected=victim.protected
        )

    def for_floor(self, victim: Victim) -> bool:
        """Whether the fair-share floor lets the job stop ``victim`` (:mod:`~.floor`)."""
        floor, running = self.floor, victim.job
        return floor is not None and floor.victim_ok(running, victim.cards, self.taken)


def _useful(trial: _Trial, candidates: list[Victim], limit: int) -> list[Victim]:
    """Candidates that can help on this pool: they free its cards if capacity is short,
    its quota if quota is short; reclaim only when the job stays within nominal."""
    job, key, ledger = trial.job, trial.pool.key, trial.ledger
    cards = job.cards_per_node * job.nodes
    reclaim = ledger.within_nominal(job.tenant, key.family, key.chip, cards)
    need_quota = not trial.quota_fits()
    useful: list[Victim] = []
    for v in candidates:
        own = v.job.tenant == job.tenant or serving_may_stop(job, v.job, ledger)
        if not (reclaim or v.stopping or own or trial.for_floor(v)):
            continue
        if need_quota or v.pool == key:
            useful.append(v)
            if len(useful) == limit:
                break
    return useful


def _plan_in(trial: _Trial, candidates: list[Victim], limit: int) -> Plan | None:
    """Greedy then minimal victim set for the trial's job on its pool, or None.

    The greedy step takes the shortest prefix of the (reclaimable) candidates in
    greedy order after which the job fits; all of them are tried at once first, so a
    hopeless search costs one pass.
    """
    job, pool = trial.job, trial.pool
    if pool.count_capable(job.cards_per_node) < job.nodes:
        return None
    sequence: list[Victim] = []
    for victim in _useful(trial, candidates, limit):
        if trial.reclaimable(victim):
            sequence.append(victim)
            trial.add(victim)
    if not sequence or not trial.fits():
        return None
    trial = _fresh(trial, [])
    chosen: list[Victim] = []
    for victim in sequence:
        chosen.append(victim)
        trial.add(victim)
        if trial.fits():
            break
    for victim in reversed(chosen[:-1]):
        trial.add(victim, -1)
        if trial.fits():
            chosen.remove(victim)
        else:
            trial.add(victim)
    return _finish(trial, chosen)


def _fresh(trial: _Trial, victims: list[Victim]) -> _Trial:
    """A new trial of the same job and pool with exactly ``victims``."""
    fresh = _Trial(trial.job, trial.pool, trial.exclude, trial.ledger, trial.floor)
    for victim in victims:
        fresh.add(victim)
    return fresh


def _finish(trial: _Trial, victims: list[Victim]) -> Plan:
    """The plan's nodes (those the victims free first) and its cost."""
    job, pool = trial.job, trial.pool
    per_node = job.cards_per_node
    freed = trial.freed
    helped = sorted(
        (pool.free_of[n] + add, n)
        for n, add in freed.items()
        if n not in trial.exclude
        and n in pool.free_of
        and pool.free_of[n] < per_node <= pool.free_of[n] + add
    )
    nodes = [n for _free, n in helped[: job.nodes]]
    if len(nodes) < job.nodes:
        rest = pool.choose(per_node, job.nodes - len(nodes), {*trial.exclude, *nodes}) or []
        nodes += [n for _free, n in rest]
    fresh = [v for v in victims if not v.stopping]
    from_victims = sum(per_node - min(max(pool.free_of[n], 0), per_node) for n in nodes)
    over = max(0, sum(v.cards for v in victims) - from_victims)
    lost = sum(v.lost_work_s * v.cards for v in fresh)
    return Plan(pool, tuple(victims), tuple(nodes), (over, lost, len(fresh), pool.key))
