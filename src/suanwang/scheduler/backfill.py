"""Backfill: when cards come free, reservations, and who may jump ahead.

A :class:`Timeline` lists, per pool, when running work (and this cycle's admissions)
should release its cards, from ``RunningJob.expected_end`` or ``now + min(duration /
speed, max runtime)``. Work with no known end never releases in the estimate.

EASY backfill (Lifka 1995, Slurm's ``sched/backfill``), per pool: the first job that is
blocked for capacity on a pool gets a :class:`Reservation` there: its earliest start
(:func:`earliest_start`) and the nodes it will use then. A later job may still start in
that pool now if it ends before the reserved start, or if it uses only cards the
reservation does not need (:meth:`Reservation.exclusion`). A job whose end is unknown
(neither duration nor max runtime) never backfills onto reserved nodes. One reservation
per pool: later blocked jobs of the same pool get none (that is what makes it EASY rather
than conservative backfill).

Not here: which job is "blocked" (``cycle.py``), the same estimates used to compare
chips (``placement.py``).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from suanwang.domain.ids import JobId, NodeId
from suanwang.scheduler.decisions import Placement
from suanwang.scheduler.fit import Pool

Event = tuple[float, NodeId, int, JobId]
"""``(end time, node, cards, job)``: ``cards`` of ``node`` come free at ``end``."""


@dataclass(slots=True)
class Timeline:
    """Release events of one pool, sorted by time (then node, cards, job).

    ``events`` must be sorted; the events of each job are indexed on first removal."""

    events: list[Event] = field(default_factory=list)
    version: int = 0
    _by_job: dict[JobId, list[Event]] | None = None

    @classmethod
    def of(cls, releases: Iterable[tuple[JobId, float, Iterable[Placement]]]) -> Timeline:
        """A timeline of ``(job, end, placements)`` releases, sorted once."""
        timeline = cls()
        events = timeline.events
        for job, end, placements in releases:
            for placement in placements:
                if placement.cards > 0:
                    events.append((end, placement.node, placement.cards, job))
        events.sort()
        return timeline

    def add(self, job: JobId, end: float | None, placements: Iterable[Placement]) -> None:
        """Record that ``job`` frees its ``placements`` at ``end`` (None: never)."""
        if end is None:
            return
        self.version += 1
        for placement in placements:
            if placement.cards > 0:
                event = (end, placement.node, placement.cards, job)
                insort(self.events, event)
                if self._by_job is not None:
                    self._by_job.setdefault(job, []).append(event)

    def remove(self, job: JobId) -> None:
        """Forget ``job``'s releases (it was preempted: its cards go to the preemptor)."""
        self.version += 1
        if self._by_job is None:
            self._by_job = {}
            for event in self.events:
                self._by_job.setdefault(event[3], []).append(event)
        for event in self._by_job.pop(job, ()):
            del self.events[bisect_left(self.events, event)]


@dataclass(frozen=True, slots=True)
class Start:
    """An estimated start: when, and each chosen node's free cards at that time."""

    at: float
    nodes: dict[NodeId, int]


def earliest_start(
    pool: Pool,
    timeline: Timeline,
    cards_per_node: int,
    nodes: int,
    now: float,
    withheld: Mapping[NodeId, int],
) -> Start | None:
    """When ``nodes`` nodes of ``pool`` will each have ``cards_per_node`` free cards.

    Cards in ``withheld`` (another job's reservation) never count as free. Returns None
    when the known releases never free enough. Nodes that come free later are chosen
    before nodes free already, which stay available to backfill.
    """
    projected: dict[NodeId, int] = {}

    def free(node: NodeId) -> int:
        return projected.get(node, pool.free_of[node] - withheld.get(node, 0))

    count = pool.count_fitting(cards_per_node)
    for node in withheld:
        if pool.free_of.get(node, -1) >= cards_per_node > free(node):
            count -= 1
    at = now
    for end, node, cards, _job in timeline.events:
        if count >= nodes:
            break
        if node in pool.free_of:
            before = free(node)
            projected[node] = before + cards
            count += before < cards_per_node <= before + cards
            at = max(end, now)
    if count < nodes:
        return None
    return Start(at, _pick(pool, projected, withheld, cards_per_node, nodes))


