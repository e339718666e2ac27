"""SmolLM2 on the real Ray test cluster answers through the gateway (issue 12, point 4).

The Ray cluster (tests/integration/ray_cluster.py: two raylets as an unprivileged uid in a
network namespace with only ``lo``) is the session's. Everything that must reach the
replica runs in that namespace too: one suanwang server (control loop, cluster and engine
health checks; SQLite), one gateway (no Redis: its limits in-process) and the ``openai``
client; the test process deploys and reads the database from outside. The fleet names
Ray's two nodes as ``cpu`` slots (2 CPUs each), so the replica is a Ray job pinned to one
raylet, running llama-server on the address Ray reports for that node and the port the
control plane chose. About 55 s on this machine (with the ~22 s cluster start).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from engine_serving import CHAT, CONCURRENT, READY_TIMEOUT_S, chat_at_once, wait_for
from engine_serving import check_answered_and_billed as check_billed
from gateway_stack import Stack
from live_engines import OP, missing_packages
from ray_cluster import DASHBOARD_PORT, NODES, RayCluster

from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.deployments import ReplicaRecord
from suanwang.domain.serving import ReplicaState
from suanwang.services.platform import Platform

UVICORN = (sys.executable, "-m", "uvicorn", "--factory")


def fleet() -> str:
    nodes = ", ".join(f"{{name: {n}, chip: cpu, cards: 2}}" for n in NODES)
    return f"""
regions: [{{name: here}}]
clusters:
  - {{name: rc-serve, region: here, kind: real, backend: ray,
      ray: {{address: "http://127.0.0.1:{DASHBOARD_PORT}"}}, nodes: [{nodes}]}}
