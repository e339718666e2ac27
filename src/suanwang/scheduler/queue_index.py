"""The pending queue kept across cycles, so that a cycle's work follows what changed.

A cycle over 1,000,000 pending jobs cannot afford to sort them, nor to look at each one:
a Python-level sort key alone costs ~1 µs a job. :class:`QueueIndex` (held by the
:class:`~.cache.CycleCache`) keeps the pending jobs in *classes*: jobs equal in every
field but their id, ``seq`` and ``submitted_at`` (:func:`class_of`), each class a list
sorted by ``(submitted_at, seq, id)`` (:func:`order`). From one snapshot to the next it
updates only the jobs that arrived or left (found by walking the last and the new queue
side by side, see :func:`_delta`).

Within a class, the order of every policy's sort key (``queues.py``) is that list's
order, whatever ``now`` is: the key reads the class's fields (priority, tenant, share,
gain, run time), which are equal, then tiers by age (overdue first, then waited longer
than ``gain_max_wait_s``), which are prefixes of the list, then ``(submitted_at, seq,
id)`` or ``(seq, id)``. The two coincide when ``seq`` grows with ``submitted_at`` in a
class, as it does when ``seq`` is the submission order; the index checks it as jobs
arrive and, when a class breaks it, gives up (``disabled`` says why) and cycles sort
the whole queue again. So a cycle merges the classes (:mod:`~.passes`) instead of
sorting the jobs: one key per class head, and per job it actually looks at.

Pure: no I/O, no clock; the index is an explicit object owned by one cache.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise

from suanwang.domain.ids import JobId, TenantId
from suanwang.scheduler.snapshot import PendingJob

ClassKey = tuple[object, ...]
Order = tuple[float, int, JobId]


def class_of(job: PendingJob) -> ClassKey:
    """Every field of ``job`` but its id, ``seq`` and ``submitted_at`` (speeds by
    identity: a job's speed table is a mapping)."""
    speed = id(job.speed) if job.speed else 0
    return (
        job.tenant,
        job.priority,
        job.chips,
        job.cards_per_node,
        job.nodes,
        job.simulated,
        job.cluster,
        job.region,
        job.kind,
        job.duration_s,
        job.max_runtime_s,
        speed,
        job.preemptible,
        job.checkpoint_interval_s,
        job.dataset,
        job.staging_to,
    )


def order(job: PendingJob) -> Order:
    """The order of a class's list: submission time, then ``seq``, then id."""
    return (job.submitted_at, job.seq, job.id)


def _agree(first: PendingJob, second: PendingJob) -> bool:
    """Whether two jobs, ``first`` before ``second`` by :func:`order`, are also in
    ``(seq, id)`` order (the premise of the module docstring)."""
    return (first.seq, first.id) < (second.seq, second.id)


@dataclass(slots=True)
class QueueIndex:
    """The pending jobs of the last snapshot, in classes kept sorted.

    Attributes:
        min_jobs: Queue length from which the index is built (below, sorting the queue
            is cheaper than keeping it); once built it is kept.
        disabled: Why the index gave up for good ("" while it serves).
        builds: Times the index was built from a whole queue.
        arrivals: Jobs added since it was built.
        departures: Jobs removed since it was built.
    """

    min_jobs: int = 20_000
    disabled: str = ""
    builds: int = 0
    arrivals: int = 0
    departures: int = 0
    classes: dict[ClassKey, list[PendingJob]] = field(default_factory=dict)
    by_tenant: dict[TenantId, dict[ClassKey, list[PendingJob]]] = field(default_factory=dict)
    by_id: dict[JobId, PendingJob] = field(default_factory=dict)
    with_speed: int = 0
    _pending: tuple[PendingJob, ...] | None = None

    def sync(self, pending: tuple[PendingJob, ...]) -> bool:
        """Bring the index to ``pending``; False when the cycle must sort instead."""
        if self.disabled:
            return False
        if pending is self._pending:
            return True
        if self._pending is None:
            if len(pending) < self.min_jobs:
                return False
            self._build(pending)
        else:
            self._update(pending)
        self._pending = pending
        return not self.disabled

    @property
    def tenants(self) -> Collection[TenantId]:
        """Tenants with pending jobs."""
        return self.by_tenant.keys()

    def top_priorities(self) -> dict[TenantId, int]:
        """The highest priority among each tenant's pending jobs (one look per class)."""
        return {
            tenant: max(members[0].priority for members in classes.values())
            for tenant, classes in self.by_tenant.items()
        }

    def _build(self, pending: tuple[PendingJob, ...]) -> None:
        self.builds += 1
        self._add(pending)

    def _update(self, pending: tuple[PendingJob, ...]) -> None:
        assert self._pending is not None
        gone, added = _delta(self._pending, pending, self.by_id)
        if gone:
            self.departures += len(gone)
            self._remove(gone)
        if added:
            self.arrivals += len(added)
            self._add(added)

    def _add(self, jobs: Iterable[PendingJob]) -> None:
        grouped: dict[ClassKey, list[PendingJob]] = {}
        for job in jobs:
            if job.id in self.by_id:
                self._give_up(f"job id {job.id} appears twice in the queue")
                return
            self.by_id[job.id] = job
            self.with_speed += bool(job.speed)
            grouped.setdefault(class_of(job), []).append(job)
        for key, new in grouped.items():
            members = self.classes.get(key)
            if members is None:
                members = self.classes[key] = []
                tenant = new[0].tenant
                self.by_tenant.setdefault(tenant, {})[key] = members
            tail = members[-1] if members else None
            new.sort(key=order)
            members.extend(new)
            if tail is not None and order(tail) > order(new[0]):
                members.sort(key=order)
                start = 0
            else:
                start = max(len(members) - len(new) - 1, 0)
            if not all(_agree(a, b) for a, b in pairwise(members[start:])):
                self._give_up(f"seq does not follow submission time among {key[0]}'s jobs")
                return

    def _remove(self, jobs: list[PendingJob]) -> None:
        grouped: dict[ClassKey, list[PendingJob]] = {}
        for left in jobs:
            job = self.by_id.pop(left.id)  # the indexed object (``left`` may be equal)
            self.with_speed -= bool(job.speed)
            grouped.setdefault(class_of(job), []).append(job)
        for key, gone in grouped.items():
            members = self.classes[key]
            if members[: len(gone)] == gone:  # the class's first jobs (they were admitted)
                del members[: len(gone)]
            elif len(gone) * 8 < len(members):  # a few: found by bisection
                for job in gone:
                    at = bisect_left(members, order(job), key=order)
                    assert members[at].id == job.id, "a class is sorted by order()"
                    del members[at]
            else:
                ids = {job.id for job in gone}
                members[:] = [job for job in members if job.id not in ids]
            if members:
                continue
            del self.classes[key]
            tenant = gone[0].tenant
            del self.by_tenant[tenant][key]
            if not self.by_tenant[tenant]:
                del self.by_tenant[tenant]

    def _give_up(self, why: str) -> None:
        self.disabled = why
        self.classes, self.by_tenant, self.by_id = {}, {}, {}
        self._pending = None


def _delta(
    old: tuple[PendingJob, ...], new: tuple[PendingJob, ...], known: Mapping[JobId, PendingJob]
) -> tuple[list[PendingJob], list[PendingJob]]:
    """The jobs that left (of ``old``) and arrived (in ``new``), such that ``old`` less
    the first plus the second is ``new`` (as a multiset, whatever the order).

    Both queues are walked side by side; runs of the same job objects are skipped by
    comparing slices in C (exponential, then binary search: equal jobs, which are
    frozen values, count as the same), so the Python work is proportional to the
    changes, not to the queue. At a difference, a job of ``new`` that is not the
    indexed job of its id arrived; otherwise the job of ``old`` left.
    """
    gone: list[PendingJob] = []
    added: list[PendingJob] = []
    i = j = 0
    while i < len(old) and j < len(new):
        run = _common_run(old, i, new, j)
        i, j = i + run, j + run
        if i == len(old) or j == len(new):
            break
        if known.get(new[j].id) is new[j]:
            gone.append(old[i])
            i += 1
        else:
            added.append(new[j])
            j += 1
    gone.extend(old[i:])
    added.extend(new[j:])
    return gone, added


def _common_run(old: tuple[PendingJob, ...], i: int, new: tuple[PendingJob, ...], j: int) -> int:
    """How many jobs from ``old[i]`` and ``new[j]`` on are equal, pairwise."""
    limit = min(len(old) - i, len(new) - j)
    good, step = 0, 16
    while good < limit:
        size = min(step, limit - good)
        if old[i + good : i + good + size] != new[j + good : j + good + size]:
            break
        good, step = good + size, step * 2
    else:
        return good
    low, high = good, good + size - 1  # the first difference is in [low, high]
    while low < high:
        middle = (low + high) // 2
        if old[i + low : i + middle + 1] == new[j + low : j + middle + 1]:
            low = middle + 1
        else:
            high = middle
    return low
