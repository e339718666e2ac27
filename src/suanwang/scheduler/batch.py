"""Batch packing: a round of a batch planned for makespan, then shortest work first.

A *batch* is what a snapshot holds when every job in it (pending and running) was
submitted within ``Tuning.batch_window_s`` of the others, by one tenant without a quota,
with a known duration, no dataset to stage and no serving replica among them (those are
never stopped nor moved), and there are at least 2 and at most
``Tuning.batch_max_jobs`` of them (e.g. Gavel's 100 jobs at t = 0). Then the order in
which the jobs run decides the makespan: shortest-remaining-first leaves the longest jobs
for the end, where they run on whatever chip is left, one after the other.

:func:`batch_round` plans each round of such a snapshot with the LP of
:mod:`~suanwang.scheduler.makespan` (this round's share of each chip type per job that
keeps the batch's makespan optimal, short jobs first among such rounds) and rounds the
shares onto real pools:

1. jobs by their largest share, largest first (pinned jobs first), each takes cards of
   that chip type while the type has cards left (counting whole gangs);
2. a running job chosen on its own type stays where it is; every other chosen job gets
   nodes by best fit (a gang that does not fit is left out);
3. a running job not chosen whose cards nobody took keeps running (no stop that gains
   nothing); then pending jobs fill what is still free, most progress per card first.

Running jobs not kept are stopped (``Preempt`` of the job for itself, as a move) and
requeued; a chosen running job on another type moves (``Preempt`` + ``Admit``). A running
job is *pinned* (kept where it is, this round) when it is not preemptible or when
stopping it costs more than ``Tuning.batch_max_stop_cost_s``: the restart delay plus the
work since its last checkpoint (:func:`~.preempt.lost_work_s`). Under ``--cost free``
stops cost nothing and the plan time-slices freely; under realistic cost jobs are
stopped only right after a checkpoint, and otherwise the plan only chooses which pending
jobs start where.

Not a batch (None): the usual cycle and reallocation decide. Pure: no I/O, no clock,
deterministic (ties by job id and pool key).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from suanwang.domain.ids import ChipName, JobId, NodeId
from suanwang.scheduler.decisions import Admit, Decision, Pending, Placement, Preempt
from suanwang.scheduler.fit import Pool, build_pools
from suanwang.scheduler.hetero import speed_on
from suanwang.scheduler.makespan import BatchJob, PackingError, RoundShares, round_shares
from suanwang.scheduler.policy import Policy
from suanwang.scheduler.preempt import lost_work_s
from suanwang.scheduler.realloc import MoveCost, best_move
from suanwang.scheduler.snapshot import PendingJob, RunningJob, Snapshot


@dataclass(frozen=True, slots=True)
class Member:
    """One job of the batch: its request, and its running attempt if it runs."""

    request: PendingJob
    running: RunningJob | None
    work_s: float
    stop_cost_s: float

    @property
    def id(self) -> JobId:
        return self.request.id

    @property
    def cards(self) -> int:
        return self.request.cards_per_node * self.request.nodes


def batch_round(snapshot: Snapshot, policy: Policy, cost: MoveCost) -> list[Decision] | None:
    """The round's decisions when ``snapshot`` holds one batch (module doc), else None."""
    if not (policy.batch_packing and policy.heterogeneity):
        return None
    members = batch_members(snapshot, policy, cost)
    if members is None:
        return None
    pools = _pools_without_batch(snapshot, members)
    cards: dict[ChipName, int] = {}
    for pool in pools:
        cards[pool.key.chip] = cards.get(pool.key.chip, 0) + pool.free_cards
    jobs = [_lp_job(m, snapshot, pools, policy) for m in members]
    try:
        tuning = policy.tuning
        shares = round_shares(
            [j for j in jobs if j.speed],
            cards,
            cost.round_s,
            tuning.batch_slack_s,
            tuning.batch_short_first,
        )
    except PackingError:
        return None
    pinned = {j.job for j in jobs if j.pinned is not None}
    return _Rounding(snapshot, members, pools, shares, pinned, policy, cost).decisions()


def batch_members(snapshot: Snapshot, policy: Policy, cost: MoveCost) -> list[Member] | None:
    """The snapshot's jobs as one batch, or None when they are not one (module doc).

    Cheap when they are not: the requests are checked first, and the check stops at the
    first job of another tenant, submitted outside the window, or without a duration.
    """
    tuning = policy.tuning
    total = len(snapshot.pending) + len(snapshot.running)
    if total < 2 or total > tuning.batch_max_jobs:
        return None
    requests = [*snapshot.pending, *(r.request for r in snapshot.running)]
    first = requests[0]
    if first is None or first.tenant in snapshot.queues or snapshot.quotas.get(first.tenant):
        return None
    low = high = first.submitted_at
    for request in requests:
        if (
            request is None
            or request.tenant != first.tenant
            or request.dataset is not None
            or request.serving
        ):
            return None
        low, high = min(low, request.submitted_at), max(high, request.submitted_at)
        if high - low > tuning.batch_window_s:
            return None
    members: list[Member] = []
    for job in snapshot.pending:
        if job.duration_s is None or job.duration_s <= 0:
            return None
        members.append(Member(job, None, job.duration_s, 0.0))
    for run in snapshot.running:
        member = _running_member(run, snapshot, cost)
        if member is None:
            return None
        members.append(member)
    return sorted(members, key=lambda m: m.id)


