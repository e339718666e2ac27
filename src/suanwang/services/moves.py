"""Reallocation in the live control plane: moves become preemptions with a placement hint.

The scheduler's :func:`~suanwang.scheduler.realloc.reallocate` plans a move as a
``Preempt`` of a running job for itself followed by its ``Admit`` on a faster pool. Live,
a job stops asynchronously (SIGTERM, then its grace), so the ``Admit`` cannot follow in
the same tick. A move is therefore executed as:

1. the job's ``preempt_reason`` ("moved to <cluster>/<chip> (reallocation): ...") and a
   placement hint (the new pool's cluster and chip, honoured for ``HINT_CYCLES`` admission
   cycles) are written in one transaction, with an event;
2. *reconcile* stops the attempt as for any preemption and requeues the job (a preempted
   attempt uses none of the job's retries);
3. the next admission cycles see the job restricted to the hinted pool
   (:func:`with_hints`), so it is admitted there when it fits; every cycle that leaves it
   queued spends one of the hint's cycles (:func:`age_hints`), and the hint is dropped at
   0 or as soon as the pool has no schedulable node, so a hint never strands a job.

Every step is a compare-and-set on the job's version and is committed before a backend
hears of it, so a control plane killed mid-move resumes the move from the database.

A round runs at most every ``interval_s`` (``SUANWANG_REALLOC_INTERVAL_S``; 0 = off) and
only when no job is waiting: free cards belong to queued work first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

import structlog

from suanwang.domain.chips import Catalogue
from suanwang.domain.ids import ClusterName
from suanwang.domain.jobs import ACTIVE, JobState
from suanwang.domain.records import JobChange, JobRecord
from suanwang.ports import UnitOfWork
from suanwang.scheduler import NodeView, PendingJob, Snapshot
from suanwang.scheduler.decisions import Admit, Decision, Preempt
from suanwang.scheduler.learning import SpeedBook
from suanwang.scheduler.policy import SUANWANG, Policy
from suanwang.scheduler.quota import QuotaLedger
from suanwang.scheduler.realloc import MoveCost, reallocate
from suanwang.scheduler.snapshot import RunningJob
from suanwang.services.snapshots import build_snapshot

log = structlog.get_logger("suanwang.moves")

HINT_CYCLES = 10
"""Admission cycles a placement hint is honoured for before the job may go anywhere."""
RESTART_DELAY_S = 30.0
"""Seconds a moved job is assumed to spend before it makes progress again (the cost model's
restart delay; the lost work comes from each attempt's last checkpoint)."""

NO_HINT = JobChange(hint_cluster=None, hint_chip=None, hint_cycles=0)


def move_reason(admit: Admit, why: str) -> str:
    """The preemption reason of a move, as shown in ``jobs show``."""
    return f"moved to {admit.cluster}/{admit.chip} (reallocation): {why}"


def hint_pool_exists(job: JobRecord, nodes: Iterable[NodeView]) -> bool:
    """Whether the job's hinted pool still has a schedulable node."""
    return any(
        n.schedulable and n.cluster == job.hint_cluster and n.chip == job.hint_chip for n in nodes
    )


def hint_live(job: JobRecord, nodes: Iterable[NodeView]) -> bool:
    """Whether ``job`` carries a hint that is still to be honoured."""
    return bool(job.hint_cluster and job.hint_cycles > 0 and hint_pool_exists(job, nodes))


def with_hints(snapshot: Snapshot, jobs: Mapping[str, JobRecord]) -> Snapshot:
    """The snapshot with every pending job that carries a live hint pinned to its pool."""
    pending = tuple(_hinted(p, jobs.get(p.id), snapshot.nodes) for p in snapshot.pending)
    return replace(snapshot, pending=pending)


def _hinted(pending: PendingJob, job: JobRecord | None, nodes: Sequence[NodeView]) -> PendingJob:
    if job is None or not hint_live(job, nodes):
        return pending
    assert job.hint_cluster is not None
    assert job.hint_chip is not None
    return replace(pending, chips=(job.hint_chip,), cluster=ClusterName(job.hint_cluster))


def age_hints(
    uow: UnitOfWork,
    queued: Iterable[JobRecord],
    admitted: set[str],
    nodes: Sequence[NodeView],
    now: float,
) -> None:
    """Spend one cycle of every hint whose job this cycle left queued; drop spent hints
    and hints whose pool is gone (with an event saying so)."""
    for job in queued:
        if not job.hint_cluster or job.id in admitted:
            continue
        current = uow.jobs.job(job.id)
        if current is None or current.state is not JobState.QUEUED:
            continue
        left = current.hint_cycles - 1
        gone = not hint_pool_exists(current, nodes)
        if left > 0 and not gone:
            uow.jobs.update_job(current, now, JobChange(hint_cycles=left))
            continue
        why = "its pool is gone" if gone else "expired"
        if uow.jobs.update_job(current, now, NO_HINT):
            pool = f"{current.hint_cluster}/{current.hint_chip}"
            uow.jobs.add_event(job.id, now, JobState.QUEUED, f"placement hint {pool} {why}")


def plan_moves(
    snapshot: Snapshot, interval_s: float, policy: Policy = SUANWANG
) -> list[tuple[Preempt, Admit]]:
    """The round's moves, each as its ``Preempt`` and the ``Admit`` that names the pool.

    A move whose new chip family the tenant's quota cannot take (counting the cards it
    leaves) is dropped: it would stop the job only for its hint to expire unused.
    """
    cost = MoveCost(restart_delay_s=RESTART_DELAY_S, round_s=interval_s)
    decisions: list[Decision] = reallocate(snapshot, policy, cost)
    ledger = QuotaLedger(snapshot, policy.quotas)
    running = {j.id: j for j in snapshot.running}
    pairs = []
    for stop, admit in zip(decisions[::2], decisions[1::2], strict=True):
        assert isinstance(stop, Preempt)
        assert isinstance(admit, Admit)
        if _quota_takes(ledger, running[stop.job], admit):
            pairs.append((stop, admit))
    return pairs


def _quota_takes(ledger: QuotaLedger, job: RunningJob, admit: Admit) -> bool:
    """Whether the tenant may hold the move's new cards once its old ones are released
    (and if so, charge the move, so the round's later moves see it)."""
    cards = sum(p.cards for p in job.placements)
    ledger.charge(job.tenant, job.family, job.chip, -cards)
    if ledger.check(job.tenant, admit.family, admit.chip, cards).ok:
        ledger.charge(job.tenant, admit.family, admit.chip, cards)
        return True
    ledger.charge(job.tenant, job.family, job.chip, cards)
    return False


def record_move(uow: UnitOfWork, stop: Preempt, admit: Admit, now: float) -> bool:
    """Ask the job to stop for a move and leave its placement hint (one compare-and-set)."""
    job = uow.jobs.job(stop.job)
    if job is None or job.preempt_reason or job.cancel_requested or job.state not in ACTIVE:
        return False
    reason = move_reason(admit, stop.reason)
    change = JobChange(
        preempt_reason=reason,
        preempted_for=job.id,
        hint_cluster=admit.cluster,
        hint_chip=admit.chip,
        hint_cycles=HINT_CYCLES,
    )
    if not uow.jobs.update_job(job, now, change):
        return False
    uow.jobs.add_event(job.id, now, job.state, f"preemption requested: {reason}")
    log.info("reallocation move", job=job.id, to=f"{admit.cluster}/{admit.chip}", why=stop.reason)
    return True


class Reallocation:
    """The live reallocation round, at most once per ``interval_s`` of the clock."""

    def __init__(self, catalogue: Catalogue, interval_s: float) -> None:
        self._catalogue = catalogue
        self.interval_s = interval_s
        self._last: float | None = None

    def due(self, now: float) -> bool:
        """Whether a round should run now (never when the interval is 0)."""
        if self.interval_s <= 0:
            return False
        return self._last is None or now - self._last >= self.interval_s

    def run(self, uow: UnitOfWork, now: float, learned: SpeedBook | None = None) -> list[str]:
        """One round inside the caller's scheduling transaction; the ids of moved jobs."""
        self._last = now
        if any(not j.cancel_requested for j in uow.jobs.queued()):
            return []  # free cards belong to waiting work first
        snapshot = build_snapshot(uow, [], self._catalogue, now, learned)
        return [
            str(stop.job)
            for stop, admit in plan_moves(snapshot, self.interval_s)
            if record_move(uow, stop, admit, now)
        ]
