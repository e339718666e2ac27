"""What a caller may carry from one cycle to the next: pools kept up to date, not rebuilt.

Building the (cluster, chip) pools sorts every schedulable node: ~1 ms per cycle on the
demo fleet, which was most of a simulated cycle. A :class:`CycleCache` keeps the pools of
the last snapshot's nodes and, for the next snapshot, updates only the nodes whose
:class:`~.snapshot.NodeView` changed (compared by identity, then by value), rebuilding
everything only when a node appeared, vanished or changed more than its free cards.
Each cycle works on copies, so the kept pools always describe the nodes exactly.

It also keeps the pending queue in classes (:class:`~.queue_index.QueueIndex`), updated
by the jobs that arrived or left, so that a cycle over a long queue merges classes
instead of sorting every job (:mod:`~.passes`).

It also keeps each tenant's :class:`~.running.TenantWork` (its running jobs' holdings,
victims and releases) and makes a new one only for a tenant whose running jobs changed
(other objects or another order), or for every tenant when the pools were rebuilt or the
chip units changed.

The cache holds no decisions and nothing policy-dependent: :func:`~.cycle.cycle` makes the
same decisions from the same snapshot with a fresh cache, a used one, or none. It is an
explicit argument, never module state; one cache serves one caller (the simulator keeps
one per run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from suanwang.domain.ids import ChipFamily, ChipName, NodeId, TenantId
from suanwang.scheduler.fit import Pool, PoolKey, build_pools
from suanwang.scheduler.queue_index import QueueIndex
from suanwang.scheduler.running import RunningWork, TenantWork
from suanwang.scheduler.snapshot import NodeView, RunningJob, Snapshot


@dataclass(slots=True)
class CycleCache:
    """Pools of the last snapshot's nodes, updated in place as nodes change, and the
    running work of each tenant.

    Attributes:
        rebuilds: Full rebuilds so far (first use, or a change beyond free cards).
        updates: Cycles served by updating changed nodes only.
        queue: The pending jobs in classes (used from ``queue.min_jobs`` jobs on).
    """

    rebuilds: int = 0
    updates: int = 0
    _nodes: tuple[NodeView, ...] | None = None
    _pools: tuple[Pool, ...] = ()
    _pool_of: dict[NodeId, Pool] = field(default_factory=dict)
    _keys: dict[NodeId, PoolKey] = field(default_factory=dict)
    _tenants: dict[TenantId, TenantWork] = field(default_factory=dict)
    _units: dict[ChipName, float] = field(default_factory=dict)
    _running: tuple[RunningJob, ...] = ()
    _work: RunningWork | None = None
    _fleet: FleetFacts | None = None
    queue: QueueIndex = field(default_factory=QueueIndex)

    def indexed(self, snapshot: Snapshot) -> QueueIndex | None:
        """The queue index brought to the snapshot's pending jobs, or None when the
        cycle should sort them (a short queue, or an index that gave up)."""
        return self.queue if self.queue.sync(snapshot.pending) else None

    def pools(self, nodes: tuple[NodeView, ...]) -> tuple[Pool, ...]:
        """Fresh working pools for ``nodes``, equal to ``build_pools(nodes)``."""
        if not self._update(nodes):
            self._pools = build_pools(nodes)
            self._pool_of = {node: pool for pool in self._pools for node in pool.free_of}
            self._keys = {node: pool.key for node, pool in self._pool_of.items()}
            self._tenants = {}  # their pools may have changed
            self._fleet = None
            self.rebuilds += 1
        self._nodes = nodes
        return tuple(pool.copy() for pool in self._pools)

    def fleet(self, snapshot: Snapshot) -> FleetFacts:
        """The snapshot's :class:`FleetFacts`, after :meth:`pools` for the same snapshot:
        kept while no node changes more than its free cards and the chip units stay."""
        kept = self._fleet
        if kept is None or kept.chip_units != snapshot.chip_units:
            kept = self._fleet = FleetFacts.of(snapshot)
        return kept

    def node_keys(self) -> Mapping[NodeId, PoolKey]:
        """The pool key of each schedulable node of the last :meth:`pools` (read only)."""
        return self._keys

    def running(self, snapshot: Snapshot) -> RunningWork:
        """The snapshot's :class:`~.running.RunningWork`, equal to one made afresh, after
        :meth:`pools` for the same snapshot: tenants whose running jobs did not change
        keep the last cycle's work."""
        if self._units != snapshot.chip_units:
            self._tenants, self._work = {}, None
            self._units = dict(snapshot.chip_units)
        kept = self._work
        # Compared by identity first: cheap when the running jobs are kept.
        if kept is not None and kept.tenants is self._tenants and self._running == snapshot.running:
            return kept
        work = RunningWork.of(snapshot.running, self._units, self._keys, self._tenants)
        self._tenants, self._running, self._work = work.tenants, snapshot.running, work
        return work

    def _update(self, nodes: tuple[NodeView, ...]) -> bool:
        """Apply the free-card changes since the last nodes; False when that is not enough."""
        before = self._nodes
        if before is None or len(before) != len(nodes):
            return False
        changed = [(old, new) for old, new in zip(before, nodes, strict=True) if old is not new]
        for old, new in changed:
            if old.schedulable != new.schedulable or _layout(old) != _layout(new):
                return False
        for old, new in changed:
            if new.schedulable and old.cards_free != new.cards_free:
                self._pool_of[new.id].set_free(new.id, new.cards_free)
        self.updates += 1
        return True


@dataclass(frozen=True, slots=True)
class FleetFacts:
    """What a cycle sums over every node (schedulable or not) that free cards do not
    change: read 100,000 nodes once per layout, not once per cycle.

    Attributes:
        chip_units: The units per card the sum used.
        units: Every node's cards times its chip's units (1.0 when absent), summed in
            node order (:func:`~.queues.fleet_shares`).
        flavors: The (family, chip) pairs of the nodes (:class:`~.quota.QuotaLedger`).
    """

    chip_units: Mapping[ChipName, float]
    units: float
    flavors: frozenset[tuple[ChipFamily, ChipName]]

    @classmethod
    def of(cls, snapshot: Snapshot) -> FleetFacts:
        """The facts of the snapshot's nodes."""
        units = dict(snapshot.chip_units)
        total = sum(n.cards_total * units.get(n.chip, 1.0) for n in snapshot.nodes)
        flavors = frozenset((node.family, node.chip) for node in snapshot.nodes)
        return cls(units, total, flavors)


def _layout(node: NodeView) -> tuple[object, ...]:
    """Everything about a node but its free cards."""
    return (
        node.id,
        node.name,
        node.cluster,
        node.region,
        node.simulated,
        node.chip,
        node.family,
        node.cards_total,
        node.network_group,
    )
