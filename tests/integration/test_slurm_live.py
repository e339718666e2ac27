"""Acceptance on the real Slurm cluster through a real suanwang server (issue 12, Slurm).

One server process (SQLite; tick 0.2 s, cluster health every 1 s) for the module, with a
fleet of a Slurm cluster ``hpc`` (the test cluster's ``debug`` partition, 8 ``ascend910b``
cards) and the ``local`` cluster; jobs run in sandbox mode as the tenant's uid. Scenarios:
run with ``suanwang jobs logs``, cancel, requeue of a preemptible job by Slurm, 8 jobs
submitted at once, a kill -9 of the server while a job runs (re-attach, never a second
run), ``fleet import --from slurm`` into ``fleet apply``, and slurmctld down or a missing
partition: the cluster is unhealthy with the reason, its jobs stay queued, ``local`` works.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_live import ServerLive, at_once, job, prepare, server_env, wait_health, wait_state
from procs import Server, free_port
from slurm_cluster import CARDS, CHIP, ENGINE_UID, PARTITION, TENANT_UIDS, SlurmCluster

from suanwang.config import Settings


@dataclass
class Live(ServerLive):
    cluster: SlurmCluster


def fleet(cluster: SlurmCluster, partition: str = PARTITION, name: str = "hpc") -> str:
    node = cluster.node
    return f"""
regions: [{{name: here}}]
clusters:
  - name: {name}
    region: here
    kind: real
    backend: slurm
    slurm: {{partition: {partition}, bin_dir: {cluster.bin_dir}}}
    nodes: [{{name: {node}, chip: {CHIP}, cards: {CARDS}}}]
  - {{name: local, region: here, kind: real, nodes: [{{name: n1, chip: cpu, cards: 2}}]}}
"""


@pytest.fixture(scope="module")
def live(slurm_cluster: SlurmCluster) -> Iterator[Live]:
    base = Path(tempfile.mkdtemp(prefix="suanwang-slurm-live-"))
    base.chmod(0o755)
    data = base / "data"
    env = server_env(
        data,
        tenant_uid_range=f"{TENANT_UIDS[0]}-{TENANT_UIDS[-1]}",
        engine_uid=str(ENGINE_UID),
    )
    settings = Settings(
        data_dir=data,
        tenant_uid_range=env["SUANWANG_TENANT_UID_RANGE"],
        engine_uid=ENGINE_UID,
    )
    key, op_key = prepare(settings, fleet(slurm_cluster), {"ascend": 8, "cpu": 2})
    port = free_port()
    server = Server(env, port, base / "server.log")
    server.start()
    live = Live(f"http://127.0.0.1:{port}", key, op_key, env, server, base, slurm_cluster)
    try:
        wait_health(live, "hpc", "healthy")
        yield live
    finally:
        server.stop()


def submit(live: Live, command: list[str], **body: Any) -> str:
    payload = {"command": command, "resources": {"chip": CHIP, "cluster": "hpc"}, **body}
    with live.client() as client:
        response = client.post("/api/v1/jobs", json=payload)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def explain(live: Live, job_id: str) -> str:
    """The job's reason and events, and what Slurm holds (for failure messages)."""
    found = job(live, job_id)
    events = [(e["state"], e["reason"]) for e in found.get("events", [])]
    return f"{found.get('reason')}; events: {events}; slurm: {slurm_jobs(live, job_id)}"


def slurm_jobs(live: Live, job_id: str) -> list[str]:
    out = live.cluster.run("squeue", "-h", "-t", "all", "-o", "%i %j %T")
    return [line for line in out.splitlines() if f" suanwang-{job_id}-" in line]


def test_a_job_runs_on_slurm_and_its_logs_come_back(live: Live) -> None:
    job_id = submit(live, ["sh", "-c", "echo hello from $SLURM_JOB_ID as $(id -u)"])
    done = wait_state(live, job_id, "succeeded", "failed")
    assert done["state"] == "succeeded", explain(live, job_id)
    (slurm_line,) = slurm_jobs(live, job_id)
    logs = live.cli("jobs", "logs", job_id)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.strip() == f"hello from {slurm_line.split()[0]} as {TENANT_UIDS[0]}"


