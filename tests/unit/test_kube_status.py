"""Reading Kubernetes objects back (kube_status.py): states, exit codes, node capacity.

The objects are shaped as the API returns them (status fields per the API reference for
batch/v1 Job, the JobSet and Volcano Job CRDs' status schemas, apps/v1 Deployment).
"""

from __future__ import annotations

from typing import Any

import pytest

from suanwang.adapters.backends.kube_status import exit_code, node_spec, object_state, timestamp
from suanwang.domain.jobs import AttemptState

AT = "2026-12-07T11:00:00Z"


def job(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "spec": spec, "status": status}


def cond(kind: str, **extra: str) -> dict[str, str]:
    return {"type": kind, "status": "True", "lastTransitionTime": AT, **extra}


def test_job_states() -> None:
    assert object_state(job({})).state is AttemptState.STARTING
    queued = object_state(job({}, suspend=True))
    assert (queued.state, queued.reason) == (
        AttemptState.STARTING,
        "waiting for Kueue to admit the job",
    )
    running = object_state(job({"active": 2, "startTime": AT}))
    assert (running.state, running.started_at) == (AttemptState.RUNNING, timestamp(AT))
    done = object_state(job({"conditions": [cond("Complete")], "completionTime": AT}))
    assert (done.state, done.ended_at) == (AttemptState.SUCCEEDED, timestamp(AT))
    late = job(
        {
            "conditions": [
                cond(
                    "Failed",
                    reason="DeadlineExceeded",
                    message="Job was active longer than specified deadline",
                )
            ]
        }
    )
    failed = object_state(late)
    assert failed.state is AttemptState.FAILED
    assert failed.reason == "DeadlineExceeded: Job was active longer than specified deadline"
    not_yet = job({"conditions": [{"type": "Failed", "status": "False"}], "active": 1})
    assert object_state(not_yet).state is AttemptState.RUNNING


def test_jobset_and_deployment_states() -> None:
    jobset = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet"}
    assert object_state({**jobset, "status": {}}).state is AttemptState.STARTING
    active = {"replicatedJobsStatus": [{"name": "workers", "active": 0, "ready": 1}]}
    assert object_state({**jobset, "status": active}).state is AttemptState.RUNNING
    done = {"conditions": [cond("Completed")]}
    assert object_state({**jobset, "status": done}).state is AttemptState.SUCCEEDED
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment"}
    assert object_state({**deployment, "status": {}}).state is AttemptState.STARTING
    ready = {**deployment, "status": {"availableReplicas": 1}}
    assert object_state(ready).state is AttemptState.RUNNING


@pytest.mark.parametrize(
    ("phase", "state"),
    [
        ("Pending", AttemptState.STARTING),
        ("Running", AttemptState.RUNNING),
        ("Completing", AttemptState.RUNNING),
        ("Completed", AttemptState.SUCCEEDED),
        ("Failed", AttemptState.FAILED),
        ("Aborted", AttemptState.FAILED),
        ("Terminated", AttemptState.FAILED),
    ],
)
def test_volcano_phases(phase: str, state: AttemptState) -> None:
    obj = {
        "apiVersion": "batch.volcano.sh/v1alpha1",
        "kind": "Job",
        "status": {"state": {"phase": phase, "lastTransitionTime": AT, "reason": "PodFailed"}},
    }
    seen = object_state(obj)
    assert seen.state is state
    assert (seen.ended_at is not None) == state.ended
    if state is AttemptState.FAILED:
        assert seen.reason


def pod(*codes: int | None) -> dict[str, Any]:
    statuses = [
        {
            "name": f"c{i}",
            "state": {"terminated": {"exitCode": c}} if c is not None else {"running": {}},
        }
        for i, c in enumerate(codes)
    ]
    return {"status": {"containerStatuses": statuses}}


def test_exit_code_is_the_first_nonzero_of_the_pods() -> None:
    assert exit_code([]) is None
    assert exit_code([pod(None)]) is None
    assert exit_code([pod(0), pod(0)]) == 0
    assert exit_code([pod(0), pod(137), pod(3)]) == 137


def node(allocatable: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "n1", "labels": extra.pop("labels", {})},
        "spec": extra.pop("spec", {}),
        "status": {
            "allocatable": allocatable,
            "conditions": extra.pop("conditions", [{"type": "Ready", "status": "True"}]),
        },
    }


def test_node_capacity_from_allocatable() -> None:
    npu = node_spec(node({"cpu": "190", "huawei.com/Ascend910B": "8"}))
    assert npu is not None
    assert (npu.chip, npu.cards) == ("ascend-910b", 8)
    h20 = node_spec(node({"nvidia.com/gpu": "8"}, labels={"nvidia.com/gpu.product": "NVIDIA-H20"}))
    assert h20 is not None
    assert (h20.chip, h20.cards) == ("nvidia-h20", 8)
    unknown_gpu = node_spec(node({"cpu": "3500m", "nvidia.com/gpu": "8"}))
    assert unknown_gpu is not None  # several NVIDIA models and no product label: CPU slots
    assert (unknown_gpu.chip, unknown_gpu.cards) == ("cpu", 3)
    assert node_spec(node({"huawei.com/Ascend910B": "8"}, spec={"unschedulable": True})) is None
    not_ready = [{"type": "Ready", "status": "Unknown"}]
    assert node_spec(node({"huawei.com/Ascend910B": "8"}, conditions=not_ready)) is None
    empty = node_spec(node({"cpu": "4", "huawei.com/Ascend910B": "0"}))
    assert empty is not None
    assert (empty.chip, empty.cards) == ("cpu", 4)
