"""A real control plane for the security suite: ``suanwang init`` + ``suanwang server``.

One :class:`Stack` per backend (SQLite or PostgreSQL): its own data directory under a
world-traversable temporary directory (tenant uids must be able to reach their own areas;
pytest's ``tmp_path`` is 0700), the gateway beside it, Redis for the gateway's limits, an
operator key exported in the server's environment (as an operator who uses the CLI would)
and a canary variable, so a job that can read the server's environment would see secrets.
Tenants and keys are made through the API, as an operator would.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hostproc
import httpx
import psycopg

CLI = [sys.executable, "-m", "suanwang.cli.main"]
PG_ADMIN_URL = os.environ.get(
    "SUANWANG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = "redis://127.0.0.1:6379/0"
MiB = 1 << 20
LIMITS = {"processes": 64, "memory_bytes": 256 * MiB, "disk_bytes": 64 * MiB}
CANCEL_GRACE_S = 1.0
FLEET = """
regions: [{name: here}]
clusters:
  - {name: local, region: here, kind: real, nodes: [{name: n1, chip: cpu, cards: 32}]}
  - {name: sim, region: here, kind: simulated, nodes: [{name: s1, chip: ascend-910b, cards: 8}]}
"""
SIM_MODEL = "qwen2.5-72b-instruct"
TERMINAL = ("succeeded", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Api:
    """A small client of the control plane's API for one key."""

    def __init__(self, url: str, key: str) -> None:
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        assert response.status_code < 300, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json()

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/api/v1/jobs/{job_id}"))

    def log(self, job_id: str) -> str:
        response = self.client.get(f"/api/v1/jobs/{job_id}/logs")
        assert response.status_code == 200, response.text
        return response.text

    def cancel(self, job_id: str) -> None:
        """Cancel the job; a job that already ended (409) is left as it is."""
        response = self.client.post(f"/api/v1/jobs/{job_id}/cancel")
        assert response.status_code in (200, 409), response.text

    def wait(self, job_id: str, done: Any, timeout_s: float, what: str) -> dict[str, Any]:
        """Poll the job until ``done(job, log)``; fails with the job and its log otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            log = self.log(job_id)
            if done(job, log):
                return job
            if job["state"] in TERMINAL or time.monotonic() > deadline:
                raise AssertionError(f"{what}: not so (within {timeout_s} s): {job['state']} "
                                     f"{job['reason']!r}\n--- log ---\n{log[-3000:]}")  # fmt: skip
            time.sleep(0.2)

    def close(self) -> None:
        self.client.close()


@dataclass
class Stack:
    """A running control plane and gateway, with tenants ``tenant-a`` and ``tenant-b``."""

    backend: str
    workdir: Path
    env: dict[str, str]
    url: str = ""
    gateway_url: str = ""
    proc: subprocess.Popen[bytes] | None = None
    operator_key: str = ""
    keys: dict[str, str] = field(default_factory=dict)
    pg_name: str | None = None
    canary: str = field(default_factory=lambda: f"canary-{secrets.token_hex(8)}")
    tokens: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def server_cwd(self) -> Path:
        return self.workdir / "cwd"

    @property
    def log(self) -> Path:
        return self.workdir / "server.log"

    def server_pids(self) -> list[int]:
        """The server process and its children (the gateway)."""
        assert self.proc is not None
        children = [
            p.pid
            for p in (hostproc.read_proc(pid) for pid in hostproc.all_pids())
            if p is not None and p.ppid == self.proc.pid
        ]
        return [self.proc.pid, *children]

    def api(self, who: str) -> Api:
        return Api(self.url, self.operator_key if who == "operator" else self.keys[who])


def start_stack(backend: str) -> Stack:
    """``suanwang init`` then ``suanwang server`` on a fresh data directory and database."""
    workdir = Path(tempfile.mkdtemp(prefix="suanwang-hostile-"))
    os.chmod(workdir, 0o711)
    stack = Stack(backend, workdir, {})
    stack.server_cwd.mkdir(mode=0o700)
    port, gateway_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANWANG_")}
    env |= {
        "SUANWANG_DATA_DIR": str(stack.data_dir),
        "SUANWANG_PORT": str(port),
        "SUANWANG_GATEWAY_PORT": str(gateway_port),
        "SUANWANG_TICK_S": "0.1",
        "SUANWANG_CANCEL_GRACE_S": str(CANCEL_GRACE_S),
        "SUANWANG_SIM_SPEEDUP": "1000",
        "SUANWANG_LOG_LEVEL": "warning",
        "SUANWANG_REDIS_URL": REDIS_URL,
        "SUANWANG_REDIS_PREFIX": f"hostile-{secrets.token_hex(4)}:",
        "SUANWANG_LOCAL_ISOLATION": "sandbox",
        "SUANWANG_JOB_MAX_PROCESSES": str(LIMITS["processes"]),
        "SUANWANG_JOB_MAX_MEMORY_BYTES": str(LIMITS["memory_bytes"]),
        "SUANWANG_JOB_MAX_DISK_BYTES": str(LIMITS["disk_bytes"]),
        "HOSTILE_CANARY": stack.canary,
        "NO_COLOR": "1",
    }
    if backend == "postgresql":
        stack.pg_name = f"suanwang_hostile_{secrets.token_hex(6)}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{stack.pg_name}"')  # generated name, not input
        env["SUANWANG_DATABASE_URL"] = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{stack.pg_name}"
    stack.env = env
    stack.url, stack.gateway_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{gateway_port}"
    subprocess.run(
        [*CLI, "init", "--no-demo"], env=env, cwd=stack.server_cwd, check=True,
        capture_output=True, timeout=120,
    )  # fmt: skip
    stack.operator_key = (stack.data_dir / "operator.key").read_text().strip()
    env["SUANWANG_API_KEY"] = stack.operator_key  # exported for the CLI, as operators do
    with stack.log.open("ab") as out:
        stack.proc = subprocess.Popen(
            [*CLI, "server"], env=env, cwd=stack.server_cwd, stdout=out, stderr=subprocess.STDOUT
        )
    _wait_up(f"{stack.url}/healthz", stack)
    _wait_up(f"{stack.gateway_url}/v1/models", stack)
    _set_up_tenants(stack)
    return stack


def _wait_up(url: str, stack: Stack, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert stack.proc is not None
        assert stack.proc.poll() is None, stack.log.read_text()
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout_s} s; see {stack.log}")


def _set_up_tenants(stack: Stack) -> None:
    op = stack.api("operator")
    try:
        op.call("POST", "/api/v1/fleet/apply", content=FLEET)
        for name in ("a", "b"):
            op.call("POST", "/api/v1/tenants", json={"name": f"tenant-{name}"})
            created = op.call(
                "POST", "/api/v1/keys", json={"tenant": f"tenant-{name}", "scope": "tenant-member"}
            )
            stack.keys[name] = created["key"]
        op.call("POST", "/api/v1/deployments", json={"model": SIM_MODEL, "cluster": "sim"})
    finally:
        op.close()
    _gateway_request(stack)


def _gateway_request(stack: Stack, timeout_s: float = 60) -> None:
    """One chat completion by tenant A, so the gateway journals A's usage on disk."""
    body = {"model": SIM_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    headers = {"Authorization": f"Bearer {stack.keys['a']}"}
    deadline = time.monotonic() + timeout_s
    while True:
        response = httpx.post(
            f"{stack.gateway_url}/v1/chat/completions", json=body, headers=headers, timeout=30
        )
        if response.status_code == 200:
            return
        assert time.monotonic() < deadline, f"gateway: {response.status_code} {response.text}"
        time.sleep(0.3)


def stop_stack(stack: Stack) -> None:
    """Stop the server, every process this suite started, the database; remove the files."""
    if stack.proc is not None and stack.proc.poll() is None:
        stack.proc.send_signal(signal.SIGTERM)
        try:
            stack.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stack.proc.kill()
            stack.proc.wait(timeout=30)
    for token in stack.tokens:
        hostproc.kill_all(token)
    if stack.pg_name is not None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{stack.pg_name}" WITH (FORCE)')
    shutil.rmtree(stack.workdir, ignore_errors=True)
