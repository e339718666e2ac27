"""Acceptance of the Kubernetes backend through a real suanwang server (issue 12).

No cluster can run here, so the server's ``kubernetes`` cluster points (``api_url``) at
the fake API server of kube_fake.py, run in this test process with its controller on: a
created Job starts at once and ends after its env ``SIM_SECONDS`` with exit ``SIM_EXIT``
and the log ``ran: <argv>``. One server process (SQLite; tick 0.2 s, health every 1 s) for
the module, with the cluster ``k8s`` (two nodes of 8 ``ascend-910b``, read by the fake from
node allocatable) and the ``local`` cluster. Scenarios: a job becomes a Job in the
tenant's namespace and its simulated completion ends the suanwang job (logs through
``suanwang jobs logs``), cancel deletes it, 8 jobs at once, kill -9 of the server while a
job runs (re-attach: one Job, one attempt), ``fleet import --from kubernetes`` into
``fleet apply``, an unreachable API server or a refused token: unhealthy with the
reason, jobs stay queued, ``local`` works; and a model deployment on the cluster: its
replica becomes a Deployment + ClusterIP Service and its base URL the Service's ClusterIP
and port (the fake runs no engine, so the gateway is not exercised), deleting the
deployment deletes both. About 30-60 s, most of it server start-up.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_live import ServerLive, job, prepare, server_env, wait_health, wait_state
from kube_fake import FakeKube
from kube_fake_server import fake_kube
from procs import Server, free_port

from suanwang.config import Settings

pytest.importorskip("kubernetes")

CHIP = "ascend-910b"
UIDS = "152000-152099"


@dataclass
class Live(ServerLive):
    kube: FakeKube


def fleet(api_url: str, name: str = "k8s") -> str:
    return f"""
regions: [{{name: here}}]
clusters:
  - name: {name}
    region: here
    kind: real
    kubernetes: {{api_url: '{api_url}', job_api: job}}
    nodes:
      - {{name: k8s-npu-1, chip: {CHIP}, cards: 8}}
      - {{name: k8s-npu-2, chip: {CHIP}, cards: 8}}
  - {{name: local, region: here, kind: real, nodes: [{{name: n1, chip: cpu, cards: 2}}]}}
"""


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    base = Path(tempfile.mkdtemp(prefix="suanwang-kube-live-"))
    base.chmod(0o755)
    data = base / "data"
    env = server_env(data, tenant_uid_range=UIDS, kube_image="busybox:1.36")
    if os.geteuid() != 0:
        env["SUANWANG_LOCAL_ISOLATION"] = "single-user-dev"
    with fake_kube(controller=True) as kube:
        kube.node("k8s-npu-1", {"huawei.com/Ascend910B": "8"})
        kube.node("k8s-npu-2", {"huawei.com/Ascend910B": "8"})
        settings = Settings(data_dir=data, tenant_uid_range=UIDS)
        key, op_key = prepare(settings, fleet(kube.url), {"ascend": 16, "cpu": 2})
        port = free_port()
        server = Server(env, port, base / "server.log")
        server.start()
        live = Live(f"http://127.0.0.1:{port}", key, op_key, env, server, base, kube)
        try:
            wait_health(live, "k8s", "healthy")
            yield live
        finally:
            server.stop()


def submit(live: Live, command: list[str], seconds: float = 0.5, **body: Any) -> str:
    payload = {
        "command": command,
        "resources": {"chip": CHIP, "cluster": "k8s"},
        "env": {"SIM_SECONDS": str(seconds)},
        **body,
    }
    with live.client() as client:
        response = client.post("/api/v1/jobs", json=payload)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def objects_of(live: Live, job_id: str) -> list[dict[str, Any]]:
    return [o for o in live.kube.managed() if o["metadata"]["labels"]["suanwang.io/job"] == job_id]


def test_a_job_becomes_a_kubernetes_job_and_its_completion_ends_it(live: Live) -> None:
    job_id = submit(live, ["python", "-c", "print('hi; $(id)')"])
    done = wait_state(live, job_id, "succeeded", "failed")
    assert done["state"] == "succeeded", done
    (obj,) = objects_of(live, job_id)
    assert obj["metadata"]["namespace"] == "suanwang-acme"
    pod = obj["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["python", "-c", "print('hi; $(id)')"]
    assert pod["containers"][0]["image"] == "busybox:1.36"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsUser"] == 152000
    assert pod["containers"][0]["resources"]["limits"] == {"huawei.com/Ascend910B": "1"}
    logs = live.cli("jobs", "logs", job_id)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.strip() == "ran: python -c print('hi; $(id)')"
    failed_id = submit_failing(live)
    failed = wait_state(live, failed_id, "succeeded", "failed")
    assert failed["state"] == "failed"


def submit_failing(live: Live) -> str:
    payload = {
        "command": ["false"],
        "resources": {"chip": CHIP, "cluster": "k8s"},
        "env": {"SIM_SECONDS": "0.2", "SIM_EXIT": "3"},
    }
    with live.client() as client:
        response = client.post("/api/v1/jobs", json=payload)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_cancel_deletes_the_job(live: Live) -> None:
    job_id = submit(live, ["sleep", "300"], seconds=300)
    wait_state(live, job_id, "running")
    with live.client() as client:
        assert client.post(f"/api/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    wait_state(live, job_id, "cancelled")
    deadline = time.monotonic() + 15
    while objects_of(live, job_id):
        assert time.monotonic() < deadline, objects_of(live, job_id)
        time.sleep(0.2)
    assert any(
        d[2] == "Background" and d[0].startswith(f"suanwang-{job_id}-") for d in live.kube.deletes
    )


def test_eight_jobs_at_once(live: Live) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        found = submit(live, ["sh", "-c", f"echo job {i}"], seconds=1)
        with lock:
            ids.append(found)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8
    states = {j: wait_state(live, j, "succeeded", "failed", timeout=90)["state"] for j in ids}
    assert set(states.values()) == {"succeeded"}, states
    assert all(len(objects_of(live, j)) == 1 for j in ids)  # one Job each, never two


def test_a_restarted_server_reattaches_instead_of_resubmitting(live: Live) -> None:
    job_id = submit(live, ["sh", "-c", "sleep 6"], seconds=8)
    wait_state(live, job_id, "running")
    live.server.kill()
    before = len(live.kube.requests)
    time.sleep(1)
    live.server.start()
    done = wait_state(live, job_id, "succeeded", "failed")
    assert done["state"] == "succeeded", done
    assert done["attempts"] == 1
    assert len(objects_of(live, job_id)) == 1
    after = live.kube.requests[before:]
    assert not [p for m, p in after if m == "POST" and p.endswith("/jobs")], after


def test_fleet_import_writes_a_file_fleet_apply_accepts(live: Live) -> None:
    out = live.base / "imported.yaml"
    imported = live.cli(
        "fleet", "import", "--from", "kubernetes", "--cluster", "k8s2", "--region", "there",
        "--api-url", live.kube.url, "-o", str(out), key=live.operator_key,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    (cluster,) = yaml.safe_load(out.read_text())["clusters"]
    assert cluster["kubernetes"]["api_url"] == live.kube.url
    cards = sum(n.get("cards", 0) * n.get("count", 1) for n in cluster.get("nodes", []))
    cards += sum(g["cards"] * g["count"] for g in cluster.get("node_groups", []))
    assert cards == 16  # the fake's two nodes of 8
    applied = live.cli("fleet", "apply", str(out), key=live.operator_key)
    assert applied.returncode == 0, applied.stderr
    wait_health(live, "k8s2", "healthy")


def test_unreachable_or_refusing_api_servers_make_the_cluster_unhealthy(live: Live) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with fake_kube(token="only-this") as guarded:
        guarded.node("g-npu-1", {"huawei.com/Ascend910B": "8"})
        bad = live.base / "bad.yaml"
        bad.write_text(
            f"""
