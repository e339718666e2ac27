"""Reading Kubernetes objects back: a run's state, a failed pod's exit code, node capacity.

Pure functions over the API's JSON (dicts), one per object kind the backend creates:

- batch/v1 Job (also Kueue's): condition ``Complete`` / ``Failed`` (reason, e.g.
  ``DeadlineExceeded``), else running once a pod is active; suspended = waiting for Kueue;
- JobSet: condition ``Completed`` / ``Failed``, else running once a child Job has an
  active or ready pod;
- Volcano Job: ``status.state.phase`` (Pending, Running, Completed, Failed, Aborted, ...);
- Deployment (inference replica): running while a replica is available, never ends.

Capacity: each node's chip is found from its allocatable device-plugin resources
(:func:`~suanwang.domain.chip_resources.chips_for_kube_resource`; several NVIDIA models
share ``nvidia.com/gpu``, told apart by the ``nvidia.com/gpu.product`` label), nodes that
are unschedulable or not Ready are left out. :func:`run_refs`: the runs a list of managed
objects holds (for orphan sweeps).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from suanwang.adapters.backends.kube_client import ApiKind
from suanwang.adapters.backends.kube_render import LABEL_ATTEMPT, LABEL_JOB
from suanwang.domain.chip_resources import CHIP_RESOURCES, chips_for_kube_resource
from suanwang.domain.connections import KubernetesConnection, connection_data
from suanwang.domain.fleet import MAX_CARDS_PER_NODE, NodeSpec
from suanwang.domain.ids import ChipName
from suanwang.domain.jobs import AttemptState
from suanwang.ports import RunRef

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
_VOLCANO = {
    "Pending": AttemptState.STARTING,
    "Inqueue": AttemptState.STARTING,
    "Running": AttemptState.RUNNING,
    "Restarting": AttemptState.RUNNING,
    "Completing": AttemptState.RUNNING,
    "Aborting": AttemptState.RUNNING,
    "Terminating": AttemptState.RUNNING,
    "Completed": AttemptState.SUCCEEDED,
    "Failed": AttemptState.FAILED,
    "Aborted": AttemptState.FAILED,
    "Terminated": AttemptState.FAILED,
}


@dataclass(frozen=True, slots=True)
class ObjectState:
    """What one object says about its run."""

    state: AttemptState
    reason: str = ""
    started_at: float | None = None
    ended_at: float | None = None


def timestamp(value: object) -> float | None:
    """An RFC 3339 time of the API (``2026-12-07T11:00:00Z``) as epoch seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def _ended(cond: dict[str, Any]) -> str:
    return ": ".join(str(x) for x in (cond.get("reason"), cond.get("message")) if x)


def object_state(obj: dict[str, Any]) -> ObjectState:
    """The run state ``obj`` (a Job, JobSet, Volcano Job or Deployment) reports."""
    api, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    if api.startswith("batch.volcano.sh/"):
        return _volcano(obj)
    if kind == "JobSet":
        return _finished(obj, "Completed") or _jobset_alive(obj)
    if kind == "Deployment":
        ready = int(obj.get("status", {}).get("availableReplicas") or 0)
        return ObjectState(AttemptState.RUNNING if ready else AttemptState.STARTING)
    return _finished(obj, "Complete") or _job_alive(obj)


def _finished(obj: dict[str, Any], done: str) -> ObjectState | None:
    status = obj.get("status", {})
    started = timestamp(status.get("startTime"))
    complete = _condition(obj, done)
    if complete is not None:
        ended = timestamp(status.get("completionTime") or complete.get("lastTransitionTime"))
        return ObjectState(AttemptState.SUCCEEDED, "", started, ended)
    failed = _condition(obj, "Failed")
    if failed is not None:
        ended = timestamp(failed.get("lastTransitionTime"))
        return ObjectState(AttemptState.FAILED, _ended(failed) or "failed", started, ended)
    return None


def _job_alive(obj: dict[str, Any]) -> ObjectState:
    status = obj.get("status", {})
    if obj.get("spec", {}).get("suspend") and not status.get("startTime"):
        return ObjectState(AttemptState.STARTING, "waiting for Kueue to admit the job")
    started = timestamp(status.get("startTime"))
    if int(status.get("active") or 0) > 0 or int(status.get("ready") or 0) > 0:
        return ObjectState(AttemptState.RUNNING, "", started)
    return ObjectState(AttemptState.STARTING, "", started)


