"""A real two-node Ray cluster for the tests, alone in a network namespace with only ``lo``.

Started once per test session (``ray_cluster`` fixture in tests/integration/conftest.py),
following ../shared/SERVICES.md §4: Ray listens on (and talks to) a non-loopback address
whatever its flags say, so everything runs inside a fresh network namespace whose only
interface is ``lo``; nothing of it is reachable from, or reaches, the host's network.

- The head (GCS, dashboard with the Job API on 127.0.0.1:8265, ``--node-name ray-head``)
  and a worker node (a second raylet, ``ray-worker-1``) each offer ``{"Ascend910B": 8}``
  (chip ``ascend-910b``) and 2 CPUs, so a 2-bundle ``STRICT_SPREAD`` placement group has
  its two raylets.
- They run as an unprivileged uid of their own (:data:`RAY_UID`, ``setpriv``), not as the
  control plane's user, with a temp dir and HOME it owns. The Python the venv links to
  lives under ``/root`` (mode 0700): each Ray process gets a private mount namespace where
  a tmpfs covers ``/root`` and only ``/root/.pyenv`` is bound back in (read-only).
- The test process stays outside the namespace and reaches the dashboard (and a server
  started there) through Unix sockets that ``socat`` relays to 127.0.0.1 ports inside it.
- Teardown kills every process in the namespace by pid (``ip netns pids``; never ``ray
  stop``, which is machine-wide) and deletes the namespace.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

CHIP = "ascend-910b"
RESOURCE = "Ascend910B"
CARDS = 8
NODES = ("ray-head", "ray-worker-1")
RAY_UID = 152990
GCS_PORT = 26379
DASHBOARD_PORT = 8265
# Inside the namespace, ports the kernel hands out (Ray's raylets, object managers and gRPC
# clients bind ephemeral ports) come from EPHEMERAL_PORTS; ports the tests choose for their
# servers come from TEST_PORTS, which nothing else there uses, so the two never collide.
EPHEMERAL_PORTS = (33000, 49999)
TEST_PORTS = range(30000, 32000)
START_DEADLINE_S = 180.0
VENV_BIN = Path(sys.executable).parent


def unavailable() -> str | None:
    """Why the cluster cannot start here (None if it can)."""
    if os.geteuid() != 0:
        return "the Ray test cluster needs root (network namespace, setpriv to the Ray uid)"
    if importlib.util.find_spec("ray") is None or not (VENV_BIN / "ray").exists():
        return "ray is not installed in this environment (make setup installs the 'ray' extra)"
    for tool in ("ip", "setpriv", "unshare", "socat"):
        if shutil.which(tool) is None:
            return f"{tool} not found (iproute2, util-linux and socat are needed)"
    probe = subprocess.run(
        ["ip", "netns", "add", f"swray-probe-{os.getpid()}"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"ip netns does not work here: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", f"swray-probe-{os.getpid()}"], check=False)
    return None


@dataclass
class RayCluster:
    """The running cluster: its namespace, where its sockets are, how long it took."""

    netns: str
    base: Path
    address: str = f"http://127.0.0.1:{DASHBOARD_PORT}"
    started_s: float = 0.0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports_handed_out: int = 0

    @property
    def dashboard_socket(self) -> Path:
        return self.base / "dashboard.sock"

    def port(self) -> int:
        """A port for a test's server inside the namespace: never one Ray or the kernel took."""
        self.ports_handed_out += 1
        return TEST_PORTS[self.ports_handed_out % len(TEST_PORTS)]

    def netns_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]

    def popen(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Any:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                self.netns_argv(*argv), stdout=out, stderr=subprocess.STDOUT, env=env
            )
        self.procs.append(proc)
        return proc

    def relay(self, sock: Path, port: int) -> None:
        """Serve ``sock`` (outside) as TCP 127.0.0.1:``port`` inside the namespace."""
        argv = ["socat", f"UNIX-LISTEN:{sock},fork,mode=600", f"TCP:127.0.0.1:{port}"]
        self.popen(argv, self.base / f"socat-{port}.log")
        _wait(lambda: sock.exists(), 10, f"socat on {sock}")

    def dashboard(self) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=str(self.dashboard_socket))
        return httpx.Client(transport=transport, base_url="http://ray", timeout=30)

    def state(self, what: str) -> list[dict[str, Any]]:
        """``GET /api/v0/<what>?detail=true`` rows (nodes, jobs, placement_groups...)."""
        with self.dashboard() as client:
            answer = client.get(f"/api/v0/{what}", params={"detail": "true", "limit": 1000})
        answer.raise_for_status()
        rows: list[dict[str, Any]] = answer.json()["data"]["result"]["result"]
        return rows

    def processes(self, cmdline: str) -> list[int]:
        """Pids of the namespace's processes and their descendants (a tenant's command runs
        in bubblewrap, in a network namespace of its own) whose command line is ``cmdline``."""
        found = []
        for pid in _descendants(set(_netns_pids(self.netns))):
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
                if b" ".join(argv).decode(errors="replace") == cmdline:
                    found.append(pid)
        return found

    def placement_group(self, name: str) -> dict[str, Any] | None:
        """The placement group named ``name`` (None if Ray has none)."""
        return next((g for g in self.state("placement_groups") if g["name"] == name), None)

    def submit_behind_suanwang(self, submission_id: str, entrypoint: str) -> None:
        """A Ray job submitted straight to the cluster, as another user of it would."""
        with self.dashboard() as client:
            answer = client.post(
                "/api/jobs/", json={"entrypoint": entrypoint, "submission_id": submission_id}
            )
        answer.raise_for_status()

    def stop_job(self, submission_id: str) -> None:
        with self.dashboard() as client:
            client.post(f"/api/jobs/{submission_id}/stop").raise_for_status()

    def job_status(self, submission_id: str) -> str:
        with self.dashboard() as client:
            answer = client.get(f"/api/jobs/{submission_id}")
        answer.raise_for_status()
        return str(answer.json()["status"])

    def jobs(self) -> list[dict[str, Any]]:
        with self.dashboard() as client:
            answer = client.get("/api/jobs/")
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()
        return found