def _running_member(run: RunningJob, snapshot: Snapshot, cost: MoveCost) -> Member | None:
    request, end = run.request, run.expected_end
    if request is None or end is None or run.preempted_for is not None or not run.placements:
        return None
    if run.serving:  # a production replica is never stopped nor moved
        return None
    here = speed_on(request, run.chip, snapshot.chip_speed)
    if here <= 0:
        return None
    work = max(end - max(snapshot.now, run.started_at), 0.0) * here
    stop = cost.restart_delay_s + lost_work_s(run, snapshot.now)
    if not run.preemptible:
        stop = float("inf")
    return Member(request, run, max(work, 1.0), stop)


def _lp_job(member: Member, snapshot: Snapshot, pools: Iterable[Pool], policy: Policy) -> BatchJob:
    """The member for the LP: its speed on every chip type of a pool that accepts it."""
    request = member.request
    speed: dict[ChipName, float] = {}
    for pool in pools:
        there = speed_on(request, pool.key.chip, snapshot.chip_speed)
        capable = pool.count_capable(request.cards_per_node) >= request.nodes
        if there > 0 and capable and pool.accepts(request):
            speed[pool.key.chip] = there
    run = member.running
    pinned = None
    if run is not None and member.stop_cost_s > policy.tuning.batch_max_stop_cost_s:
        pinned = run.chip
        speed.setdefault(run.chip, speed_on(request, run.chip, snapshot.chip_speed))
    return BatchJob(member.id, member.cards, member.work_s, speed, pinned)


def _pools_without_batch(snapshot: Snapshot, members: Iterable[Member]) -> tuple[Pool, ...]:
    """The fleet's pools with the running members' cards counted free."""
    held: dict[NodeId, int] = {}
    for member in members:
        if member.running is not None:
            for p in member.running.placements:
                held[p.node] = held.get(p.node, 0) + p.cards
    nodes = [
        replace(n, cards_free=n.cards_free + held[n.id]) if n.id in held else n
        for n in snapshot.nodes
    ]
    return build_pools(nodes)


