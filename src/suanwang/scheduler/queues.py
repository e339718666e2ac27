"""Queue policy: the order pending jobs are considered in.

Three orderings (:data:`~.policy.Ordering`), each a static sort key per job:

- ``fifo``: submit time, then ``seq``, then id;
- ``priority``: higher priority first, then ``seq``, then id; with heterogeneity on,
  among equal priorities jobs that gain most from a fast chip go first (:func:`~.hetero
  .gain`), except that jobs waiting longer than ``Tuning.gain_max_wait_s`` go before all
  those (no starvation);
- ``multifactor`` (Slurm): higher score first, ``score = priority + age_weight *
  min(age / age_horizon_s, 1) + fair_share_weight * 2 ** (-usage_share / norm_shares)``.

With fair sharing, among equal priorities tenants are ordered by a two-part share
(:func:`share_key`): first the cohort share (``QuotaLedger.share``, Kueue's fair
sharing: borrowers behind, the least borrowing first), then the tenant's *fleet share*
(:func:`fleet_shares`): the normalised compute units it holds over the fleet's, divided
by its weight (DRF-style, over every tenant, cohort or not), compared in whole multiples
of its fair part (``Tuning.fleet_share_step``), so that with no cohort at all tenants
under their fair part still go first and none starves behind heavy users. Shares are
taken from work started before ``now`` and fixed for the cycle: a cycle re-run at the
same instant orders jobs the same way, and the next cycle sees what this one admitted.

With the starvation guard (``Policy.starvation_guard``), a job that has waited longer than
``Tuning.starvation_factor`` times its run time (at least ``starvation_floor_s``) is
*overdue* (:func:`overdue`) and goes before every other job of its priority, by share then
oldest first: it becomes the first blocked job of its pool, which holds the pool's
backfill reservation, whatever its tenant's share.

Not here: quotas (``quota.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from suanwang.domain.ids import JobId, TenantId
from suanwang.scheduler.policy import Policy
from suanwang.scheduler.snapshot import PendingJob, Snapshot

SortKey = tuple[Any, ...]
"""A job's static sort key; its first element is the priority tier."""


def queue_key(job: PendingJob) -> tuple[int, int, JobId]:
    """Sort key of the ``priority`` ordering: priority, then smaller ``seq``, then id."""
    return (-job.priority, job.seq, job.id)


def order_pending(pending: Iterable[PendingJob]) -> list[PendingJob]:
    """The pending jobs in ``priority`` order, whatever order they were given in."""
    return sorted(pending, key=queue_key)


def fifo_key(job: PendingJob) -> SortKey:
    """Sort key of the ``fifo`` ordering: submit time, ``seq``, id (one tier)."""
    return (0, job.submitted_at, job.seq, job.id)


def fair_share_factors(
    held_cards: Mapping[TenantId, float],
    weights: Mapping[TenantId, float],
    tenants: Iterable[TenantId],
) -> dict[TenantId, float]:
    """Slurm's classic fair-share factor ``2 ** (-U / S)`` per tenant, in (0, 1].

    ``U`` is the tenant's share of all cards held now, ``S`` its weight's share of the
    weights of every tenant present (weight 1 when not given). Current holdings stand
    in for Slurm's decayed historical usage.
    """
    present = sorted(set(tenants) | set(held_cards))
    total_held = sum(held_cards.values())
    total_weight = sum(weights.get(t, 1.0) for t in present)
    factors: dict[TenantId, float] = {}
    for tenant in present:
        weight = weights.get(tenant, 1.0)
        if total_held <= 0:
            factors[tenant] = 1.0
        elif weight <= 0 or total_weight <= 0:
            factors[tenant] = 0.0
        else:
            usage = held_cards.get(tenant, 0.0) / total_held
            factors[tenant] = 2.0 ** (-usage / (weight / total_weight))
    return factors


def fleet_shares(
    snapshot: Snapshot,
    held: Mapping[TenantId, float] | None = None,
    fleet_units: float | None = None,
) -> dict[TenantId, float]:
    """Each running tenant's share of the fleet, weighted: units held / fleet units / weight.

    Units are ``Snapshot.chip_units`` per card (1.0 when absent), held by work started
    before ``now`` (``held``, when the caller summed them already, e.g.
    ``RunningWork.fleet_held``); the weight is the tenant's queue weight (1.0 without a
    queue; weight 0 or less gives an infinite share). Tenants holding nothing are absent
    (share 0). ``fleet_units``: the fleet's units, when the caller knows them
    (:class:`~.cache.FleetFacts`).
    """
    units = snapshot.chip_units
    fleet = fleet_units
    if fleet is None:
        fleet = sum(n.cards_total * units.get(n.chip, 1.0) for n in snapshot.nodes)
    if held is None:
        held = _held_before_now(snapshot)
    shares: dict[TenantId, float] = {}
    for tenant, amount in held.items():
        weight = _weight(snapshot, tenant)
        if amount <= 0 or fleet <= 0:
            continue
        shares[tenant] = amount / fleet / weight if weight > 0 else math.inf
    return shares


def _held_before_now(snapshot: Snapshot) -> dict[TenantId, float]:
    units = snapshot.chip_units
    held: dict[TenantId, float] = {}
    for job in snapshot.running:
        if job.started_at < snapshot.now:
            cards = sum(p.cards for p in job.placements)
            held[job.tenant] = held.get(job.tenant, 0.0) + cards * units.get(job.chip, 1.0)
    return held


