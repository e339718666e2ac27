"""Kubernetes manifests of one suanwang run: pure functions, dataclasses in, dicts out.

:class:`KubeRun` says what to run (already checked: names are DNS labels, the command is
an argv); :func:`render_run` returns the object the cluster's ``job_api`` asks for:

- ``job``: a batch/v1 Job; multi-node runs are ``Indexed`` with completions = parallelism
  = nodes;
- ``kueue``: the same Job, ``suspend: true`` and labelled ``kueue.x-k8s.io/queue-name``
  (Kueue unsuspends it when the LocalQueue admits it);
- ``jobset``: a JobSet (jobset.x-k8s.io/v1alpha2) with one replicated Job of that shape;
- ``volcano``: a Volcano Job (batch.volcano.sh/v1alpha1), gang-scheduled (minAvailable =
  nodes).

Inference replicas render as a Deployment and a Service (:func:`render_deployment`,
:func:`render_service`). Every pod runs under the *restricted* Pod Security profile (non-root,
no privilege escalation, every capability dropped, seccomp RuntimeDefault), without a
service-account token or service links, with the job's area (an ``emptyDir``) at
:data:`~suanwang.domain.workloads.JOB_AREA`. Tenant text only ever lands in string *values*
(env values, argv items, label values checked here), never in keys or names.

A job that names a dataset gets its replica read-only at
:data:`~suanwang.domain.datasets.DATASET_MOUNT`: the operator's PersistentVolumeClaim of
the storage root (``kubernetes.dataset_claim``; a ``hostPath`` is not allowed under the
restricted profile) mounted ``readOnly`` with ``subPath`` =
``<region>/tenants/<tenant>/datasets/<id>``, the replica's directory only
(:func:`dataset_sub_path` checks every part, so no path can leave it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from suanwang.domain.chip_resources import resources_of
from suanwang.domain.connections import KubeJobApi, KubernetesConnection
from suanwang.domain.datasets import DATASET_MOUNT
from suanwang.domain.errors import ValidationError
from suanwang.domain.workloads import JOB_AREA
from suanwang.ports import LaunchRequest

MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_JOB = "suanwang.io/job"
LABEL_ATTEMPT = "suanwang.io/attempt"
LABEL_TENANT = "suanwang.io/tenant"
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
MANAGED_SELECTOR = f"{MANAGED_BY}=suanwang"
CONTAINER = "run"
REPLICATED_JOB = "workers"
"""The name of the JobSet's one replicated Job (its pods are ``<run>-workers-0-<i>``)."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_DATASET_ID = re.compile(r"^ds-[0-9a-f]{12}$")
_STORAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_DEFAULT_UID = 65534
FINISHED_TTL_S = 7 * 86_400
"""How long a finished run's object (and its pods' logs) stays before Kubernetes deletes it."""


@dataclass(frozen=True, slots=True)
class KubeRun:
    """One attempt as the cluster will run it (see :func:`render_run`)."""

    name: str
    namespace: str
    job_id: str
    attempt: int
    tenant: str
    image: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    chip: str
    nodes: int
    cards_per_node: int
    working_parts: tuple[str, ...] = ()
    max_runtime_s: int | None = None
    uid: int = _DEFAULT_UID
    port: int | None = None
    """Inference replicas: the port the engine listens on (Service and container port)."""
    grace_s: float | None = None
    """The job's ``preemption_grace_s``: the pod's ``terminationGracePeriodSeconds``."""
    dataset: DatasetVolume | None = None
    """The job's dataset replica, mounted read-only at ``DATASET_MOUNT``."""


@dataclass(frozen=True, slots=True)
class DatasetVolume:
    """Where a job's dataset replica is: a claim of the storage root and the path in it."""

    claim: str
    sub_path: str


def dataset_sub_path(dataset_dir: str, tenant: str) -> str:
    """``<region>/tenants/<tenant>/datasets/<id>``: the replica's path relative to the
    storage root, from the host path the platform chose (ValidationError if it is not
    exactly that shape: no ``..``, no other tenant, nothing outside one dataset)."""
    parts = dataset_dir.split("/")
    tail = parts[-5:]
    bad = (
        not dataset_dir.startswith("/")
        or len(parts) < 6
        or any(p in ("", ".", "..") for p in parts[1:])
        or not _STORAGE_NAME.fullmatch(tail[0])
        or tail[1] != "tenants"
        or tail[2] != tenant
        or not _STORAGE_NAME.fullmatch(tail[2])
        or tail[3] != "datasets"
        or not _DATASET_ID.fullmatch(tail[4])
    )
    if bad:
        raise ValidationError(
            f"dataset replica {dataset_dir!r} is not a replica directory of tenant {tenant!r}",
            field="dataset",
            hint="replicas live at <storage root>/<region>/tenants/<tenant>/datasets/<id>",
        )
    return "/".join(tail)


