"""Decisions a scheduling cycle returns. Nouns, not verbs: the caller acts on them."""

from __future__ import annotations

from dataclasses import dataclass

from suanwang.domain.ids import ChipFamily, ChipName, ClusterName, JobId, NodeId, RegionName


@dataclass(frozen=True, slots=True)
class Placement:
    """``cards`` cards of ``node`` for one job."""

    node: NodeId
    cards: int


@dataclass(frozen=True, slots=True)
class Admit:
    """Start ``job`` on ``placements`` (all in ``cluster``, all of chip ``chip``)."""

    job: JobId
    cluster: ClusterName
    chip: ChipName
    family: ChipFamily
    placements: tuple[Placement, ...]
    borrowing: bool = False
    """Admitted on quota borrowed from the cohort (reclaimable by preemption)."""
    expected_duration_s: float | None = None
    """Expected run time on the chosen chip, when the job's duration is known."""


@dataclass(frozen=True, slots=True)
class Pending:
    """``job`` stays queued this cycle, and why (shown to the user)."""

    job: JobId
    reason: str
    code: str = ""
    """Machine-readable kind of reason: quota, capacity, too_large, no_match, invalid, staging."""


@dataclass(frozen=True, slots=True)
class Preempt:
    """Stop running ``job`` to make room for ``for_job``; it requeues and resumes later."""

    job: JobId
    for_job: JobId
    reason: str
    lost_work_s: float = 0.0
    """Work since the victim's last checkpoint that the preemption throws away."""


@dataclass(frozen=True, slots=True)
class StageDataset:
    """Copy ``dataset`` to ``target_region`` before ``job`` starts there."""

    job: JobId
    dataset: str
    source_region: RegionName
    target_region: RegionName
    size_bytes: int
    expected_transfer_s: float


Decision = Admit | Pending | Preempt | StageDataset
