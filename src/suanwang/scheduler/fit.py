"""Gang placement: pools of free cards, and which nodes a job gets.

A :class:`Pool` is the cycle-local working state of the schedulable nodes of one
(cluster, chip) pair: their free cards, kept sorted best fit first, overall and per
network group. :func:`build_pools` makes the pools once per cycle, :func:`pick_pool`
(best fit) and :func:`first_pool` (first by name) choose among pools a gang fits,
:meth:`Pool.choose` picks its nodes and :meth:`Pool.take` deducts the cards so later jobs
of the same cycle see them gone. :meth:`Pool.count_fitting_with` answers "would it fit if
these cards were freed?" for preemption, without changing the pool.

All or nothing: a gang gets ``nodes`` distinct nodes of one pool, each with
``cards_per_node`` free cards, or nothing. Costs: building is ``O(N log N)`` for ``N``
nodes; checking whether a pool can host a gang is a binary search; taking ``n`` nodes is
``O(n * pool size)`` at worst (list inserts). Quotas and time are not this module's
business.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from suanwang.domain.chips import accepts_chip
from suanwang.domain.ids import ChipFamily, ChipName, ClusterName, NodeId, RegionName
from suanwang.scheduler.decisions import Placement
from suanwang.scheduler.snapshot import NodeView, PendingJob

Slot = tuple[int, NodeId]
"""``(free cards, node id)``: sorting slots puts the best fit (fewest free) first."""
NO_NODES: frozenset[NodeId] = frozenset()


def _first_fitting(slots: list[Slot], cards_per_node: int) -> int:
    """Index of the first slot with at least ``cards_per_node`` free cards."""
    return bisect_left(slots, (cards_per_node,))


class PoolKey(NamedTuple):
    """What all nodes of a pool share. Field order is the deterministic tie-break.

    A named tuple rather than a dataclass: it is hashed on every lookup of a cycle.
    """

    cluster: ClusterName
    chip: ChipName
    region: RegionName
    family: ChipFamily
    simulated: bool


@dataclass(slots=True)
class Pool:
    """Free cards of one (cluster, chip) pair's schedulable nodes, for one cycle.

    Mutable on purpose and local to one :func:`~suanwang.scheduler.cycle` call.

    Attributes:
        key: The cluster, chip, region, family and simulated flag of every node here.
        slots: Every node as a :data:`Slot`, sorted best fit first.
        groups: The same slots split by network group, each list sorted.
        group_of: The network group of each node.
        free_of: Free cards of each node now.
        group_free_cards: Free cards per network group.
        order: ``(free cards, group)`` of every group, sorted: best fit first.
        totals_cards: Every node's ``cards_total``, sorted: what could ever fit.
        free_cards: Free cards over the whole pool (negatives counted as 0).
        version: Bumped on every change, for caches keyed on the pool's state.
        shared: The lists and maps above are still the copied pool's (:meth:`copy`).
        own_groups: The groups whose slot lists are this pool's own, once it has
            copied its maps (None: every group's, as for a pool built by :meth:`of`).
    """

    key: PoolKey
    slots: list[Slot] = field(default_factory=list)
    groups: dict[str, list[Slot]] = field(default_factory=dict)
    group_of: dict[NodeId, str] = field(default_factory=dict)
    free_of: dict[NodeId, int] = field(default_factory=dict)
    group_free_cards: dict[str, int] = field(default_factory=dict)
    order: list[tuple[int, str]] = field(default_factory=list)
    totals_cards: list[int] = field(default_factory=list)
    free_cards: int = 0
    version: int = 0
    shared: bool = False
    own_groups: set[str] | None = None

    @classmethod
    def of(cls, key: PoolKey, nodes: list[NodeView]) -> Pool:
        """A pool of ``nodes``, all of which share ``key``; every list sorted once."""
        pool = cls(key)
        groups, group_of, free_of = pool.groups, pool.group_of, pool.free_of
        for node in nodes:
            slot = (node.cards_free, node.id)
            group = node.network_group
            slots = groups.get(group)
            if slots is None:
                slots = groups[group] = []
            slots.append(slot)
            group_of[node.id] = group
            free_of[node.id] = node.cards_free
        pool.slots = sorted(zip(free_of.values(), free_of.keys(), strict=True))
        pool.totals_cards = sorted(node.cards_total for node in nodes)
        for group, slots in groups.items():
            slots.sort()
            pool.group_free_cards[group] = sum(max(free, 0) for free, _node in slots)
        pool.free_cards = sum(pool.group_free_cards.values())
        pool.order = sorted((free, group) for group, free in pool.group_free_cards.items())
        return pool

    def copy(self) -> Pool:
        """A working copy for one cycle: its free cards change apart from this pool's.

        Copy on write: the copy reads this pool's lists and maps until its first change
        (:meth:`set_free`), then copies the maps and, group by group, the slot lists it
        changes. This pool must not change while the copy is in use (the
        :class:`~.cache.CycleCache` changes its pools only between cycles)."""
        return Pool(
            self.key,
            self.slots,
            self.groups,
            self.group_of,
            self.free_of,
            self.group_free_cards,
            self.order,
            self.totals_cards,
            self.free_cards,
            shared=True,
        )

    def _own(self) -> None:
        """Stop sharing the copied pool's lists and maps (group lists: one at a time)."""
        self.slots = list(self.slots)
        self.groups = dict(self.groups)
        self.free_of = dict(self.free_of)
        self.group_free_cards = dict(self.group_free_cards)
        self.order = list(self.order)
        self.shared, self.own_groups = False, set()

    def _group_slots(self, group: str) -> list[Slot]:
        """The group's slot list, this pool's own (copied on its first change)."""
        owned = self.own_groups
        if owned is None or group in owned:
            return self.groups[group]
        owned.add(group)
        slots = self.groups[group] = list(self.groups[group])
        return slots

    def accepts(self, job: PendingJob) -> bool:
        """Whether the job's selector, simulated flag and pins admit this pool's nodes."""
        key = self.key
        return (
            key.simulated == job.simulated
            and accepts_chip(job.chips, key.chip, key.family)
            and (job.cluster is None or job.cluster == key.cluster)
            and (job.region is None or job.region == key.region)
        )

    @property
    def max_free(self) -> int:
        """The most free cards on any one node (-1 for an empty pool)."""
        return self.slots[-1][0] if self.slots else -1

    def count_fitting(self, cards_per_node: int, exclude: Collection[NodeId] = NO_NODES) -> int:
        """How many nodes (not in ``exclude``) have ``cards_per_node`` free cards now."""
        count = len(self.slots) - _first_fitting(self.slots, cards_per_node)
        if exclude:
            count -= sum(1 for n in exclude if self.free_of.get(n, -1) >= cards_per_node)
        return count

    def fits(self, cards_per_node: int, nodes: int, exclude: Collection[NodeId] = NO_NODES) -> bool:
        """Whether a gang of ``nodes`` x ``cards_per_node`` fits now."""
        if self.max_free < cards_per_node:
            return False
        return self.count_fitting(cards_per_node, exclude) >= nodes

    def count_capable(self, cards_per_node: int) -> int:
        """How many nodes have at least ``cards_per_node`` cards in total (free or not)."""
        return len(self.totals_cards) - bisect_left(self.totals_cards, cards_per_node)

    def count_fitting_with(
        self, cards_per_node: int, extra: Mapping[NodeId, int], exclude: Collection[NodeId]
    ) -> int:
        """How many nodes would fit ``cards_per_node`` if ``extra`` cards were freed."""
        count = self.count_fitting(cards_per_node, exclude)
        for node, add in extra.items():
            free = self.free_of.get(node)
            if free is not None and node not in exclude and free < cards_per_node <= free + add:
                count += 1
        return count

    def choose(
        self, cards_per_node: int, nodes: int, exclude: Collection[NodeId] = NO_NODES
    ) -> list[Slot] | None:
        """Pick ``nodes`` distinct nodes with ``cards_per_node`` free cards each, or None.

        One network group is preferred: among the groups that can host the whole gang,
        the one with the fewest free cards (best fit), ties by group name. If no group
        can, the gang spans as few groups as possible (largest first, ties by name).
        Within a group, nodes with the fewest free cards go first, ties by node id.
        Nodes in ``exclude`` are never chosen.
        """
        if not self.fits(cards_per_node, nodes, exclude):
            return None
        if not exclude:
            group = self._whole_group(cards_per_node, nodes)
            if group is not None:
                slots = self.groups[group]
                start = _first_fitting(slots, cards_per_node)
                return slots[start : start + nodes]
        excluded = Counter(
            self.group_of[n] for n in exclude if self.free_of.get(n, -1) >= cards_per_node
        )
        starts: dict[str, int] = {}
        fitting: dict[str, int] = {}
        for group, slots in self.groups.items():
            if slots and slots[-1][0] >= cards_per_node:
                start = starts[group] = _first_fitting(slots, cards_per_node)
                fitting[group] = len(slots) - start - excluded[group]
        whole = [g for g, count in fitting.items() if count >= nodes]
        if whole:
            group = min(whole, key=lambda g: (self.group_free_cards[g], g))
            return self._slice(group, starts[group], nodes, exclude)
        chosen: list[Slot] = []
        for group in sorted(fitting, key=lambda g: (-fitting[g], g)):
            chosen.extend(self._slice(group, starts[group], nodes - len(chosen), exclude))
            if len(chosen) == nodes:
                break
        return chosen

    def _whole_group(self, cards_per_node: int, nodes: int) -> str | None:
        """The best-fit group that hosts the whole gang, or None: the first in
        :attr:`order` from those with enough free cards at all."""
        order, groups = self.order, self.groups
        for index in range(bisect_left(order, (cards_per_node * nodes,)), len(order)):
            group = order[index][1]
            slots = groups[group]
            if len(slots) - _first_fitting(slots, cards_per_node) >= nodes:
                return group
        return None

    def _slice(self, group: str, start: int, count: int, exclude: Collection[NodeId]) -> list[Slot]:
        """Up to ``count`` slots of ``group`` from ``start`` on, skipping ``exclude``."""
        slots = self.groups[group]
        if not exclude:
            return slots[start : start + count]
        chosen: list[Slot] = []
        for slot in slots[start:]:
            if len(chosen) == count:
                break
            if slot[1] not in exclude:
                chosen.append(slot)
        return chosen

    def take(self, chosen: Iterable[Slot], cards_per_node: int) -> tuple[Placement, ...]:
        """Deduct ``cards_per_node`` cards from each chosen node; return the placements."""
        placements: list[Placement] = []
        for _free, node in chosen:
            placements.append(Placement(node=node, cards=cards_per_node))
            self.hold(node, cards_per_node)
        return tuple(placements)

    def hold(self, node: NodeId, cards: int) -> None:
        """Deduct ``cards`` free cards of ``node`` (an admission or a claim)."""
        if cards:
            self.set_free(node, self.free_of[node] - cards)

    def set_free(self, node: NodeId, now_free: int) -> None:
        """Set the free cards of ``node``, keeping every sorted list and total right."""
        free = self.free_of[node]
        cards = free - now_free
        if not cards:
            return
        if self.shared:
            self._own()
        group = self.group_of[node]
        for slots in (self.slots, self._group_slots(group)):
            del slots[bisect_left(slots, (free, node))]
            insort(slots, (free - cards, node))
        self.free_of[node] = free - cards
        freed_before, freed_after = max(free, 0), max(free - cards, 0)
        if freed_after != freed_before:
            group_free = self.group_free_cards[group]
            order = self.order
            del order[bisect_left(order, (group_free, group))]
            group_free += freed_after - freed_before
            insort(order, (group_free, group))
            self.group_free_cards[group] = group_free
            self.free_cards += freed_after - freed_before
        self.version += 1


def fits_free(pool: Pool, cards_per_node: int, nodes: int) -> bool:
    """``pool.fits(cards_per_node, nodes)`` with nothing excluded, inlined: the question
    a filling cycle asks of every allowed pool for every job it admits."""
    slots = pool.slots
    if (slots[-1][0] if slots else -1) < cards_per_node:
        return False
    return nodes == 1 or len(slots) - bisect_left(slots, (cards_per_node,)) >= nodes


def build_pools(nodes: Iterable[NodeView]) -> tuple[Pool, ...]:
    """Group the schedulable nodes by (cluster, chip), sorted by :class:`PoolKey`."""
    members: dict[tuple[ClusterName, ChipName, RegionName, ChipFamily, bool], list[NodeView]] = {}
    for node in nodes:
        if node.schedulable:
            key = (node.cluster, node.chip, node.region, node.family, node.simulated)
            group = members.get(key)
            if group is None:
                group = members[key] = []
            group.append(node)
    return tuple(Pool.of(PoolKey(*key), members[key]) for key in sorted(members))


def pick_pool(
    pools: Iterable[tuple[Pool, Collection[NodeId]]], cards_per_node: int, nodes: int
) -> Pool | None:
    """The pool that hosts the gang with the fewest free cards left (best fit), or None.

    Each pool comes with the nodes it may not use. Ties go to the smallest
    :class:`PoolKey` (cluster, then chip, ...).
    """
    best: Pool | None = None
    for pool, exclude in pools:
        if not pool.fits(cards_per_node, nodes, exclude):
            continue
        if best is None or (pool.free_cards, pool.key) < (best.free_cards, best.key):
            best = pool
    return best


def first_pool(
    pools: Iterable[tuple[Pool, Collection[NodeId]]], cards_per_node: int, nodes: int
) -> Pool | None:
    """The first pool (by :class:`PoolKey`) that hosts the gang now, or None."""
    fitting = [p for p, exclude in pools if p.fits(cards_per_node, nodes, exclude)]
    return min(fitting, key=lambda p: p.key) if fitting else None