class _Rounding:
    """Round the LP's shares onto the pools (steps 1-3 of the module doc)."""

    def __init__(
        self,
        snapshot: Snapshot,
        members: list[Member],
        pools: tuple[Pool, ...],
        shares: RoundShares,
        pinned: set[JobId],
        policy: Policy,
        cost: MoveCost,
    ) -> None:
        self.snapshot, self.members, self.pools = snapshot, members, pools
        self.policy, self.cost = policy, cost
        self.shares, self.pinned = shares.shares, pinned
        self.by_id = {m.id: m for m in members}
        self.placed: dict[JobId, tuple[Pool, tuple[Placement, ...]]] = {}
        self.kept: set[JobId] = set()

    def decisions(self) -> list[Decision]:
        for job_id in sorted(self.pinned):
            self._keep(self.by_id[job_id])
        chosen = self._choose_types()
        for job_id, chip in sorted(chosen, key=lambda e: (-self.by_id[e[0]].cards, e[0])):
            member = self.by_id[job_id]
            run = member.running
            if run is not None and run.chip == chip and self._fits_in_place(run):
                self._keep(member)
            else:
                self._place(member, [chip])
        for member in self.members:
            run = member.running
            if run is not None and member.id not in self.placed and self._fits_in_place(run):
                self._keep(member)
        self._fill()
        while self._upgrade():
            self._fill()
        return self._emit()

    def _fill(self) -> None:
        for member in sorted(self.members, key=self._fill_order):
            if member.running is None and member.id not in self.placed:
                self._place(member, self._chips_by_speed(member))

    def _upgrade(self) -> bool:
        """Move one placed job to free cards of a faster chip type, the one that gains
        most relative to its speed now; False when none can."""
        speed = self.snapshot.chip_speed
        best: tuple[float, JobId, Pool] | None = None
        for job_id, (pool, _placements) in self.placed.items():
            member = self.by_id[job_id]
            request = member.request
            here = speed_on(request, pool.key.chip, speed)
            for other in self.pools:
                there = speed_on(request, other.key.chip, speed)
                if there <= here or not other.accepts(request):
                    continue
                if job_id in self.pinned and not self._worth_moving(member, other):
                    continue
                if other.fits(request.cards_per_node, request.nodes):
                    gain = there / here
                    if best is None or (-gain, job_id, other.key) < (
                        -best[0],
                        best[1],
                        best[2].key,
                    ):
                        best = (gain, job_id, other)
        if best is None:
            return False
        _gain, job_id, target = best
        pool, placements = self.placed.pop(job_id)
        for placement in placements:
            pool.hold(placement.node, -placement.cards)
        self.kept.discard(job_id)
        self._place(self.by_id[job_id], [target.key.chip])
        return True

    def _choose_types(self) -> list[tuple[JobId, ChipName]]:
        """Step 1: jobs by their share of the round over all types, largest first, each
        on its type of largest share that has cards left for the whole gang (pinned jobs
        hold theirs already)."""
        left: dict[ChipName, int] = {}
        for pool in self.pools:
            left[pool.key.chip] = left.get(pool.key.chip, 0) + pool.free_cards
        order = sorted(
            (-sum(row.values()), -max(row.values()), job)
            for job, row in self.shares.items()
            if job not in self.pinned
        )
        chosen: list[tuple[JobId, ChipName]] = []
        for *_rank, job in order:
            member = self.by_id[job]
            row = self.shares[job]
            preferred = sorted(row, key=lambda c: (-row[c], c))
            for chip in preferred:
                if left.get(chip, 0) >= member.cards:
                    left[chip] -= member.cards
                    chosen.append((job, chip))
                    break
        return chosen

    def _worth_moving(self, member: Member, pool: Pool) -> bool:
        """A pinned job moves only as reallocation would move it: its gain (how much
        sooner it ends) exceeds the threshold, and its cost too when placed recently."""
        run = member.running
        if run is None or not run.preemptible:
            return False
        move = best_move(run, [pool], self.snapshot, self.policy, self.cost)
        return move is not None

    def _keep(self, member: Member) -> None:
        run = member.running
        assert run is not None
        pool = next(p for p in self.pools if (p.key.cluster, p.key.chip) == (run.cluster, run.chip))
        for placement in run.placements:
            pool.hold(placement.node, placement.cards)
        self.kept.add(member.id)
        self.placed[member.id] = (pool, run.placements)

    def _fits_in_place(self, run: RunningJob) -> bool:
        for pool in self.pools:
            if (pool.key.cluster, pool.key.chip) == (run.cluster, run.chip):
                return all(pool.free_of.get(p.node, 0) >= p.cards for p in run.placements)
        return False

    def _place(self, member: Member, chips: list[ChipName]) -> None:
        request = member.request
        for chip in chips:
            fitting = [
                p
                for p in self.pools
                if p.key.chip == chip
                and p.accepts(request)
                and p.fits(request.cards_per_node, request.nodes)
            ]
            if not fitting:
                continue
            pool = min(fitting, key=lambda p: (p.free_cards, p.key))
            nodes = pool.choose(request.cards_per_node, request.nodes)
            assert nodes is not None, "fits() said the gang fits"
            self.placed[member.id] = (pool, pool.take(nodes, request.cards_per_node))
            return

    def _chips_by_speed(self, member: Member) -> list[ChipName]:
        chips = {p.key.chip for p in self.pools if p.accepts(member.request)}
        speed = self.snapshot.chip_speed
        ranked = sorted(chips, key=lambda c: (-speed_on(member.request, c, speed), c))
        return [c for c in ranked if speed_on(member.request, c, speed) > 0]

    def _fill_order(self, member: Member) -> tuple[float, JobId]:
        """Most progress per card first: best speed over remaining work and gang size."""
        speed = self.snapshot.chip_speed
        chips = self._chips_by_speed(member)
        best = speed_on(member.request, chips[0], speed) if chips else 0.0
        return (-best / (member.work_s * member.cards), member.id)

    def _emit(self) -> list[Decision]:
        stops: list[Decision] = []
        starts: list[Decision] = []
        waits: list[Decision] = []
        now, speed = self.snapshot.now, self.snapshot.chip_speed
        for member in self.members:
            run, where = member.running, self.placed.get(member.id)
            if member.id in self.kept:
                continue
            if run is not None:
                lost = lost_work_s(run, now)
                target = "" if where is None else f" -> {where[0].key.chip}"
                reason = f"batch packing: {run.chip}{target}, {member.work_s:.0f} s of work left"
                stops.append(Preempt(run.id, run.id, reason, lost))
            if where is None:
                if run is None:
                    waits.append(Pending(member.id, _WAIT, "capacity"))
                continue
            pool, placements = where
            run_s = member.work_s / speed_on(member.request, pool.key.chip, speed)
            key = pool.key
            starts.append(
                Admit(member.id, key.cluster, key.chip, key.family, placements, False, run_s)
            )
        return [*stops, *starts, *waits]


_WAIT = "batch packing: this round's cards go to jobs the batch's makespan plan runs first"
