"""Inference replicas on Kubernetes: a Deployment of one pod behind a ClusterIP Service.

A replica's job (workload ``platform-engine``) runs the catalogue's engine command in a pod
of its own: :data:`~suanwang.domain.endpoints.NODE_ADDRESS_ENV` is ``0.0.0.0`` there (the
pod has its own network namespace; the engine listens on every interface of it) and the
container exposes the replica's port. A ClusterIP Service on that port selects the pod;
the attempt's handle reports the Service's ClusterIP as the API server answered the
create, the port, and the cluster's Service range read from the API (ServiceCIDR objects,
else the fleet file's ``service_cidr``), which ``domain/endpoints.py`` checks it against.
The pod's own address is never reported: Kubernetes restarts the pod (``restartPolicy:
Always``) under a new IP, and the Service follows it.

Namespace: ``namespace_prefix`` + the job's tenant (``maas-public`` for public deployments,
the tenant's own for a private one). The pod runs as the platform's engine uid under the
restricted profile, like a job's. Image: ``SUANWANG_KUBE_ENGINE_IMAGES[engine]``, else the
pinned image of the engine and chip family
(:data:`~suanwang.domain.engine_images.IMAGES`), else ``SUANWANG_KUBE_IMAGE`` (llama.cpp
and sentence-transformers run suanwang's own installation: their image must have it at
the same path as the control plane's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from suanwang.adapters.backends.kube_client import ApiKind, KubeApi, KubeRejected
from suanwang.adapters.backends.kube_render import (
    KubeRun,
    dns_label,
    namespace_of,
    render_deployment,
    render_service,
)
from suanwang.domain.chip_resources import resources_of
from suanwang.domain.connections import KubernetesConnection
from suanwang.domain.endpoints import NODE_ADDRESS_ENV
from suanwang.domain.engine_images import IMAGES
from suanwang.ports import LaunchRequest, run_name

DEPLOYMENTS = ApiKind("apps", "v1", "deployments")
LISTEN_ALL = "0.0.0.0"
_SERVICE_CIDRS = (
    ApiKind("networking.k8s.io", "v1", "servicecidrs"),
    ApiKind("networking.k8s.io", "v1beta1", "servicecidrs"),
)


def engine_image(images: Mapping[str, str], default: str, engine: str, family: str) -> str:
    """The image a replica of ``engine`` on a ``family`` chip runs in (see the module doc)."""
    return images.get(engine) or IMAGES.get((engine, family)) or default


def replica_run(
    request: LaunchRequest, connection: KubernetesConnection, image: str, uid: int
) -> KubeRun:
    """The replica's run: one pod, the engine listening on every interface, on its port."""
    if request.port is None:
        raise ValueError("an inference replica on kubernetes needs its port")
    if not request.command:
        raise ValueError("the kubernetes backend needs a command")
    resources_of(request.chip)  # ValidationError for a chip without names
    env = {
        **dict(request.env),
        NODE_ADDRESS_ENV: LISTEN_ALL,
        "SUANWANG_JOB_ID": request.job_id,
        "SUANWANG_ATTEMPT": str(request.attempt),
    }
    return KubeRun(
        name=dns_label(run_name(request.job_id, request.attempt), "name"),
        namespace=namespace_of(connection, request.tenant),
        job_id=request.job_id,
        attempt=request.attempt,
        tenant=request.tenant,
        image=image,
        command=request.command,
        env=tuple(env.items()),
        chip=request.chip,
        nodes=1,
        cards_per_node=max((p.cards for p in request.placements), default=1),
        uid=uid,
        port=request.port,
    )


def service_cidrs(api: KubeApi, connection: KubernetesConnection) -> tuple[str, ...]:
    """The cluster's Service IP ranges: the ``kubernetes`` ServiceCIDR object's (v1, else
    v1beta1), else the fleet file's ``service_cidr``; ValueError if neither exists."""
    for kind in _SERVICE_CIDRS:
        found = api.get_cluster_object(kind, "kubernetes")
        cidrs = (found or {}).get("spec", {}).get("cidrs") or []
        if cidrs:
            return tuple(str(c) for c in cidrs)
    if connection.service_cidr:
        return (connection.service_cidr,)
    raise ValueError(
        "the cluster's Service range is unknown (its API serves no ServiceCIDR 'kubernetes'); "
        "set service_cidr in the fleet file's kubernetes block"
    )


def create_replica(
    api: KubeApi, run: KubeRun, connection: KubernetesConnection, cidrs: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Create the Deployment and its Service unless they exist (a retried submit finds
    them): the Deployment, the handle's replica fields and whether it was created now. A
    Service the API server rejects deletes the Deployment again (KubeRejected: the attempt
    fails); an unreachable one leaves it for the retried submit to find."""
    deployment, created = api.create(render_deployment(run, connection))
    try:
        service = api.create_service(render_service(run))
    except KubeRejected:  # the attempt fails: leave no engine running without its Service
        api.delete(DEPLOYMENTS, run.namespace, run.name)
        raise
    cluster_ip = service.get("spec", {}).get("clusterIP")
    if not cluster_ip:
        raise KubeRejected(f"kubernetes gave Service {run.namespace}/{run.name} no ClusterIP")
    fields = {
        "namespace": run.namespace,
        "name": run.name,
        "api": [DEPLOYMENTS.group, DEPLOYMENTS.version, DEPLOYMENTS.plural],
        "service_ip": str(cluster_ip),
        "service_cidrs": list(cidrs),
        "port": run.port,
    }
    return deployment, fields, created


def is_replica(handle: Mapping[str, Any]) -> bool:
    """Whether ``handle`` names a replica's Deployment (cancel deletes its Service too)."""
    return list(handle.get("api", [])) == [DEPLOYMENTS.group, DEPLOYMENTS.version, "deployments"]
