"""Jobs: what a tenant asks to run, and the states it goes through.

    queued ─► admitted ─► running ─► succeeded | failed | cancelled
       ▲          │           │
       └──────────┴───────────┴──── preempted / lost (requeued by retry policy)

A job may be cancelled from any non-terminal state. Each time it is admitted, a new
*attempt* starts; attempts are numbered from 1 and never reused.

A :class:`JobSpec` is stored and shown as the plain dict of :func:`spec_to_dict`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from suanwang.domain.chips import MAX_ACCEPTED_CHIPS, accepted_selectors
from suanwang.domain.datasets import check_dataset_name
from suanwang.domain.errors import Conflict, ValidationError
from suanwang.domain.fleet import MAX_CARDS_PER_NODE
from suanwang.domain.workloads import GangStrategy, JobNetwork, Workload, job_area_parts

MAX_PRIORITY = 1000
MAX_NODES = 4096
MAX_RETRIES = 10
MAX_COMMAND_ARGS = 1024
MAX_ENV_VARS = 1024
MAX_RUNTIME_S = 30 * 24 * 3600
MAX_KIND_LEN = 200
MAX_SPEED = 100.0


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""NUL and the other control characters: none belongs in a name or a path."""
_NUL_HINT = "exec(2) ends a string at NUL; remove the byte (\\u0000 in JSON)"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    ADMITTED = "admitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE = frozenset({JobState.ADMITTED, JobState.RUNNING})

_ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.ADMITTED, JobState.CANCELLED, JobState.FAILED}),
    JobState.ADMITTED: frozenset(
        {
            JobState.RUNNING,
            JobState.QUEUED,
            JobState.CANCELLED,
            JobState.FAILED,
            JobState.SUCCEEDED,
            JobState.PREEMPTED,
        }
    ),
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.PREEMPTED,
            JobState.QUEUED,
        }
    ),
    JobState.PREEMPTED: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def check_transition(current: JobState, target: JobState) -> None:
    """Raise Conflict unless ``current -> target`` is a legal move."""
    if target not in _ALLOWED[current]:
        raise Conflict(
            f"a {current} job cannot become {target}",
            field="state",
            hint="terminal jobs never change; submit a new job instead",
        )


class AttemptState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"
    LOST = "lost"

    @property
    def ended(self) -> bool:
        return self not in (AttemptState.STARTING, AttemptState.RUNNING)


@dataclass(frozen=True, slots=True)
class Resources:
    """What one job needs: ``nodes`` nodes with ``cards_per_node`` cards of a chip selector,
    or of any of several (``chips``; build those with :func:`resources_accepting`)."""

    chip: str = "any"
    """The chip selector (a chip, a family or ``any``); the first of ``chips`` if set."""
    cards_per_node: int = 1
    nodes: int = 1
    cluster: str | None = None
    region: str | None = None
    chips: tuple[str, ...] = ()
    """Two or more accepted selectors in canonical form, ``chip`` first; empty when the job
    accepts only ``chip``. All cards of one attempt are of one chip type; quota is charged
    to the family of the chip it is admitted on."""

    @property
    def total_cards(self) -> int:
        return self.cards_per_node * self.nodes

    @property
    def accepted(self) -> tuple[str, ...]:
        """Every accepted chip selector (``(chip,)`` for a job that names one)."""
        return self.chips or (self.chip,)


def resources_accepting(
    selectors: Sequence[str],
    cards_per_node: int = 1,
    nodes: int = 1,
    cluster: str | None = None,
    region: str | None = None,
) -> Resources:
    """Resources accepting any of ``selectors`` (made canonical; one selector: ``chip`` alone)."""
    chips = accepted_selectors(selectors) or ("any",)
    several = chips if len(chips) > 1 else ()
    return Resources(chips[0], cards_per_node, nodes, cluster, region, several)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job as submitted. ``simulate_duration_s`` marks a job for simulated clusters only."""

    name: str
    command: tuple[str, ...]
    resources: Resources = field(default_factory=Resources)
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    priority: int = 0
    max_runtime_s: int | None = None
    retries: int = 0
    simulate_duration_s: float | None = None
    expected_duration_s: float | None = None
    """The submitter's run-time estimate (lets the job backfill; never a limit)."""
    checkpoint_interval_s: float | None = None
    """How often the job checkpoints; preemption prefers victims that lose the least."""
    preemptible: bool = True
    kind: str | None = None
    """The workload's kind (e.g. ``llama-7b-finetune``): jobs of one kind share learned speeds."""
    speed: tuple[tuple[str, float], ...] = ()
    """Relative speed per chip name (1.0 = the reference chip; 0 = cannot run there)."""
    priority_class: str | None = None
    """A named class (``domain/priorities.py``) that sets ``priority`` and may forbid preemption."""
    workload: Workload = Workload.TENANT_JOB
    """Set by the platform for its own engines (replicas); never taken from a request."""
    network: JobNetwork = JobNetwork.NONE
    """What the job reaches: nothing, or the gateway only (engines keep the host's)."""
    gang: GangStrategy = GangStrategy.SPREAD
    """How an engine lays out the job's nodes (multi-node jobs on Ray: spread or pack)."""
    preemption_grace_s: float | None = None
    """Seconds between SIGTERM and SIGKILL when the job is stopped (time to checkpoint);
    None: the cluster's default. Bounded by the operator (``domain/checkpoints.py``)."""
    dataset: str | None = None
    """The name of one of the tenant's ready datasets: the job sees it read-only at
    ``/data/input`` (``$SUANWANG_DATASET_DIR``) and runs where a replica is."""
    output_dataset: str | None = None
    """On success, ``output_path`` of the job's directory becomes this new dataset of the
    tenant, in the region the job ran (services/job_outputs.py)."""
    output_path: str | None = None
    """Below ``/job`` (default ``output``); only with ``output_dataset``."""

    @property
    def simulated(self) -> bool:
        return self.simulate_duration_s is not None


