"""Datasets on the real Slurm cluster, against a hostile tenant (issue 14, every backend).

One server (SQLite, sandbox mode: jobs run as the tenant's uid in bubblewrap on the node)
for the module, on the session's Slurm cluster; the storage root is outside the 0700 data
directory (``SUANWANG_STORAGE_ROOT``), as docs/datasets.md asks for Slurm. Two tenants,
``acme`` and ``umbrella``, each with a sealed dataset ``corpus``. Acme's job (the probe of
``dataset_probe.py``) reads its file at ``/data/input`` and prints its SHA-256 (checked),
cannot append to it or create a file there, and reaches neither umbrella's replica by its
absolute host path, nor the data directory, the credentials key, the database or the
storage root. Outside the sandbox too, acme's uid cannot read umbrella's replica. Then 8
readers at once, each with the right hash. Umbrella's own job naming ``corpus`` runs
first (reading umbrella's, and giving umbrella's uid its search on umbrella's directories),
so the probe runs where the other tenant's grant exists too.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dataset_probe import check, logs, probe_command, second_tenant, upload, verdict
from engine_live import ServerLive, at_once, job, prepare, server_env, wait_health, wait_state
from procs import Server, free_port
from slurm_cluster import CARDS, CHIP, ENGINE_UID, TENANT_UIDS, SlurmCluster

from suanwang.config import Settings

ACME, UMBRELLA = b"acme's corpus\n" * 100, b"umbrella's secret corpus\n"


@dataclass
class Live(ServerLive):
    cluster: SlurmCluster
    umbrella_key: str
    storage: Path
    data: Path
    replicas: dict[str, Path]


def fleet(cluster: SlurmCluster) -> str:
    return f"""
regions: [{{name: here}}]
clusters:
  - name: hpc
    region: here
    kind: real
    backend: slurm
    slurm: {{partition: debug, bin_dir: {cluster.bin_dir}}}
    nodes: [{{name: {cluster.node}, chip: {CHIP}, cards: {CARDS}}}]
"""


@pytest.fixture(scope="module")
def live(slurm_cluster: SlurmCluster) -> Iterator[Live]:
    base = Path(tempfile.mkdtemp(prefix="suanwang-slurm-data-"))
    base.chmod(0o755)
    data, storage = base / "data", base / "storage"
    env = server_env(
        data,
        tenant_uid_range=f"{TENANT_UIDS[0]}-{TENANT_UIDS[-1]}",
        engine_uid=str(ENGINE_UID),
        storage_root=str(storage),
    )
    settings = Settings(
        data_dir=data, tenant_uid_range=env["SUANWANG_TENANT_UID_RANGE"], engine_uid=ENGINE_UID
    )
    key, op_key = prepare(settings, fleet(slurm_cluster), {"ascend": 8})
    umbrella = second_tenant(settings)
    server = Server(env, free_port(), base / "server.log")
    server.start()
    url = f"http://127.0.0.1:{server.port}"
    live = Live(url, key, op_key, env, server, base, slurm_cluster, umbrella, storage, data, {})
    try:
        wait_health(live, "hpc", "healthy")
        for tenant, secret, content in (("acme", key, ACME), ("umbrella", umbrella, UMBRELLA)):
            ref = upload(live, secret, "corpus", content)
            live.replicas[tenant] = storage / "here" / "tenants" / tenant / "datasets" / ref
        yield live
    finally:
        server.stop()


def targets(live: Live) -> dict[str, str]:
    found = {
        "other_replica": str(live.replicas["umbrella"] / "a.txt"),
        "other_dir": str(live.replicas["umbrella"]),
        "data_dir": str(live.data),
        "storage_root": str(live.storage),
        "datasets_dir": str(live.replicas["acme"].parent),
    }
    for name in ("credentials.key", "suanwang.db"):
        if (live.data / name).exists():
            found[name.replace(".", "_")] = str(live.data / name)
    assert "suanwang_db" in found  # the probe must try at least one real secret
    return found


def submit(live: Live, command: list[str], **body: Any) -> str:
    payload = {"command": command, "resources": {"chip": CHIP, "cluster": "hpc"}, **body}
    with live.client() as client:
        response = client.post("/api/v1/jobs", json=payload)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@dataclass
class AsUmbrella:
    live: Live

    def client(self, key: str | None = None) -> httpx.Client:
        return self.live.client(key or self.live.umbrella_key)


def umbrella_reads_its_own(live: Live) -> None:
    """Umbrella's job naming ``corpus`` reads umbrella's (and its uid gets its grant)."""
    umbrella = AsUmbrella(live)
    payload = {"command": ["sha256sum", "/data/input/a.txt"], "dataset": "corpus"}
    with umbrella.client() as client:
        made = client.post("/api/v1/jobs", json=payload | {"resources": {"chip": CHIP}})
    assert made.status_code == 201, made.text
    job_id = str(made.json()["id"])
    done = wait_state(umbrella, job_id, "succeeded", "failed", timeout=60)
    assert done["state"] == "succeeded", done.get("reason")
    out = logs(umbrella, job_id)
    assert out.split()[0] == hashlib.sha256(UMBRELLA).hexdigest(), out


def test_a_slurm_job_reads_its_dataset_and_nothing_else(live: Live) -> None:
    umbrella_reads_its_own(live)  # first: umbrella's directories now let umbrella's uid pass
    aim = targets(live)
    job_id = submit(live, probe_command(aim), dataset="corpus")
    done = wait_state(live, job_id, "succeeded", "failed", timeout=60)
    seen = verdict(logs(live, job_id))
    assert done["state"] == "succeeded", (job(live, job_id).get("reason"), seen)
    check(seen, ACME, aim)
    assert (live.replicas["acme"] / "a.txt").read_bytes() == ACME
    assert not (live.replicas["acme"] / "new.txt").exists()
    # outside any sandbox, acme's uid (what its Slurm jobs run as) is stopped at umbrella's
    # tenant directory, and cannot list its own datasets directory either
    uid = int(seen["uid"])  # acme's, as its job ran (umbrella's job took the first uid)
    assert uid in TENANT_UIDS
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    for path in (live.replicas["umbrella"] / "a.txt", live.data / "suanwang.db"):
        attempt = subprocess.run([*drop, "cat", str(path)], capture_output=True, timeout=10)
        assert attempt.returncode != 0, path
        assert b"Permission denied" in attempt.stderr
    listing = subprocess.run([*drop, "ls", str(live.replicas["acme"].parent)], capture_output=True)
    assert listing.returncode != 0


def test_eight_dataset_readers_at_once(live: Live) -> None:
    command = ["sh", "-c", "sleep 0.5; sha256sum /data/input/a.txt"]
    ids = at_once(lambda _: submit(live, command, dataset="corpus"), 8)
    states = {j: wait_state(live, j, "succeeded", "failed", timeout=90)["state"] for j in ids}
    assert set(states.values()) == {"succeeded"}, {j: job(live, j)["reason"] for j in ids}
    digest = hashlib.sha256(ACME).hexdigest()
    assert all(logs(live, j).split()[0] == digest for j in ids)