def share_key(
    policy: Policy,
    snapshot: Snapshot,
    cohort_share: Callable[[TenantId], float] | None,
    held: Mapping[TenantId, float] | None = None,
    pending_tenants: Iterable[TenantId] | None = None,
    fleet_units: float | None = None,
) -> Callable[[TenantId], tuple[float, float]] | None:
    """The fair-share part of a job's sort key, ``(cohort share, fleet share level)``;
    None when the policy orders by neither (``fair_share`` off or no cohort, and
    ``fleet_share`` off).

    The level is the tenant's fleet share over its fair part of the fleet (its weight
    over the weights of every tenant with pending or running work), in whole multiples of
    ``Tuning.fleet_share_step`` (0: not rounded): tenants under their fair part come
    first, and tenants of the same level keep the rest of the order (gain, submission),
    which keeps the tail of long jobs short. ``pending_tenants``: the tenants with
    pending jobs, when the caller knows them (else read from the snapshot);
    ``fleet_units`` as for :func:`fleet_shares`.
    """
    if not policy.fair_share:
        cohort_share = None
    if cohort_share is None and not policy.fleet_share:
        return None
    fleet = fleet_shares(snapshot, held, fleet_units) if policy.fleet_share else {}
    if pending_tenants is None:
        pending_tenants = {j.tenant for j in snapshot.pending}
    active = set(pending_tenants) | {j.tenant for j in snapshot.running}
    weights = sum(_weight(snapshot, t) for t in sorted(active))  # sorted: same float always
    step = policy.tuning.fleet_share_step

    known: dict[TenantId, tuple[float, float]] = {}

    def key(tenant: TenantId) -> tuple[float, float]:
        found = known.get(tenant)  # shares are fixed for the cycle
        if found is not None:
            return found
        cohort = 0.0 if cohort_share is None else cohort_share(tenant)
        level = fleet.get(tenant, 0.0) * weights
        if step > 0 and math.isfinite(level):
            level = float(math.floor(level / step))
        found = known[tenant] = (cohort, level)
        return found

    return key


def _weight(snapshot: Snapshot, tenant: TenantId) -> float:
    queue = snapshot.queues.get(tenant)
    return 1.0 if queue is None else max(queue.weight, 0.0)


def multifactor_key(
    policy: Policy, now: float, factors: Mapping[TenantId, float]
) -> Callable[[PendingJob], SortKey]:
    """Sort key of the ``multifactor`` ordering at ``now``."""
    tuning = policy.tuning

    def key(job: PendingJob) -> SortKey:
        age = max(0.0, now - job.submitted_at)
        age_factor = min(age / tuning.age_horizon_s, 1.0) if tuning.age_horizon_s > 0 else 1.0
        score = (
            job.priority
            + tuning.age_weight * age_factor
            + tuning.fair_share_weight * factors.get(job.tenant, 1.0)
        )
        return (-score, job.submitted_at, job.seq, job.id)

    return key


def overdue(job: PendingJob, now: float, policy: Policy) -> bool:
    """Whether the starvation guard puts ``job`` first: it has waited longer than
    ``starvation_factor`` times its run time on the reference chip (its duration, else
    its max runtime), run times under ``starvation_floor_s`` counting as that floor."""
    tuning = policy.tuning
    if not policy.starvation_guard or tuning.starvation_factor <= 0:
        return False
    run_s = job.duration_s if job.duration_s is not None else job.max_runtime_s
    bound = max(run_s or 0.0, tuning.starvation_floor_s)
    return now - job.submitted_at > tuning.starvation_factor * bound


def priority_key(
    policy: Policy,
    now: float,
    gain_of: Callable[[PendingJob], float] | None,
    share_of: Callable[[TenantId], Any] | None = None,
) -> Callable[[PendingJob], SortKey]:
    """Sort key of the ``priority`` ordering, with the high-gain head start if given
    (jobs that waited over ``gain_max_wait_s`` go before it, shortest remaining work
    first), and the tenant's (fixed) share right after the priority if given (a number
    or a tuple such as :func:`share_key`'s). With the starvation guard, overdue jobs
    (:func:`overdue`) go before the others of their priority: by share, then oldest
    first (no high-gain head start)."""
    if gain_of is None and share_of is None and not policy.starvation_guard:
        return queue_key
    max_wait_s = policy.tuning.gain_max_wait_s
    tuning = policy.tuning
    guard = policy.starvation_guard and tuning.starvation_factor > 0
    factor, floor_s = tuning.starvation_factor, tuning.starvation_floor_s

    def is_overdue(job: PendingJob) -> bool:  # overdue(job, now, policy), inlined
        run_s = job.duration_s if job.duration_s is not None else job.max_runtime_s
        return now - job.submitted_at > factor * max(run_s or 0.0, floor_s)

    def key(job: PendingJob) -> SortKey:
        share: Any = 0.0 if share_of is None else share_of(job.tenant)
        if guard and is_overdue(job):
            return (-job.priority, 0, share, job.submitted_at, 0, 0.0, job.seq, job.id)
        if gain_of is None:
            return (-job.priority, 1, share, 0.0, 0, 0.0, job.seq, job.id)
        if now - job.submitted_at > max_wait_s:  # shortest remaining work first
            return (-job.priority, 1, share, 0.0, 0, job.duration_s or 0.0, job.seq, job.id)
        return (-job.priority, 1, share, 0.0, 1, -gain_of(job), job.seq, job.id)

    return key