def spec_to_dict(spec: JobSpec) -> dict[str, Any]:
    """A JSON-ready form of a spec (the stored shape)."""
    data = asdict(spec)
    data["command"] = list(spec.command)
    data["env"] = dict(spec.env)
    # Left out when unset, so specs stored before these fields existed hash the same.
    for optional in ("kind", "speed", "priority_class"):
        if not data[optional]:
            del data[optional]
    if spec.preemption_grace_s is None:
        del data["preemption_grace_s"]
    for unset in ("dataset", "output_dataset", "output_path"):
        if data[unset] is None:
            del data[unset]
    if spec.resources.chips:
        data["resources"]["chips"] = list(spec.resources.chips)
    else:
        del data["resources"]["chips"]
    if spec.speed:
        data["speed"] = dict(spec.speed)
    if spec.workload is Workload.TENANT_JOB:
        del data["workload"]
    else:
        data["workload"] = spec.workload.value
    if spec.network is JobNetwork.NONE:
        del data["network"]
    else:
        data["network"] = spec.network.value
    if spec.gang is GangStrategy.SPREAD:
        del data["gang"]
    else:
        data["gang"] = spec.gang.value
    return data


def spec_from_dict(data: Mapping[str, Any]) -> JobSpec:
    """The inverse of :func:`spec_to_dict`."""
    return JobSpec(
        name=data["name"],
        command=tuple(data["command"]),
        resources=Resources(
            **{**data["resources"], "chips": tuple(data["resources"].get("chips", ()))}
        ),
        env=tuple(sorted(dict(data["env"]).items())),
        working_dir=data["working_dir"],
        priority=data["priority"],
        max_runtime_s=data["max_runtime_s"],
        retries=data["retries"],
        simulate_duration_s=data["simulate_duration_s"],
        expected_duration_s=data.get("expected_duration_s"),
        checkpoint_interval_s=data.get("checkpoint_interval_s"),
        preemptible=data.get("preemptible", True),
        kind=data.get("kind"),
        priority_class=data.get("priority_class"),
        speed=tuple(sorted(dict(data.get("speed") or {}).items())),
        workload=Workload(data.get("workload", Workload.TENANT_JOB)),
        network=JobNetwork(data.get("network", JobNetwork.NONE)),
        gang=GangStrategy(data.get("gang", GangStrategy.SPREAD)),
        preemption_grace_s=data.get("preemption_grace_s"),
        dataset=data.get("dataset"),
        output_dataset=data.get("output_dataset"),
        output_path=data.get("output_path"),
    )


