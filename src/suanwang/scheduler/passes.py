"""The two passes of a cycle over the pending jobs, in the policy's order.

:func:`~.cycle.cycle` considers the jobs in order (first pass); a job that could only
start by borrowing is deferred with every later job of its tenant to a second pass, in
the same order. Two ways to walk them, with the same result:

- :class:`SortedPasses` sorts the whole queue (the way for short queues, without an
  index, or under strict FIFO, which looks at nearly every job anyway);
- :class:`MergedPasses` merges the classes of a :class:`~.queue_index.QueueIndex`
  (a heap of class heads, one sort key computed per job it yields) and skips a class as
  a whole once one of its jobs is inert by its shape (:meth:`~.inert.InertFilter
  .parkable`): every later job of the class would be inert too while the filter's token
  (preemption claims, released reservations, whether preemption searches remain) holds,
  so the class is *parked*; when the token changes every parked class resumes at the
  first of its jobs after the last job considered. A class holding a job promised cards
  by a preemption is never parked. A deferred tenant's classes continue in the second
  pass from the deferred job's key on: exactly the jobs the sorting way defers.

The cost of a merged pass is the jobs it yields plus one key per class, not the queue.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from suanwang.domain.ids import JobId, TenantId
from suanwang.scheduler.hetero import gain
from suanwang.scheduler.inert import token
from suanwang.scheduler.queue_index import ClassKey, QueueIndex, class_of
from suanwang.scheduler.queues import (
    SortKey,
    fair_share_factors,
    fifo_key,
    multifactor_key,
    priority_key,
    share_key,
)
from suanwang.scheduler.snapshot import PendingJob
from suanwang.scheduler.state import CycleState

Key = Callable[[PendingJob], SortKey]
Token = tuple[object, ...]


def job_passes(st: CycleState) -> SortedPasses | MergedPasses:
    """The way to walk this cycle's queue: merged from the index when the cycle has one,
    except under strict FIFO, which decides nearly every job (each gets its "waiting
    behind" reason), where sorting costs less per job than merging."""
    key = order_key(st)
    queue = st.queue
    if queue is None or st.policy.strict_fifo:
        return SortedPasses(st.snapshot.pending, key)
    promised = frozenset(st.victims.promised)
    return MergedPasses(queue, key, lambda: token(st), promised)


def order_key(st: CycleState) -> Key:
    """The policy's sort key, made once per cycle (both passes use it). Every key
    depends only on the job and on work started before ``now``, so a cycle re-run at
    the same instant orders jobs the same way (fair-share terms included)."""
    policy, snapshot = st.policy, st.snapshot
    tenants = None if st.queue is None else st.queue.tenants
    key: Key
    if policy.ordering == "fifo":
        key = fifo_key
    elif policy.ordering == "multifactor":
        usage: dict[TenantId, float] = {}
        for tenant, work in st.work.tenants.items():
            for job, cards in zip(work.jobs, work.cards, strict=True):
                spent = cards * max(0.0, snapshot.now - job.started_at)
                usage[tenant] = usage.get(tenant, 0.0) + spent
        weights = {t: q.weight for t, q in snapshot.queues.items()}
        if tenants is None:
            tenants = [j.tenant for j in snapshot.pending]
        factors = fair_share_factors(usage, weights, tenants)
        key = multifactor_key(policy, snapshot.now, factors)
    else:
        fair = any(q.cohort for q in st.ledger.queues.values())
        held = st.work.fleet_held(snapshot.now) if policy.fleet_share else None
        cohort = st.ledger.share if fair else None
        share = share_key(policy, snapshot, cohort, held, tenants, st.fleet_units)
        key = priority_key(policy, snapshot.now, _gain_of(st), share)
    return key


def _gain_of(st: CycleState) -> Callable[[PendingJob], float] | None:
    """The high-gain ordering term, when heterogeneity is on and speeds differ
    (cached per speed table and eligible pools)."""
    speeds = st.snapshot.chip_speed
    if not st.policy.heterogeneity:
        return None
    if st.queue is not None:
        with_speed = st.queue.with_speed > 0
    else:
        with_speed = any(j.speed for j in st.snapshot.pending)
    if not speeds and not with_speed:
        return None
    cache: dict[tuple[int, int], float] = {}

    def gain_of(job: PendingJob) -> float:
        pools = st.eligible(job)
        key = (id(job.speed) if job.speed else 0, id(pools))
        found = cache.get(key)
        if found is None:
            found = cache[key] = gain(job, {p.key.chip for p in pools}, speeds)
        return found

    return gain_of


@dataclass(slots=True)
class SortedPasses:
    """Both passes by sorting: the whole queue, then the deferred jobs."""

    pending: tuple[PendingJob, ...]
    key: Key
    _deferred: list[PendingJob] = field(default_factory=list)
    _deferring: set[TenantId] = field(default_factory=set)

    def jobs(self, final: bool) -> Iterator[PendingJob]:
        """The pass's jobs in order (first pass: without those of deferred tenants)."""
        if final:
            yield from sorted(self._deferred, key=self.key)
            return
        for job in sorted(self.pending, key=self.key):
            if job.tenant in self._deferring:
                self._deferred.append(job)  # keep the tenant's own priority order
                continue
            yield job

    def defer(self, job: PendingJob) -> None:
        """``job`` and every later job of its tenant go to the second pass."""
        self._deferred.append(job)
        self._deferring.add(job.tenant)

    def park(self, job: PendingJob, token: Token) -> None:
        """Nothing to skip in bulk: every job is looked at."""


@dataclass(slots=True)
class _Class:
    """A class's place in the merge: its next job, and whether it is parked."""

    members: list[PendingJob]
    cursor: int = 0
    generation: int = 0
    parked: bool = False


_Entry = tuple[SortKey, int, int, ClassKey]


@dataclass(slots=True)
class MergedPasses:
    """Both passes by merging the index's classes (see the module docstring)."""

    index: QueueIndex
    key: Key
    token: Callable[[], Token]
    promised: frozenset[JobId]
    _classes: dict[ClassKey, _Class] = field(default_factory=dict)
    _heap: list[_Entry] = field(default_factory=list)
    _parked: dict[ClassKey, _Class] = field(default_factory=dict)
    _parked_at: Token | None = None
    _last: PendingJob | None = None
    _second: dict[ClassKey, int] = field(default_factory=dict)
    _starts: dict[ClassKey, int] = field(default_factory=dict)
    _never_park: set[ClassKey] = field(default_factory=set)
    _count: int = 0

    def __post_init__(self) -> None:
        by_id = self.index.by_id
        self._never_park = {class_of(by_id[j]) for j in self.promised if j in by_id}

    def jobs(self, final: bool) -> Iterator[PendingJob]:
        """The pass's jobs in order, parked classes left out."""
        starts = self._second if final else dict.fromkeys(self.index.classes, 0)
        self._classes, self._parked, self._last = {}, {}, None
        self._starts = starts
        self._heap = heap = self._heads(starts)
        heapq.heapify(heap)
        classes = self._classes
        while heap:
            if self._parked and self.token() != self._parked_at:
                self._resume_parked()
            _key, _n, generation, ckey = heapq.heappop(heap)
            state = classes.get(ckey)
            if state is None:  # its first job: its place in the merge begins here
                state = classes[ckey] = _Class(self.index.classes[ckey], starts[ckey])
            if generation != state.generation:
                continue  # parked or deferred since this head was pushed
            job = state.members[state.cursor]
            state.cursor += 1
            self._last = job
            if state.cursor < len(state.members):
                self._push(ckey, state)
            yield job

    def _heads(self, starts: dict[ClassKey, int]) -> list[_Entry]:
        """The heap entries of the classes' first jobs from ``starts`` (generation 0: a
        class gets its :class:`_Class` when its first entry is popped or it changes)."""
        classes, key, count = self.index.classes, self.key, self._count
        heads: list[_Entry] = []
        for ckey, start in starts.items():
            members = classes[ckey]
            if start < len(members):
                count += 1
                heads.append((key(members[start]), count, 0, ckey))
        self._count = count
        return heads

    def _state(self, ckey: ClassKey) -> _Class | None:
        """The class's place in this pass (made when first needed), or None when the
        class is not in the pass."""
        state = self._classes.get(ckey)
        if state is None:
            start = self._starts.get(ckey)
            members = self.index.classes[ckey]
            if start is None or start >= len(members):
                return None
            state = self._classes[ckey] = _Class(members, start)
        return state

    def defer(self, job: PendingJob) -> None:
        """``job`` and every later job of its tenant go to the second pass."""
        mark, own = self.key(job), class_of(job)
        for ckey, members in self.index.by_tenant[job.tenant].items():
            state = self._state(ckey)
            if state is None:
                continue
            if ckey == own:
                start = state.cursor - 1  # the job itself, just considered
            elif state.parked:
                start = bisect_left(members, mark, lo=state.cursor, key=self.key)
            else:
                start = state.cursor  # its head comes after the job
            if start < len(members):
                self._second[ckey] = start
            state.generation += 1
            state.cursor, state.parked = len(members), False
            self._parked.pop(ckey, None)

    def park(self, job: PendingJob, token: Token) -> None:
        """Skip the rest of ``job``'s class while ``token`` holds."""
        ckey = class_of(job)
        if ckey in self._never_park:
            return
        if self._parked and token != self._parked_at:
            self._resume_parked()
        state = self._classes[ckey]
        state.generation += 1
        state.parked = True
        self._parked[ckey] = state
        self._parked_at = token

    def _resume_parked(self) -> None:
        """The token changed: each parked class goes on after the last job considered."""
        assert self._last is not None
        mark = self.key(self._last)
        for ckey, state in self._parked.items():
            members = state.members
            state.cursor = bisect_left(members, mark, lo=state.cursor, key=self.key)
            state.parked = False
            if state.cursor < len(members):
                self._push(ckey, state)
        self._parked = {}

    def _push(self, ckey: ClassKey, state: _Class) -> None:
        """Queue the class's next job on the heap."""
        state.generation += 1
        self._count += 1
        entry = (self.key(state.members[state.cursor]), self._count, state.generation, ckey)
        heapq.heappush(self._heap, entry)
