"""Placement: which pool a job should use, now or later, and whether its data moves first.

For every pool a job may use (eligible and allowed by its quota) an :class:`Option`
says whether the gang fits there now (without delaying another job's reservation), how
long its dataset takes to get there and how fast the job runs on that chip.

- Heterogeneity-blind policies (:func:`pick_now`) choose among the pools that fit now
  by ``Policy.pool_choice``: the one left with the fewest free cards (``best_fit``,
  Slurm with equal node weights), one drawn at random seeded by the job id (``random``,
  Gavel's FIFO), the first chip family in the order the tenant's queue lists its quotas
  and then the least allocated pool (``flavor_order``, Kueue then kube-scheduler), or
  the first by (cluster, chip) name (``first_fit``: biased towards whatever chip sorts
  first, e.g. ``nvidia-k80``; no named policy uses it). Ties left are broken by the
  job-seeded draw (:func:`draw`), so no chip is favoured for its name.
- Heterogeneity- and data-aware policies (:func:`pick_later`) minimise the expected
  completion time ``start + duration / speed``, where ``start`` is now for a pool that
  fits now and holds the data, ``now + transfer`` for a remote pool with room now, and
  the start estimated from running jobs' expected ends (:func:`~.backfill
  .earliest_start`) for a local pool that does not fit now. A job that fits a slower
  pool now also weighs a faster pool reserved by another job: its start there is
  estimated behind the reservation and the jobs already waiting for it
  (:func:`~.backfill.queued_start`), so a long job does not take a slow chip when
  waiting in line for a fast one finishes it sooner.
  Ties go to the faster chip, then best fit, then name. With an unknown duration only the
  start counts. A pool that does not fit now is worth waiting for only if the job can
  reserve it (backfill on) or queue behind its reservation with a known start, so that
  a wait is never open-ended (and it is weighed again every cycle);
  data is staged only towards a remote pool with room for the gang now.

Not here: quotas (``quota.py``), acting on the choice (``cycle.py``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from typing import NamedTuple

from suanwang.domain.ids import ChipName, NodeId
from suanwang.scheduler.data import Transfer
from suanwang.scheduler.fit import NO_NODES, Pool, PoolKey, fits_free
from suanwang.scheduler.hetero import speed_on
from suanwang.scheduler.quota import Verdict
from suanwang.scheduler.snapshot import PendingJob
from suanwang.scheduler.state import CycleState


class Option(NamedTuple):
    """One pool a job may use, and what using it would mean.

    A named tuple rather than a frozen dataclass: a filling cycle makes one per
    (admitted job, allowed pool), tens of thousands per cycle.

    Attributes:
        pool: The pool.
        verdict: The quota verdict for it (``borrowing`` or not).
        exclude: Nodes the job may not use there (another job's reservation).
        fits_now: The gang fits now and the data is there.
        transfer: The dataset transfer to the pool's region (None: no dataset, or
            data awareness off).
        run_s: Expected run time there (0 when unknown or heterogeneity is off).
        speed: The job's relative speed there (1.0 when heterogeneity is off).
        start: When the job could start there (None: unknown or never).
    """

    pool: Pool
    verdict: Verdict
    exclude: frozenset[NodeId]
    fits_now: bool
    transfer: Transfer | None
    run_s: float
    speed: float
    start: float | None

    @property
    def local(self) -> bool:
        """No data has to move for the job to run here."""
        return self.transfer is None or self.transfer.seconds == 0

    @property
    def completion(self) -> float:
        """Expected completion time (infinite when the start is unknown)."""
        return math.inf if self.start is None else self.start + self.run_s

    def starting(self, start: float | None) -> Option:
        """This option with an estimated ``start``."""
        return self._replace(start=start)

    def rank(self) -> tuple[float, float, int, PoolKey]:
        """Smaller is better: completion, then faster, then best fit, then name."""
        return (self.completion, -self.speed, self.pool.free_cards, self.pool.key)


def options(
    job: PendingJob, allowed: Iterable[tuple[Pool, Verdict]], st: CycleState
) -> list[Option]:
    """An :class:`Option` per allowed pool, with what is known without estimating.

    Run time and speed are worked out once per chip, and a pool without a reservation
    is checked without an exclusion (:func:`~.fit.fits_free`): the same options, at a
    fraction of the cost of asking each pool everything.
    """
    policy, now = st.policy, st.now
    hetero = policy.heterogeneity
    dataset = job.dataset if policy.data_aware else None
    reservations = st.reservations
    per_node, nodes = job.cards_per_node, job.nodes
    per_chip: dict[ChipName, tuple[float, float]] = {}
    found: list[Option] = []
    for pool, verdict in allowed:
        key = pool.key
        transfer = None if dataset is None else st.data.transfer(dataset, key.region)
        local = transfer is None or transfer.seconds == 0
        if key in reservations:
            exclude = st.exclusion(job, pool)
            fits = local and pool.fits(per_node, nodes, exclude)
        else:
            exclude = NO_NODES
            fits = local and fits_free(pool, per_node, nodes)
        timing = per_chip.get(key.chip)
        if timing is None:
            timing = per_chip[key.chip] = _timing(job, key.chip, st) if hetero else (0.0, 1.0)
        found.append(
            Option(
                pool, verdict, exclude, fits, transfer, timing[0], timing[1], now if fits else None
            )
        )
    return found


def _timing(job: PendingJob, chip: ChipName, st: CycleState) -> tuple[float, float]:
    """The job's expected run time on ``chip`` (0 when unknown) and its speed there."""
    return (st.run_s(job, chip) or 0.0), speed_on(job, chip, st.snapshot.chip_speed)


