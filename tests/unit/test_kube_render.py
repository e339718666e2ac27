"""Kubernetes manifests: every job_api x chip validates against the official schemas.

Core objects (batch/v1 Job, apps/v1 Deployment, v1 Service, v1 Namespace) are validated
with ``kubernetes-validate``'s bundled, strict schemas (offline) for two Kubernetes
versions; JobSet and Volcano Job with ``jsonschema`` against the CRD schemas in
tests/data/crds (unknown fields rejected), their embedded Job / pod templates again with the
official schemas; Kueue-queued Jobs also against Kueue's queue-label rule. Then the
restricted pod profile and hostile tenant text.
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from suanwang.adapters.backends.kube_render import (
    KUEUE_QUEUE,
    KubeRun,
    namespace_manifest,
    namespace_of,
    render_deployment,
    render_run,
    render_service,
    run_env,
)
from suanwang.domain.chip_resources import CHIP_RESOURCES
from suanwang.domain.connections import KubeJobApi, KubernetesConnection, Toleration
from suanwang.domain.errors import ValidationError
from suanwang.ports import LaunchRequest, NodeSlice

kubernetes_validate = pytest.importorskip("kubernetes_validate")

VERSIONS = ("1.29", "1.31")
CRDS = Path(__file__).resolve().parents[1] / "data" / "crds"
TOLERATIONS = (
    Toleration("huawei.com/Ascend910B", "Exists", "", "NoSchedule"),
    Toleration("dedicated", "Equal", "ai", ""),
)


def connection(job_api: KubeJobApi, *, hami: bool = False) -> KubernetesConnection:
    return KubernetesConnection(
        job_api=job_api,
        kueue_queue="team-a.queue" if job_api is KubeJobApi.KUEUE else "",
        node_selector=(("accelerator", "ascend"), ("kubernetes.io/arch", "arm64")),
        tolerations=TOLERATIONS,
        hami=hami,
    )


def run(chip: str = "ascend-910b", nodes: int = 1, **changes: Any) -> KubeRun:
    fields: dict[str, Any] = {
        "name": "suanwang-job-3f9c1a2b7d4e-1",
        "namespace": "suanwang-acme",
        "job_id": "job-3f9c1a2b7d4e",
        "attempt": 1,
        "tenant": "acme",
        "image": "python:3.12-slim",
        "command": ("python", "-c", "print('hi')"),
        "env": (("A", "1"), ("SUANWANG_JOB_ID", "job-3f9c1a2b7d4e")),
        "chip": chip,
        "nodes": nodes,
        "cards_per_node": 8,
        "working_parts": ("src",),
        "max_runtime_s": 3600,
        "uid": 200001,
    }
    fields.update(changes)
    return KubeRun(**fields)


def core_valid(manifest: dict[str, Any]) -> None:
    for version in VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


def strict(schema: Any) -> Any:
    """The schema with unknown fields rejected wherever it lists properties (the API server
    would prune them silently: a field suanwang sets but the CRD lacks is a bug)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_schema(filename: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / filename).read_text())
    return strict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


JOBSET = crd_schema("jobset.x-k8s.io_jobsets.yaml")
VOLCANO = crd_schema("batch.volcano.sh_jobs.yaml")
KUEUE = yaml.safe_load((CRDS / "kueue.x-k8s.io_queue-label.yaml").read_text())


def as_job(template: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": "t", **template.get("metadata", {})}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": template["spec"]}


