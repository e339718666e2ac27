"""Data awareness: how long a job's dataset takes to reach a region.

A job's :class:`~.snapshot.DatasetRef` lists the regions holding a full replica. Running
in such a region costs nothing extra. Running elsewhere costs a transfer from the best
replica region with a WAN link to the target::

    transfer_s = size_bytes * 8 / (bandwidth_gbps * 1e9) + rtt_ms / 1000

A region with no replica and no link from one is not eligible for the job. Links are
undirected; when two regions have several links the fastest for the dataset wins.

Not here: deciding to stage (``placement.py``), moving bytes (``suanwang.transfer``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from suanwang.domain.ids import RegionName
from suanwang.scheduler.snapshot import DatasetRef, WanLinkView


@dataclass(frozen=True, slots=True)
class Transfer:
    """The cheapest way to get a dataset into a region: from ``source``, in ``seconds``
    (0 and ``source == target`` when a replica is there already)."""

    source: RegionName
    seconds: float


def link_transfer_s(size_bytes: int, link: WanLinkView) -> float:
    """Seconds to move ``size_bytes`` over ``link`` (serialisation plus one RTT)."""
    if link.bandwidth_gbps <= 0:
        return float("inf")
    return size_bytes * 8 / (link.bandwidth_gbps * 1e9) + link.rtt_ms / 1000


@dataclass(slots=True)
class DataMap:
    """The WAN links of a snapshot, by region pair, with transfers cached per cycle."""

    links: dict[tuple[RegionName, RegionName], list[WanLinkView]] = field(default_factory=dict)
    _cache: dict[tuple[str, int, tuple[RegionName, ...], RegionName], Transfer | None] = field(
        default_factory=dict
    )

    @classmethod
    def of(cls, links: Iterable[WanLinkView]) -> DataMap:
        """Index ``links`` by both orders of their region pair."""
        data = cls()
        for link in links:
            for pair in ((link.region_a, link.region_b), (link.region_b, link.region_a)):
                data.links.setdefault(pair, []).append(link)
        return data

    def transfer(self, dataset: DatasetRef, target: RegionName) -> Transfer | None:
        """The cheapest transfer of ``dataset`` to ``target``, or None when impossible."""
        key = (dataset.name, dataset.size_bytes, dataset.replicas, target)
        if key not in self._cache:
            self._cache[key] = self._best(dataset, target)
        return self._cache[key]

    def _best(self, dataset: DatasetRef, target: RegionName) -> Transfer | None:
        if target in dataset.replicas:
            return Transfer(target, 0.0)
        best: Transfer | None = None
        for source in sorted(dataset.replicas):
            for link in self.links.get((source, target), ()):
                seconds = link_transfer_s(dataset.size_bytes, link)
                if seconds != float("inf") and (best is None or seconds < best.seconds):
                    best = Transfer(source, seconds)
        return best