def draw(job: PendingJob, key: PoolKey) -> int:
    """A pseudo-random number per (job, pool), the same in every run and process (CRC-32
    of the job id, cluster and chip): a tie-break that favours no pool by name."""
    return zlib.crc32(f"{job.id}\x00{key.cluster}\x00{key.chip}".encode())


def pick_now(job: PendingJob, found: list[Option], st: CycleState) -> Option | None:
    """The option to admit the job on now, by the policy's rule, or None."""
    fitting = [o for o in found if o.fits_now]
    if not fitting:
        return None
    policy = st.policy
    if policy.heterogeneity or policy.data_aware:
        return min(fitting, key=Option.rank)
    if len(fitting) == 1:
        return fitting[0]
    choice = policy.pool_choice
    if choice == "first_fit":
        return min(fitting, key=lambda o: o.pool.key)
    if choice == "random":
        return min(fitting, key=lambda o: (draw(job, o.pool.key), o.pool.key))
    if choice == "flavor_order":
        order = _flavor_order(job, st)
        return min(
            fitting,
            key=lambda o: (
                order.get(o.pool.key.family, len(order)),
                -o.pool.free_cards,
                draw(job, o.pool.key),
                o.pool.key,
            ),
        )
    return min(fitting, key=lambda o: (o.pool.free_cards, draw(job, o.pool.key), o.pool.key))


def _flavor_order(job: PendingJob, st: CycleState) -> dict[str, int]:
    """Each chip family's place in the tenant queue's quotas, as configured (Kueue tries a
    ClusterQueue's flavors in the order listed); empty without a queue."""
    queue = st.snapshot.queues.get(job.tenant)
    return {} if queue is None else {str(f): i for i, f in enumerate(queue.quotas)}


def estimated(job: PendingJob, option: Option, st: CycleState, *, queued: bool = False) -> Option:
    """``option`` with its start estimated: when its data is there for a remote pool
    with room now, else from the pool's timeline (for a pool the job can reserve); with
    ``queued`` (heterogeneity on), for a local pool reserved by another job, behind that
    reservation and the jobs already waiting there (:meth:`CycleState.queued_start`);
    unknown otherwise."""
    pool = option.pool
    if option.fits_now:
        return option
    if not option.local:
        if not pool.fits(job.cards_per_node, job.nodes, option.exclude):
            return option
        assert option.transfer is not None
        return option.starting(st.now + option.transfer.seconds)
    if not can_reserve(job, pool, st):
        if queued and st.policy.heterogeneity and st.policy.backfill:
            return option.starting(st.queued_start(job, pool))
        return option
    start = st.estimate(job, pool)
    return option.starting(None if start is None else start.at)


def pick_later(
    job: PendingJob, found: list[Option], now_choice: Option | None, st: CycleState
) -> Option | None:
    """The best option that means waiting or staging, if it beats ``now_choice``.

    With ``now_choice`` None (nothing fits now) it is simply the best estimated option,
    which the caller uses to stage data or to reserve a pool.
    """
    policy = st.policy
    aware = policy.heterogeneity or policy.data_aware
    if not aware and (now_choice is not None or not policy.backfill):
        return None
    bound = math.inf if now_choice is None else now_choice.completion
    best: Option | None = None
    for option in found:
        if option.fits_now:
            continue
        ready = st.now + (0.0 if option.transfer is None else option.transfer.seconds)
        if ready + option.run_s >= bound:
            continue
        candidate = estimated(job, option, st, queued=now_choice is not None)
        if candidate.start is not None and (best is None or candidate.rank() < best.rank()):
            best = candidate
    if best is None or (now_choice is not None and best.completion >= now_choice.completion):
        return None
    return best


def can_reserve(job: PendingJob, pool: Pool, st: CycleState) -> bool:
    """Whether the job could hold (or holds) the pool's backfill reservation."""
    if not st.policy.backfill:
        return False
    reservation = st.reservations.get(pool.key)
    return reservation is None or reservation.job == job.id
