"""One scheduling cycle: :func:`cycle` turns a :class:`Snapshot` into decisions.

The cycle considers pending jobs in queue order (:func:`~.queues.order_pending`). For each
job it finds the eligible (cluster, chip) pools, drops those the tenant's quota forbids,
picks the best-fitting pool that can host the whole gang (:func:`~.fit.pick_pool`) and its
nodes (:meth:`~.fit.Pool.choose`), and deducts the cards before the next job. A job that
cannot start gets a :class:`Pending` with a short reason; it never blocks the jobs behind.

Pure: no I/O, no clock, no randomness, no state kept between calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from suanwang.domain.chips import ANY_CHIP
from suanwang.domain.ids import ClusterName, RegionName
from suanwang.scheduler.decisions import Admit, Decision, Pending
from suanwang.scheduler.fit import Pool, build_pools, pick_pool
from suanwang.scheduler.queues import QuotaLedger, order_pending
from suanwang.scheduler.snapshot import PendingJob, Snapshot

NO_ELIGIBLE_CLUSTER = "no eligible cluster"

_EligibilityKey = tuple[bool, str, ClusterName | None, RegionName | None]


@dataclass(slots=True)
class _CycleState:
    """Working state of one cycle: pools, the quota ledger, eligible pools by request."""

    pools: tuple[Pool, ...]
    ledger: QuotaLedger
    eligible_by_key: dict[_EligibilityKey, tuple[Pool, ...]] = field(default_factory=dict)

    def eligible(self, job: PendingJob) -> tuple[Pool, ...]:
        """Pools whose nodes match the job's selector, simulated flag and pins."""
        key = (job.simulated, job.chip, job.cluster, job.region)
        pools = self.eligible_by_key.get(key)
        if pools is None:
            pools = self.eligible_by_key[key] = tuple(p for p in self.pools if p.accepts(job))
        return pools


def cycle(snapshot: Snapshot) -> list[Decision]:
    """Decide, for every pending job, whether it starts now and where.

    Args:
        snapshot: Nodes with their free cards, the pending jobs, quotas and usage.

    Returns:
        One :class:`Admit` or :class:`Pending` per pending job, in the order the jobs
        were considered (priority descending, then ``seq``, then id). Admissions never
        over-allocate a node nor exceed a quota, counting earlier admissions of the cycle.
    """
    state = _CycleState(
        pools=build_pools(snapshot.nodes),
        ledger=QuotaLedger(snapshot.quotas, snapshot.usage),
    )
    return [_decide(job, state) for job in order_pending(snapshot.pending)]


def _decide(job: PendingJob, state: _CycleState) -> Decision:
    """Admit ``job`` on the best pool it may use and fits in, or say why it waits."""
    problem = request_problem(job)
    if problem:
        return Pending(job.id, problem)
    eligible = state.eligible(job)
    if not eligible:
        return Pending(job.id, NO_ELIGIBLE_CLUSTER)
    cards = job.cards_per_node * job.nodes
    allowed = [p for p in eligible if state.ledger.allows(job.tenant, p.key.family, cards)]
    if not allowed:
        families = (p.key.family for p in eligible)
        return Pending(job.id, state.ledger.refusal(job.tenant, families, cards))
    pool = pick_pool(allowed, job.cards_per_node, job.nodes)
    chosen = None if pool is None else pool.choose(job.cards_per_node, job.nodes)
    if pool is None or chosen is None:
        return Pending(job.id, waiting_reason(job, allowed))
    placements = pool.take(chosen, job.cards_per_node)
    state.ledger.charge(job.tenant, pool.key.family, cards)
    key = pool.key
    return Admit(job.id, key.cluster, key.chip, key.family, placements)


def request_problem(job: PendingJob) -> str | None:
    """Why the job's request can never be placed as asked, or None if it is well formed."""
    if job.nodes < 1:
        return f"invalid request: {job.nodes} nodes (need at least 1)"
    if job.cards_per_node < 0:
        return f"invalid request: {job.cards_per_node} cards per node"
    if job.cards_per_node == 0 and not job.simulated:
        return "invalid request: a real job needs at least 1 card per node"
    return None


def waiting_reason(job: PendingJob, pools: tuple[Pool, ...] | list[Pool]) -> str:
    """Why a job with eligible, quota-allowed ``pools`` does not fit any of them now.

    Examples: ``"waiting for 16 free ascend-910b cards on 2 nodes (8 per node)"``, or
    ``"too large: no eligible cluster has 4 ascend nodes with 8 cards"`` when even empty
    nodes would not do.
    """
    per_node, nodes = job.cards_per_node, job.nodes
    label = "" if job.chip == ANY_CHIP else f"{job.chip} "
    if all(p.count_capable(per_node) < nodes for p in pools):
        noun = "node" if nodes == 1 else "nodes"
        return f"too large: no eligible cluster has {nodes} {label}{noun} with {per_node} cards"
    if nodes == 1:
        return f"waiting for {per_node} free {label}cards on 1 node"
    total = per_node * nodes
    return f"waiting for {total} free {label}cards on {nodes} nodes ({per_node} per node)"
