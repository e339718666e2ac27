"""The per-cycle work cap: which pending jobs can change nothing this cycle.

A cycle over 100,000 pending jobs cannot afford a full decision for each: building a
frozen :class:`~.decisions.Pending` alone costs microseconds. After
``Tuning.max_pending_reports`` plain ``Pending`` decisions, :class:`InertFilter` lets the
cycle skip, without any decision, every job that provably can change nothing now (its
previous reason stands, as with Slurm's ``default_queue_depth`` or Kueue's heads):

- it cannot start: no pool its quota allows can host its gang now (reservations count
  only if the job cannot end before any of them);
- it cannot preempt (preemption off, the cycle's search budget spent, or no candidate);
- it cannot reserve nor block (backfill and strict FIFO off, or every allowed pool that
  could ever hold it reserved, without a known start, or blocked already);
- it has no dataset it could stage (or its quota refuses every pool), and, in a cohort,
  it would not add a lender wait.

Within a cycle all of this is monotone: capacity and reservations' spare cards only
shrink, held quota only grows once no preemption gives any back, reservations, blocks and
lender waits only accumulate. So once a job is inert, every later job of the same
*bucket* (tenant, eligible pools, gang shape, priority while preemption searches remain,
and whether it can end before a reservation) is inert too, until a preemption claim or a
started reservation holder changes the picture; the filter then answers in O(1). Every
job that could start, preempt, reserve, stage or block is still decided in full:
skipping never changes what happens, it only leaves some reasons unrefreshed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from suanwang.domain.ids import NodeId
from suanwang.scheduler.decisions import Decision, Pending
from suanwang.scheduler.fit import Pool
from suanwang.scheduler.hetero import speed_on
from suanwang.scheduler.snapshot import PendingJob
from suanwang.scheduler.state import CycleState

_Bucket = tuple[object, ...]


@dataclass(slots=True)
class InertFilter:
    """Remembers inert buckets (and what they cost to tell) for one cycle."""

    _inert: dict[_Bucket, tuple[int, int]] = field(default_factory=dict)
    _shapes: dict[_Bucket, tuple[int, int]] = field(default_factory=dict)
    _latest: dict[int, tuple[int, int, float | None]] = field(default_factory=dict)
    _fastest: dict[tuple[int, int], float] = field(default_factory=dict)

    def is_inert(self, job: PendingJob, st: CycleState, final: bool) -> bool:
        """Whether ``job`` can change nothing this cycle (see the module docstring)."""
        if job.id in st.victims.promised or job.cards_per_node <= 0 or job.nodes <= 0:
            return False
        token = (st.claims, st.released)
        # The shape memo: a job alike in everything its bucket depends on is inert when
        # the bucket is, without looking up its pools (most of a 100,000-job queue).
        shape = _shape(job, st, final)
        priority = shape[-2]
        if self._shapes.get(shape) == token:
            return True
        pools = st.eligible(job)
        if not pools:
            return False
        bucket: _Bucket = (job.tenant, id(pools), job.cards_per_node, job.nodes, priority, final)
        if self._inert.get(bucket) == token or _inert(job, pools, False, st):
            self._inert[bucket] = self._shapes[shape] = token
            return True
        if not self._ends_after_reservations(job, pools, st):
            return False
        bucket = (*bucket, "long")
        if self._inert.get(bucket) == token:
            return True
        if _inert(job, pools, True, st):
            self._inert[bucket] = token
            return True
        return False

    def parkable(self, job: PendingJob, st: CycleState, final: bool) -> bool:
        """Whether ``job``, found inert, is so by its shape: then every later job alike
        in its shape is inert while :func:`token` holds (:mod:`~.passes` skips them)."""
        if job.id in st.victims.promised:
            return False
        return self._shapes.get(_shape(job, st, final)) == (st.claims, st.released)

    def _ends_after_reservations(
        self, job: PendingJob, pools: tuple[Pool, ...], st: CycleState
    ) -> bool:
        """Whether the job, wherever it starts now, ends after every reservation of its
        pools (or has no known end): then their exclusions apply to it in full."""
        if not st.reservations:
            return False
        latest = self._latest_start(pools, st)
        if latest is None:
            return False
        run_s = job.max_runtime_s
        if job.duration_s is not None:
            fastest = job.duration_s / self._fastest_speed(job, pools, st)
            run_s = fastest if run_s is None else min(run_s, fastest)
        return run_s is None or st.now + run_s > latest

    def _latest_start(self, pools: tuple[Pool, ...], st: CycleState) -> float | None:
        """The latest reserved start over ``pools`` (None: none reserved), cached."""
        version = (len(st.reservations), st.released)
        hit = self._latest.get(id(pools))
        if hit is not None and hit[:2] == version:
            return hit[2]
        starts = [st.reservations[p.key].start for p in pools if p.key in st.reservations]
        latest = max(starts) if starts else None
        self._latest[id(pools)] = (*version, latest)
        return latest

    def _fastest_speed(self, job: PendingJob, pools: tuple[Pool, ...], st: CycleState) -> float:
        """The job's best speed over the chips of ``pools``, cached per speed table."""
        key = (id(job.speed) if job.speed else 0, id(pools))
        fastest = self._fastest.get(key)
        if fastest is None:
            speeds = st.snapshot.chip_speed
            fastest = max(speed_on(job, p.key.chip, speeds) for p in pools)
            self._fastest[key] = fastest
        return fastest


def token(st: CycleState) -> tuple[object, ...]:
    """What a shape's inertness holds under: preemption claims and released
    reservations so far, and whether preemption searches remain."""
    return (st.claims, st.released, _searching(st))


def _searching(st: CycleState) -> bool:
    policy = st.policy
    return policy.preemption and st.preemption_attempts < policy.tuning.max_preemption_attempts


