"""Named scheduling policies: which rules one :func:`~suanwang.scheduler.cycle` applies.

A :class:`Policy` is a frozen set of named switches; :data:`POLICIES` holds the four the
simulator compares. What each switch means is implemented in its own module:

- ``ordering``, ``fair_share``, ``fleet_share`` and ``starvation_guard``:
  :mod:`~suanwang.scheduler.queues`;
- ``quotas``: :mod:`~suanwang.scheduler.quota`;
- ``preemption``: :mod:`~suanwang.scheduler.preempt`;
- ``backfill`` and ``strict_fifo``: :mod:`~suanwang.scheduler.backfill`;
- ``heterogeneity``, ``data_aware`` and ``pool_choice``: :mod:`~suanwang.scheduler.placement`.

Nothing here runs a cycle; this module is data only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Ordering = Literal["fifo", "priority", "multifactor"]
"""``fifo``: submit order. ``priority``: priority, then submit order. ``multifactor``:
Slurm-style score = priority + age factor + fair-share factor."""
QuotaMode = Literal["caps", "kueue"]
"""``caps``: a tenant's queue is a hard cap at its nominal quota, no borrowing.
``kueue``: nominal, borrowing and lending limits within cohorts."""
PoolChoice = Literal["first_fit", "best_fit", "random", "flavor_order"]
"""How a heterogeneity-blind policy picks among pools the job fits now
(:func:`~suanwang.scheduler.placement.pick_now`): ``first_fit``, the first by (cluster,
chip) name (biased: kept for custom policies only); ``best_fit``, the one left with the
fewest free cards; ``random``, uniformly at random, seeded by the job id; ``flavor_order``,
the first chip family in the order the tenant's queue lists its quotas, then the pool
with the most free cards. Remaining ties are broken by the job-seeded draw, never by
name."""


@dataclass(frozen=True, slots=True)
class Tuning:
    """Numeric knobs of a policy; the defaults suit every named policy.

    Attributes:
        age_weight: Multifactor: weight of the age factor (1.0 = one priority level).
        age_horizon_s: Multifactor: age at which the age factor reaches 1.0.
        fair_share_weight: Multifactor: weight of the fair-share factor.
        gain_max_wait_s: Heterogeneity: jobs waiting longer than this lose their
            high-gain head start (anti-starvation).
        fleet_share_step: Fleet share: shares are compared in whole multiples of this
            fraction of the tenant's fair part of the fleet (0: exactly).
        starvation_factor: Starvation guard: a job is overdue once it has waited longer
            than this many times its run time (0: never).
        starvation_floor_s: Starvation guard: run times shorter than this count as this
            long (the bound of bounded slowdown), so short jobs are not overdue at once.
        max_preemption_attempts: Preemption searches per cycle, at most.
        max_victim_candidates: Running jobs one preemption search looks at, at most.
        max_pending_reports: Plain Pending decisions per cycle after which jobs that can
            change nothing this cycle get no decision (the per-cycle work cap).
        realloc_min_gain_s: Reallocation: a move must bring a job's expected end
            forward by more than this.
        realloc_cooldown_rounds: Reallocation: a job placed within this many rounds
            moves again only if the gain also exceeds the move's cost.
        batch_max_jobs: Batch packing: a snapshot of more jobs than this is never planned
            as a batch (keeps the round's LP small).
        batch_window_s: Batch packing: jobs submitted within this of each other are one
            batch.
        batch_slack_s: Batch packing: the makespan a round may give up for shorter
            jobs' progress (0: the round keeps the batch's makespan optimal).
        batch_short_first: Batch packing: how strongly a round favours short jobs among
            those that keep the makespan (the exponent of the work left in the LP's
            weights, :mod:`~suanwang.scheduler.makespan`).
        batch_max_stop_cost_s: Batch packing: a running job whose stop would cost more
            (restart delay plus work since its last checkpoint) is kept where it is.
        max_admissions_per_cycle: Admissions per cycle, at most (as Slurm's
            ``sched_max_job_start``): the cycle stops there and later jobs wait for the
            next one, which keeps a cycle on a large empty fleet under a second.
    """

    age_weight: float = 1.0
    age_horizon_s: float = 7 * 86_400.0
    fair_share_weight: float = 1.0
    gain_max_wait_s: float = 3_600.0
    fleet_share_step: float = 1.0
    starvation_factor: float = 10.0
    starvation_floor_s: float = 86_400.0
    max_preemption_attempts: int = 64
    max_victim_candidates: int = 64
    max_pending_reports: int = 2_000
    max_admissions_per_cycle: int = 2_000
    realloc_min_gain_s: float = 600.0
    realloc_cooldown_rounds: int = 5
    batch_max_jobs: int = 500
    batch_window_s: float = 60.0
    batch_slack_s: float = 0.0
    batch_short_first: float = 0.5
    batch_max_stop_cost_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules one scheduling cycle applies.

    Attributes:
        name: Shown in reports.
        ordering: The order pending jobs are considered in (see :data:`Ordering`).
        strict_fifo: Head-of-line blocking: a job that waits for capacity blocks every
            later job from the pools it could use.
        backfill: EASY backfill: the first job blocked on a pool reserves it; later
            jobs may use the pool only if they do not delay that reservation.
        quotas: How tenant queues are enforced (see :data:`QuotaMode`).
        preemption: Preempt lower-priority work of the tenant, or borrowed work in the
            cohort, for a job that cannot start otherwise.
        heterogeneity: Choose the chip type that finishes the job soonest, and let
            jobs that gain most from a fast chip pick first.
        data_aware: Add dataset transfer time to remote regions and stage data there.
        fair_share: Among equal priorities, tenants that borrow least (dominant share,
            weighted) go first.
        fleet_share: Then (or, without cohorts, instead) the tenant holding the fewest
            normalised units of the whole fleet, divided by its weight, goes first
            (DRF-style over every tenant, so no tenant starves behind heavy users).
        starvation_guard: Overdue jobs (see ``Tuning.starvation_factor``) go before
            every other job of their priority (by share, then oldest first), so a gang
            that lighter tenants' jobs keep passing becomes the head job that holds its
            pool's backfill reservation.
        pool_choice: Heterogeneity-blind pool choice (see :data:`PoolChoice`).
        reallocation: Every round, move running work to a chip type where it finishes
            sooner, counting the cost of the move (:mod:`~suanwang.scheduler.realloc`).
        batch_packing: With ``reallocation``, a snapshot that holds one batch (jobs
            submitted together) is planned round by round for makespan, then shortest
            work first (:mod:`~suanwang.scheduler.batch`).
        share_floor: A job that keeps its tenant within its fair share may preempt
            preemptible work of tenants over theirs that no nominal quota protects
            (:mod:`~suanwang.scheduler.floor`).
        tuning: Numeric knobs.
    """

    name: str = "custom"
    ordering: Ordering = "priority"
    strict_fifo: bool = False
    backfill: bool = False
    quotas: QuotaMode = "kueue"
    preemption: bool = False
    heterogeneity: bool = False
    data_aware: bool = False
    fair_share: bool = False
    fleet_share: bool = False
    starvation_guard: bool = False
    pool_choice: PoolChoice = "best_fit"
    reallocation: bool = False
    batch_packing: bool = False
    share_floor: bool = False
    tuning: Tuning = field(default_factory=Tuning)


