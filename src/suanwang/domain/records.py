"""Read models: plain records that repositories return and services pass around, and the
typed changes services ask stores to make to jobs and attempts (see :mod:`.changes`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from suanwang.domain.changes import UNCHANGED, Unchanged
from suanwang.domain.connections import Connection
from suanwang.domain.ids import NodeId
from suanwang.domain.jobs import AttemptState, JobSpec, JobState
from suanwang.domain.tenancy import QuotaSpec, Scope


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: str
    display_name: str
    created_at: float
    quota: dict[str, QuotaSpec] = field(default_factory=dict)
    cohort: str | None = None
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    prefix: str
    secret_hash: str
    tenant: str | None
    scope: Scope
    name: str
    created_by: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    def usable_at(self, now: float) -> bool:
        """Not revoked and not expired at ``now``."""
        expired = self.expires_at is not None and self.expires_at <= now
        return self.revoked_at is None and not expired


@dataclass(frozen=True, slots=True)
class NodeRecord:
    id: int
    cluster: str
    region: str
    simulated: bool
    name: str
    chip: str
    cards: int
    cards_used: int
    network_group: str
    state: str


@dataclass(frozen=True, slots=True)
class NodeShape:
    """How many nodes of one cluster have ``cards`` cards of ``chip``; of their cards, how
    many are held by active allocations; how many of those nodes are not ready."""

    cluster: str
    region: str
    simulated: bool
    chip: str
    cards: int
    count: int
    used: int = 0
    not_ready: int = 0

    @property
    def total_cards(self) -> int:
        return self.cards * self.count


def shapes_of(nodes: list[NodeRecord]) -> list[NodeShape]:
    """``nodes`` counted by cluster, region, kind, chip and card count."""
    sums: dict[tuple[str, str, bool, str, int], tuple[int, int, int]] = {}
    for n in nodes:
        key = (n.cluster, n.region, n.simulated, n.chip, n.cards)
        count, used, not_ready = sums.get(key, (0, 0, 0))
        sums[key] = (count + 1, used + n.cards_used, not_ready + (n.state != "ready"))
    return [NodeShape(*key, *values) for key, values in sorted(sums.items())]


@dataclass(frozen=True, slots=True)
class ClusterHealth:
    """What the last :meth:`~suanwang.ports.Backend.capacity` call said about a cluster."""

    healthy: bool
    reason: str
    checked_at: float


@dataclass(frozen=True, slots=True)
class ClusterRecord:
    name: str
    region: str
    kind: str
    backend: str
    description: str
    connection: Connection | None = None
    health: ClusterHealth | None = None
    """The last health check of the cluster's engine; None: never checked."""


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    tenant: str
    name: str
    state: JobState
    reason: str
    priority: int
    spec: JobSpec
    idempotency_key: str | None
    request_hash: str
    attempts: int
    cancel_requested: bool
    created_at: float
    updated_at: float
    version: int
    preempt_reason: str | None = None
    preempted_for: str | None = None
    """The job a stopping job stops for (set with ``preempt_reason`` by a preemption, its
    own id for a move; None once it has stopped): the scheduler keeps its cards promised
    to that job through the grace period."""
    hint_cluster: str | None = None
    """Placement hint left by a reallocation move: the cluster and chip the job should be
    admitted on next (:mod:`~suanwang.services.moves`); None: no hint."""
    hint_chip: str | None = None
    hint_cycles: int = 0
    """Admission cycles the hint is still honoured for; it is dropped at 0."""


@dataclass(frozen=True, slots=True)
class JobChange:
    """Fields of a job to set; the rest keep their values.

    A store applies it compare-and-set on the job's version. A caller that sets ``state``
    checks the move with :func:`~suanwang.domain.jobs.check_transition` first.
    """

    state: JobState | Unchanged = UNCHANGED
    reason: str | Unchanged = UNCHANGED
    attempts: int | Unchanged = UNCHANGED
    cancel_requested: bool | Unchanged = UNCHANGED
    preempt_reason: str | Unchanged | None = UNCHANGED
    preempted_for: str | Unchanged | None = UNCHANGED
    hint_cluster: str | Unchanged | None = UNCHANGED
    hint_chip: str | Unchanged | None = UNCHANGED
    hint_cycles: int | Unchanged = UNCHANGED


@dataclass(frozen=True, slots=True)
class NodeCards:
    """Cards of one node held by one attempt: ``node_id`` for the scheduler, ``node`` (the
    node's name) for backends."""

    node_id: NodeId
    node: str
    cards: int


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    id: int
    job: str
    number: int
    state: AttemptState
    cluster: str
    backend: str
    chip: str
    family: str
    cards: int
    placements: tuple[NodeCards, ...]
    handle: dict[str, Any]
    dispatched: bool
    exit_code: int | None
    reason: str
    admitted_at: float
    started_at: float | None
    ended_at: float | None
    last_checkpoint_at: float | None = None


@dataclass(frozen=True, slots=True)
class AttemptChange:
    """Fields of an attempt to set; the rest keep their values."""

    state: AttemptState | Unchanged = UNCHANGED
    dispatched: bool | Unchanged = UNCHANGED
    handle: dict[str, Any] | Unchanged = UNCHANGED
    exit_code: int | Unchanged | None = UNCHANGED
    reason: str | Unchanged = UNCHANGED
    started_at: float | Unchanged = UNCHANGED
    ended_at: float | Unchanged = UNCHANGED
    last_checkpoint_at: float | Unchanged = UNCHANGED


@dataclass(frozen=True, slots=True)
class JobEvent:
    at: float
    state: str
    reason: str
