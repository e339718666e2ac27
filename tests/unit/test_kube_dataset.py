"""A Kubernetes job's dataset: the replica's directory only, read-only, at /data/input.

The rendered Job (every job_api) mounts the operator's claim of the storage root with
``readOnly`` on the claim and the mount and ``subPath`` = the replica's own directory; the
manifests validate against the official schemas (``kubernetes-validate``, strict). Hostile
replica paths (``..``, another tenant's, the storage root, a relative path, odd ids) are
refused before anything is rendered, and a cluster without a claim refuses the job.
"""

from __future__ import annotations

from typing import Any

import pytest

from suanwang.adapters.backends.kube_render import (
    KubeRun,
    dataset_sub_path,
    dataset_volume,
    render_job,
)
from suanwang.domain.connections import KubeJobApi, KubernetesConnection, check_connection
from suanwang.domain.datasets import DATASET_MOUNT
from suanwang.domain.errors import ValidationError

kubernetes_validate = pytest.importorskip("kubernetes_validate")

REPLICA = "/srv/suanwang/storage/sh/tenants/acme/datasets/ds-0123456789ab"
CLAIMED = KubernetesConnection(dataset_claim="suanwang-storage")


def run(**changes: Any) -> KubeRun:
    fields: dict[str, Any] = {
        "name": "suanwang-job-3f9c1a2b7d4e-1",
        "namespace": "suanwang-acme",
        "job_id": "job-3f9c1a2b7d4e",
        "attempt": 1,
        "tenant": "acme",
        "image": "python:3.12-slim",
        "command": ("python", "-c", "print('hi')"),
        "env": (("SUANWANG_DATASET_DIR", DATASET_MOUNT),),
        "chip": "cpu",
        "nodes": 1,
        "cards_per_node": 1,
        "uid": 200001,
        "dataset": dataset_volume(CLAIMED, REPLICA, "acme"),
    }
    fields.update(changes)
    return KubeRun(**fields)


@pytest.mark.parametrize("job_api", [KubeJobApi.JOB, KubeJobApi.KUEUE])
def test_the_replica_directory_alone_is_mounted_read_only(job_api: KubeJobApi) -> None:
    queue = "team-a" if job_api is KubeJobApi.KUEUE else ""
    connection = KubernetesConnection(job_api=job_api, kueue_queue=queue, dataset_claim="st")
    manifest = render_job(run(dataset=dataset_volume(connection, REPLICA, "acme")), connection)
    for version in ("1.29", "1.31"):
        kubernetes_validate.validate(manifest, version, strict=True)
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["dataset"] == {
        "name": "dataset",
        "mountPath": DATASET_MOUNT,
        "subPath": "sh/tenants/acme/datasets/ds-0123456789ab",
        "readOnly": True,
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dataset"] == {
        "name": "dataset",
        "persistentVolumeClaim": {"claimName": "st", "readOnly": True},
    }
    assert not any("hostPath" in v for v in pod["volumes"])  # restricted profile: no hostPath
    assert {"name": "SUANWANG_DATASET_DIR", "value": DATASET_MOUNT} in container["env"]


def test_a_job_without_a_dataset_gets_no_dataset_volume() -> None:
    manifest = render_job(run(dataset=None), CLAIMED)
    pod = manifest["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["job-area"]
    assert dataset_volume(KubernetesConnection(), None, "acme") is None


HOSTILE = [
    "/srv/storage/sh/tenants/acme/datasets/../../other/datasets/ds-0123456789ab",
    "/srv/storage/sh/tenants/other/datasets/ds-0123456789ab",  # another tenant's replica
    "/srv/storage/sh/tenants/acme/datasets/..",
    "/srv/storage/sh/tenants/acme/datasets",
    "/srv/storage/sh/tenants/acme/datasets/ds-0123456789ab/..",
    "/srv/storage/sh/tenants/acme/datasets/ds-0123456789ab/",
    "/srv/storage/sh/tenants/acme/datasets/ds-0123456789ab/sub",
    "/srv/storage/sh/tenants/acme/datasets/ds-../../../etc",
    "/srv/storage/../tenants/acme/datasets/ds-0123456789ab",
    "/srv/storage/.hidden/tenants/acme/datasets/ds-0123456789ab",
    "/srv/storage/sh/tenants/acme/datasets/./ds-0123456789ab",
    "/srv/storage//sh/tenants/acme/datasets/ds-0123456789ab",
    "sh/tenants/acme/datasets/ds-0123456789ab",  # relative
    "/",
    "",
    "/srv/storage/sh/tenants/acme/datasets/DS-0123456789AB",
    "/srv/storage/sh\n/tenants/acme/datasets/ds-0123456789ab",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_a_hostile_replica_path_cannot_escape_the_dataset(path: str) -> None:
    with pytest.raises(ValidationError) as caught:
        dataset_volume(CLAIMED, path, "acme")
    assert caught.value.field == "dataset"


def test_hostile_tenant_names_cannot_widen_the_sub_path() -> None:
    for tenant in ("..", ".", "", "acme/../other", "*"):
        with pytest.raises(ValidationError):
            dataset_sub_path(REPLICA.replace("acme", tenant), tenant)
    assert dataset_sub_path(REPLICA, "acme") == "sh/tenants/acme/datasets/ds-0123456789ab"


def test_a_cluster_without_a_claim_refuses_dataset_jobs_and_bad_claims_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        dataset_volume(KubernetesConnection(), REPLICA, "acme")
    assert caught.value.field == "kubernetes.dataset_claim"
    bad = KubernetesConnection(dataset_claim="../host")
    with pytest.raises(ValidationError) as refused:
        check_connection("kubernetes", bad, "clusters[0]")
    assert refused.value.field == "clusters[0].kubernetes.dataset_claim"
    check_connection("kubernetes", CLAIMED, "clusters[0]")
