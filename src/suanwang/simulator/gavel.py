"""``gavel-like``: a round-based max-min fairness baseline, after Gavel (OSDI '20).

Every decision round (the simulator's ``decision_interval_s``; 6 minutes in Gavel):

1. **Allocation.** The jobs that may run (pending ones, and running ones that are
   preemptible and whose request is known) get a max-min fair allocation over
   throughput-normalised shares (:func:`~suanwang.scheduler.maxmin.max_min_allocation`),
   ``x[j][k]``: the fraction of rounds job ``j`` should spend on chip type ``k``. Cards
   held by work that may not move are taken out first. The LP is solved again only when
   the set of jobs or the capacity changes (Gavel recomputes on arrivals and completions).
2. **Placement.** As Gavel's round scheduler does, each (job, chip type) pair with
   ``x > 0`` gets the priority ``x[j][k] / f[j][k]``, where ``f[j][k]`` is the fraction of
   the job's time since it arrived that it actually spent on ``k`` (infinite before it
   ran there): the jobs furthest behind their allocation go first. Pairs are taken in
   priority order (ties: larger allocation, then submission order, then chip name); a
   job is given at most one chip type, if that type still has cards for its whole gang.
3. **Decisions.** A running job given its current chip type keeps its cards. Any other
   running job that may move is preempted (``Preempt`` of itself); a job given a type is
   admitted on the best-fitting pool of that type that holds its gang once the preempted
   cards are free. A job that changes chip type is therefore a move: under ``--cost
   realistic`` it loses the work since its last checkpoint and waits the restart delay,
   under ``--cost free`` nothing (the engine applies the cost model). Gavel assumes every
   job saves at each round's end; where it does not (``--cost realistic``), a running
   job is movable only once a stop would lose less than half of its attempt's run
   (:func:`_movable`): otherwise two jobs taking turns on a gang's cards every round can
   each lose all their work every time and never finish (a Hypothesis example found it).
   Jobs not placed get ``Pending``.

The time a job received is counted from the policy's own decisions: between two rounds,
each job it left running on type ``k`` is credited with the elapsed time on ``k``.

One :class:`GavelLike` holds that per-run state; :func:`~.policies.resolve_policy` makes a
new one per run. It sets ``round_based``, so the engine runs a round every interval while
any job waits or runs (not only after events): time-slicing and moving a job to a chip
that came free need the rounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from suanwang.domain.chips import accepts_chip
from suanwang.domain.ids import ChipName, JobId, NodeId
from suanwang.scheduler.decisions import Admit, Decision, Pending, Placement, Preempt
from suanwang.scheduler.fit import Pool, build_pools, pick_pool
from suanwang.scheduler.hetero import speed_on
from suanwang.scheduler.maxmin import Allocation, Demand, max_min_allocation
from suanwang.scheduler.preempt import lost_work_s
from suanwang.scheduler.snapshot import PendingJob, RunningJob, Snapshot

NAME = "gavel-like"
NEVER_RAN = 1e12
"""Priority multiplier for a chip type a job has not run on yet (Gavel: infinite)."""


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A job the round may place: its request, and where it runs now (None: pending)."""

    job: PendingJob
    running: RunningJob | None

    @property
    def scale(self) -> int:
        return self.job.cards_per_node * self.job.nodes