def as_pod(template: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": "t", **template.get("metadata", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}


def validate_any(manifest: dict[str, Any], api: KubeJobApi) -> None:
    if api is KubeJobApi.JOBSET:
        jsonschema.validate(manifest, JOBSET)
        for replicated in manifest["spec"]["replicatedJobs"]:
            core_valid(as_job(replicated["template"]))
    elif api is KubeJobApi.VOLCANO:
        jsonschema.validate(manifest, VOLCANO)
        for task in manifest["spec"]["tasks"]:
            core_valid(as_pod(task["template"]))
    else:
        core_valid(manifest)
        if api is KubeJobApi.KUEUE:
            jsonschema.validate(manifest, KUEUE)


CASES = list(
    itertools.product(list(KubeJobApi), [r.chip for r in CHIP_RESOURCES], [1, 4], [False, True])
)


@pytest.mark.parametrize(("api", "chip", "nodes", "hami"), CASES)
def test_every_job_api_and_chip_renders_a_valid_object(
    api: KubeJobApi, chip: str, nodes: int, hami: bool
) -> None:
    manifest = render_run(run(chip, nodes), connection(api, hami=hami))
    validate_any(manifest, api)
    assert manifest["metadata"]["namespace"] == "suanwang-acme"


def test_the_validators_catch_a_broken_manifest() -> None:
    """The schemas in use reject what the API server would: the tests above can fail."""
    job = render_run(run(), connection(KubeJobApi.JOB))
    bad = copy.deepcopy(job)
    bad["spec"]["template"]["spec"]["containers"][0]["command"] = "python -c 1"
    with pytest.raises(kubernetes_validate.ValidationError):
        core_valid(bad)
    typo = copy.deepcopy(job)
    typo["spec"]["backofLimit"] = 0
    with pytest.raises(kubernetes_validate.ValidationError):
        core_valid(typo)
    jobset = render_run(run(), connection(KubeJobApi.JOBSET))
    jobset["spec"]["failurePolicy"]["maxRestart"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(jobset, JOBSET)
    volcano = render_run(run(), connection(KubeJobApi.VOLCANO))
    volcano["spec"]["policies"][0]["event"] = "Any"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(volcano, VOLCANO)
    queued = render_run(run(), connection(KubeJobApi.KUEUE))
    queued["metadata"]["labels"][KUEUE_QUEUE] = "Team_A"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(queued, KUEUE)


@pytest.mark.parametrize("chip", [r.chip for r in CHIP_RESOURCES])
def test_inference_renders_a_valid_deployment_and_service(chip: str) -> None:
    replica = run(chip, port=8080, max_runtime_s=None)
    deployment = render_deployment(replica, connection(KubeJobApi.JOB))
    service = render_service(replica)
    core_valid(deployment)
    core_valid(service)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    core_valid(namespace_manifest("suanwang-acme"))


def test_job_shape_follows_the_request() -> None:
    single = render_run(run(nodes=1), connection(KubeJobApi.JOB))
    assert "completionMode" not in single["spec"]
    multi = render_run(run(nodes=4), connection(KubeJobApi.JOB))
    spec = multi["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 3600)
    assert spec["ttlSecondsAfterFinished"] == 7 * 86_400  # finished Jobs do not pile up
    pod = spec["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"huawei.com/Ascend910B": "8"}
    assert pod["nodeSelector"] == {"accelerator": "ascend", "kubernetes.io/arch": "arm64"}
    assert pod["tolerations"][0] == {
        "key": "huawei.com/Ascend910B",
        "operator": "Exists",
        "effect": "NoSchedule",
    }
    assert pod["containers"][0]["workingDir"] == "/job/src"
    queued = render_run(run(), connection(KubeJobApi.KUEUE))
    assert queued["spec"]["suspend"] is True
    assert queued["metadata"]["labels"][KUEUE_QUEUE] == "team-a.queue"


def test_the_jobs_grace_is_the_pods_termination_grace_period() -> None:
    def pod(**changes: Any) -> dict[str, Any]:
        rendered = render_run(run(**changes), connection(KubeJobApi.JOB))
        return rendered["spec"]["template"]["spec"]  # type: ignore[no-any-return]

    assert "terminationGracePeriodSeconds" not in pod()
    assert pod(grace_s=29.2)["terminationGracePeriodSeconds"] == 30


def test_hami_asks_for_its_device_resource_and_whole_card_cores() -> None:
    hami = render_run(run("nvidia-h100"), connection(KubeJobApi.JOB, hami=True))
    limits = hami["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": "8", "nvidia.com/gpucores": "100"}
    plain = render_run(run("ascend-910b"), connection(KubeJobApi.JOB, hami=True))
    limits = plain["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"huawei.com/Ascend910B3": "8", "huawei.com/Ascend910B3-core": "100"}
    cpu = render_run(run("cpu", cards_per_node=2), connection(KubeJobApi.JOB))
    assert cpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "2"}


def pod_specs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    if manifest["kind"] == "JobSet":
        return [
            r["template"]["spec"]["template"]["spec"] for r in manifest["spec"]["replicatedJobs"]
        ]
    if manifest["apiVersion"].startswith("batch.volcano.sh"):
        return [t["template"]["spec"] for t in manifest["spec"]["tasks"]]
    return [manifest["spec"]["template"]["spec"]]


@pytest.mark.parametrize("api", list(KubeJobApi))
def test_every_pod_is_restricted_and_has_no_token(api: KubeJobApi) -> None:
    for pod in pod_specs(render_run(run(nodes=2), connection(api))):
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 200001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["restartPolicy"] == "Never"
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsNonRoot"] is True
        assert "privileged" not in sc
    labels = namespace_manifest("suanwang-acme")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_namespace_is_the_prefix_and_tenant_as_a_dns_label() -> None:
    conn = connection(KubeJobApi.JOB)
    assert namespace_of(conn, "acme") == "suanwang-acme"
    with pytest.raises(ValidationError) as caught:
        namespace_of(conn, "a" * 60)
    assert caught.value.field == "namespace"
    for bad in ("Acme", "acme-", "ac.me", "ac/me", "../kube-system", ""):
        with pytest.raises(ValidationError):
            namespace_of(KubernetesConnection(namespace_prefix="x-"), bad)


@pytest.mark.parametrize("resumes", [0, 3])
def test_a_run_knows_how_often_its_job_was_resumed(resumes: int) -> None:
    request = LaunchRequest(
        job_id="job-3f9c1a2b7d4e",
        attempt=resumes + 1,
        tenant="acme",
        cluster="k8s",
        command=("python", "train.py"),
        placements=(NodeSlice("n1", 8), NodeSlice("n2", 8)),
        env=(("A", "1"), ("SUANWANG_RESUME_COUNT", "forged")),
        chip="ascend-910b",
        max_runtime_s=600,
        resume_count=resumes,
    )
    env = run_env(request)
    assert env["SUANWANG_RESUME_COUNT"] == str(resumes)  # the platform's, not the job's
    assert (env["SUANWANG_ATTEMPT"], env["SUANWANG_CARDS"], env["A"]) == (
        str(resumes + 1),
        "16",
        "1",
    )
    rendered = render_run(run(env=tuple(env.items())), connection(KubeJobApi.JOB))
    container = rendered["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "SUANWANG_RESUME_COUNT", "value": str(resumes)} in container["env"]
