"""Periodic reallocation: move running work to a chip type where it finishes sooner.

:func:`reallocate` runs once per decision round, after :func:`~suanwang.scheduler.cycle`
has decided the queue, and only on cards nobody waits for: the caller passes the cards
the cycle's admissions took, and calls it only when the cycle left no job waiting.
For every running job that may move (preemptible, its request known: accepted chips,
speeds, gang shape, expected end), longest remaining time first (LPT, the makespan
order), it compares finishing where it is with stopping now and restarting on every
pool of an accepted chip whose free cards fit the gang:

``end there = now + restart_delay_s + (remaining work + lost work) / speed there``

where the remaining work is ``(expected_end - now) × speed here`` (reference-chip
seconds) and the lost work is ``lost_work_s × speed here``: what the job did since its
last checkpoint (:func:`~.preempt.lost_work_s`; 0 under the free cost model, whose
snapshots say every instant is a checkpoint). The move is made when the gain
``expected_end - end there`` exceeds ``Tuning.realloc_min_gain_s``; a job whose attempt
started within the last ``Tuning.realloc_cooldown_rounds`` rounds (it was just placed or
moved) moves again only if the gain also exceeds its cost (lost work plus restart delay,
in seconds on the new chip): that bounds churn.

A move is two decisions the caller applies in order: ``Preempt(job, for_job=job)`` (stop,
keep what was checkpointed, requeue) and an ``Admit`` of the same job on the new pool,
with its placement (the hint). The cards it leaves are for the next round.

Pure: no I/O, no clock, deterministic (ties by job id and pool key).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from suanwang.domain.ids import NodeId
from suanwang.scheduler.decisions import Admit, Decision, Preempt
from suanwang.scheduler.fit import Pool, build_pools
from suanwang.scheduler.hetero import speed_on
from suanwang.scheduler.policy import Policy
from suanwang.scheduler.preempt import lost_work_s
from suanwang.scheduler.snapshot import RunningJob, Snapshot


@dataclass(frozen=True, slots=True)
class MoveCost:
    """What moving costs: the restart delay (seconds before the job makes progress again
    on its new cards); the lost work follows from each job's checkpoints."""

    restart_delay_s: float = 0.0
    round_s: float = 360.0


@dataclass(frozen=True, slots=True)
class Move:
    """One planned move: the job, its new pool, and the figures that justified it."""

    job: RunningJob
    pool: Pool
    end_here: float
    end_there: float
    lost_s: float
    cost_s: float

    @property
    def gain_s(self) -> float:
        """How much sooner the job ends after the move."""
        return self.end_here - self.end_there


def reallocate(
    snapshot: Snapshot, policy: Policy, cost: MoveCost, taken: Iterable[Admit] = ()
) -> list[Decision]:
    """The moves of one round, as ``Preempt`` + ``Admit`` pairs (see the module doc).

    Args:
        snapshot: The round's snapshot.
        policy: Its ``Tuning`` holds the gain threshold and the cooldown.
        cost: Restart delay and round length.
        taken: The cycle's admissions of this round: their cards are not free.
    """
    if not policy.reallocation:
        return []
    pools = _free_pools(snapshot, taken)
    decisions: list[Decision] = []
    for job in sorted(_movable(snapshot), key=lambda j: (-(j.expected_end or 0.0), j.id)):
        move = best_move(job, pools, snapshot, policy, cost)
        if move is None:
            continue
        chosen = move.pool.choose(_per_node(job), len(job.placements))
        assert chosen is not None, "best_move only returns pools the gang fits"
        placements = move.pool.take(chosen, _per_node(job))
        chip = move.pool.key.chip
        reason = (
            f"reallocate: {job.chip} -> {chip} on {move.pool.key.cluster}, expected end "
            f"t={move.end_here:.0f} -> t={move.end_there:.0f} (lost {move.lost_s:.0f} s)"
        )
        decisions.append(Preempt(job.id, job.id, reason, move.lost_s))
        request = job.request
        assert request is not None
        run_s = move.end_there - snapshot.now - cost.restart_delay_s
        decisions.append(
            Admit(
                job.id,
                move.pool.key.cluster,
                chip,
                move.pool.key.family,
                placements,
                expected_duration_s=run_s,
            )
        )
    return decisions


def best_move(
    job: RunningJob, pools: Iterable[Pool], snapshot: Snapshot, policy: Policy, cost: MoveCost
) -> Move | None:
    """The pool where ``job`` would end soonest after a move, if that clears the bar."""
    request, end_here, now = job.request, job.expected_end, snapshot.now
    if request is None or end_here is None or end_here <= now:
        return None
    here = speed_on(request, job.chip, snapshot.chip_speed)
    if here <= 0:
        return None
    lost = lost_work_s(job, now)
    work = (end_here - now) * here + lost * here
    best: Move | None = None
    for pool in pools:
        if pool.key.cluster == job.cluster and pool.key.chip == job.chip:
            continue
        there = speed_on(request, pool.key.chip, snapshot.chip_speed)
        if there <= 0 or not pool.accepts(request):
            continue
        if not pool.fits(_per_node(job), len(job.placements)):
            continue
        end = now + cost.restart_delay_s + work / there
        move = Move(job, pool, end_here, end, lost, cost.restart_delay_s + lost * here / there)
        if best is None or (move.end_there, pool.key) < (best.end_there, best.pool.key):
            best = move
    if best is None or not clears_bar(best, policy, cost, now):
        return None
    return best


def clears_bar(move: Move, policy: Policy, cost: MoveCost, now: float) -> bool:
    """The gain exceeds the threshold, and its cost too for a job placed recently."""
    tuning = policy.tuning
    if move.gain_s <= tuning.realloc_min_gain_s:
        return False
    recent = now - move.job.started_at < tuning.realloc_cooldown_rounds * cost.round_s
    return not recent or move.gain_s > move.cost_s + tuning.realloc_min_gain_s


def _movable(snapshot: Snapshot) -> list[RunningJob]:
    return [
        j
        for j in snapshot.running
        if j.request is not None
        and j.preemptible
        and not j.serving
        and j.preempted_for is None
        and j.expected_end is not None
        and j.placements
    ]


def _per_node(job: RunningJob) -> int:
    return job.placements[0].cards


def _free_pools(snapshot: Snapshot, taken: Iterable[Admit]) -> tuple[Pool, ...]:
    """The snapshot's pools less the cards ``taken`` by this round's admissions."""
    used: dict[NodeId, int] = {}
    for admit in taken:
        for placement in admit.placements:
            used[placement.node] = used.get(placement.node, 0) + placement.cards
    nodes = [
        replace(n, cards_free=n.cards_free - used[n.id]) if n.id in used else n
        for n in snapshot.nodes
    ]
    return build_pools(nodes)
