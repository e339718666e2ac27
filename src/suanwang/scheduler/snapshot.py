"""What the scheduler sees: nodes with free cards, pending jobs, quotas and usage.

A snapshot is a frozen value. Building one from the database is the control plane's job
(``services/control.py``); building one from a trace is the simulator's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from suanwang.domain.ids import (
    ChipFamily,
    ChipName,
    ClusterName,
    JobId,
    NodeId,
    RegionName,
    TenantId,
)
from suanwang.scheduler.decisions import Placement


@dataclass(frozen=True, slots=True)
class NodeView:
    """One schedulable node and how many of its cards are free now."""

    id: NodeId
    name: str
    cluster: ClusterName
    region: RegionName
    simulated: bool
    chip: ChipName
    family: ChipFamily
    cards_total: int
    cards_free: int
    network_group: str = ""
    schedulable: bool = True


@dataclass(frozen=True, slots=True)
class PendingJob:
    """A queued job waiting for a placement.

    ``chips`` are the accepted chip selectors (chip names, families, or ``any``), in
    canonical form (:func:`~suanwang.domain.chips.accepted_selectors`): the job may run on
    a pool whose chip any of them matches, at its ``speed`` there; quota is charged to the
    family of the pool it is admitted on. ``seq`` orders jobs of equal priority (smaller
    first: submission order). ``simulated`` jobs go only to simulated
    clusters, others only to real ones.
    """

    id: JobId
    tenant: TenantId
    priority: int
    seq: int
    chips: tuple[str, ...]
    cards_per_node: int
    nodes: int
    simulated: bool
    cluster: ClusterName | None = None
    region: RegionName | None = None
    kind: str = ""
    """Job kind, the row key of a throughput matrix (e.g. ``ResNet-50 (batch size 64)``)."""
    duration_s: float | None = None
    """Estimated run time on the reference chip (speed 1.0); None when unknown."""
    max_runtime_s: float | None = None
    """Hard run-time limit (backfill plans with min(duration, max runtime) on the chosen chip)."""
    speed: Mapping[ChipName, float] = field(default_factory=dict)
    """Relative throughput of this job per chip type (1.0 = reference); overrides
    ``Snapshot.chip_speed`` for the chips it names."""
    preemptible: bool = True
    checkpoint_interval_s: float | None = None
    dataset: DatasetRef | None = None
    submitted_at: float = 0.0
    """When the job was submitted (for age and queueing delay)."""
    staging_to: RegionName | None = None
    """A dataset transfer to this region is under way for the job (decided earlier)."""
    serving: bool = False
    """A production inference replica: it may preempt preemptible, lower-priority work
    that is not serving, of any tenant (:mod:`~.preempt`)."""


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """A job's input data: its size and the regions that hold a full replica."""

    name: str
    size_bytes: int
    replicas: tuple[RegionName, ...]


@dataclass(frozen=True, slots=True)
class RunningJob:
    """Admitted or running work that holds cards: what preemption and backfill reason about."""

    id: JobId
    tenant: TenantId
    priority: int
    cluster: ClusterName
    chip: ChipName
    family: ChipFamily
    placements: tuple[Placement, ...]
    started_at: float
    expected_end: float | None = None
    """When it should end (start + duration estimate or max runtime); None when unknown."""
    preemptible: bool = True
    last_checkpoint_at: float | None = None
    checkpoint_interval_s: float | None = None
    preempted_for: JobId | None = None
    """A ``Preempt`` for this job was issued in favour of that pending job and it has not
    stopped yet: its cards are promised to that job and it is never chosen again."""
    request: PendingJob | None = None
    """The job as it was requested (accepted chips, speeds, gang shape, pins), for
    reallocation (:mod:`~suanwang.scheduler.realloc`); None: it is never moved."""
    serving: bool = False
    """A production inference replica: never a victim of a preemption (unless already
    stopping) and never moved by reallocation."""


@dataclass(frozen=True, slots=True)
class FlavorQuota:
    """A tenant's quota for one chip family (Kueue's flavor quota), in cards.

    ``nominal`` cards are guaranteed; up to ``borrowing_limit`` more may be borrowed from
    the cohort's unused nominal quota (None = no limit); at most ``lending_limit`` of this
    tenant's unused nominal may be lent to others (None = all of it).
    """

    nominal: int
    borrowing_limit: int | None = 0
    lending_limit: int | None = None


@dataclass(frozen=True, slots=True)
class TenantQueue:
    """A tenant's queue (Kueue's ClusterQueue): quotas per chip family, cohort, weight.

    A family absent from ``quotas`` may not be used at all by a tenant that has a queue.
    """

    tenant: TenantId
    quotas: Mapping[ChipFamily, FlavorQuota]
    cohort: str | None = None
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class WanLinkView:
    """Available bandwidth and latency between two regions."""

    region_a: RegionName
    region_b: RegionName
    bandwidth_gbps: float
    rtt_ms: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one scheduling cycle needs.

    ``quotas[tenant][family]`` is the most cards of that family the tenant may hold at
    once; a family absent from a tenant's map is unlimited. ``usage[tenant][family]`` is
    what the tenant holds now (admitted or running work).
    """

    now: float
    nodes: tuple[NodeView, ...]
    pending: tuple[PendingJob, ...]
    quotas: Mapping[TenantId, Mapping[ChipFamily, int]] = field(default_factory=dict)
    usage: Mapping[TenantId, Mapping[ChipFamily, int]] = field(default_factory=dict)
    running: tuple[RunningJob, ...] = ()
    queues: Mapping[TenantId, TenantQueue] = field(default_factory=dict)
    """Kueue-style queues; a tenant with a queue is governed by it instead of ``quotas``."""
    links: tuple[WanLinkView, ...] = ()
    chip_speed: Mapping[ChipName, float] = field(default_factory=dict)
    """Default relative speed per chip (from catalogue TFLOPS); 1.0 when absent."""
    chip_units: Mapping[ChipName, float] = field(default_factory=dict)
    """Normalised compute units per card of each chip (vendor-neutral capacity unit)."""
