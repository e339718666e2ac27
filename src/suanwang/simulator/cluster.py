"""The simulated cluster's mutable state: free cards, usage, datasets and transfers.

:class:`ClusterState` holds every node's :class:`~suanwang.scheduler.snapshot.NodeView`
(replaced, never mutated, when its free cards change), the cards each tenant holds per
chip family, the cards busy per chip integrated over time, and where each dataset has a
replica. Decisions are checked here before they change anything. The event loop is in
:mod:`suanwang.simulator.engine`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from suanwang.domain.chips import accepts_chip
from suanwang.domain.fleet import WanLinkSpec
from suanwang.domain.ids import ChipFamily, ChipName, JobId, RegionName, TenantId
from suanwang.scheduler.decisions import Admit
from suanwang.scheduler.snapshot import NodeView, PendingJob
from suanwang.simulator.errors import InvariantViolation, SimulationError
from suanwang.simulator.fleet import SimFleet
from suanwang.simulator.state import Attempt, JobState, SimJob, pending_view
from suanwang.simulator.trace import DatasetSpec

PushStaged = Callable[[float, str, RegionName], None]
"""Schedules the end of a transfer: (time, dataset, target region)."""


class ClusterState:
    """Nodes, usage and data of a simulated fleet; changed only through its methods."""

    def __init__(self, fleet: SimFleet) -> None:
        """Start with every node empty and every dataset only at its home region."""
        self.nodes: list[NodeView] = fleet.node_views()
        self.usage: dict[TenantId, dict[ChipFamily, int]] = {}
        self.busy: dict[ChipName, int] = dict.fromkeys(fleet.cards_by_chip(), 0)
        self.allocated_card_s: dict[ChipName, float] = dict.fromkeys(self.busy, 0.0)
        self.last_s = 0.0
        self.links = {frozenset((w.region_a, w.region_b)): w for w in fleet.spec.wan_links}
        self.replicas: dict[str, set[RegionName]] = {}
        self.in_flight: dict[tuple[str, RegionName], float] = {}
        """When each transfer under way, by (dataset, target region), is done."""
        self.dataset_jobs: dict[str, dict[JobId, SimJob]] = {}
        self.bytes_staged = 0
        self.transfers = 0

    def advance(self, now: float) -> None:
        """Move the clock: add the cards busy since the last event to the integral."""
        elapsed = now - self.last_s
        if elapsed > 0:
            for chip, cards in self.busy.items():
                if cards:
                    self.allocated_card_s[chip] += cards * elapsed
        self.last_s = now

    def usage_copy(self) -> dict[TenantId, dict[ChipFamily, int]]:
        """Cards held per tenant and family, as a fresh mapping for a snapshot."""
        return {tenant: dict(held) for tenant, held in self.usage.items()}

    def pending_view(self, job: SimJob) -> PendingJob:
        """The job as a snapshot's pending job, with its dataset's current replicas."""
        return pending_view(job, self.replicas)

    def check_gang(self, job: SimJob, admit: Admit) -> list[NodeView]:
        """The nodes of ``admit``, or InvariantViolation if it breaks a rule."""
        spec = job.spec
        where = f"admission of job {spec.job_id}"
        if len(admit.placements) != spec.nodes:
            raise InvariantViolation(f"{where}: {len(admit.placements)} of {spec.nodes} nodes")
        if len({p.node for p in admit.placements}) != spec.nodes:
            raise InvariantViolation(f"{where}: a node appears twice")
        if not accepts_chip(job.chips, admit.chip, admit.family):
            raise InvariantViolation(f"{where}: chip {admit.chip} not accepted")
        nodes = []
        for placement in admit.placements:
            node = self.nodes[placement.node]
            if placement.cards != spec.cards:
                raise InvariantViolation(f"{where}: {placement.cards} cards on a node")
            if node.cluster != admit.cluster or node.chip != admit.chip:
                raise InvariantViolation(f"{where}: node {node.name} is not {admit.chip}")
            if node.cards_free < spec.cards:
                raise InvariantViolation(f"{where}: node {node.name} over-allocated")
            nodes.append(node)
        return nodes

    def allocate(self, job: SimJob, attempt: Attempt) -> None:
        """Take the attempt's cards from its nodes and charge its tenant."""
        self._move(job, attempt, -1)

    def release(self, job: SimJob, attempt: Attempt) -> None:
        """Give the attempt's cards back."""
        self._move(job, attempt, +1)

    def _move(self, job: SimJob, attempt: Attempt, sign: int) -> None:
        for placement in attempt.placements:
            node = self.nodes[placement.node]
            self.nodes[placement.node] = NodeView(
                node.id,
                node.name,
                node.cluster,
                node.region,
                node.simulated,
                node.chip,
                node.family,
                node.cards_total,
                node.cards_free + sign * placement.cards,
                node.network_group,
                node.schedulable,
            )
        held = self.usage.setdefault(job.spec.tenant, {})
        held[attempt.family] = held.get(attempt.family, 0) - sign * attempt.cards
        self.busy[attempt.chip] -= sign * attempt.cards

    def add_datasets(self, datasets: Iterable[DatasetSpec]) -> None:
        """Give every dataset a replica at its home region."""
        for dataset in datasets:
            self.replicas.setdefault(dataset.name, {dataset.home})

    def watch_dataset(self, job: SimJob) -> None:
        """Track a submitted job whose view shows its dataset's replicas."""
        if job.spec.dataset is not None:
            self.dataset_jobs.setdefault(job.spec.dataset.name, {})[job.spec.job_id] = job

    def unwatch_dataset(self, job: SimJob) -> None:
        """Stop tracking a finished job."""
        if job.spec.dataset is not None:
            self.dataset_jobs[job.spec.dataset.name].pop(job.spec.job_id, None)

    def data_ready_at(self, job: SimJob, region: RegionName, now: float, push: PushStaged) -> float:
        """When the job's dataset is in ``region``; starts the transfer if none is under way."""
        dataset = job.spec.dataset
        if dataset is None or region in self.replicas[dataset.name]:
            return now
        done_at = self.in_flight.get((dataset.name, region))
        if done_at is None:
            held = sorted(self.replicas[dataset.name])
            linked = [r for r in held if frozenset((r, region)) in self.links] or held
            source = min(linked, key=lambda r: (self._seconds(dataset, r, region), r))
            done_at = self._start(dataset, source, region, now, push)
        return done_at

    def stage(
        self, job: SimJob, source: RegionName, target: RegionName, now: float, push: PushStaged
    ) -> bool:
        """Copy the job's dataset from ``source`` to ``target``; True if a transfer started."""
        dataset = job.spec.dataset
        if dataset is None:
            raise InvariantViolation(f"the policy staged data for job {job.spec.job_id}")
        if target in self.replicas[dataset.name]:
            return False
        if source not in self.replicas[dataset.name]:
            raise InvariantViolation(f"staging {dataset.name} from {source}: no replica there")
        started = (dataset.name, target) not in self.in_flight
        if started:
            self._start(dataset, source, target, now, push)
        job.staging_to = target
        return started

    def _start(
        self,
        dataset: DatasetSpec,
        source: RegionName,
        target: RegionName,
        now: float,
        push: PushStaged,
    ) -> float:
        """Start a transfer; return when it is done."""
        done_at = now + self._seconds(dataset, source, target)
        self.in_flight[(dataset.name, target)] = done_at
        self.bytes_staged += dataset.size_bytes
        self.transfers += 1
        push(done_at, dataset.name, target)
        return done_at

    def _seconds(self, dataset: DatasetSpec, source: RegionName, target: RegionName) -> float:
        """Transfer time over the direct WAN link: size / bandwidth + one round trip."""
        link: WanLinkSpec | None = self.links.get(frozenset((source, target)))
        if link is None:
            raise SimulationError(
                f"dataset {dataset.name!r} must go from {source} to {target}, "
                "but no WAN link joins them",
                field="fleet.wan_links",
                hint="add a WAN link between the regions to the fleet file",
            )
        return dataset.size_bytes * 8 / (link.bandwidth_gbps * 1e9) + link.rtt_ms / 1000

    def finish_transfer(self, dataset: str, region: RegionName) -> list[SimJob]:
        """The dataset now has a replica in ``region``; return the pending jobs that use it
        (their views need refreshing), no longer staging to ``region``."""
        self.in_flight.pop((dataset, region), None)
        self.replicas[dataset].add(region)
        waiting = [
            job
            for job in self.dataset_jobs.get(dataset, {}).values()
            if job.state is JobState.PENDING
        ]
        for job in waiting:
            if job.staging_to == region:
                job.staging_to = None
        return waiting