def dataset_volume(
    connection: KubernetesConnection, dataset_dir: str | None, tenant: str
) -> DatasetVolume | None:
    """The volume of a job's dataset (None without one; ValidationError without a claim)."""
    if dataset_dir is None:
        return None
    if not connection.dataset_claim:
        raise ValidationError(
            "this Kubernetes cluster has no dataset claim, so a job cannot get its dataset",
            field="kubernetes.dataset_claim",
            hint="set the name of a PersistentVolumeClaim of the storage root in each "
            "tenant namespace (docs/backends.md)",
        )
    return DatasetVolume(connection.dataset_claim, dataset_sub_path(dataset_dir, tenant))


def run_env(request: LaunchRequest) -> dict[str, str]:
    """A job's container environment: the request's own, then what every backend sets
    (job id, attempt, cards and ``SUANWANG_RESUME_COUNT``, like Slurm and Ray)."""
    return {
        **dict(request.env),
        "SUANWANG_JOB_ID": request.job_id,
        "SUANWANG_ATTEMPT": str(request.attempt),
        "SUANWANG_CARDS": str(sum(p.cards for p in request.placements)),
        "SUANWANG_RESUME_COUNT": str(request.resume_count),
    }


def dns_label(value: str, what: str) -> str:
    """``value`` if it is a DNS-1123 label (a namespace or object name), else ValidationError."""
    if not _DNS_LABEL.match(value):
        raise ValidationError(
            f"{what} {value!r} is not a Kubernetes name (DNS-1123 label)",
            field=what,
            hint="lower-case letters, digits and '-', at most 63, starting and ending alphanumeric",
        )
    return value


def namespace_of(connection: KubernetesConnection, tenant: str) -> str:
    """The tenant's namespace: ``namespace_prefix`` + tenant, checked as a DNS label."""
    return dns_label(f"{connection.namespace_prefix}{tenant}", "namespace")


def labels_of(run: KubeRun) -> dict[str, str]:
    """The labels suanwang finds its objects by (values checked: tenant text cannot smuggle
    another label or selector)."""
    labels = {
        MANAGED_BY: "suanwang",
        LABEL_JOB: run.job_id,
        LABEL_ATTEMPT: str(run.attempt),
        LABEL_TENANT: run.tenant,
    }
    for key, value in labels.items():
        if not _LABEL_VALUE.match(value):
            raise ValidationError(f"{key}={value!r} is not a label value", field=key)
    return labels


