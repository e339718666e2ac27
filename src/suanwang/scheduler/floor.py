"""The fair-share floor: a tenant with waiting work gets at least min(its demand, its fair share).

A tenant's *fair share* is the fleet's normalised compute units (``Snapshot.chip_units``
per card, 1.0 when absent) times its weight over the weights of every *active* tenant
(one with pending or running work). What it *holds* is the units of its running jobs that
are not already stopping.

A pending job ``J`` of tenant ``T`` is *under the floor* when ``T`` would still hold no
more than its fair share with ``J`` running: ``held(T) + units(J) <= fair(T)``. Two rules
act on it, for tenants without nominal quotas (where a tenant's queue sets nominal quotas,
Kueue's nominal quota is its floor and the reclaim rules of :mod:`~.preempt` apply):

1. **Order.** In the cycle's first pass, a job that would take its tenant *over* its fair
   share goes to the second pass while another tenant with pending work of the same
   priority or higher holds less than its fair share (:meth:`ShareFloor.defers`), so
   that tenant's jobs are placed first. One cycle never hands every card to whichever
   tenant's jobs sort first.
2. **Preemption.** If ``J`` cannot start, the cycle may preempt for it the preemptible
   jobs, of priority no higher than ``J``'s, of tenants *over* their fair share
   (``held > fair``). Each victim is taken only while its tenant is still over its fair
   share, counting the victims already chosen, and only on a pool where ``J``'s own
   units keep ``T`` within its fair share; so ``J``'s tenant never rises above its share
   and the victim's never falls below it because of ``J``: no ping-pong between two
   tenants.

With both, a tenant below its floor gets its cards within two rounds of asking: one round
preempts (the victims stop and keep their last checkpoint), the next admits.
Held units are updated as the cycle admits and preempts, so one cycle never overshoots.
Tested: ``tests/unit/test_sim_share_floor.py`` (a Hypothesis property: no tenant stays
below its floor for more than 3 rounds). ``suanwang`` leaves the switch off: its
preemptions do not price the work a victim loses (see docs/scheduler.md).

Pure: no I/O, no clock; one :class:`ShareFloor` lives for one cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from suanwang.domain.ids import ChipName, TenantId
from suanwang.scheduler.running import UNITS, RunningWork
from suanwang.scheduler.snapshot import PendingJob, RunningJob, Snapshot, TenantQueue

EPSILON = 1e-9


@dataclass(slots=True)
class ShareFloor:
    """Fair shares and held units of one cycle (updated as it admits and preempts).

    Attributes:
        fair: Each active tenant's fair share, in units.
        held: Units each tenant holds (running, not stopping).
        chip_units: Units per card of each chip.
        queues: The tenants' queues (nominal quotas protect their holders).
        least_units: The fewest units per card of any chip (a job's units before its
            chip is known).
    """

    fair: dict[TenantId, float]
    held: dict[TenantId, float]
    chip_units: Mapping[ChipName, float]
    queues: Mapping[TenantId, TenantQueue]
    least_units: float = 1.0
    over: set[TenantId] = field(default_factory=set)
    """Tenants over their fair share whose work the floor may take (no nominal quotas:
    with them, only Kueue's reclaim may take a tenant's work)."""
    waiting: dict[TenantId, int] = field(default_factory=dict)
    """Tenants with pending work, and the highest priority among it."""
    failed: set[TenantId] = field(default_factory=set)
    """Tenants whose floor preemption search found no plan this cycle: their later jobs
    do not search again until the next cycle (the same victims would not do)."""

    @classmethod
    def of(
        cls, snapshot: Snapshot, work: RunningWork, waiting: dict[TenantId, int] | None = None
    ) -> ShareFloor:
        """The floor at the start of a cycle over ``snapshot`` (``waiting``: the highest
        priority of each tenant's pending jobs, when the caller knows it)."""
        units = snapshot.chip_units
        cards: dict[ChipName, int] = {}
        for node in snapshot.nodes:  # one pass over the fleet
            cards[node.chip] = cards.get(node.chip, 0) + node.cards_total
        fleet = sum(n * units.get(chip, 1.0) for chip, n in sorted(cards.items()))
        if waiting is None:
            waiting = {}
            for job in snapshot.pending:  # one pass over the queue
                top = waiting.get(job.tenant)
                if top is None or job.priority > top:
                    waiting[job.tenant] = job.priority
        active = sorted(set(waiting) | set(work.tenants))
        weights = {t: _weight(snapshot.queues.get(t)) for t in active}
        total = sum(weights[t] for t in active)
        fair = {t: fleet * w / total if total > 0 else 0.0 for t, w in weights.items()}
        held = {t: w.units - w.stopping.get(UNITS, 0.0) for t, w in work.tenants.items() if w.jobs}
        least = min((units.get(c, 1.0) for c in cards), default=1.0)
        floor = cls(fair, held, units, snapshot.queues, least, set(), waiting)
        floor.over = {t for t in held if floor._over(t)}
        return floor

    def units(self, job: PendingJob, chip: ChipName | None = None) -> float:
        """``job``'s units on ``chip`` (None: on the chip with the fewest units)."""
        per_card = self.least_units if chip is None else self.chip_units.get(chip, 1.0)
        return job.cards_per_node * job.nodes * per_card

    def under(self, job: PendingJob, chip: ChipName | None = None) -> bool:
        """Whether ``job`` is under its tenant's floor (on ``chip``, or on any chip)."""
        fair = self.fair.get(job.tenant, 0.0)
        return self.held.get(job.tenant, 0.0) + self.units(job, chip) <= fair + EPSILON

    def defers(self, job: PendingJob) -> bool:
        """Whether ``job`` goes to the cycle's second pass: it would take its tenant over
        its fair share (on any chip) while another tenant with pending work of the same
        priority or higher holds less than its own, so that tenant's jobs go first. Not
        for a tenant with nominal quotas: Kueue's order governs it."""
        if self.under(job) or self._quota_bound(job.tenant):
            return False
        return any(
            t != job.tenant
            and top >= job.priority
            and self.held.get(t, 0.0) < self.fair.get(t, 0.0) - EPSILON
            for t, top in self.waiting.items()
        )

    def may_serve(self, job: PendingJob) -> bool:
        """Cheap test: could a floor preemption help ``job`` at all?"""
        if job.tenant in self.failed:
            return False
        return self.under(job) and any(t != job.tenant for t in self.over)

    def victim_ok(self, victim: RunningJob, cards: int, taken: Mapping[TenantId, float]) -> bool:
        """Whether ``victim`` (``cards`` cards) may be stopped for the floor, its tenant
        having given ``taken`` units already: preemptible, over its fair share before
        this victim, and not protected by a nominal quota."""
        tenant = victim.tenant
        if not victim.preemptible or tenant not in self.over:
            return False
        left = self.held.get(tenant, 0.0) - taken.get(tenant, 0.0)
        return left > self.fair.get(tenant, 0.0) + EPSILON and cards > 0

    def _quota_bound(self, tenant: TenantId) -> bool:
        queue = self.queues.get(tenant)
        return queue is not None and bool(queue.quotas)

    def add(self, tenant: TenantId, units: float) -> None:
        """``tenant`` now holds ``units`` more (negative: fewer)."""
        self.held[tenant] = self.held.get(tenant, 0.0) + units
        if self._over(tenant):
            self.over.add(tenant)
        else:
            self.over.discard(tenant)

    def _over(self, tenant: TenantId) -> bool:
        """Over its fair share, and no nominal quota protects its work."""
        held = self.held.get(tenant, 0.0)
        return held > self.fair.get(tenant, 0.0) + EPSILON and not self._quota_bound(tenant)

    def victim_units(self, victim: RunningJob, cards: int) -> float:
        """Units ``victim`` holds."""
        return cards * self.chip_units.get(victim.chip, 1.0)


def _weight(queue: TenantQueue | None) -> float:
    return 1.0 if queue is None else max(queue.weight, 0.0)
