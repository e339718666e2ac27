"""What the live-server tests of every engine backend ask suanwang's API (Slurm, Ray).

Each test module has its own ``Live`` (how the server runs and how to reach it; a server on
127.0.0.1 can extend :class:`ServerLive`); these helpers need only its ``client(key)`` (an
``httpx.Client`` with the key's bearer token, the tenant's by default) and its
``operator_key``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from procs import Server

from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.tenancy import Principal, Scope

CLI = [sys.executable, "-m", "suanwang.cli.main"]


def server_env(data: Path, **extra: str) -> dict[str, str]:
    """A live server's environment: this one without ``SUANWANG_*``, then a quick tick, cluster
    health every second, a 1 s cancel grace and ``extra`` (``tenant_uid_range=...`` becomes
    ``SUANWANG_TENANT_UID_RANGE``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANWANG_")}
    env |= {
        "SUANWANG_DATA_DIR": str(data),
        "SUANWANG_TICK_S": "0.2",
        "SUANWANG_CLUSTER_HEALTH_INTERVAL_S": "1",
        "SUANWANG_CANCEL_GRACE_S": "1",
        "SUANWANG_LOG_LEVEL": "warning",
    }
    return env | {f"SUANWANG_{name.upper()}": value for name, value in extra.items()}


@dataclass
class ServerLive:
    """A suanwang server on 127.0.0.1 started by a test module: its URL, acme's key, an
    operator key, its environment and process, and the test's base directory."""

    url: str
    key: str
    operator_key: str
    env: dict[str, str]
    server: Server
    base: Path

    def client(self, key: str | None = None) -> httpx.Client:
        auth = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.Client(base_url=self.url, headers=auth, timeout=15)

    def cli(self, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, SUANWANG_URL=self.url, SUANWANG_API_KEY=key or self.key)
        return subprocess.run(
            [*CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )


class Api(Protocol):
    operator_key: str

    def client(self, key: str | None = None) -> httpx.Client: ...


def prepare(settings: Settings, fleet: str, quota: dict[str, int]) -> tuple[str, str]:
    """Apply ``fleet`` and create tenant ``acme`` with ``quota`` in the server's database
    (before the server starts); ``(acme's admin key, an operator key)``."""
    platform = build_platform(settings)
    platform.fleet.apply_yaml(fleet)
    platform.tenancy.create_tenant("acme", "Acme", quota)
    operator = Principal("op", Scope.OPERATOR, None)
    key = platform.tenancy.create_key(
        operator, tenant="acme", scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
    ).secret
    op_key = platform.tenancy.create_key(
        operator, tenant=None, scope=Scope.OPERATOR, name="", expires_in_s=None
    ).secret
    platform.uows.engine.dispose()  # type: ignore[attr-defined]
    return key, op_key


def job(api: Api, job_id: str) -> dict[str, Any]:
    with api.client() as client:
        response = client.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def wait_state(
    api: Api,
    job_id: str,
    *states: str,
    timeout: float = 60,
    explain: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """The job once it is in one of ``states`` (fails after ``timeout`` s, saying why)."""
    deadline = time.monotonic() + timeout
    while (found := job(api, job_id))["state"] not in states:
        why = explain(job_id) if explain is not None else str(found)
        assert time.monotonic() < deadline, f"{job_id} still {found['state']}: {why}"
        time.sleep(0.2)
    return found


def clusters(api: Api) -> dict[str, dict[str, Any]]:
    with api.client(api.operator_key) as client:
        response = client.get("/api/v1/clusters")
    assert response.status_code == 200, response.text
    return {c["name"]: c for c in response.json()}


def wait_health(api: Api, name: str, status: str, timeout: float = 30) -> dict[str, Any]:
    """The cluster's health once its status is ``status``."""
    deadline = time.monotonic() + timeout
    while (health := clusters(api).get(name, {}).get("health", {})).get("status") != status:
        assert time.monotonic() < deadline, f"cluster {name} still {health}"
        time.sleep(0.2)
    return health


def at_once(submit: Callable[[int], str], n: int) -> list[str]:
    """Call ``submit(i)`` for i in 0..n-1 from ``n`` threads at once; the job ids (a
    failed call fails the test with every call's error, not a thread warning)."""
    ids: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            found = submit(i)
        except (AssertionError, httpx.HTTPError) as exc:
            with lock:
                errors.append(f"submit {i}: {exc!r}")
            return
        with lock:
            ids.append(found)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(ids) == n
    return ids
