"""SmolLM2 on the real Slurm test cluster answers through the gateway (issue 12, point 4).

The replica is a Slurm job (sandbox mode: as the engine uid, in bubblewrap on the node)
running llama-server on the node's address as slurmctld reports it (127.0.0.1 here) and
the port the control plane chose; the control plane checks the backend's report of that
node before routing. One platform and gateway for the module (session-scoped Slurm
cluster); about 35 s on this machine (llama-server starts in a few seconds).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_serving import (
    READY_TIMEOUT_S,
    Served,
    chat_at_once,
    chat_eight_at_once,
    serving_on,
    wait_for,
)
from live_engines import missing_packages
from slurm_cluster import ENGINE_UID, PARTITION, TENANT_UIDS, SlurmCluster

from suanwang.domain.deployments import ReplicaRecord
from suanwang.domain.serving import ReplicaState


def fleet(cluster: SlurmCluster) -> str:
    return f"""
regions: [{{name: here}}]
clusters:
  - name: hpc
    region: here
    kind: real
    backend: slurm
    slurm: {{partition: {PARTITION}, bin_dir: {cluster.bin_dir}}}
    nodes: [{{name: {cluster.node}, chip: cpu, cards: 4}}]
"""


@pytest.fixture(scope="module")
def on_slurm(slurm_cluster: SlurmCluster) -> Iterator[Served]:
    missing = missing_packages()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    settings: dict[str, object] = {
        "engine_uid": ENGINE_UID,
        "tenant_uid_range": f"{TENANT_UIDS[0]}-{TENANT_UIDS[-1]}",
    }
    tmp = Path(tempfile.mkdtemp(prefix="suanwang-serving-slurm-"))
    tmp.chmod(0o755)  # the engine uid writes its output in the spool beside the data dir
    try:
        with serving_on(tmp, fleet(slurm_cluster), "hpc", settings) as served:
            yield served
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_the_replica_is_a_slurm_job_reached_at_the_node_slurm_placed_it_on(
    on_slurm: Served, slurm_cluster: SlurmCluster
) -> None:
    replica: ReplicaRecord = on_slurm.replica()
    handle = on_slurm.attempt_handle()
    assert handle["node"] == slurm_cluster.node
    assert handle["host"] == "127.0.0.1"  # NodeAddr of the test node
    assert replica.base_url == f"http://127.0.0.1:{replica.port}"
    assert handle["slurm_job_id"] in slurm_cluster.job_ids()
    job = slurm_cluster.run("scontrol", "show", "job", str(handle["slurm_job_id"]))
    assert f"UserId=suanwang-{ENGINE_UID}({ENGINE_UID})" in job  # sandboxed as the engine uid
    assert "JobState=RUNNING" in job


def test_eight_chats_at_once_answer_through_the_gateway_and_are_billed(on_slurm: Served) -> None:
    chat_eight_at_once(on_slurm, "slurm-chat")


def test_a_replica_whose_slurm_job_is_killed_is_restarted_and_routed_again(
    on_slurm: Served, slurm_cluster: SlurmCluster
) -> None:
    """scancel from outside suanwang: the replica gets a new job (same node, same port),
    is health-checked back to ready, and the gateway routes to it again."""
    before = on_slurm.replica()
    slurm_cluster.run("scancel", str(on_slurm.attempt_handle()["slurm_job_id"]))
    wait_for(
        lambda: (r := on_slurm.replica()).job != before.job and r.state is ReplicaState.READY,
        lambda: f"replica {on_slurm.replica()}",
        READY_TIMEOUT_S,
    )
    after = on_slurm.replica()
    assert (after.restarts, after.base_url) == (before.restarts + 1, before.base_url)
    assert on_slurm.attempt_handle()["slurm_job_id"] in slurm_cluster.job_ids()
    key, _ = on_slurm.stack.tenant_with_key("slurm-restarted")
    (answer,) = chat_at_once(on_slurm.gateway_url, key, n=1)
    assert answer["content"]