class GavelLike:
    """The ``gavel-like`` policy for one simulation run (see the module doc)."""

    round_based = True
    """Tells the engine to run a round every interval while jobs wait."""

    def __init__(self) -> None:
        """No job seen yet."""
        self.__name__ = f"cycle_{NAME}"
        self._arrived: dict[JobId, float] = {}
        self._received: dict[JobId, dict[ChipName, float]] = {}
        self._placed: dict[JobId, ChipName] = {}
        self._last_now: float | None = None
        self._lp_key: tuple[frozenset[JobId], tuple[tuple[ChipName, int], ...]] | None = None
        self._allocation: Allocation = {}

    def __call__(self, snapshot: Snapshot) -> list[Decision]:
        """One round: allocation, placement, decisions."""
        self._account(snapshot)
        pinned, candidates = _split(snapshot)
        cards = _capacity(snapshot, pinned)
        allocation = self._allocate(snapshot, candidates, cards)
        chosen = self._assign(snapshot.now, candidates, allocation, cards)
        return self._decide(snapshot, candidates, chosen)

    def _account(self, snapshot: Snapshot) -> None:
        """Credit the time since the last round; forget jobs that are gone."""
        now = snapshot.now
        elapsed = 0.0 if self._last_now is None else now - self._last_now
        self._last_now = now
        running = {r.id for r in snapshot.running}
        for job, chip in self._placed.items():
            if job in running:
                got = self._received.setdefault(job, {})
                got[chip] = got.get(chip, 0.0) + elapsed
        present = running | {p.id for p in snapshot.pending}
        for job in [j for j in self._arrived if j not in present]:
            del self._arrived[job]
            self._received.pop(job, None)
        for job in present:
            self._arrived.setdefault(job, now)

    def _allocate(
        self, snapshot: Snapshot, candidates: list[_Candidate], cards: dict[ChipName, int]
    ) -> Allocation:
        key = (frozenset(c.job.id for c in candidates), tuple(sorted(cards.items())))
        if key != self._lp_key:
            demands = [_demand(snapshot, c) for c in candidates]
            self._allocation = max_min_allocation(demands, cards)
            self._lp_key = key
        return self._allocation

    def _assign(
        self,
        now: float,
        candidates: list[_Candidate],
        allocation: Allocation,
        cards: dict[ChipName, int],
    ) -> dict[JobId, tuple[ChipName, float]]:
        """Job -> (chip type, priority) for this round, by Gavel's priority order."""
        pairs: list[tuple[float, float, int, ChipName, _Candidate]] = []
        for c in candidates:
            lived = max(now - self._arrived[c.job.id], 0.0)
            got = self._received.get(c.job.id, {})
            for chip, share in allocation.get(c.job.id, {}).items():
                ran = got.get(chip, 0.0)
                priority = share * NEVER_RAN if ran <= 0 or lived <= 0 else share * lived / ran
                pairs.append((-priority, -share, c.job.seq, chip, c))
        pairs.sort(key=lambda p: p[:4])
        left = dict(cards)
        chosen: dict[JobId, tuple[ChipName, float]] = {}
        for neg_priority, _share, _seq, chip, c in pairs:
            if c.job.id not in chosen and c.scale <= left[chip]:
                chosen[c.job.id] = (chip, -neg_priority)
                left[chip] -= c.scale
        return chosen

    def _decide(
        self,
        snapshot: Snapshot,
        candidates: list[_Candidate],
        chosen: Mapping[JobId, tuple[ChipName, float]],
    ) -> list[Decision]:
        decisions: list[Decision] = []
        freed: dict[NodeId, int] = {}
        placed: dict[JobId, ChipName] = {
            r.id: r.chip for r in snapshot.running if r.id not in {c.job.id for c in candidates}
        }
        for c in candidates:
            run = c.running
            if run is None:
                continue
            if chosen.get(c.job.id, ("", 0.0))[0] == run.chip:
                placed[run.id] = run.chip
                continue
            reason = f"{NAME}: round reallocation (max-min share)"
            decisions.append(Preempt(job=run.id, for_job=run.id, reason=reason))
            for p in run.placements:
                freed[p.node] = freed.get(p.node, 0) + p.cards
        nodes = [replace(n, cards_free=n.cards_free + freed.get(n.id, 0)) for n in snapshot.nodes]
        pools = build_pools(nodes)
        order = sorted(
            (c for c in candidates if c.job.id in chosen and c.job.id not in placed),
            key=lambda c: (-chosen[c.job.id][1], c.job.seq),
        )
        admitted: set[JobId] = set()
        for c in order:
            admit = _place(c.job, chosen[c.job.id][0], pools, snapshot)
            if admit is not None:
                decisions.append(admit)
                admitted.add(c.job.id)
                placed[c.job.id] = admit.chip
        waiting = f"{NAME}: not in this round's max-min share"
        decisions += [
            Pending(job=p.id, reason=waiting, code="capacity")
            for p in snapshot.pending
            if p.id not in admitted
        ]
        self._placed = placed
        return decisions


def _movable(run: RunningJob, now: float) -> bool:
    """Whether the round may stop ``run``: preemptible, request known, and a stop now
    throws away less than half of what this attempt ran. Gavel assumes a checkpoint at
    every round's end (free moves: nothing lost, always movable); with real checkpoints
    (``--cost realistic``), slicing a job every round before it saves would lose all its
    work each time and never finish it, so it keeps its cards until a checkpoint."""
    if run.request is None or not run.preemptible:
        return False
    return lost_work_s(run, now) * 2 <= max(now - run.started_at, 0.0)


def _split(snapshot: Snapshot) -> tuple[list[RunningJob], list[_Candidate]]:
    """Running work that stays put (not preemptible, request unknown, or not at a
    checkpoint: :func:`_movable`), and the jobs this round may place, pending ones and
    movable running ones."""
    now = snapshot.now
    pinned = [r for r in snapshot.running if not _movable(r, now)]
    movable = [
        _Candidate(r.request, r)
        for r in snapshot.running
        if r.request is not None and _movable(r, now)
    ]
    pending = [_Candidate(p, None) for p in snapshot.pending]
    return pinned, sorted(movable + pending, key=lambda c: (c.job.seq, c.job.id))


def _capacity(snapshot: Snapshot, pinned: list[RunningJob]) -> dict[ChipName, int]:
    """Cards per chip type on schedulable nodes, less what pinned work holds."""
    cards: dict[ChipName, int] = {}
    for node in snapshot.nodes:
        if node.schedulable:
            cards[node.chip] = cards.get(node.chip, 0) + node.cards_total
    for run in pinned:
        cards[run.chip] = cards.get(run.chip, 0) - sum(p.cards for p in run.placements)
    return {k: max(n, 0) for k, n in cards.items()}


def _demand(snapshot: Snapshot, candidate: _Candidate) -> Demand:
    """The job's gang size and its speed on each chip type a pool of which accepts it."""
    job = candidate.job
    speeds = {
        node.chip: speed_on(job, node.chip, snapshot.chip_speed)
        for node in snapshot.nodes
        if node.simulated == job.simulated and accepts_chip(job.chips, node.chip, node.family)
    }
    return Demand(job.id, candidate.scale, speeds)


def _place(
    job: PendingJob, chip: ChipName, pools: tuple[Pool, ...], snapshot: Snapshot
) -> Admit | None:
    """Admit ``job`` on the best-fitting pool of ``chip`` that accepts it, or None."""
    fitting = [(p, ()) for p in pools if p.key.chip == chip and p.accepts(job)]
    pool = pick_pool(fitting, job.cards_per_node, job.nodes)
    if pool is None:
        return None
    slots = pool.choose(job.cards_per_node, job.nodes)
    if slots is None:
        return None
    placements: tuple[Placement, ...] = pool.take(slots, job.cards_per_node)
    speed = speed_on(job, chip, snapshot.chip_speed)
    duration = job.duration_s / speed if job.duration_s is not None and speed > 0 else None
    return Admit(
        job=job.id,
        cluster=pool.key.cluster,
        chip=pool.key.chip,
        family=pool.key.family,
        placements=placements,
        expected_duration_s=duration,
    )