def _wait(ready: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.2)


def _visible() -> list[str]:
    """What Ray's processes must reach that lies under ``/root`` (mode 0700 here): the
    Python the venv links to, and the venv itself when it is there."""
    wanted = {str(Path(sys.base_prefix).resolve()), str(Path(sys.prefix).resolve())}
    return sorted(p for p in wanted if p == "/root" or p.startswith("/root/"))


def _as_ray_user(base: Path, argv: list[str]) -> list[str]:
    """``argv`` as :data:`RAY_UID`, in a mount namespace where a tmpfs covers ``/root``
    and only :func:`_visible` paths are bound back in."""
    lines = ["set -e"]
    keep = _visible()
    for i, path in enumerate(keep):
        lines.append(f"mkdir -p {base}/keep/{i} && mount --rbind {path} {base}/keep/{i}")
    if keep:
        lines.append("mount -t tmpfs -o mode=0755,size=1m swray /root")
    for i, path in enumerate(keep):
        lines.append(f"mkdir -p {path} && mount --move {base}/keep/{i} {path}")
    lines.append('exec "$@"')
    user = [
        "setpriv", f"--reuid={RAY_UID}", f"--regid={RAY_UID}", "--clear-groups",
        "--inh-caps=-all", "env", "-i", f"HOME={base / 'home'}", "USER=suanwang-ray",
        f"PATH={VENV_BIN}:/usr/bin:/bin", "LANG=C.UTF-8", "RAY_USAGE_STATS_ENABLED=0",
    ]  # fmt: skip
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "; ".join(lines),
            "sh", *user, *argv]  # fmt: skip


