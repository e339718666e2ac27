"""Deployments and replicas as records, which engine runs on which chip, and the restart policy.

A deployment wants ``replicas`` copies of a model; replica ``n`` (0-based) is wanted while
``n < replicas`` and the deployment is active. Each wanted replica always has one job; when
that job ends the replica gets a new job (a restart) unless it failed fast too often:

- a run that ended less than :data:`FAST_FAILURE_S` after it started is a *fast failure*;
- after :data:`MAX_FAST_FAILURES` fast failures in a row the replica is stopped with the reason;
- a run that lived longer resets the count (an engine that served for an hour and then
  crashed is restarted, not given up on).

Pure: no I/O; times are passed in.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from suanwang.domain.autoscaling import AutoscaleSpec, ScaleMemory
from suanwang.domain.changes import UNCHANGED, Unchanged
from suanwang.domain.errors import ValidationError
from suanwang.domain.jobs import JobState
from suanwang.domain.serving import MAX_REPLICAS, ReplicaState

FAST_FAILURE_S = 60.0
MAX_FAST_FAILURES = 5
STARTUP_TIMEOUT_S = 600.0
"""A replica whose engine never answers its health check within this is restarted."""
UNHEALTHY_AFTER = 3
"""Failed health checks in a row before a ready replica is taken out of routing."""
PUBLIC_TENANT = "maas-public"
"""The system tenant that owns the jobs of public (operator) deployments."""

ENGINE_FAMILIES: dict[str, frozenset[str]] = {
    "llama.cpp": frozenset({"cpu"}),
    "sentence-transformers": frozenset({"cpu"}),
    "vllm": frozenset({"nvidia", "metax", "hygon-dcu"}),
    "vllm-ascend": frozenset({"ascend"}),
    "mindie": frozenset({"ascend"}),
    "sglang": frozenset({"nvidia", "hygon-dcu"}),
    "lmdeploy": frozenset({"nvidia", "ascend"}),
    "infinity": frozenset({"nvidia"}),
}
"""Chip families each engine runs on (what its images and builds support)."""

DEPLOYMENT_ID = re.compile(r"^dep-[0-9a-f]{4,32}$")


class DeploymentState(enum.StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    id: str
    tenant: str | None
    """``None``: public, run by the operator for every tenant."""
    model: str
    cluster: str
    engine: str
    replicas: int
    state: DeploymentState
    chip: str
    simulated: bool
    created_at: float
    updated_at: float
    idempotency_key: str | None = None
    autoscale: AutoscaleSpec | None = None
    """``None``: a fixed replica count; else the autoscaler sets ``replicas`` in its range."""
    scale_memory: ScaleMemory = field(default_factory=ScaleMemory)
    """What the autoscaler carries from one decision to the next."""


@dataclass(frozen=True, slots=True)
class ReplicaRecord:
    id: str
    deployment: str
    number: int
    job: str | None
    state: ReplicaState
    base_url: str
    simulated: bool
    chip: str
    reason: str
    failures: int
    """Fast failures in a row (see :data:`FAST_FAILURE_S`)."""
    restarts: int
    port: int | None
    created_at: float
    ready_at: float | None
    last_health_at: float | None
    drain_started_at: float | None = None
    """Set while ``draining``: when the replica was taken out of routing."""


@dataclass(frozen=True, slots=True)
class DeploymentChange:
    """Fields of a deployment to set; the rest keep their values (see :mod:`.changes`)."""

    replicas: int | Unchanged = UNCHANGED
    state: DeploymentState | Unchanged = UNCHANGED
    autoscale: AutoscaleSpec | Unchanged | None = UNCHANGED
    scale_memory: ScaleMemory | Unchanged = UNCHANGED


@dataclass(frozen=True, slots=True)
class ReplicaChange:
    """Fields of a replica to set; the rest keep their values (see :mod:`.changes`)."""

    job: str | Unchanged | None = UNCHANGED
    state: ReplicaState | Unchanged = UNCHANGED
    reason: str | Unchanged = UNCHANGED
    base_url: str | Unchanged = UNCHANGED
    failures: int | Unchanged = UNCHANGED
    restarts: int | Unchanged = UNCHANGED
    port: int | Unchanged | None = UNCHANGED
    ready_at: float | Unchanged | None = UNCHANGED
    last_health_at: float | Unchanged | None = UNCHANGED
    drain_started_at: float | Unchanged | None = UNCHANGED


def check_replicas(n: int) -> int:
    """A replica count in ``[0, MAX_REPLICAS]``."""
    if not 0 <= n <= MAX_REPLICAS:
        raise ValidationError(
            f"replicas is {n}, out of range",
            field="replicas",
            hint=f"0 to {MAX_REPLICAS}; 0 keeps the deployment but stops every replica",
        )
    return n


def check_deployment_id(deployment_id: str) -> str:
    if not DEPLOYMENT_ID.fullmatch(deployment_id):
        raise ValidationError(
            f"invalid deployment id {deployment_id!r}",
            field="deployment_id",
            hint="ids look like dep-3f9c1a; see `suanwang deployments list`",
        )
    return deployment_id


def engine_runs_on(engine: str, family: str) -> bool:
    """Whether ``engine`` has a build for chip ``family``."""
    return family in ENGINE_FAMILIES.get(engine, frozenset())


@dataclass(frozen=True, slots=True)
class Restart:
    """What to do with a wanted replica whose job ended."""

    give_up: bool
    failures: int
    reason: str


def after_run(failures: int, job_state: JobState, job_reason: str, ran_s: float | None) -> Restart:
    """The restart policy: restart, or give up after too many fast failures in a row.

    ``ran_s`` is how long the last run lived (``None`` if it never started).
    """
    ok_end = job_state is JobState.SUCCEEDED
    fast = not ok_end and (ran_s is None or ran_s < FAST_FAILURE_S)
    count = failures + 1 if fast else 0
    if count >= MAX_FAST_FAILURES:
        return Restart(
            True,
            count,
            f"gave up after {count} failures within {FAST_FAILURE_S:.0f} s of start; "
            f"last: {job_reason}",
        )
    what = "ended" if ok_end else f"failed ({job_reason})"
    return Restart(False, count, f"engine {what}; restart {count or 1}")


def live_state(current: ReplicaState, job_state: JobState) -> ReplicaState:
    """The replica state implied by its (non-terminal) job's state."""
    if job_state is JobState.RUNNING:
        return (
            current
            if current in (ReplicaState.READY, ReplicaState.UNHEALTHY)
            else (ReplicaState.STARTING)
        )
    return ReplicaState.PENDING


def after_probe(current: ReplicaState, healthy: bool, misses: int = 1) -> ReplicaState:
    """The replica state after a health check; ``misses`` failed checks in a row so far.

    One answer makes a replica ready; it becomes unhealthy after :data:`UNHEALTHY_AFTER`
    failed checks in a row (one slow answer from a busy engine is not an outage)."""
    if healthy:
        return ReplicaState.READY
    if current is ReplicaState.READY and misses >= UNHEALTHY_AFTER:
        return ReplicaState.UNHEALTHY
    return current