"""


@dataclass
class OnRay:
    cluster: RayCluster
    platform: Platform
    stack: Stack
    deployment: str
    gateway_port: int

    def replica(self) -> ReplicaRecord:
        return self.platform.deployments.get(OP, self.deployment).replicas[0]


def serve(cluster: RayCluster, factory: str, env: dict[str, str], base: Path, name: str) -> int:
    """Start ``factory`` with uvicorn inside the namespace; its port (relayed to
    ``<base>/<name>.sock`` outside) once its health answers."""
    port = cluster.port()
    argv = [*UVICORN, factory, "--host", "127.0.0.1", "--port", str(port)]
    proc = cluster.popen([*argv, "--log-level", "warning"], base / f"{name}.log", env=env)
    sock = base / f"{name}.sock"
    cluster.relay(sock, port)
    path = "/healthz" if name == "server" else "/health"
    transport = httpx.HTTPTransport(uds=str(sock))
    deadline = time.monotonic() + 90
    with httpx.Client(transport=transport, base_url="http://in-netns", timeout=5) as client:
        while True:
            assert proc.poll() is None, (base / f"{name}.log").read_text()[-3000:]
            try:
                if client.get(path).status_code == 200:
                    return port
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{name} did not come up in 90 s"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def on_ray(ray_cluster: RayCluster) -> Iterator[OnRay]:
    missing = missing_packages()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    base = Path(tempfile.mkdtemp(prefix="suanwang-serving-ray-"))
    base.chmod(0o755)
    data = base / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANWANG_")}
    env |= {
        "SUANWANG_DATA_DIR": str(data),
        "SUANWANG_DATABASE_URL": f"sqlite:///{data / 'suanwang.db'}",
        "SUANWANG_TICK_S": "0.2",
        "SUANWANG_CLUSTER_HEALTH_INTERVAL_S": "1",
        "SUANWANG_LLAMA_THREADS": "1",
        "SUANWANG_LLAMA_SLOTS": "4",
        "SUANWANG_LOG_LEVEL": "warning",
    }
    settings = Settings(
        data_dir=data, database_url=env["SUANWANG_DATABASE_URL"], llama_threads=1, llama_slots=4
    )
    platform = build_platform(settings)
    platform.fleet.apply_yaml(fleet())
    procs_before = len(ray_cluster.procs)
    dep = ""
    try:
        serve(ray_cluster, "suanwang.bootstrap:app_from_env", env, base, "server")
        dep = platform.deployments.deploy(OP, CHAT, "rc-serve", 1).deployment.id
        on_ray = OnRay(ray_cluster, platform, Stack(base, settings, "", env), dep, 0)
        wait_for(
            lambda: on_ray.replica().state is ReplicaState.READY,
            lambda: f"replica {on_ray.replica()}",
            READY_TIMEOUT_S,
        )
        gateway = "suanwang.bootstrap:gateway_app_from_env"
        on_ray.gateway_port = serve(ray_cluster, gateway, env, base, "gateway")
        yield on_ray
    finally:
        if dep:
            platform.deployments.delete(OP, dep)
            wait_for(lambda: not _live_jobs(platform), lambda: "replica job still live", 60)
        for proc in ray_cluster.procs[procs_before:]:
            proc.terminate()  # ip netns exec execs: these are the servers and relays
            proc.wait(10)
        del ray_cluster.procs[procs_before:]
        platform.uows.engine.dispose()  # type: ignore[attr-defined]
        shutil.rmtree(base, ignore_errors=True)


def _live_jobs(platform: Platform) -> list[str]:
    with platform.uows() as uow:
        return [j.id for j in uow.jobs.jobs(None) if not j.state.terminal]


def test_the_replica_is_a_ray_job_reached_at_the_node_ray_placed_it_on(on_ray: OnRay) -> None:
    replica = on_ray.replica()
    assert replica.job is not None
    with on_ray.platform.uows() as uow:
        attempt = uow.jobs.attempts(replica.job)[-1]
    (placed,) = {p.node for p in attempt.placements}
    assert attempt.handle["node"] == placed
    assert placed in NODES
    assert attempt.handle["host"] == "127.0.0.1"  # Ray's address of the node in the namespace
    assert replica.base_url == f"http://127.0.0.1:{replica.port}"
    running = [j for j in on_ray.cluster.jobs() if j.get("status") == "RUNNING"]
    assert any(replica.job in str(j.get("submission_id", "")) for j in running), running


def test_eight_chats_at_once_answer_through_the_gateway_and_are_billed(on_ray: OnRay) -> None:
    tenant = "ray-chat"
    key, _ = on_ray.stack.tenant_with_key(tenant)
    url = f"http://127.0.0.1:{on_ray.gateway_port}/v1"
    prefix = on_ray.cluster.netns_argv()
    answers = chat_at_once(url, key, prefix)
    rows = on_ray.stack.wait_ledger(tenant, CONCURRENT)  # type: ignore[attr-defined]
    check_billed(answers, rows, on_ray.deployment, on_ray.replica().id)


def test_a_replica_whose_ray_job_is_stopped_is_restarted_and_routed_again(on_ray: OnRay) -> None:
    """A stop from outside suanwang (Ray's job API): the replica gets a new job (same node
    choice by the scheduler, same port), is health-checked back to ready and served again."""
    before = on_ray.replica()
    assert before.job is not None
    with on_ray.platform.uows() as uow:
        submission = uow.jobs.attempts(before.job)[-1].handle["submission_id"]
    with on_ray.cluster.dashboard() as client:
        client.post(f"/api/jobs/{submission}/stop").raise_for_status()
    wait_for(
        lambda: (r := on_ray.replica()).job != before.job and r.state is ReplicaState.READY,
        lambda: f"replica {on_ray.replica()}",
        READY_TIMEOUT_S,
    )
    after = on_ray.replica()
    assert (after.restarts, after.port) == (before.restarts + 1, before.port)
    key, _ = on_ray.stack.tenant_with_key("ray-restarted")
    url = f"http://127.0.0.1:{on_ray.gateway_port}/v1"
    (answer,) = chat_at_once(url, key, on_ray.cluster.netns_argv(), n=1)
    assert answer["content"]