def namespace_manifest(namespace: str) -> dict[str, Any]:
    """The tenant namespace, enforcing the restricted Pod Security Standard."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": dns_label(namespace, "namespace"),
            "labels": {
                MANAGED_BY: "suanwang",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }


def chip_limits(chip: str, cards: int, *, hami: bool) -> dict[str, str]:
    """Container limits for ``cards`` cards of ``chip``: the device plugin's resource, or
    with HAMi its device resource plus ``cores`` = 100 % (a whole card, not shared)."""
    names = resources_of(chip)
    if names.kube == "cpu":
        return {"cpu": str(max(1, cards))}
    if hami and names.hami is not None:
        limits = {names.hami.device: str(cards)}
        if names.hami.cores:
            limits[names.hami.cores] = "100"
        return limits
    return {names.kube: str(cards)}


def pod_spec(run: KubeRun, connection: KubernetesConnection) -> dict[str, Any]:
    """The restricted pod spec of ``run`` (restartPolicy Never: suanwang retries)."""
    for key, _ in run.env:
        if not _ENV_NAME.match(key):
            raise ValidationError(f"env name {key!r} is not allowed", field="env")
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": run.image,
        "command": list(run.command),
        "env": [{"name": k, "value": v} for k, v in run.env],
        "workingDir": "/".join((JOB_AREA, *run.working_parts)),
        "resources": {"limits": chip_limits(run.chip, run.cards_per_node, hami=connection.hami)},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "job-area", "mountPath": JOB_AREA}],
    }
    volumes: list[dict[str, Any]] = [{"name": "job-area", "emptyDir": {}}]
    if run.dataset is not None:
        container["volumeMounts"].append(
            {
                "name": "dataset",
                "mountPath": DATASET_MOUNT,
                "subPath": run.dataset.sub_path,
                "readOnly": True,
            }
        )
        claim = {"claimName": run.dataset.claim, "readOnly": True}
        volumes.append({"name": "dataset", "persistentVolumeClaim": claim})
    if run.port is not None:
        container["ports"] = [{"name": "http", "containerPort": run.port, "protocol": "TCP"}]
    spec: dict[str, Any] = {
        "restartPolicy": "Never" if run.port is None else "Always",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": run.uid,
            "runAsGroup": run.uid,
            "fsGroup": run.uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if run.grace_s is not None:
        spec["terminationGracePeriodSeconds"] = math.ceil(run.grace_s)
    if connection.node_selector:
        spec["nodeSelector"] = dict(connection.node_selector)
    if connection.tolerations:
        spec["tolerations"] = [_toleration(t) for t in connection.tolerations]
    return spec


def _toleration(tol: Any) -> dict[str, str]:
    out = {"key": tol.key, "operator": tol.operator}
    if tol.value and tol.operator == "Equal":
        out["value"] = tol.value
    if tol.effect:
        out["effect"] = tol.effect
    return out


def _metadata(run: KubeRun, extra: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": dns_label(run.name, "name"),
        "namespace": dns_label(run.namespace, "namespace"),
        "labels": {**labels_of(run), **(extra or {})},
    }


def _job_spec(run: KubeRun, connection: KubernetesConnection) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": FINISHED_TTL_S,
        "completions": run.nodes,
        "parallelism": run.nodes,
        "template": {"metadata": {"labels": labels_of(run)}, "spec": pod_spec(run, connection)},
    }
    if run.nodes > 1:
        spec["completionMode"] = "Indexed"
    if run.max_runtime_s is not None:
        spec["activeDeadlineSeconds"] = run.max_runtime_s
    return spec


def render_job(run: KubeRun, connection: KubernetesConnection) -> dict[str, Any]:
    """A batch/v1 Job (Kueue: suspended and labelled with the LocalQueue)."""
    extra = {}
    spec = _job_spec(run, connection)
    if connection.job_api is KubeJobApi.KUEUE:
        extra[KUEUE_QUEUE] = connection.kueue_queue
        spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(run, extra),
        "spec": spec,
    }


def render_jobset(run: KubeRun, connection: KubernetesConnection) -> dict[str, Any]:
    """A JobSet of one replicated Job (replicas 1) shaped like :func:`render_job`'s."""
    job_spec = _job_spec(run, connection)
    del job_spec["ttlSecondsAfterFinished"]  # the JobSet's own TTL removes its Jobs
    job = {"metadata": {"labels": labels_of(run)}, "spec": job_spec}
    spec: dict[str, Any] = {
        "failurePolicy": {"maxRestarts": 0},
        "ttlSecondsAfterFinished": FINISHED_TTL_S,
        "replicatedJobs": [{"name": REPLICATED_JOB, "replicas": 1, "template": job}],
    }
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": _metadata(run),
        "spec": spec,
    }


def render_volcano(run: KubeRun, connection: KubernetesConnection) -> dict[str, Any]:
    """A Volcano Job: one task of ``nodes`` pods, gang-scheduled, never retried by Volcano."""
    pod_template = pod_spec(run, connection)
    if run.max_runtime_s is not None:  # Volcano has no job deadline: each pod gets one
        pod_template["activeDeadlineSeconds"] = run.max_runtime_s
    pod = {"metadata": {"labels": labels_of(run)}, "spec": pod_template}
    spec: dict[str, Any] = {
        "schedulerName": "volcano",
        "minAvailable": run.nodes,
        "maxRetry": 0,
        "ttlSecondsAfterFinished": FINISHED_TTL_S,
        "tasks": [{"name": REPLICATED_JOB, "replicas": run.nodes, "template": pod}],
        "policies": [{"event": "PodFailed", "action": "AbortJob"}],
    }
    return {
        "apiVersion": "batch.volcano.sh/v1alpha1",
        "kind": "Job",
        "metadata": _metadata(run),
        "spec": spec,
    }


def render_run(run: KubeRun, connection: KubernetesConnection) -> dict[str, Any]:
    """The object that runs ``run`` on a cluster of ``connection.job_api``."""
    if connection.job_api is KubeJobApi.JOBSET:
        return render_jobset(run, connection)
    if connection.job_api is KubeJobApi.VOLCANO:
        return render_volcano(run, connection)
    return render_job(run, connection)


def render_deployment(run: KubeRun, connection: KubernetesConnection) -> dict[str, Any]:
    """An inference replica: a Deployment of one pod (restarted by Kubernetes in place)."""
    selector = {LABEL_JOB: run.job_id, LABEL_ATTEMPT: str(run.attempt)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(run),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels_of(run)},
                "spec": pod_spec(run, connection),
            },
        },
    }


def render_service(run: KubeRun) -> dict[str, Any]:
    """The ClusterIP Service in front of :func:`render_deployment`'s pod."""
    if run.port is None:
        raise ValueError("an inference replica needs a port")
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(run),
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_JOB: run.job_id, LABEL_ATTEMPT: str(run.attempt)},
            "ports": [{"name": "http", "port": run.port, "targetPort": run.port}],
        },
    }
