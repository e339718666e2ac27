"""Acceptance on a real Ray cluster through a real suanwang server (issue 12, "Ray, for real").

The Ray cluster (tests/integration/ray_cluster.py: a head and a worker raylet with 8
``Ascend910B`` each, as an unprivileged uid, in a network namespace with only ``lo``) is
shared by the session. One suanwang server (SQLite; tick 0.2 s, cluster health every 1 s)
runs as root in the same namespace for this module; the test process reaches it through a
Unix socket relayed by ``socat`` and runs the CLI with ``ip netns exec``. Its fleet: the
Ray cluster ``rc`` (two nodes named as Ray names them) and ``rc-down``, a Ray cluster whose
address answers nothing. Scenarios: a job runs on Ray with its logs through ``suanwang
jobs logs`` and no platform secret in its environment; cancel stops it; a 2-node gang gets
a STRICT_SPREAD placement group across both raylets; 8 jobs at once; a kill -9 of the
server while a job runs re-attaches (one Ray job, one attempt); ``fleet import --from
ray`` writes a file ``fleet apply`` accepts with Ray's card counts; ``rc-down`` is
unhealthy with the reason while its job stays queued and ``rc`` keeps working; hostile
command text arrives whole; a PACK gang shares one raylet; a cancelled gang leaves no rank
running; an orphan ``suanwang-...`` Ray job is stopped, another user's job is not.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import engine_live
import httpx
import pytest
import yaml
from engine_live import at_once, job, prepare, wait_health
from ray_cluster import CARDS, CHIP, NODES, RayCluster

from suanwang.config import Settings

DOWN_PORT = 18265  # nothing listens there in the namespace


@dataclass
class Live:
    cluster: RayCluster
    base: Path
    env: dict[str, str]
    port: int
    key: str
    operator_key: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.base / "api.sock"

    def client(self, key: str | None = None) -> httpx.Client:
        auth = {"Authorization": f"Bearer {key or self.key}"}
        transport = httpx.HTTPTransport(uds=str(self.socket))
        return httpx.Client(
            transport=transport, base_url="http://suanwang", headers=auth, timeout=30
        )

    def cli(self, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, SUANWANG_URL=f"http://127.0.0.1:{self.port}")
        env["SUANWANG_API_KEY"] = key or self.key
        argv = self.cluster.netns_argv(sys.executable, "-m", "suanwang.cli.main", *args)
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        argv = [sys.executable, "-m", "uvicorn", "--factory", "suanwang.bootstrap:app_from_env",
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]  # fmt: skip
        with (self.base / "server.log").open("ab") as out:
            self.proc = subprocess.Popen(
                self.cluster.netns_argv(*argv), env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.base / "server.log").read_text()[-3000:]
            try:
                with self.client() as client:
                    if client.get("/healthz").status_code == 200:
                        return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("the server did not come up in 90 s")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)  # ip netns exec execs: this is the server
        self.proc.wait()


def fleet() -> str:
    nodes = ", ".join(f"{{name: {n}, chip: {CHIP}, cards: {CARDS}}}" for n in NODES)
    return f"""
regions: [{{name: here}}]
clusters:
  - {{name: rc, region: here, kind: real, backend: ray, ray: {{address: "http://127.0.0.1:8265"}},
      nodes: [{nodes}]}}
  - {{name: rc-down, region: here, kind: real, backend: ray,
      ray: {{address: "http://127.0.0.1:{DOWN_PORT}"}},
      nodes: [{{name: gone-1, chip: {CHIP}, cards: {CARDS}}}]}}
