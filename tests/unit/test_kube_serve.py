"""A replica's Deployment and Service as kube_serve.py builds them from a LaunchRequest:
valid for Kubernetes 1.29 and 1.31 (strict schemas), the engine on 0.0.0.0 in its pod and
the replica's port exposed; the image per engine (operator setting, pinned image of the
engine and chip family, else suanwang's own image)."""

from __future__ import annotations

from typing import Any

import pytest

from suanwang.adapters.backends.kube_render import render_deployment, render_service
from suanwang.domain.connections import KubernetesConnection
from suanwang.domain.endpoints import NODE_ADDRESS_ENV
from suanwang.domain.workloads import Workload
from suanwang.engines.commands import NODE_HOST, on_node
from suanwang.ports import LaunchRequest, NodeSlice

pytest.importorskip("kubernetes")
kubernetes_validate = pytest.importorskip("kubernetes_validate")
from suanwang.adapters.backends.kube_serve import engine_image, is_replica, replica_run  # noqa: E402

CONNECTION = KubernetesConnection(node_selector=(("accelerator", "ascend"),))


def request(**changes: Any) -> LaunchRequest:
    fields: dict[str, Any] = {
        "job_id": "job-3f9c1a2b7d4e",
        "attempt": 2,
        "tenant": "maas-public",
        "cluster": "k8s",
        "command": on_node(("llama-server", "--host", NODE_HOST, "--port", "8100")),
        "placements": (NodeSlice("n1", 4),),
        "chip": "ascend-910b",
        "family": "ascend",
        "workload": Workload.PLATFORM_ENGINE,
        "engine": "vllm-ascend",
        "port": 8100,
    }
    fields.update(changes)
    return LaunchRequest(**fields)


@pytest.mark.parametrize("version", ["1.29", "1.31"])
def test_a_replicas_deployment_and_service_are_valid(version: str) -> None:
    run = replica_run(request(), CONNECTION, "suanwang:1", 199999)
    deployment = render_deployment(run, CONNECTION)
    service = render_service(run)
    kubernetes_validate.validate(deployment, version, strict=True)
    kubernetes_validate.validate(service, version, strict=True)
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env[NODE_ADDRESS_ENV] == "0.0.0.0"
    assert (deployment["metadata"]["namespace"], run.name) == (
        "suanwang-maas-public",
        "suanwang-job-3f9c1a2b7d4e-2",
    )
    assert pod["restartPolicy"] == "Always"  # Kubernetes restarts the engine in place
    assert pod["containers"][0]["resources"]["limits"] == {"huawei.com/Ascend910B": "4"}
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["port"] == 8100


def test_a_tenants_own_namespace_for_a_private_deployment() -> None:
    run = replica_run(request(tenant="acme"), CONNECTION, "suanwang:1", 199999)
    assert run.namespace == "suanwang-acme"


def test_a_tenant_env_cannot_choose_the_listen_address() -> None:
    sneaky = request(env=((NODE_ADDRESS_ENV, "10.0.0.1"),))
    env = dict(replica_run(sneaky, CONNECTION, "suanwang:1", 199999).env)
    assert env[NODE_ADDRESS_ENV] == "0.0.0.0"


@pytest.mark.parametrize(
    ("images", "engine", "family", "image"),
    [
        ({}, "vllm", "nvidia", "vllm/vllm-openai:v0.8.5"),
        ({}, "vllm-ascend", "ascend", "quay.io/ascend/vllm-ascend:v0.8.5rc1"),
        ({}, "llama.cpp", "cpu", "suanwang:1"),
        ({"vllm": "mirror.example/vllm:1"}, "vllm", "nvidia", "mirror.example/vllm:1"),
        ({"llama.cpp": "mirror.example/sw:2"}, "llama.cpp", "cpu", "mirror.example/sw:2"),
    ],
)
def test_the_image_per_engine(images: dict[str, str], engine: str, family: str, image: str) -> None:
    assert engine_image(images, "suanwang:1", engine, family) == image


def test_a_replica_needs_a_port_and_a_handle_names_it() -> None:
    with pytest.raises(ValueError, match="needs its port"):
        replica_run(request(port=None), CONNECTION, "suanwang:1", 199999)
    assert is_replica({"api": ["apps", "v1", "deployments"]})
    assert not is_replica({"api": ["batch", "v1", "jobs"]})