def _pick(
    pool: Pool,
    projected: Mapping[NodeId, int],
    withheld: Mapping[NodeId, int],
    cards_per_node: int,
    nodes: int,
) -> dict[NodeId, int]:
    """The nodes a reservation takes: those freed by releases first, then free ones."""
    freed = sorted((pool.free_of[n], n) for n, f in projected.items() if f >= cards_per_node)
    chosen = {n: projected[n] for _free, n in freed[:nodes]}
    start = bisect_left(pool.slots, (cards_per_node,))
    for free, node in pool.slots[start:]:
        if len(chosen) >= nodes:
            break
        left = free - withheld.get(node, 0)
        if node not in chosen and left >= cards_per_node:
            chosen[node] = left
    return chosen


@dataclass(slots=True)
class Reservation:
    """A blocked job's claim on a pool from ``start`` on.

    Attributes:
        job: The job holding the reservation.
        start: Its estimated start.
        need: Cards it will take on each reserved node.
        spare: Cards of each reserved node still free at ``start`` after it starts.
    """

    job: JobId
    start: float
    need: dict[NodeId, int]
    spare: dict[NodeId, int]
    _excluded: dict[int, frozenset[NodeId]] = field(default_factory=dict)

    @classmethod
    def of(cls, job: JobId, start: Start, cards_per_node: int) -> Reservation:
        """Reserve ``cards_per_node`` cards on each node of ``start``."""
        need = dict.fromkeys(start.nodes, cards_per_node)
        spare = {n: free - cards_per_node for n, free in start.nodes.items()}
        return cls(job, start.at, need, spare)

    def exclusion(self, end: float | None, cards_per_node: int) -> frozenset[NodeId]:
        """Nodes a job ending at ``end`` may not use without delaying the reservation.

        None when the job ends by the reserved start; else the reserved nodes whose
        spare cards are too few for it.
        """
        if end is not None and end <= self.start:
            return frozenset()
        excluded = self._excluded.get(cards_per_node)
        if excluded is None:
            excluded = frozenset(n for n, spare in self.spare.items() if spare < cards_per_node)
            self._excluded[cards_per_node] = excluded
        return excluded

    def consume(self, end: float | None, placements: Iterable[Placement]) -> None:
        """Account for a job placed on reserved nodes that is still there at the start."""
        if end is not None and end <= self.start:
            return
        self._excluded.clear()
        for placement in placements:
            if placement.node in self.spare:
                self.spare[placement.node] -= placement.cards


def released_by(pool: Pool, timeline: Timeline) -> tuple[list[int], list[float]]:
    """The pool's cards released so far after each of its timeline's events, in order
    (cumulative, a running sum), and the events' times: what :func:`queued_start`
    bisects."""
    total, sums, ends = 0, [], []
    for end, node, cards, _job in timeline.events:
        if node in pool.free_of:
            total += cards
            sums.append(total)
            ends.append(end)
    return sums, ends


def queued_start(
    pool: Pool, released: tuple[list[int], list[float]], cards: int, ahead: int, now: float
) -> float | None:
    """When ``cards`` cards of ``pool`` should be free for a job queued behind ``ahead``
    cards of other jobs waiting for the same pool (a fluid estimate: cards, not nodes).

    The look-ahead of a job that could start now on a slower chip but whose faster pool
    is reserved by another job: the pool's free cards plus the cards its running work
    releases (in order of expected end, ``released`` from :func:`released_by`) must
    cover ``ahead + cards``. The job does not fit now, so at least the first release is
    waited for. None when the known releases never free enough.
    """
    sums, ends = released
    i = bisect_left(sums, max(ahead + cards - pool.free_cards, 1))
    return None if i == len(sums) else max(ends[i], now)