"""


@pytest.fixture(scope="module")
def live(ray_cluster: RayCluster) -> Iterator[Live]:
    base = Path(tempfile.mkdtemp(prefix="suanwang-ray-live-"))
    data = base / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANWANG_")}
    env |= {
        "SUANWANG_DATA_DIR": str(data),
        "SUANWANG_DATABASE_URL": f"sqlite:///{data / 'suanwang.db'}",
        "SUANWANG_TICK_S": "0.2",
        "SUANWANG_CLUSTER_HEALTH_INTERVAL_S": "1",
        "SUANWANG_CANCEL_GRACE_S": "1",
        "SUANWANG_ORPHAN_INTERVAL_S": "1",
        "SUANWANG_ORPHAN_GRACE_S": "3",
        "SUANWANG_LOG_LEVEL": "warning",
    }
    settings = Settings(data_dir=data, database_url=env["SUANWANG_DATABASE_URL"])
    key, op_key = prepare(settings, fleet(), {"ascend": 64})
    live = Live(ray_cluster, base, env, ray_cluster.port(), key, op_key)
    ray_cluster.relay(live.socket, live.port)
    live.start()
    try:
        wait_health(live, "rc", "healthy", timeout=60)
        yield live
    finally:
        if live.proc is not None and live.proc.poll() is None:
            live.kill()
        shutil.rmtree(base, ignore_errors=True)


def submit(live: Live, command: list[str], **body: Any) -> str:
    resources = {"chip": CHIP, "cluster": "rc", **body.pop("resources", {})}
    with live.client() as client:
        response = client.post(
            "/api/v1/jobs", json={"command": command, "resources": resources, **body}
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def wait_state(live: Live, job_id: str, *states: str, timeout: float = 120) -> dict[str, Any]:
    return engine_live.wait_state(
        live, job_id, *states, timeout=timeout, explain=lambda j: explain(live, j)
    )


def ray_jobs(live: Live, job_id: str) -> list[dict[str, Any]]:
    """Ray's jobs of ``job_id`` (any attempt), from Ray's own job API."""
    prefix = f"suanwang-{job_id}-"
    return [j for j in live.cluster.jobs() if str(j.get("submission_id")).startswith(prefix)]


def explain(live: Live, job_id: str) -> str:
    found = job(live, job_id)
    events = [(e["state"], e["reason"]) for e in found.get("events", [])]
    ray = [(j["submission_id"], j["status"], j.get("message")) for j in ray_jobs(live, job_id)]
    return f"{found.get('reason')}; events: {events}; ray: {ray}"


def logs(live: Live, job_id: str) -> str:
    out = live.cli("jobs", "logs", job_id)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_job_runs_on_ray_with_its_logs_and_no_platform_secret(live: Live) -> None:
    job_id = submit(live, ["sh", "-c", 'echo "hello from $(id -u) attempt $SUANWANG_ATTEMPT"; env'])
    done = wait_state(live, job_id, "succeeded", "failed")
    assert done["state"] == "succeeded", explain(live, job_id)
    (ray_job,) = ray_jobs(live, job_id)
    assert ray_job["status"] == "SUCCEEDED"
    text = logs(live, job_id)
    assert "hello from 152990 attempt 1" in text  # the Ray uid, not the control plane's
    data = Path(live.env["SUANWANG_DATA_DIR"])
    files = [data / name for name in ("operator.key", "credentials.key")]
    secrets = [live.env["SUANWANG_DATABASE_URL"], live.operator_key, live.key]
    secrets += [f.read_text().strip() for f in files if f.exists()]
    assert len(secrets) >= 4  # the credentials key at least exists on a running server
    assert "SUANWANG_DATABASE_URL" not in text
    assert "SUANWANG_DATA_DIR" not in text
    for secret in secrets:
        assert secret
        assert secret not in text


def test_cancel_stops_the_ray_job(live: Live) -> None:
    job_id = submit(live, ["sleep", "300"])
    wait_state(live, job_id, "running")
    with live.client() as client:
        assert client.post(f"/api/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    wait_state(live, job_id, "cancelled")
    deadline = time.monotonic() + 30
    while [j["status"] for j in ray_jobs(live, job_id)] != ["STOPPED"]:
        assert time.monotonic() < deadline, ray_jobs(live, job_id)
        time.sleep(0.3)


def test_a_strict_spread_gang_gets_a_bundle_on_each_raylet(live: Live) -> None:
    script = (
        'echo "rank $SUANWANG_NODE_RANK of $SUANWANG_NODES master $SUANWANG_MASTER_ADDR"; '
        "echo same line from each rank; sleep 3"
    )
    job_id = submit(live, ["sh", "-c", script], resources={"nodes": 2, "cards_per_node": 4})
    name = f"suanwang-{job_id}-1"
    deadline = time.monotonic() + 120
    while not (group := live.cluster.placement_group(name)) or group["state"] != "CREATED":
        assert time.monotonic() < deadline, f"{group}: {explain(live, job_id)}"
        time.sleep(0.3)
    assert [b["unit_resources"] for b in group["bundles"]] == [{"Ascend910B": 4.0, "CPU": 1.0}] * 2
    placed = [b["node_id"] for b in group["bundles"]]
    alive = {n["node_id"] for n in live.cluster.state("nodes") if n["state"] == "ALIVE"}
    assert len(set(placed)) == 2, group  # one bundle on each raylet
    assert set(placed) == alive, group
    done = wait_state(live, job_id, "succeeded", "failed", timeout=180)
    assert done["state"] == "succeeded", explain(live, job_id) + logs(live, job_id)
    text = logs(live, job_id)
    assert f"placement group {name} (STRICT_SPREAD) ready" in text
    assert "rank 0 of 2 master 127.0.0.1" in text
    assert "rank 1 of 2 master 127.0.0.1" in text
    assert text.count(") same line from each rank") == 2, text  # Ray merges no line


def test_eight_jobs_at_once(live: Live) -> None:
    ids = at_once(lambda i: submit(live, ["sh", "-c", f"sleep 1; echo job {i}"]), 8)
    states = {j: wait_state(live, j, "succeeded", "failed", timeout=240)["state"] for j in ids}
    assert set(states.values()) == {"succeeded"}, {j: explain(live, j) for j in ids}
    assert all(len(ray_jobs(live, j)) == 1 for j in ids)  # one Ray job each, never two


def test_a_restarted_server_reattaches_instead_of_resubmitting(live: Live) -> None:
    job_id = submit(live, ["sh", "-c", "sleep 8; echo finished"])
    wait_state(live, job_id, "running")
    live.kill()
    time.sleep(1)
    live.start()
    done = wait_state(live, job_id, "succeeded", "failed")
    assert done["state"] == "succeeded", explain(live, job_id)
    assert len(ray_jobs(live, job_id)) == 1
    assert done["attempts"] == 1
    assert logs(live, job_id).strip().endswith("finished")


def test_fleet_import_writes_a_file_fleet_apply_accepts(live: Live) -> None:
    out = live.base / "imported.yaml"
    imported = live.cli(
        "fleet", "import", "--from", "ray", "--cluster", "rc2", "--region", "there",
        "--address", live.cluster.address, "-o", str(out), key=live.operator_key,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    (cluster,) = yaml.safe_load(out.read_text())["clusters"]
    assert cluster["ray"] == {"address": live.cluster.address}
    nodes = {n["name"]: (n["chip"], n["cards"]) for n in cluster["nodes"]}
    ray_nodes = live.cluster.state("nodes")
    assert sorted(nodes) == sorted(n["node_name"] for n in ray_nodes if n["state"] == "ALIVE")
    assert all(nodes[n["node_name"]] == (CHIP, int(n["resources_total"]["Ascend910B"]))
               for n in ray_nodes if n["state"] == "ALIVE")  # fmt: skip
    applied = live.cli("fleet", "apply", str(out), key=live.operator_key)
    assert applied.returncode == 0, applied.stderr
    wait_health(live, "rc2", "healthy")


def test_an_unreachable_ray_is_unhealthy_with_the_reason_and_its_jobs_wait(live: Live) -> None:
    health = wait_health(live, "rc-down", "unhealthy")
    assert f"127.0.0.1:{DOWN_PORT}" in health["reason"]
    assert "unreachable" in health["reason"]
    waiting = submit(live, ["echo", "later"], resources={"cluster": "rc-down"})
    working = submit(live, ["echo", "rc works"])
    assert wait_state(live, working, "succeeded", "failed")["state"] == "succeeded"
    time.sleep(2)
    assert job(live, waiting)["state"] == "queued"
    with live.client() as client:
        assert client.post(f"/api/v1/jobs/{waiting}/cancel").status_code in (200, 202)


def test_hostile_command_text_reaches_the_program_whole(live: Live) -> None:
    """Ray runs the entrypoint with a shell: tenant text must arrive as the same arguments."""
    evil = "x\n; ray stop; echo '$(id -u)' `id -u` \"$HOME\" * ~root \\"
    job_id = submit(live, ["printf", "%s|", evil, "--uid=0", "a b"])
    done = wait_state(live, job_id, "succeeded", "failed")
    assert done["state"] == "succeeded", explain(live, job_id)
    assert f"{evil}|--uid=0|a b|" in logs(live, job_id)  # after Ray's own lines
    assert {n["state"] for n in live.cluster.state("nodes")} == {"ALIVE"}  # ray stop never ran


def test_a_pack_gang_shares_one_raylet_where_it_fits(live: Live) -> None:
    job_id = submit(live, ["sleep", "3"], gang="pack", resources={"nodes": 2, "cards_per_node": 2})
    name = f"suanwang-{job_id}-1"
    deadline = time.monotonic() + 120
    while not (group := live.cluster.placement_group(name)) or group["state"] != "CREATED":
        assert time.monotonic() < deadline, f"{group}: {explain(live, job_id)}"
        time.sleep(0.3)
    assert len({b["node_id"] for b in group["bundles"]}) == 1, group  # both bundles on one
    assert wait_state(live, job_id, "succeeded", "failed")["state"] == "succeeded"
    assert f"placement group {name} (PACK) ready" in logs(live, job_id)


def test_cancelling_a_gang_leaves_no_rank_running(live: Live) -> None:
    marker = f"{time.time_ns() % 10**9}"
    job_id = submit(live, ["sleep", f"3{marker}"], resources={"nodes": 2, "cards_per_node": 1})
    deadline = time.monotonic() + 120
    while len(live.cluster.processes(f"sleep 3{marker}")) < 2:
        assert time.monotonic() < deadline, explain(live, job_id)
        time.sleep(0.3)
    with live.client() as client:
        assert client.post(f"/api/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    wait_state(live, job_id, "cancelled")
    deadline = time.monotonic() + 30
    while live.cluster.processes(f"sleep 3{marker}"):
        assert time.monotonic() < deadline, live.cluster.processes(f"sleep 3{marker}")
        time.sleep(0.3)


def test_an_orphan_ray_job_is_cancelled_and_other_jobs_are_left_alone(live: Live) -> None:
    """A run named like suanwang's that no attempt owns is stopped after the grace period;
    a job someone else submitted to the cluster is not suanwang's business."""
    live.cluster.submit_behind_suanwang("suanwang-ghost-1", "sleep 300")
    live.cluster.submit_behind_suanwang("someone-else-1", "sleep 300")
    try:
        deadline = time.monotonic() + 60
        while live.cluster.job_status("suanwang-ghost-1") != "STOPPED":
            assert time.monotonic() < deadline, live.cluster.job_status("suanwang-ghost-1")
            time.sleep(0.5)
        assert live.cluster.job_status("someone-else-1") in ("PENDING", "RUNNING")
    finally:
        live.cluster.stop_job("someone-else-1")


