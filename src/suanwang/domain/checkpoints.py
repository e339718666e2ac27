"""The checkpoint contract between the platform and a job, and what preemption cost it.

What a job is told (environment) and what it may answer (exit code):

- ``SUANWANG_CHECKPOINT_DIR``: a directory of its own, kept across its attempts, that
  nobody else can read or write (on the local cluster ``/job/checkpoints``);
- ``SUANWANG_CHECKPOINT_FILE``: a mark to touch after each save (its modification time is
  the job's last checkpoint, read by the control plane);
- ``SUANWANG_RESUME_COUNT``: how many earlier attempts of the job were stopped by a
  preemption or a move (or asked to be resumed) and requeued: 0 on a first start;
- ``SUANWANG_PREEMPTION_GRACE_S``: seconds between SIGTERM and SIGKILL when it is stopped;
- exit code :data:`RESUME_EXIT_CODE` (75, ``EX_TEMPFAIL``): "checkpointed, please resume":
  the job is requeued without using a retry, at most :data:`MAX_RESUMES` times in all.

A preempted attempt loses the work it did after its last checkpoint
(:func:`attempt_lost_work_s`); :func:`resume_summary` adds that up over a job's attempts.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from suanwang.domain.errors import ValidationError
from suanwang.domain.jobs import AttemptState
from suanwang.domain.records import AttemptRecord

CHECKPOINT_DIR = "checkpoints"
"""The job's checkpoint directory, inside its own directory (``/job/checkpoints``)."""
RESUME_EXIT_CODE = 75
"""``EX_TEMPFAIL`` from sysexits.h: the job saved its state and asks to run again."""
MAX_RESUMES = 100
"""Requeues without a retry a job may have (preemptions, moves, exit 75) before an exit 75
counts as a failure: a job cannot keep itself queued forever."""
MAX_PREEMPTION_GRACE_S = 3600.0
"""The most any operator may allow between SIGTERM and SIGKILL."""
DEFAULT_MAX_PREEMPTION_GRACE_S = 300.0
"""The operator's bound on ``preemption_grace_s`` unless configured
(``SUANWANG_MAX_PREEMPTION_GRACE_S``)."""


def check_preemption_grace(grace_s: float | None, operator_max_s: float) -> float | None:
    """A job's requested grace period, within ``[0, operator_max_s]``."""
    if grace_s is not None and not 0 <= grace_s <= operator_max_s:
        raise ValidationError(
            f"preemption_grace_s is {grace_s:g}, out of range",
            field="preemption_grace_s",
            hint=f"0 to {operator_max_s:g} seconds (SUANWANG_MAX_PREEMPTION_GRACE_S)",
        )
    return grace_s


def attempt_lost_work_s(attempt: AttemptRecord) -> float:
    """Seconds of work a preempted attempt threw away: from its last checkpoint (or its
    start) to its end; 0 for an attempt that was not preempted or never started."""
    if attempt.state is not AttemptState.PREEMPTED or attempt.started_at is None:
        return 0.0
    if attempt.ended_at is None:
        return 0.0
    saved = attempt.started_at
    if attempt.last_checkpoint_at is not None:
        saved = max(saved, attempt.last_checkpoint_at)
    return max(0.0, attempt.ended_at - saved)


@dataclass(frozen=True, slots=True)
class ResumeSummary:
    """How often a job was stopped and requeued, and the work those stops threw away."""

    resumes: int
    lost_work_s: float
    lost_card_s: float


def resume_summary(attempts: Iterable[AttemptRecord]) -> ResumeSummary:
    """The :class:`ResumeSummary` of a job's attempts."""
    resumes, lost, lost_cards = 0, 0.0, 0.0
    for attempt in attempts:
        if attempt.state is AttemptState.PREEMPTED:
            resumes += 1
            lost_s = attempt_lost_work_s(attempt)
            lost += lost_s
            lost_cards += lost_s * attempt.cards
    return ResumeSummary(resumes, lost, lost_cards)