def test_cancel_stops_the_slurm_job(live: Live) -> None:
    job_id = submit(live, ["sleep", "300"])
    wait_state(live, job_id, "running")
    with live.client() as client:
        assert client.post(f"/api/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    wait_state(live, job_id, "cancelled")
    deadline = time.monotonic() + 15
    while not all(line.endswith("CANCELLED") for line in slurm_jobs(live, job_id)):
        assert time.monotonic() < deadline, slurm_jobs(live, job_id)
        time.sleep(0.2)


def test_eight_jobs_at_once(live: Live) -> None:
    ids = at_once(lambda i: submit(live, ["sh", "-c", f"sleep 1; echo job {i}"]), 8)
    states = {j: wait_state(live, j, "succeeded", "failed", timeout=90)["state"] for j in ids}
    assert set(states.values()) == {"succeeded"}, states
    assert all(len(slurm_jobs(live, j)) == 1 for j in ids)  # one Slurm job each, never two


def test_a_restarted_server_reattaches_instead_of_resubmitting(live: Live) -> None:
    job_id = submit(live, ["sh", "-c", "sleep 6; echo finished"])
    wait_state(live, job_id, "running")
    live.server.kill()
    time.sleep(1)
    live.server.start()
    done = wait_state(live, job_id, "succeeded", "failed")
    assert done["state"] == "succeeded", explain(live, job_id)
    assert len(slurm_jobs(live, job_id)) == 1
    assert done["attempts"] == 1
    assert live.cli("jobs", "logs", job_id).stdout.strip() == "finished"


def test_slurm_requeues_a_preemptible_job(live: Live) -> None:
    script = (
        'echo "run ${SLURM_RESTART_COUNT:-0}"; [ "${SLURM_RESTART_COUNT:-0}" -ge 1 ] || sleep 300'
    )
    job_id = submit(live, ["sh", "-c", script], preemptible=True)
    wait_state(live, job_id, "running")
    (line,) = slurm_jobs(live, job_id)
    slurm_id = line.split()[0]
    deadline = time.monotonic() + 20
    while "run 0" not in live.cli("jobs", "logs", job_id).stdout:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    live.cluster.run("scontrol", "requeue", slurm_id)
    while "BeginTime" not in live.cluster.run("squeue", "-h", "-j", slurm_id, "-o", "%r"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    live.cluster.run("scontrol", "update", f"JobId={slurm_id}", "StartTime=now")
    done = wait_state(live, job_id, "succeeded", "failed")
    assert done["state"] == "succeeded", explain(live, job_id)
    runs = [x for x in live.cli("jobs", "logs", job_id).stdout.splitlines() if x.startswith("run")]
    assert runs == ["run 0", "run 1"]


def test_fleet_import_writes_a_file_fleet_apply_accepts(live: Live) -> None:
    out = live.base / "imported.yaml"
    imported = live.cli(
        "fleet",
        "import",
        "--from",
        "slurm",
        "--cluster",
        "hpc2",
        "--region",
        "there",
        "--partition",
        PARTITION,
        "--bin-dir",
        str(live.cluster.bin_dir),
        "-o",
        str(out),
        key=live.operator_key,
    )
    assert imported.returncode == 0, imported.stderr
    document = yaml.safe_load(out.read_text())
    (cluster,) = document["clusters"]
    assert cluster["slurm"]["partition"] == PARTITION
    cards = sum(n.get("cards", 0) * n.get("count", 1) for n in cluster.get("nodes", []))
    sinfo = live.cluster.run("sinfo", "-h", "-N", "-o", "%G")
    assert cards == CARDS
    assert f"{CARDS}" in sinfo
    applied = live.cli("fleet", "apply", str(out), key=live.operator_key)
    assert applied.returncode == 0, applied.stderr
    wait_health(live, "hpc2", "healthy")


def test_missing_partition_and_controller_down_make_the_cluster_unhealthy(live: Live) -> None:
    bad = live.base / "bad.yaml"
    bad.write_text(fleet(live.cluster, partition="nosuch", name="hpc-missing"))
    assert live.cli("fleet", "apply", str(bad), key=live.operator_key).returncode == 0
    health = wait_health(live, "hpc-missing", "unhealthy")
    assert "partition 'nosuch' not found" in health["reason"]

    live.cluster.stop_controller()
    try:
        health = wait_health(live, "hpc", "unhealthy", timeout=60)
        assert "unreachable" in health["reason"] or "controller" in health["reason"]
        waiting = submit(live, ["echo", "later"])
        local = submit(live, ["echo", "local works"], resources={"chip": "cpu", "cluster": "local"})
        assert wait_state(live, local, "succeeded", "failed")["state"] == "succeeded"
        assert job(live, waiting)["state"] == "queued"
    finally:
        live.cluster.start_controller()
    wait_health(live, "hpc", "healthy", timeout=60)
    assert wait_state(live, waiting, "succeeded", "failed", timeout=90)["state"] == "succeeded"