PROBE = """
import socket, sys, time
port, server, secret = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def attempt(what, act):
    try:
        act()
        print(what, "ok", flush=True)
    except OSError as exc:
        print(what, type(exc).__name__, flush=True)
attempt("server", lambda: socket.create_connection(("127.0.0.1", server), timeout=3).close())
attempt("data", lambda: open(secret).read())
attempt("session", lambda: open("/tmp/ray/session_latest/logs/gcs_server.out").read())
print("interfaces", open("/proc/net/dev").read().count(":"), flush=True)
listener = socket.create_server(("0.0.0.0", port))
print("listening", flush=True)
time.sleep(8)
"""


def test_a_tenant_job_has_no_network_and_no_view_of_the_data_directory(live: Live) -> None:
    """The Ray worker's uid could bind a replica's port on the node and read what it can
    reach; a tenant's job runs in bubblewrap: its own network namespace, no data dir."""
    data = Path(live.env["SUANWANG_DATA_DIR"])
    secret = data / "tenant-must-not-read.txt"
    secret.write_text("data dir secret\n")
    modes = {p: p.stat().st_mode & 0o777 for p in (live.base, data)}
    secret.chmod(0o644)
    for path in modes:
        path.chmod(0o711)  # the Ray uid itself could read the file now: only the sandbox hides it
    port = live.cluster.port()
    try:
        job_id = submit(
            live, ["/usr/bin/python3", "-c", PROBE, str(port), str(live.port), str(secret)]
        )
        deadline = time.monotonic() + 90
        while "listening" not in (text := logs(live, job_id)):
            assert job(live, job_id)["state"] in ("queued", "starting", "running"), explain(
                live, job_id
            )
            assert time.monotonic() < deadline, text
            time.sleep(0.5)
        assert "server ConnectionRefusedError" in text  # not the suanwang server's port
        assert "data FileNotFoundError" in text  # /tmp is its own: no data dir, no Ray session
        assert "session FileNotFoundError" in text
        assert "interfaces 1" in text  # lo only, of its own namespace
        node = live.cluster.netns_argv(
            sys.executable, "-c",
            f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)",
        )  # fmt: skip
        reach = subprocess.run(node, capture_output=True, text=True, timeout=30)
        assert reach.returncode != 0, "the tenant's listener is reachable on the node"
        assert "ConnectionRefusedError" in reach.stderr
        done = wait_state(live, job_id, "succeeded", "failed")
        assert done["state"] == "succeeded", explain(live, job_id)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
        secret.unlink()