def _ray_start(base: Path, name: str, head: bool, ports: int) -> list[str]:
    common = [
        str(VENV_BIN / "ray"), "start", "--block", "--node-name", name,
        "--num-cpus", "2", "--resources", json.dumps({RESOURCE: CARDS}),
        "--object-store-memory", str(100 << 20),
        "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
        "--dashboard-agent-listen-port", str(ports), "--dashboard-agent-grpc-port",
        str(ports + 1), "--metrics-export-port", str(ports + 2),
        "--runtime-env-agent-port", str(ports + 3),
        "--min-worker-port", str(ports + 100), "--max-worker-port", str(ports + 199),
    ]  # fmt: skip
    if head:
        return [*common, "--head", "--port", str(GCS_PORT), "--temp-dir", str(base / "ray"),
                "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                "--dashboard-port", str(DASHBOARD_PORT), "--ray-client-server-port", "10001"]  # fmt: skip
    return [*common, "--address", f"127.0.0.1:{GCS_PORT}", "--temp-dir", str(base / name)]


@contextlib.contextmanager
def running() -> Iterator[RayCluster]:
    """Start the namespace, the head and the worker; stop all of it on exit."""
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="suanwang-ray-"))
    base.chmod(0o755)
    for sub in ("home", "ray", NODES[1]):
        (base / sub).mkdir()
        os.chown(base / sub, RAY_UID, RAY_UID)
    cluster = RayCluster(netns=f"swray-{os.getpid()}", base=base)
    subprocess.run(["ip", "netns", "add", cluster.netns], check=True)
    try:
        subprocess.run(["ip", "-n", cluster.netns, "link", "set", "lo", "up"], check=True)
        low, high = EPHEMERAL_PORTS
        sysctl = f"echo '{low} {high}' > /proc/sys/net/ipv4/ip_local_port_range"
        subprocess.run(cluster.netns_argv("sh", "-c", sysctl), check=True)
        cluster.popen(
            _as_ray_user(base, _ray_start(base, NODES[0], True, 52365)), base / "head.log"
        )
        cluster.relay(cluster.dashboard_socket, DASHBOARD_PORT)
        _wait(lambda: _alive(cluster) >= 1, START_DEADLINE_S, "the Ray head")
        worker = _ray_start(base, NODES[1], False, 53365)
        cluster.popen(_as_ray_user(base, worker), base / "worker.log")
        _wait(lambda: _alive(cluster) >= 2, START_DEADLINE_S, "the Ray worker node")
        cluster.started_s = time.monotonic() - started
        yield cluster
    finally:
        stop(cluster)


def _alive(cluster: RayCluster) -> int:
    for proc in cluster.procs:
        if proc.poll() is not None:
            log = (cluster.base / "head.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"a Ray process exited ({proc.args}); head.log:\n{log}")
    try:
        nodes = cluster.state("nodes")
    except (httpx.HTTPError, KeyError, ValueError):
        return 0
    return sum(1 for n in nodes if n.get("state") == "ALIVE")


def stop(cluster: RayCluster) -> None:
    """Kill every process of the namespace by pid, then delete it (and the temp dir)."""
    for _ in range(3):
        pids = _netns_pids(cluster.netns)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in cluster.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if not pids:
            break
        time.sleep(0.5)
    subprocess.run(["ip", "netns", "del", cluster.netns], check=False)
    shutil.rmtree(cluster.base, ignore_errors=True)


def _netns_pids(netns: str) -> list[int]:
    """Every process in the namespace (``ip netns pids``): all of them started by us."""
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def _descendants(roots: set[int]) -> list[int]:
    """``roots`` and every process below one of them (from each process's parent pid)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found = []
    for pid in parent:
        current = pid
        while current > 1 and current not in roots:
            current = parent.get(current, 0)
        if current in roots:
            found.append(pid)
    return found
