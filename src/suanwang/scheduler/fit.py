"""Gang placement: pools of free cards, and which nodes a job gets.

A :class:`Pool` is the cycle-local working state of the schedulable nodes of one
(cluster, chip) pair: their free cards, kept sorted best fit first, overall and per
network group. :func:`build_pools` makes the pools once per cycle, :func:`pick_pool`
chooses the pool a gang fits best, :meth:`Pool.choose` picks its nodes and
:meth:`Pool.take` deducts the cards so later jobs of the same cycle see them gone.

Costs: building is ``O(N log N)`` for ``N`` nodes; checking whether a pool can host a
gang is a binary search; taking ``n`` nodes is ``O(n * pool size)`` at worst (list
inserts), far from the ``O(nodes²)`` a naive search would cost.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from suanwang.domain.chips import ANY_CHIP
from suanwang.domain.ids import ChipFamily, ChipName, ClusterName, NodeId, RegionName
from suanwang.scheduler.decisions import Placement
from suanwang.scheduler.snapshot import NodeView, PendingJob

Slot = tuple[int, NodeId]
"""``(free cards, node id)``: sorting slots puts the best fit (fewest free) first."""


def _free_of(slot: Slot) -> int:
    return slot[0]


def _first_fitting(slots: Sequence[Slot], cards_per_node: int) -> int:
    """Index of the first slot with at least ``cards_per_node`` free cards."""
    return bisect_left(slots, cards_per_node, key=_free_of)


@dataclass(frozen=True, slots=True, order=True)
class PoolKey:
    """What all nodes of a pool share. Field order is the deterministic tie-break."""

    cluster: ClusterName
    chip: ChipName
    region: RegionName
    family: ChipFamily
    simulated: bool


@dataclass(slots=True)
class Pool:
    """Free cards of one (cluster, chip) pair's schedulable nodes, for one cycle.

    Mutable on purpose and local to one :func:`~suanwang.scheduler.cycle.cycle` call.

    Attributes:
        key: The cluster, chip, region, family and simulated flag of every node here.
        slots: Every node as a :data:`Slot`, sorted best fit first.
        groups: The same slots split by network group, each list sorted.
        group_of: The network group of each node.
        group_free_cards: Free cards per network group.
        totals_cards: Every node's ``cards_total``, sorted: what could ever fit.
        free_cards: Free cards over the whole pool (negatives counted as 0).
    """

    key: PoolKey
    slots: list[Slot] = field(default_factory=list)
    groups: dict[str, list[Slot]] = field(default_factory=dict)
    group_of: dict[NodeId, str] = field(default_factory=dict)
    group_free_cards: dict[str, int] = field(default_factory=dict)
    totals_cards: list[int] = field(default_factory=list)
    free_cards: int = 0

    @classmethod
    def of(cls, key: PoolKey, nodes: Iterable[NodeView]) -> Pool:
        """A pool of ``nodes``, all of which share ``key``; every list sorted once."""
        pool = cls(key)
        for node in nodes:
            slot = (node.cards_free, node.id)
            group = node.network_group
            pool.slots.append(slot)
            pool.groups.setdefault(group, []).append(slot)
            pool.totals_cards.append(node.cards_total)
            pool.group_of[node.id] = group
            free = max(node.cards_free, 0)
            pool.group_free_cards[group] = pool.group_free_cards.get(group, 0) + free
            pool.free_cards += free
        pool.totals_cards.sort()
        for slots in (pool.slots, *pool.groups.values()):
            slots.sort()
        return pool

    def accepts(self, job: PendingJob) -> bool:
        """Whether the job's selector, simulated flag and pins admit this pool's nodes."""
        key = self.key
        return (
            key.simulated == job.simulated
            and job.chip in (ANY_CHIP, key.chip, key.family)
            and (job.cluster is None or job.cluster == key.cluster)
            and (job.region is None or job.region == key.region)
        )

    def count_fitting(self, cards_per_node: int) -> int:
        """How many nodes have at least ``cards_per_node`` free cards now."""
        return len(self.slots) - _first_fitting(self.slots, cards_per_node)

    def count_capable(self, cards_per_node: int) -> int:
        """How many nodes have at least ``cards_per_node`` cards in total (free or not)."""
        return len(self.totals_cards) - bisect_left(self.totals_cards, cards_per_node)

    def choose(self, cards_per_node: int, nodes: int) -> list[Slot] | None:
        """Pick ``nodes`` distinct nodes with ``cards_per_node`` free cards each, or None.

        One network group is preferred: among the groups that can host the whole gang,
        the one with the fewest free cards (best fit), ties by group name. If no group
        can, the gang spans as few groups as possible (largest first, ties by name).
        Within a group, nodes with the fewest free cards go first, ties by node id.
        """
        if self.count_fitting(cards_per_node) < nodes:
            return None
        starts = {g: _first_fitting(s, cards_per_node) for g, s in self.groups.items()}
        whole = [g for g, s in self.groups.items() if len(s) - starts[g] >= nodes]
        if whole:
            group = min(whole, key=lambda g: (self.group_free_cards[g], g))
            start = starts[group]
            return self.groups[group][start : start + nodes]
        return self._spread(starts, nodes)

    def _spread(self, starts: dict[str, int], nodes: int) -> list[Slot]:
        """Best-fit nodes over as few network groups as possible, largest group first."""
        fitting = {g: len(self.groups[g]) - start for g, start in starts.items()}
        chosen: list[Slot] = []
        for group in sorted(fitting, key=lambda g: (-fitting[g], g)):
            start = starts[group]
            chosen.extend(self.groups[group][start : start + nodes - len(chosen)])
            if len(chosen) == nodes:
                break
        return chosen

    def take(self, chosen: Iterable[Slot], cards_per_node: int) -> tuple[Placement, ...]:
        """Deduct ``cards_per_node`` cards from each chosen node; return the placements."""
        placements: list[Placement] = []
        for free, node in chosen:
            placements.append(Placement(node=node, cards=cards_per_node))
            if cards_per_node:
                self._deduct((free, node), cards_per_node)
        return tuple(placements)

    def _deduct(self, slot: Slot, cards: int) -> None:
        free, node = slot
        group = self.group_of[node]
        for slots in (self.slots, self.groups[group]):
            del slots[bisect_left(slots, slot)]
            insort(slots, (free - cards, node))
        self.group_free_cards[group] -= cards
        self.free_cards -= cards


def build_pools(nodes: Iterable[NodeView]) -> tuple[Pool, ...]:
    """Group the schedulable nodes by (cluster, chip), sorted by :class:`PoolKey`."""
    members: dict[PoolKey, list[NodeView]] = {}
    for node in nodes:
        if node.schedulable:
            key = PoolKey(node.cluster, node.chip, node.region, node.family, node.simulated)
            members.setdefault(key, []).append(node)
    return tuple(Pool.of(key, members[key]) for key in sorted(members))


def pick_pool(pools: Iterable[Pool], cards_per_node: int, nodes: int) -> Pool | None:
    """The pool that hosts the gang with the fewest free cards left (best fit), or None.

    Ties go to the smallest :class:`PoolKey` (cluster, then chip, ...).
    """
    best: Pool | None = None
    for pool in pools:
        if pool.count_fitting(cards_per_node) < nodes:
            continue
        if best is None or (pool.free_cards, pool.key) < (best.free_cards, best.key):
            best = pool
    return best
