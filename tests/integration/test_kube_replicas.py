"""Inference replicas on Kubernetes through the real client against the fake API server.

A replica's job becomes a Deployment (one restricted pod, the engine listening on 0.0.0.0
in it, the replica's port exposed) and a ClusterIP Service; the handle carries the
ClusterIP the API server allocated, the port and the Service range read from the API
(ServiceCIDR), and domain/endpoints.py turns it into the replica's base URL. Availability
is the run's running state; cancel deletes both objects; a retried submit (409) finds the
same objects; the fleet file's service_cidr stands in on clusters without ServiceCIDR.
Each test has its own server (~0.1 s to start).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_fake import FakeKube
from kube_fake_server import WallClock

from suanwang.config import Settings
from suanwang.domain.connections import KubernetesConnection
from suanwang.domain.endpoints import NODE_ADDRESS_ENV, placed_endpoint
from suanwang.domain.jobs import AttemptState
from suanwang.domain.workloads import Workload
from suanwang.engines.commands import NODE_HOST, on_node
from suanwang.ports import EngineUnreachable, LaunchRequest, NodeSlice

pytest.importorskip("kubernetes")
from suanwang.adapters.backends.kube import KubernetesBackend

JOB = "job-0123456789ab"
NAME = f"suanwang-{JOB}-1"
PUBLIC_NS = "suanwang-maas-public"
ENGINE = on_node(("vllm", "serve", "/models/m", "--host", NODE_HOST, "--port", "8123"))


def backend_of(tmp_path: Path, **settings: Any) -> KubernetesBackend:
    made = Settings(data_dir=tmp_path / "data", kube_image="suanwang:1", **settings)
    return KubernetesBackend(WallClock(), made, watch_s=1)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[KubernetesBackend]:
    made = backend_of(tmp_path)
    yield made
    made.close()


def replica(connection: KubernetesConnection, **extra: Any) -> LaunchRequest:
    fields: dict[str, Any] = {
        "job_id": JOB,
        "attempt": 1,
        "tenant": "maas-public",
        "cluster": "k8s",
        "command": ENGINE,
        "placements": (NodeSlice("n1", 2),),
        "env": (("ASCEND_RT_VISIBLE_DEVICES", "0,1"),),
        "chip": "ascend-910b",
        "family": "ascend",
        "workload": Workload.PLATFORM_ENGINE,
        "preemptible": False,
        "engine": "vllm-ascend",
        "port": 8123,
        "connection": connection,
    }
    fields.update(extra)
    return LaunchRequest(**fields)


def objects(kube: FakeKube, namespace: str = PUBLIC_NS) -> dict[str, dict[str, Any]]:
    with kube.cond:
        return {
            k[0]: o
            for k, o in kube.objects.items()
            if k[1] == namespace and k[0] in ("apps/v1/deployments", "v1/services")
        }


def test_a_replica_is_a_deployment_behind_a_cluster_ip_service(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    connection = KubernetesConnection(api_url=kube.url)
    submitted = backend.submit(replica(connection))
    assert submitted.state is AttemptState.STARTING
    made = objects(kube)
    deployment, service = made["apps/v1/deployments"], made["v1/services"]
    ip = service["spec"]["clusterIP"]
    assert submitted.reason == f"created Deployment and Service {PUBLIC_NS}/{NAME} (ClusterIP {ip})"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "quay.io/ascend/vllm-ascend:v0.8.5rc1"  # the pinned image
    assert container["command"] == list(ENGINE)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env[NODE_ADDRESS_ENV] == "0.0.0.0"  # every interface of the pod's own namespace
    assert container["ports"] == [{"name": "http", "containerPort": 8123, "protocol": "TCP"}]
    assert container["resources"]["limits"] == {"huawei.com/Ascend910B": "2"}
    assert pod["securityContext"]["runAsUser"] == Settings().engine_uid
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert service["spec"]["ports"] == [{"name": "http", "port": 8123, "targetPort": 8123}]
    assert service["spec"]["selector"].items() <= pod_labels(deployment).items()
    handle = submitted.handle
    assert (handle["service_ip"], handle["service_cidrs"], handle["port"]) == (
        ip,
        ["10.96.0.0/12"],
        8123,
    )
    assert placed_endpoint(handle, ["n1"], 8123, "kubernetes") == f"http://{ip}:8123"

    kube.available(NAME)
    deadline = time.monotonic() + 10
    while backend.poll(JOB, 1, handle).state is not AttemptState.RUNNING:
        assert time.monotonic() < deadline, "the available Deployment never read as running"
        time.sleep(0.05)
    assert b"serving: /bin/sh -c exec vllm serve" in backend.logs(JOB, 1, handle, 0, 4096)
    (ref,) = backend.runs("k8s", connection)
    assert (ref.job_id, ref.attempt, ref.alive) == (JOB, 1, True)

    backend.cancel(ref.job_id, ref.attempt, ref.handle)  # as the orphan sweep would
    assert objects(kube) == {}
    assert {(name, ns) for name, ns, _ in kube.deletes} == {(NAME, PUBLIC_NS)}
    assert len(kube.deletes) == 2  # the Deployment (Background) and its Service
    gone = backend.poll(JOB, 1, handle)
    assert gone.state is AttemptState.LOST


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def test_a_retried_submit_finds_the_same_deployment_and_service(
    kube: FakeKube, backend: KubernetesBackend, tmp_path: Path
) -> None:
    connection = KubernetesConnection(api_url=kube.url)
    first = backend.submit(replica(connection))
    restarted = backend_of(tmp_path)  # a control plane restarted between create and record
    try:
        again = restarted.submit(replica(connection))
    finally:
        restarted.close()
    assert again.handle == first.handle
    assert not again.reason.startswith("created")
    posts = [p for m, p in kube.requests if m == "POST" and "namespaces/" + PUBLIC_NS in p]
    assert len(posts) == 4  # Deployment + Service, twice: each second one answered 409
    assert len(objects(kube)) == 2


def test_private_deployments_use_the_tenant_namespace_and_the_operators_image(
    kube: FakeKube, tmp_path: Path
) -> None:
    images = {"llama.cpp": "registry.example/suanwang-engines:1"}
    backend = backend_of(tmp_path, kube_engine_images=images)
    try:
        connection = KubernetesConnection(api_url=kube.url)
        done = backend.submit(replica(connection, tenant="acme", engine="llama.cpp"))
        assert done.state is AttemptState.STARTING
        deployment = objects(kube, "suanwang-acme")["apps/v1/deployments"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "registry.example/suanwang-engines:1"
        other = backend.submit(replica(connection, job_id="job-bbbbbbbbbbbb", engine="mindie"))
        mindie = objects(kube)["apps/v1/deployments"]["spec"]["template"]["spec"]
        assert other.state is AttemptState.STARTING
        assert mindie["containers"][0]["image"].startswith("swr.cn-south-1.myhuaweicloud.com/")
    finally:
        backend.close()


def test_without_service_cidr_objects_the_fleet_files_range_is_used(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    del kube.objects[("networking.k8s.io/v1/servicecidrs", "", "kubernetes")]
    unknown = backend.submit(replica(KubernetesConnection(api_url=kube.url)))
    assert unknown.state is AttemptState.FAILED
    assert "set service_cidr in the fleet file's kubernetes block" in unknown.reason
    assert objects(kube) == {}
    declared = KubernetesConnection(api_url=kube.url, service_cidr="10.96.0.0/16")
    done = backend.submit(replica(declared, attempt=2))
    assert done.handle["service_cidrs"] == ["10.96.0.0/16"]
    assert placed_endpoint(done.handle, ["n1"], 8123, "kubernetes").startswith("http://10.96.")


def test_a_replica_without_its_port_fails_with_the_reason(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    failed = backend.submit(replica(KubernetesConnection(api_url=kube.url), port=None))
    assert failed.state is AttemptState.FAILED
    assert "needs its port" in failed.reason


def test_a_rejected_service_fails_the_attempt_and_removes_its_deployment(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    kube.fail("POST", "/services", 422)
    failed = backend.submit(replica(KubernetesConnection(api_url=kube.url)))
    assert failed.state is AttemptState.FAILED
    assert "injected 422" in failed.reason
    assert objects(kube) == {}  # no engine left running without its Service
    kube.fail("POST", "/services", 503)
    with pytest.raises(EngineUnreachable):  # asked again next tick: the Deployment waits
        backend.submit(replica(KubernetesConnection(api_url=kube.url), attempt=2))
    again = backend.submit(replica(KubernetesConnection(api_url=kube.url), attempt=2))
    assert again.state is AttemptState.STARTING
    assert set(objects(kube)) == {"apps/v1/deployments", "v1/services"}