def _jobset_alive(obj: dict[str, Any]) -> ObjectState:
    jobs = obj.get("status", {}).get("replicatedJobsStatus") or []
    if any(int(j.get("active") or 0) + int(j.get("ready") or 0) > 0 for j in jobs):
        return ObjectState(AttemptState.RUNNING)
    return ObjectState(AttemptState.STARTING)


def _volcano(obj: dict[str, Any]) -> ObjectState:
    state = obj.get("status", {}).get("state") or {}
    phase = str(state.get("phase") or "Pending")
    mapped = _VOLCANO.get(phase, AttemptState.STARTING)
    at = timestamp(state.get("lastTransitionTime"))
    reason = _ended(state) if mapped.ended and mapped is not AttemptState.SUCCEEDED else ""
    return ObjectState(
        mapped,
        reason or (f"volcano: {phase}" if mapped is AttemptState.FAILED else ""),
        started_at=at if mapped is AttemptState.RUNNING else None,
        ended_at=at if mapped.ended else None,
    )


def exit_code(pods: list[dict[str, Any]]) -> int | None:
    """The first non-zero exit code among the pods' terminated containers (else 0 if
    every container ended, None if none did)."""
    codes: list[int] = []
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses") or []:
            ended = (status.get("state") or {}).get("terminated")
            if ended is not None:
                codes.append(int(ended.get("exitCode", 0)))
    if not codes:
        return None
    return next((c for c in codes if c != 0), 0)


def node_spec(node: dict[str, Any]) -> NodeSpec | None:
    """The node as suanwang sees it: its chip and card count (its CPUs if it has no chip),
    or None if it is cordoned or not Ready."""
    meta, status = node.get("metadata", {}), node.get("status", {})
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    if node.get("spec", {}).get("unschedulable") or not ready:
        return None
    labels = meta.get("labels") or {}
    allocatable = status.get("allocatable") or {}
    for row in CHIP_RESOURCES:
        if row.kube == "cpu" or row.kube not in allocatable:
            continue
        cards = _quantity(allocatable[row.kube])
        if cards <= 0:
            continue
        chip = _pick(chips_for_kube_resource(row.kube), str(labels.get(GPU_PRODUCT_LABEL, "")))
        if chip is None:
            continue
        return NodeSpec(str(meta.get("name", "")), chip, cards)
    cpus = max(1, min(_quantity(allocatable.get("cpu", "1")), MAX_CARDS_PER_NODE))
    return NodeSpec(str(meta.get("name", "")), ChipName("cpu"), cpus)


def _pick(chips: tuple[ChipName, ...], product: str) -> ChipName | None:
    """One chip of ``chips``: the only one, or the one the GPU product label names."""
    if len(chips) == 1:
        return chips[0]
    wanted = product.lower().replace("_", "-").replace(" ", "-")
    found = [c for c in chips if c.split("-", 1)[-1] in wanted]
    return found[0] if len(found) == 1 else None


def _quantity(value: object) -> int:
    """A whole-number quantity (``8``; CPU ``3500m`` rounds down to 3)."""
    text = str(value)
    try:
        return int(text[:-1]) // 1000 if text.endswith("m") else int(text)
    except ValueError:
        return 0


def run_refs(
    cluster: str, kube: KubernetesConnection, kind: ApiKind, items: list[dict[str, Any]]
) -> list[RunRef]:
    """The runs among ``items`` (objects of ``kind``), by their job and attempt labels."""
    found: list[RunRef] = []
    for obj in items:
        labels = obj.get("metadata", {}).get("labels") or {}
        job, attempt = str(labels.get(LABEL_JOB, "")), str(labels.get(LABEL_ATTEMPT, ""))
        if not job or not attempt.isdigit():
            continue
        meta = obj["metadata"]
        handle = {
            "cluster": cluster,
            **connection_data(kube),
            "namespace": meta["namespace"],
            "name": meta["name"],
            "api": [kind.group, kind.version, kind.plural],
        }
        alive = not object_state(obj).state.ended
        found.append(RunRef(job, int(attempt), handle, alive))
    return found