regions: [{{name: here}}]
clusters:
  - name: k8s-down
    region: here
    kind: real
    kubernetes: {{api_url: '{closed}'}}
    nodes: [{{name: d-npu-1, chip: {CHIP}, cards: 8}}]
  - name: k8s-401
    region: here
    kind: real
    kubernetes: {{api_url: '{guarded.url}'}}
    nodes: [{{name: g-npu-1, chip: {CHIP}, cards: 8}}]
"""
        )
        applied = live.cli("fleet", "apply", str(bad), key=live.operator_key)
        assert applied.returncode == 0, applied.stderr
        down = wait_health(live, "k8s-down", "unhealthy")
        assert "cannot reach the API server" in down["reason"]
        refused = wait_health(live, "k8s-401", "unhealthy")
        assert "credentials refused" in refused["reason"], refused
        assert "401" in refused["reason"]
    waiting = submit(live, ["echo", "later"], resources={"chip": CHIP, "cluster": "k8s-down"})
    local = submit(live, ["echo", "local works"], resources={"chip": "cpu", "cluster": "local"})
    assert wait_state(live, local, "succeeded", "failed")["state"] == "succeeded"
    time.sleep(1)
    assert job(live, waiting)["state"] == "queued"


def test_a_model_deployment_runs_as_a_deployment_and_service_at_its_cluster_ip(
    live: Live,
) -> None:
    """The fake runs no engine: the replica gets its validated base URL and stays starting
    (the gateway path is tested on Slurm and Ray); deleting the deployment removes both."""
    body = {"model": "qwen2.5-72b-instruct", "cluster": "k8s", "engine": "vllm-ascend"}
    with live.client(live.operator_key) as client:
        made = client.post("/api/v1/deployments", json=body)
        assert made.status_code == 201, made.text
        dep = made.json()["id"]
        deadline = time.monotonic() + 60
        while not (replica := client.get(f"/api/v1/deployments/{dep}").json()["replica_list"][0])[
            "base_url"
        ]:
            assert time.monotonic() < deadline, replica
            time.sleep(0.2)
    namespace = "suanwang-maas-public"
    name = f"suanwang-{replica['job']}-1"
    with live.kube.cond:
        deployment = live.kube.objects[("apps/v1/deployments", namespace, name)]
        service = live.kube.objects[("v1/services", namespace, name)]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    port = container["ports"][0]["containerPort"]
    assert service["spec"]["ports"][0]["port"] == port
    assert replica["base_url"] == f"http://{service['spec']['clusterIP']}:{port}"
    assert replica["state"] == "starting", replica  # nothing answers at the ClusterIP here
    assert container["image"] == "quay.io/ascend/vllm-ascend:v0.8.5rc1"
    assert f"--port {port}" in container["command"][-1]
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    with live.client(live.operator_key) as client:
        assert client.delete(f"/api/v1/deployments/{dep}").status_code in (200, 202, 204)
    deadline = time.monotonic() + 30
    while ("v1/services", namespace, name) in live.kube.objects or (
        "apps/v1/deployments",
        namespace,
        name,
    ) in live.kube.objects:
        assert time.monotonic() < deadline, "the replica's objects were not deleted"
        time.sleep(0.2)
