"""The demo inventory, modelled on a real operator.

Shanghai (Lingang) holds a simulated 10,000-card Ascend 910B cluster and a simulated
1,000-card NVIDIA H20 cluster; Ningxia (Zhongwei), about 3,000 km away, a simulated mixed
domestic cluster; a WAN link joins them. The machine running suanwang is a *real* cluster
in region ``local``: its jobs really run.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Any

from suanwang.domain.errors import Conflict, NotFound, ValidationError
from suanwang.domain.tenancy import LOCAL_OPERATOR, Principal

if TYPE_CHECKING:
    from suanwang.services.fleet import ApplyResult
    from suanwang.services.platform import Platform

DEMO_TENANT = "demo"
DEMO_QUOTA = {"ascend": 10_000, "nvidia": 512, "metax": 512, "hygon-dcu": 512, "cpu": 64}


def demo_fleet(local_nodes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The demo fleet as fleet-file data; ``local_nodes`` describe this machine."""
    local = local_nodes or [{"name": "localhost", "chip": "cpu", "cards": 2}]
    return {
        "regions": [
            {"name": "shanghai-lingang", "display_name": "Shanghai Lingang (上海临港)"},
            {"name": "ningxia-zhongwei", "display_name": "Ningxia Zhongwei (宁夏中卫)"},
            {"name": "local", "display_name": "This machine (real)"},
        ],
        "clusters": [
            {
                "name": "lingang-ascend",
                "region": "shanghai-lingang",
                "kind": "simulated",
                "description": "SIMULATED 10,000-card Ascend 910B training cluster",
                "node_groups": [
                    {
                        "name_prefix": "lg-a910b",
                        "count": 1250,
                        "chip": "ascend-910b",
                        "cards": 8,
                        "nodes_per_network_group": 16,
                    }
                ],
            },
            {
                "name": "lingang-nvidia",
                "region": "shanghai-lingang",
                "kind": "simulated",
                "description": "SIMULATED 1,000-card NVIDIA H20 cluster",
                "node_groups": [
                    {
                        "name_prefix": "lg-h20",
                        "count": 125,
                        "chip": "nvidia-h20",
                        "cards": 8,
                        "nodes_per_network_group": 8,
                    }
                ],
            },
            {
                "name": "zhongwei-mixed",
                "region": "ningxia-zhongwei",
                "kind": "simulated",
                "description": "SIMULATED domestic cluster: MetaX C500 and Hygon K100",
                "node_groups": [
                    {
                        "name_prefix": "zw-c500",
                        "count": 128,
                        "chip": "metax-c500",
                        "cards": 8,
                        "nodes_per_network_group": 16,
                    },
                    {
                        "name_prefix": "zw-k100",
                        "count": 64,
                        "chip": "hygon-k100",
                        "cards": 8,
                        "nodes_per_network_group": 16,
                    },
                ],
            },
            {
                "name": "local",
                "region": "local",
                "kind": "real",
                "backend": "local",
                "description": "this machine: jobs run as real processes",
                "nodes": local,
            },
        ],
        "wan_links": [
            {
                "between": ["shanghai-lingang", "ningxia-zhongwei"],
                "bandwidth_gbps": 100,
                "rtt_ms": 40,
                "distance_km": 3000,
            },
        ],
    }


DEMO_MODELS = (
    ("smollm2-135m-instruct", "local", 1),
    ("all-minilm-l6-v2", "local", 1),
    ("qwen2.5-72b-instruct", "lingang-ascend", 4),
    ("deepseek-r1-distill-qwen-32b", "lingang-nvidia", 2),
    ("glm-4-9b-chat", "zhongwei-mixed", 2),
    ("bge-m3", "lingang-nvidia", 2),
)
"""(model, cluster, replicas) the demo deploys publicly: real engines on this machine, a
simulated MaaS fleet elsewhere."""
LOCAL_SLOTS_KEPT_FOR_JOBS = 1


def deploy_demo_models(platform: Platform) -> list[str]:
    """Deploy :data:`DEMO_MODELS` that are not deployed yet; one line per model.

    Local models take one cpu slot each; they are skipped when fewer than
    ``LOCAL_SLOTS_KEPT_FOR_JOBS`` slots would remain for jobs, or when their engine or
    weights are not installed (the line says why).
    """
    system = LOCAL_OPERATOR
    deployed = [d.deployment for d in platform.deployments.list(system)]
    existing = {(d.model, d.cluster) for d in deployed}
    slots = sum(n.cards for n in platform.fleet.nodes("local"))
    used = sum(d.replicas for d in deployed if d.cluster == "local")
    free = slots - used - LOCAL_SLOTS_KEPT_FOR_JOBS
    lines = []
    for model, cluster, replicas in DEMO_MODELS:
        if (model, cluster) in existing:
            lines.append(f"{model} on {cluster}: already deployed")
            continue
        if cluster == "local":
            if free < replicas:
                lines.append(f"{model} on {cluster}: skipped (keeps a cpu slot free for jobs)")
                continue
            free -= replicas
        try:
            dep = platform.deployments.deploy(system, model, cluster, replicas).deployment
        except (ValidationError, NotFound) as exc:
            lines.append(f"{model} on {cluster}: skipped ({exc.message})")
            continue
        kind = "SIMULATED " if dep.simulated else ""
        lines.append(
            f"{model} on {cluster}: {replicas} {kind}replica(s) with {dep.engine}, {dep.id}"
        )
    return lines


def load_demo(platform: Platform, actor: Principal = LOCAL_OPERATOR) -> ApplyResult:
    """Apply the demo fleet (with this machine's nodes) and create the demo tenant if missing
    (each change audited as ``actor``'s)."""
    result = platform.fleet.apply_data(demo_fleet(list(platform.local_nodes)), actor)
    with suppress(Conflict):  # already there: loading the demo twice is a no-op
        platform.tenancy.create_tenant(DEMO_TENANT, "Demo tenant", DEMO_QUOTA, actor=actor)
    return result