def _shape(job: PendingJob, st: CycleState, final: bool) -> _Bucket:
    """The shape memo's key: the job's priority counts while preemption searches remain."""
    priority = job.priority if _searching(st) else None
    speed = id(job.speed) if job.speed else 0
    shape: _Bucket = (job.tenant, job.simulated, job.chips, job.cluster, job.region, speed)
    return (*shape, job.cards_per_node, job.nodes, priority, final)


def _inert(job: PendingJob, pools: tuple[Pool, ...], long: bool, st: CycleState) -> bool:
    """The full test of the module docstring."""
    policy = st.policy
    view = st.quota_view(job, pools, cache=True)
    if view.allowed and job.dataset is not None and policy.data_aware:
        return False
    if any(_fits(job, p, long, st) for p, _verdict in view.allowed):
        return False
    cohort = st.ledger.cohort_of(job.tenant)
    if (
        policy.preemption
        and st.preemption_attempts < policy.tuning.max_preemption_attempts
        and st.victims.could_serve(job, cohort is not None, st.floor)
    ):
        return False
    capable = st.capable(job)
    allowed = [p for p, _verdict in view.allowed if p.key in capable]
    if policy.backfill and any(_reservable(job, p, st) for p in allowed):
        return False
    if policy.strict_fifo and any(p.key not in st.blocked for p in allowed):
        return False
    waits = st.lender_waits(job, view, pools, quota_blocked=not view.allowed)
    return waits <= st.lender_waiting


def _reservable(job: PendingJob, pool: Pool, st: CycleState) -> bool:
    """Whether the job could still get ``pool``'s reservation (nobody holds it and a
    start can be estimated)."""
    return pool.key not in st.reservations and st.estimate(job, pool) is not None


def _fits(job: PendingJob, pool: Pool, long: bool, st: CycleState) -> bool:
    """Whether the gang fits ``pool`` now (respecting its reservation for long jobs)."""
    per_node, nodes = job.cards_per_node, job.nodes
    if not pool.fits(per_node, nodes):
        return False
    reservation = st.reservations.get(pool.key)
    if not long or reservation is None or reservation.job == job.id:
        return True
    exclude: frozenset[NodeId] = reservation.exclusion(None, per_node)
    return pool.fits(per_node, nodes, exclude)


_Token = tuple[int, int]


@dataclass(slots=True)
class PendingMemo:
    """The shape memo: a job exactly like an earlier one of this cycle whose decision was
    a plain Pending that changed nothing gets the same Pending, while nothing has changed.

    "Exactly like" means equal in every field a decision reads (tenant, selector, pins,
    gang shape, priority, duration, max runtime, speed table, pass); jobs with a dataset
    or a promised preemption are never memoised. "Nothing has changed" is the cycle's
    ``epoch`` (bumped by every admission, claim, reservation, block, quota booking and
    lender wait) and its preemption search count. The decision would be the same, so the
    memo changes only what a cycle costs: on a long queue of look-alike jobs that wait
    (the Philly trace's hundreds of 1-GPU jobs), most decisions become one dict lookup.

    Under strict FIFO a job whose allowed pools are all blocked waits behind their
    blocker, whatever its priority, duration or speeds: that decision reads only the
    tenant, the gang, the simulated flag, the eligible pools and the pass (and the
    cycle's state), so it is memoised on those alone (the *behind* memo): most of a
    FIFO queue, where every job has its own duration.
    """

    _known: dict[_Bucket, tuple[_Token, str, str]] = field(default_factory=dict)
    _behind: dict[_Bucket, tuple[_Token, str]] = field(default_factory=dict)

    @staticmethod
    def shape(job: PendingJob, st: CycleState, final: bool) -> _Bucket | None:
        """The memo key of ``job``, or None when it must be decided in full."""
        if job.dataset is not None or job.id in st.victims.promised:
            return None
        speed = id(job.speed) if job.speed else 0
        return (
            job.tenant,
            job.simulated,
            job.chips,
            job.cluster,
            job.region,
            speed,
            job.cards_per_node,
            job.nodes,
            job.priority,
            job.duration_s,
            job.max_runtime_s,
            final,
        )

    def get(self, shape: _Bucket | None, job: PendingJob, st: CycleState) -> Pending | None:
        """The memoised Pending for ``job``, if its shape has one valid now."""
        if shape is None:
            return None
        token = (st.epoch, st.preemption_attempts)
        if st.policy.strict_fifo:
            behind = self._behind.get(_behind_key(job, st, shape))
            if behind is not None and behind[0] == token:
                return Pending(job.id, behind[1], BLOCKED)
        known = self._known.get(shape)
        if known is None or known[0] != token:
            return None
        return Pending(job.id, known[1], known[2])

    def put(
        self,
        shape: _Bucket | None,
        before: _Token,
        outcome: list[Decision],
        st: CycleState,
        job: PendingJob,
    ) -> None:
        """Remember ``outcome`` if it is one plain Pending that changed nothing."""
        if shape is None or len(outcome) != 1 or type(outcome[0]) is not Pending:
            return
        token = (st.epoch, st.preemption_attempts)
        if token == before:
            pending = outcome[0]
            self._known[shape] = (token, pending.reason, pending.code)
            if pending.code == BLOCKED and st.policy.strict_fifo:
                self._behind[_behind_key(job, st, shape)] = (token, pending.reason)


BLOCKED = "blocked"
"""The code of a strict-FIFO job waiting behind another."""


def _behind_key(job: PendingJob, st: CycleState, shape: _Bucket) -> _Bucket:
    """The behind memo's key (``shape[-1]`` is the pass)."""
    pools = id(st.eligible(job))
    return (job.tenant, job.cards_per_node, job.nodes, job.simulated, pools, shape[-1])
