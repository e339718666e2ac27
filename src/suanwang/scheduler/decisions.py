"""Decisions a scheduling cycle returns. Nouns, not verbs: the caller acts on them."""

from __future__ import annotations

from dataclasses import dataclass

from suanwang.domain.ids import ChipFamily, ChipName, ClusterName, JobId, NodeId


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


@dataclass(frozen=True, slots=True)
class Pending:
    """``job`` stays queued this cycle, and why (shown to the user)."""

    job: JobId
    reason: str


Decision = Admit | Pending