FIFO = Policy(
    name="fifo",
    ordering="fifo",
    strict_fifo=True,
    quotas="caps",
    pool_choice="random",
)
"""Strict FIFO by submit order, head-of-line blocking, a fitting pool drawn at random
(seeded by the job id), as Gavel's heterogeneity-agnostic FIFO baseline draws a worker
type."""

SLURM = Policy(
    name="slurm",
    ordering="multifactor",
    backfill=True,
    quotas="caps",
    pool_choice="best_fit",
)
"""Slurm-like: multifactor priority (priority + age + fair share), EASY backfill; nodes
of equal weight (Slurm's default), so the best-fitting pool, ties drawn at random."""

KUEUE = Policy(
    name="kueue",
    ordering="priority",
    quotas="kueue",
    preemption=True,
    pool_choice="flavor_order",
)
"""Kueue-like: cohorts with borrowing and lending, reclaim and priority preemption,
jobs that do not fit are skipped (BestEffortFIFO), the first fitting flavor in the order
the tenant's queue lists them, then the least allocated pool (kube-scheduler's default)."""

SUANWANG = Policy(
    name="suanwang",
    ordering="priority",
    backfill=True,
    quotas="kueue",
    preemption=True,
    heterogeneity=True,
    data_aware=True,
    fair_share=True,
    fleet_share=True,
    starvation_guard=True,
    pool_choice="best_fit",
    reallocation=True,
    batch_packing=True,
    share_floor=False,
)
"""Ours: Kueue quotas and preemption, fair sharing (cohort, then fleet) with a starvation
guard, EASY backfill, heterogeneity- and data-aware placement, periodic reallocation. The
fair-share floor (``share_floor``) is off: its preemptions do not weigh the work they lose
(measured in docs/scheduler.md)."""

POLICIES: dict[str, Policy] = {p.name: p for p in (FIFO, SLURM, KUEUE, SUANWANG)}
"""The named policies, by name."""
