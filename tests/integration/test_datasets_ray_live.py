"""Datasets on the real Ray cluster, against a hostile tenant (issue 14, every backend).

One server (SQLite) in the session's Ray namespace, like test_ray_live.py; its Ray cluster
block names the workers' uid (``worker_uid``), so the backend gives that uid search on a
job's dataset directories before submitting (a tenant job's bubblewrap binds the replica
as that uid). The storage root is outside the 0700 data directory. Two tenants with a
dataset ``corpus`` each. Acme's job (``dataset_probe.py``) reads its file at
``/data/input`` with the right SHA-256, cannot write there, and reaches neither umbrella's
replica by its absolute host path nor the data directory, the database or the storage
root; umbrella's job naming ``corpus`` reads umbrella's.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import engine_live
import httpx
import pytest
from dataset_probe import check, logs, probe_command, second_tenant, upload, verdict
from engine_live import job, prepare, wait_health
from ray_cluster import CARDS, CHIP, NODES, RAY_UID, RayCluster
from test_ray_live import Live

from suanwang.config import Settings

ACME, UMBRELLA = b"acme's corpus on ray\n" * 64, b"umbrella's secret corpus\n"


@dataclass
class World:
    live: Live
    umbrella_key: str
    storage: Path
    data: Path
    replicas: dict[str, Path]


@dataclass
class As:
    live: Live
    key: str

    def client(self, key: str | None = None) -> httpx.Client:
        return self.live.client(key or self.key)


def fleet() -> str:
    nodes = ", ".join(f"{{name: {n}, chip: {CHIP}, cards: {CARDS}}}" for n in NODES)
    ray = f'{{address: "http://127.0.0.1:8265", worker_uid: {RAY_UID}}}'
    return f"""
regions: [{{name: here}}]
clusters:
  - {{name: rc, region: here, kind: real, backend: ray, ray: {ray}, nodes: [{nodes}]}}
"""


@pytest.fixture(scope="module")
def world(ray_cluster: RayCluster) -> Iterator[World]:
    base = Path(tempfile.mkdtemp(prefix="suanwang-ray-data-"))
    base.chmod(0o755)
    data, storage = base / "data", base / "storage"
    env = engine_live.server_env(data, storage_root=str(storage))
    env["SUANWANG_DATABASE_URL"] = f"sqlite:///{data / 'suanwang.db'}"
    settings = Settings(data_dir=data, database_url=env["SUANWANG_DATABASE_URL"])
    key, op_key = prepare(settings, fleet(), {"ascend": 16})
    umbrella = second_tenant(settings)
    live = Live(ray_cluster, base, env, ray_cluster.port(), key, op_key)
    ray_cluster.relay(live.socket, live.port)
    live.start()
    world = World(live, umbrella, storage, data, {})
    try:
        wait_health(live, "rc", "healthy", timeout=60)
        for tenant, secret, content in (("acme", key, ACME), ("umbrella", umbrella, UMBRELLA)):
            ref = upload(live, secret, "corpus", content)
            world.replicas[tenant] = storage / "here" / "tenants" / tenant / "datasets" / ref
        yield world
    finally:
        if live.proc is not None and live.proc.poll() is None:
            live.kill()
        shutil.rmtree(base, ignore_errors=True)


def run(world: World, key: str, command: list[str]) -> tuple[dict[str, str], str]:
    """Submit ``command`` naming dataset ``corpus`` as ``key``'s tenant; (job, its logs)."""
    api = As(world.live, key)
    body = {"command": command, "resources": {"chip": CHIP, "cluster": "rc"}, "dataset": "corpus"}
    with api.client() as client:
        made = client.post("/api/v1/jobs", json=body)
    assert made.status_code == 201, made.text
    job_id = str(made.json()["id"])
    done = engine_live.wait_state(api, job_id, "succeeded", "failed", timeout=120)
    out = logs(api, job_id)
    assert done["state"] == "succeeded", (job(api, job_id).get("reason"), out[-2000:])
    return done, out


def umbrella_reads_its_own(world: World) -> None:
    _, out = run(world, world.umbrella_key, ["sha256sum", "/data/input/a.txt"])
    digest = hashlib.sha256(UMBRELLA).hexdigest()
    assert f"{digest}  /data/input/a.txt" in out.splitlines(), out  # Ray logs a preamble


def test_a_ray_job_reads_its_dataset_and_nothing_else(world: World) -> None:
    umbrella_reads_its_own(world)  # first: both tenants' directories have the workers' grant
    aim = {
        "other_replica": str(world.replicas["umbrella"] / "a.txt"),
        "other_dir": str(world.replicas["umbrella"]),
        "data_dir": str(world.data),
        "database": str(world.data / "suanwang.db"),
        "storage_root": str(world.storage),
        "datasets_dir": str(world.replicas["acme"].parent),
    }
    assert (world.data / "suanwang.db").exists()
    _, out = run(world, world.live.key, probe_command(aim))
    check(verdict(out), ACME, aim)
    assert (world.replicas["acme"] / "a.txt").read_bytes() == ACME
