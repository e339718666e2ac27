"""The working state of one cycle: pools, quotas, timelines, reservations, victims.

:class:`CycleState` is built once per :func:`~suanwang.scheduler.cycle` from the
snapshot and mutated as the cycle decides: an admission takes cards from a pool, charges
the tenant's quota, adds a release to the pool's timeline and eats into a reservation's
spare cards; a preemption claims the victims and the cards the preemptor will use. The
rules that decide live elsewhere (``cycle.py``, ``placement.py``); this module only keeps
the books consistent and caches what is asked many times.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter

from suanwang.domain.ids import (
    ChipFamily,
    ChipName,
    ClusterName,
    JobId,
    NodeId,
    RegionName,
    TenantId,
)
from suanwang.scheduler.backfill import (
    Reservation,
    Start,
    Timeline,
    earliest_start,
    queued_start,
    released_by,
)
from suanwang.scheduler.cache import CycleCache
from suanwang.scheduler.data import DataMap
from suanwang.scheduler.decisions import Admit, Placement
from suanwang.scheduler.fit import Pool, PoolKey, Slot, build_pools
from suanwang.scheduler.floor import ShareFloor
from suanwang.scheduler.hetero import can_run_on, planned_run_s, run_time_s
from suanwang.scheduler.policy import Policy
from suanwang.scheduler.preempt import Plan, VictimIndex
from suanwang.scheduler.queue_index import QueueIndex
from suanwang.scheduler.quota import QuotaLedger, Verdict
from suanwang.scheduler.running import RunningWork
from suanwang.scheduler.snapshot import PendingJob, Snapshot

_EligibilityKey = tuple[bool, tuple[str, ...], ClusterName | None, RegionName | None, int]
_StartKey = tuple[PoolKey, int, int, int, int, JobId | None]


Allowed = list[tuple[Pool, Verdict]]
_version = attrgetter("version")


@dataclass(frozen=True, slots=True)
class QuotaView:
    """A job's quota verdict on each pool it is eligible for.

    Attributes:
        verdicts: Every pool with its verdict.
        allowed: Pools the quota allows (borrowing refused where a lender waits).
        nominal: The allowed pools within nominal quota (``allowed`` itself when none
            of them borrows).
        refused: Pools the quota refuses.
        refusal: Why the quota refuses every pool (empty when some pool is allowed).
        within: Families where the job stays within its nominal quota (cohort members
            only): where it may reclaim, and where it makes lenders wait.
    """

    verdicts: Allowed
    allowed: Allowed
    nominal: Allowed
    refused: list[Pool]
    refusal: str
    within: frozenset[ChipFamily]

    @classmethod
    def of(cls, job: PendingJob, pools: tuple[Pool, ...], st: CycleState) -> QuotaView:
        """Ask the ledger once per flavor (family, chip) of ``pools``."""
        ledger, tenant = st.ledger, job.tenant
        cards = job.cards_per_node * job.nodes
        cohort = ledger.cohort_of(tenant)
        verdicts: Allowed = []
        allowed: Allowed = []
        nominal: Allowed = []
        refused: list[Pool] = []
        within: set[ChipFamily] = set()
        for (family, chip), members in st.flavors(pools):
            verdict = ledger.check(tenant, family, chip, cards)
            pairs = [(p, verdict) for p in members]
            verdicts += pairs
            if not verdict.ok:
                refused += members
            elif verdict.borrowing:
                if (cohort, family) not in st.lender_waiting:
                    allowed += pairs
            else:
                allowed += pairs
                nominal += pairs
            if cohort is not None and ledger.within_nominal(tenant, family, chip, cards):
                within.add(family)
        refusal = ""
        if not allowed:
            refusal = ledger.refusal(
                tenant, [(p.key.family, _waits(v, cohort, p, st)) for p, v in verdicts]
            )
        if len(nominal) == len(allowed):
            nominal = allowed
        return cls(verdicts, allowed, nominal, refused, refusal, frozenset(within))


def _floor(
    snapshot: Snapshot, policy: Policy, work: RunningWork, queue: QueueIndex | None
) -> ShareFloor | None:
    """The cycle's fair-share floor, if the policy keeps one (tenants' top pending
    priorities from the queue index when there is one)."""
    if not policy.share_floor:
        return None
    return ShareFloor.of(snapshot, work, None if queue is None else queue.top_priorities())


def _waits(verdict: Verdict, cohort: str | None, pool: Pool, st: CycleState) -> Verdict:
    """``verdict``, or a refusal when it borrows where a lender of the cohort waits."""
    if not verdict.ok or (cohort, pool.key.family) not in st.lender_waiting:
        return verdict
    reason = f"cohort {cohort} lends no {pool.key.family} cards while a lender waits for them"
    return Verdict(False, reason=reason)


@dataclass(slots=True)
class CycleState:
    """Everything one cycle reads and updates while it decides, job after job.

    Attributes:
        snapshot: The cycle's input.
        policy: The rules in force.
        pools: One :class:`~.fit.Pool` per (cluster, chip), sorted by key.
        pool_by_key: The pools by key.
        ledger: Quotas and what every tenant holds.
        timelines: When each pool's cards come free.
        reservations: At most one backfill reservation per pool; its holder's quota is
            booked (:meth:`book_quota`).
        waiting: Cards of jobs that wait for a pool reserved by another job, rather
            than start now on a slower chip (:meth:`wait_for`).
        victims: Running jobs that preemption may still choose.
        floor: Fair shares and held units (``Policy.share_floor``, :mod:`~.floor`).
        work: The running jobs by tenant, with their sums (:mod:`~.running`).
        data: WAN links for dataset transfers.
        blocked: Strict FIFO: pools a waiting job has blocked, and by whom.
        lender_waiting: (cohort, family) pairs where a job within its nominal quota
            waits and reclaim could serve it; borrowing there is refused for the rest of
            the cycle.
        preemption_attempts: Preemption searches made so far.
        epoch: Bumped whenever anything above changes.
        claims: Preemption plans booked so far (each gives quota back).
        released: Reservations dropped so far (their holder started).
        queue: The cache's queue index, synced to this snapshot (None: sort the queue).
        fleet_units: The fleet's units, from the cache (None: summed when needed).
    """

    snapshot: Snapshot
    policy: Policy
    pools: tuple[Pool, ...]
    pool_by_key: dict[PoolKey, Pool]
    ledger: QuotaLedger
    timelines: dict[PoolKey, Timeline]
    victims: VictimIndex
    data: DataMap
    work: RunningWork
    reservations: dict[PoolKey, Reservation] = field(default_factory=dict)
    blocked: dict[PoolKey, JobId] = field(default_factory=dict)
    lender_waiting: set[tuple[str, ChipFamily]] = field(default_factory=set)
    booked: set[JobId] = field(default_factory=set)
    waiting: dict[PoolKey, int] = field(default_factory=dict)
    floor: ShareFloor | None = None
    preemption_attempts: int = 0
    epoch: int = 0
    claims: int = 0
    released: int = 0
    queue: QueueIndex | None = None
    fleet_units: float | None = None
    _eligible: dict[_EligibilityKey, tuple[Pool, ...]] = field(default_factory=dict)
    _starts: dict[_StartKey, Start | None] = field(default_factory=dict)
    _released: dict[tuple[PoolKey, int], tuple[list[int], list[float]]] = field(
        default_factory=dict
    )
    _views: dict[tuple[TenantId, int, int], tuple[tuple[int, int], QuotaView]] = field(
        default_factory=dict
    )
    _fits: dict[tuple[int, int, int], tuple[int, bool]] = field(default_factory=dict)
    _interned: dict[tuple[PoolKey, ...], tuple[Pool, ...]] = field(default_factory=dict)
    _job_pools: dict[JobId, tuple[Pool, ...]] = field(default_factory=dict)
    _flavors: dict[
        int, tuple[tuple[Pool, ...], list[tuple[tuple[ChipFamily, ChipName], tuple[Pool, ...]]]]
    ] = field(default_factory=dict)
    _capable: dict[tuple[int, int, int], frozenset[PoolKey]] = field(default_factory=dict)
    _slow_chips: bool = False

    @classmethod
    def of(cls, snapshot: Snapshot, policy: Policy, cache: CycleCache | None = None) -> CycleState:
        """The state at the start of a cycle over ``snapshot`` (pools from ``cache``
        when given: the same pools, updated rather than rebuilt)."""
        keys: Mapping[NodeId, PoolKey]
        queue = None if cache is None else cache.indexed(snapshot)
        fleet = None
        if cache is None:
            pools = build_pools(snapshot.nodes)
            keys = {node: pool.key for pool in pools for node in pool.free_of}
            work = RunningWork.of(snapshot.running, snapshot.chip_units, keys)
        else:
            pools = cache.pools(snapshot.nodes)
            keys, work, fleet = cache.node_keys(), cache.running(snapshot), cache.fleet(snapshot)
        pending = queue.by_id.keys() if queue is not None else {job.id for job in snapshot.pending}
        flavors = None if fleet is None else fleet.flavors
        # A stopping job's cards are its preemptor's (a claim adds the preemptor's
        # release); an orphan's show up once it has stopped.
        timelines = work.timelines((pool.key for pool in pools), snapshot.now)
        return cls(
            snapshot=snapshot,
            policy=policy,
            pools=pools,
            pool_by_key={pool.key: pool for pool in pools},
            ledger=QuotaLedger(snapshot, policy.quotas, work, flavors),
            fleet_units=None if fleet is None else fleet.units,
            timelines=timelines,
            victims=VictimIndex(work, keys, snapshot.now, pending),
            work=work,
            data=DataMap.of(snapshot.links),
            floor=_floor(snapshot, policy, work, queue),
            queue=queue,
            _slow_chips=any(s <= 0 for s in snapshot.chip_speed.values()),
        )

    @property
    def now(self) -> float:
        """The snapshot's time."""
        return self.snapshot.now

    def eligible(self, job: PendingJob) -> tuple[Pool, ...]:
        """Pools whose nodes match the job's selector, simulated flag and pins, and
        whose chip the job can run on at all (speed above 0)."""
        pools = self._job_pools.get(job.id)
        if pools is not None:
            return pools
        key = (job.simulated, job.chips, job.cluster, job.region, id(job.speed) if job.speed else 0)
        pools = self._eligible.get(key)
        if pools is None:
            speeds = self.snapshot.chip_speed
            pools = tuple(
                p
                for p in self.pools
                if p.accepts(job)
                and (not (job.speed or self._slow_chips) or can_run_on(job, p.key.chip, speeds))
            )
            pools = self._interned.setdefault(tuple(p.key for p in pools), pools)
            self._eligible[key] = pools
        self._job_pools[job.id] = pools
        return pools

    def flavors(
        self, pools: tuple[Pool, ...]
    ) -> list[tuple[tuple[ChipFamily, ChipName], tuple[Pool, ...]]]:
        """``pools`` grouped by flavor (family, chip), in first-seen order (cached)."""
        found = self._flavors.get(id(pools))
        if found is None or found[0] is not pools:
            groups: dict[tuple[ChipFamily, ChipName], list[Pool]] = {}
            for pool in pools:
                groups.setdefault((pool.key.family, pool.key.chip), []).append(pool)
            found = (pools, [(f, tuple(members)) for f, members in groups.items()])
            self._flavors[id(pools)] = found
        return found[1]

    def quota_view(self, job: PendingJob, pools: tuple[Pool, ...], *, cache: bool) -> QuotaView:
        """The job's quota verdicts on ``pools`` (cached per tenant, size and pools while
        the tenant's cohort and the lender waits do not change; for the whole cycle when
        no quota limits the tenant: then every pool is allowed, within nominal)."""
        cards = job.cards_per_node * job.nodes
        key = (job.tenant, cards, id(pools))
        if self.ledger.unlimited(job.tenant):
            valid = (-1, -1)
        else:
            valid = (self.ledger.scope_version(job.tenant), len(self.lender_waiting))
        hit = self._views.get(key) if cache else None
        if hit is not None and hit[0] == valid:
            return hit[1]
        view = QuotaView.of(job, pools, self)
        if cache:
            self._views[key] = (valid, view)
        return view

    def fits_somewhere(self, job: PendingJob) -> bool:
        """Whether the gang fits any eligible pool now, ignoring quotas and reservations
        (cached while those pools do not change)."""
        pools = self.eligible(job)
        key = (id(pools), job.cards_per_node, job.nodes)
        version = sum(map(_version, pools))
        hit = self._fits.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        fits = any(p.fits(job.cards_per_node, job.nodes) for p in pools)
        self._fits[key] = (version, fits)
        return fits

    def capable(self, job: PendingJob) -> frozenset[PoolKey]:
        """Eligible pools with enough nodes big enough for the gang, even if empty."""
        pools = self.eligible(job)
        key = (id(pools), job.cards_per_node, job.nodes)
        capable = self._capable.get(key)
        if capable is None:
            per_node, nodes = job.cards_per_node, job.nodes
            capable = frozenset(p.key for p in pools if p.count_capable(per_node) >= nodes)
            self._capable[key] = capable
        return capable

    def run_s(self, job: PendingJob, chip: ChipName) -> float | None:
        """Expected run time of the job on ``chip`` (None when its duration is unknown)."""
        return run_time_s(job, chip, self.snapshot.chip_speed)

    def end_if_started(self, job: PendingJob, chip: ChipName) -> float | None:
        """When the job would release its cards if it started now on ``chip``."""
        planned = planned_run_s(job, chip, self.snapshot.chip_speed)
        return None if planned is None else self.now + planned

    def exclusion(self, job: PendingJob, pool: Pool) -> frozenset[NodeId]:
        """Nodes of ``pool`` the job may not use without delaying another's reservation."""
        reservation = self.reservations.get(pool.key)
        if reservation is None or reservation.job == job.id:
            return frozenset()
        return reservation.exclusion(self.end_if_started(job, pool.key.chip), job.cards_per_node)

    def estimate(self, job: PendingJob, pool: Pool) -> Start | None:
        """The job's earliest start on ``pool`` from known releases (cached)."""
        reservation = self.reservations.get(pool.key)
        if reservation is not None and reservation.job == job.id:
            reservation = None
        timeline = self.timelines[pool.key]
        key = (
            pool.key,
            pool.version,
            timeline.version,
            job.cards_per_node,
            job.nodes,
            None if reservation is None else reservation.job,
        )
        if key not in self._starts:
            withheld = {} if reservation is None else reservation.need
            per_node, nodes = job.cards_per_node, job.nodes
            start = earliest_start(pool, timeline, per_node, nodes, self.now, withheld)
            self._starts[key] = start
        return self._starts[key]

    def reserve(self, job: PendingJob, pool: Pool) -> bool:
        """Give the job the pool's reservation if nobody holds it; True on success."""
        if not self.policy.backfill or pool.key in self.reservations:
            return False
        start = self.estimate(job, pool)
        if start is None:
            return False
        self.reservations[pool.key] = Reservation.of(job.id, start, job.cards_per_node)
        pool.version += 1
        self.epoch += 1
        self.book_quota(job, pool)
        return True

    def queued_start(self, job: PendingJob, pool: Pool) -> float | None:
        """The job's expected start on ``pool`` behind the pool's reservation and the
        jobs already waiting for it this cycle (:func:`~.backfill.queued_start`)."""
        reservation = self.reservations.get(pool.key)
        ahead = self.waiting.get(pool.key, 0)
        if reservation is not None and reservation.job != job.id:
            ahead += sum(reservation.need.values())
        timeline = self.timelines[pool.key]
        key = (pool.key, timeline.version)
        released = self._released.get(key)
        if released is None:
            released = self._released[key] = released_by(pool, timeline)
        cards = job.cards_per_node * job.nodes
        return queued_start(pool, released, cards, ahead, self.now)

    def wait_for(self, job: PendingJob, pool: Pool) -> None:
        """The job waits for ``pool`` without its reservation: its cards count ahead of
        later jobs' estimates there, and its quota is booked."""
        self.waiting[pool.key] = self.waiting.get(pool.key, 0) + job.cards_per_node * job.nodes
        self.book_quota(job, pool)
        self.epoch += 1

    def block(self, pool: Pool, job: PendingJob) -> None:
        """Strict FIFO: nobody after ``job`` may use ``pool`` this cycle."""
        if pool.key not in self.blocked:
            self.blocked[pool.key] = job.id
            self.epoch += 1

    def mark_lender_waiting(self, cohort: str, family: ChipFamily) -> None:
        """A job within its nominal quota waits for ``family`` in ``cohort``."""
        if (cohort, family) not in self.lender_waiting:
            self.lender_waiting.add((cohort, family))
            self.epoch += 1

    def lender_waits(
        self, job: PendingJob, view: QuotaView, pools: Iterable[Pool], *, quota_blocked: bool
    ) -> set[tuple[str, ChipFamily]]:
        """The (cohort, family) pairs where ``job``, within its nominal quota, waits and
        reclaim could serve it: its quota is short (the cohort lent it out), or other
        cohort members run work on a pool that could hold it. Borrowing
        there now would be reclaimed from the next cycle on."""
        cohort = self.ledger.cohort_of(job.tenant)
        if not view.within or cohort is None:
            return set()
        capable = self.capable(job)
        found: set[tuple[str, ChipFamily]] = set()
        for pool in pools:
            family = pool.key.family
            if family not in view.within or pool.key not in capable:
                continue
            if quota_blocked or self.victims.others_in(pool.key, job.tenant, cohort, self.ledger):
                found.add((cohort, family))
        return found

    def admit(self, job: PendingJob, pool: Pool, chosen: list[Slot], verdict: Verdict) -> Admit:
        """Take the chosen nodes' cards for the job and record it everywhere."""
        key = pool.key
        placements = pool.take(chosen, job.cards_per_node)
        self._occupy(job, pool, placements)
        if self.floor is not None:
            self.floor.add(job.tenant, self.floor.units(job, key.chip))
        # reclaimable from the next cycle on (if borrowed), like running work
        self.victims.tenants_in.setdefault(key, set()).add(job.tenant)
        return Admit(
            job.id,
            key.cluster,
            key.chip,
            key.family,
            placements,
            borrowing=verdict.borrowing,
            expected_duration_s=self.run_s(job, key.chip),
        )

    def claim(self, job: PendingJob, plan: Plan) -> None:
        """Book a preemption plan: the victims are stopping, the job's cards and quota
        are held. The victims' quota is not handed to anyone else this cycle: it is
        still theirs until they have stopped, and the job counts on it."""
        pool = plan.pool
        self.claims += 1
        for victim in plan.victims:
            running = victim.job
            if victim.pool is not None:
                self.timelines[victim.pool].remove(running.id)
                self.pool_by_key[victim.pool].version += 1
            if not victim.stopping and self.floor is not None:
                self.floor.add(running.tenant, -self.floor.victim_units(running, victim.cards))
            if not victim.stopping:
                self.ledger.stop(
                    running.tenant,
                    running.family,
                    running.chip,
                    victim.cards,
                    protected=victim.protected,
                )
        self.victims.claim(plan.victims)
        if self.floor is not None:
            self.floor.add(job.tenant, self.floor.units(job, pool.key.chip))
        per_node = job.cards_per_node
        for node in plan.nodes:
            pool.hold(node, min(max(pool.free_of[node], 0), per_node))
        placements = tuple(Placement(node, per_node) for node in plan.nodes)
        self._occupy(job, pool, placements)

    def book_quota(self, job: PendingJob, pool: Pool) -> None:
        """Keep the job's quota for ``pool`` for the rest of the cycle (once per job): it
        reserved the pool, blocks it (strict FIFO) or waits for it (a faster chip), and
        later jobs must not delay it by taking its quota instead of its cards."""
        if job.id in self.booked:
            return
        self.booked.add(job.id)
        key = pool.key
        self.ledger.charge(job.tenant, key.family, key.chip, job.cards_per_node * job.nodes)
        self.epoch += 1

    def _occupy(self, job: PendingJob, pool: Pool, placements: tuple[Placement, ...]) -> None:
        key = pool.key
        self.epoch += 1
        pool.version += 1
        self.ledger.charge(job.tenant, key.family, key.chip, job.cards_per_node * job.nodes)
        end = self.end_if_started(job, key.chip)
        self.timelines[key].add(job.id, end, placements)
        reservation = self.reservations.get(key)
        if reservation is not None and reservation.job == job.id:
            del self.reservations[key]
            self.released += 1
        elif reservation is not None:
            reservation.consume(end, placements)