def validate_job(spec: JobSpec) -> JobSpec:
    """Check ranges and shapes that need no knowledge of the fleet."""
    res = spec.resources
    _bounded(
        res.cards_per_node,
        0,
        MAX_CARDS_PER_NODE,
        "resources.cards_per_node",
        f"0 to {MAX_CARDS_PER_NODE} cards per node",
    )
    _bounded(res.nodes, 1, MAX_NODES, "resources.nodes", f"1 to {MAX_NODES} nodes")
    _check_accepted(res)
    if res.total_cards == 0 and not spec.simulated:
        raise ValidationError(
            "a job needs at least one card or cpu slot",
            field="resources.cards_per_node",
            hint="use cards_per_node >= 1",
        )
    _bounded(spec.priority, -MAX_PRIORITY, MAX_PRIORITY, "priority", "-1000 to 1000")
    _bounded(spec.retries, 0, MAX_RETRIES, "retries", f"0 to {MAX_RETRIES}")
    if spec.max_runtime_s is not None:
        _bounded(spec.max_runtime_s, 1, MAX_RUNTIME_S, "max_runtime_s", "1 s to 30 days")
    if spec.simulated:
        duration = spec.simulate_duration_s or 0.0
        if not 0 < duration <= MAX_RUNTIME_S:
            raise ValidationError(
                "simulate.duration_s must be in (0, 30 days]", field="simulate.duration_s"
            )
    elif not spec.command:
        raise ValidationError(
            "a job needs a command",
            field="command",
            hint="e.g. suanwang jobs submit -- python train.py",
        )
    for name, value in (
        ("expected_duration_s", spec.expected_duration_s),
        ("checkpoint_interval_s", spec.checkpoint_interval_s),
    ):
        if value is not None and not 0 < value <= MAX_RUNTIME_S:
            raise ValidationError(f"{name} must be in (0, 30 days]", field=name)
    grace = spec.preemption_grace_s
    if grace is not None and not 0 <= grace <= MAX_RUNTIME_S:
        raise ValidationError(
            f"preemption_grace_s is {grace:g}, out of range",
            field="preemption_grace_s",
            hint="0 to the operator's maximum (seconds between SIGTERM and SIGKILL)",
        )
    _check_kind_and_speed(spec)
    _check_exec_strings(spec)
    if spec.dataset is not None:
        check_dataset_name(spec.dataset, field_name="dataset")
    job_area_parts(spec.working_dir)
    output_parts(spec)
    return spec


def output_parts(spec: JobSpec) -> tuple[str, ...]:
    """The output directory's components below ``/job`` (``()``: no output dataset)."""
    if spec.output_dataset is None:
        if spec.output_path is not None:
            raise ValidationError("output_path needs output_dataset", field="output_path")
        return ()
    check_dataset_name(spec.output_dataset, field_name="output_dataset")
    try:
        parts = job_area_parts(spec.output_path or "output")
    except ValidationError as exc:
        raise ValidationError(
            exc.message.replace("working_dir", "output_path", 1), field="output_path",
            hint="a directory below /job, e.g. cleaned",
        ) from exc  # fmt: skip
    if not parts:
        raise ValidationError("output_path must be below /job", field="output_path")
    return parts


def _check_accepted(res: Resources) -> None:
    """Several accepted chips: at most MAX_ACCEPTED_CHIPS, canonical, ``chip`` first."""
    if not res.chips:
        return
    if len(res.chips) > MAX_ACCEPTED_CHIPS:
        raise ValidationError(
            f"{len(res.chips)} accepted chips, at most {MAX_ACCEPTED_CHIPS}",
            field="resources.chip",
            hint="list chip families (e.g. 'nvidia') instead of every chip",
        )
    if res.chips != accepted_selectors(res.chips) or len(res.chips) < 2 or res.chip != res.chips[0]:
        raise ValidationError(
            "accepted chips must be distinct, without 'any', with chip first",
            field="resources.chip",
            hint="list each chip once; 'any' alone accepts every chip",
        )


def _check_exec_strings(spec: JobSpec) -> None:
    """Argv, environment and working directory go to exec(2), which cannot take a NUL."""
    if len(spec.command) > MAX_COMMAND_ARGS:
        raise ValidationError("too many command arguments", field="command")
    for i, part in enumerate(spec.command):
        if "\x00" in part:
            raise ValidationError(
                f"command[{i}] contains a NUL byte", field="command", hint=_NUL_HINT
            )
    if len(spec.env) > MAX_ENV_VARS:
        raise ValidationError(f"more than {MAX_ENV_VARS} environment variables", field="env")
    for key, value in spec.env:
        if not key or "=" in key or _CONTROL.search(key):
            raise ValidationError(
                f"invalid environment variable name {key!r}",
                field="env",
                hint="a name without '=', NUL or control characters",
            )
        if "\x00" in value:
            raise ValidationError(
                f"the value of {key} contains a NUL byte", field=f"env.{key}", hint=_NUL_HINT
            )
    if spec.working_dir is not None and _CONTROL.search(spec.working_dir):
        raise ValidationError(
            "working_dir contains a NUL byte or a control character",
            field="working_dir",
            hint="a plain path, e.g. src/train",
        )


def _check_kind_and_speed(spec: JobSpec) -> None:
    if spec.kind is not None and not 0 < len(spec.kind) <= MAX_KIND_LEN:
        raise ValidationError(
            f"kind must be 1 to {MAX_KIND_LEN} characters", field="kind", hint="e.g. resnet50"
        )
    for chip, speed in spec.speed:
        if not 0 <= speed <= MAX_SPEED:
            raise ValidationError(
                f"speed on {chip} is {speed}, out of range",
                field=f"speed.{chip}",
                hint=f"0 (cannot run there) to {MAX_SPEED:g} times the reference chip",
            )


def _bounded(value: int, low: int, high: int, field_name: str, hint: str) -> None:
    if not low <= value <= high:
        raise ValidationError(f"{field_name} is {value}, out of range", field=field_name, hint=hint)
