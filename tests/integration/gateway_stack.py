"""A live gateway stack for integration tests: mock engines, gateways, database, Redis.

Everything runs as real processes on 127.0.0.1: mock OpenAI engines (benchmarks/
mock_openai.py) and ``uvicorn --factory suanwang.bootstrap:gateway_app_from_env``
gateways sharing one database (SQLite, or a fresh PostgreSQL database) and one Redis key
prefix. ``factory`` swaps the app factory (tests/integration/naive_gateway.py: the R2
negative control).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
import sqlalchemy as sa

from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.limits import KeyLimits, TenantLimits
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.limits import GatewayLimits

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"
CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"
OPERATOR = Principal("system", Scope.OPERATOR, None)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for a whole stack (like tests/conftest.py's ``db_url``,
    which is per test): skipped where no server answers, unless SUANWANG_REQUIRE_POSTGRES=1."""
    admin = os.environ.get(
        "SUANWANG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    try:
        psycopg.connect(admin, connect_timeout=3, autocommit=True).close()
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL not reachable at {admin} ({exc.__class__.__name__})"
        if os.environ.get("SUANWANG_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"suanwang_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # generated name, not user input
    try:
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url} exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not come up; see {log}")


@dataclass
class Stack:
    tmp: Path
    settings: Settings
    prefix: str
    env: dict[str, str]
    factory: str = "suanwang.bootstrap:gateway_app_from_env"
    mocks: dict[str, tuple[int, subprocess.Popen[bytes]]] = field(default_factory=dict)
    gateways: list[tuple[int, subprocess.Popen[bytes]]] = field(default_factory=list)
    _engine: sa.Engine | None = None

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}/v1" for port, _ in self.gateways]

    def start_mock(self, name: str, *args: str, port: int | None = None) -> int:
        port = port or free_port()
        log = self.tmp / f"mock-{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "benchmarks/mock_openai.py"),
                    "--port",
                    str(port),
                    *args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_up(f"http://127.0.0.1:{port}/health", proc, log)
        self.mocks[name] = (port, proc)
        return port

    def kill_mock(self, name: str) -> None:
        _, proc = self.mocks.pop(name)
        proc.kill()
        proc.wait(10)

    def start_gateway(self, port: int | None = None) -> int:
        port = port or free_port()
        log = self.tmp / f"gateway-{len(self.gateways)}.log"
        out = log.open("ab")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                self.factory,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        wait_up(f"http://127.0.0.1:{port}/health", proc, log)
        self.gateways.append((port, proc))
        return port

    def stop(self) -> None:
        for _, proc in [*self.gateways, *self.mocks.values()]:
            proc.terminate()
        for _, proc in [*self.gateways, *self.mocks.values()]:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self._engine is not None:
            self._engine.dispose()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{self.prefix}*"))
        if keys:
            client.delete(*keys)

    # --- data -----------------------------------------------------------------------------
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(self.settings.db_url)
        return self._engine

    def add_deployment(
        self, dep_id: str, model: str, bases: list[str], engine: str = "vllm"
    ) -> None:
        now = time.time()
        with self.engine().begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO deployments (id, tenant, model, cluster, engine, replicas, state,"
                    " spec, created_at, updated_at, version) VALUES (:id, NULL, :model, 'local',"
                    " :engine, :n, 'active', '{}', :now, :now, 1)"
                ),
                {"id": dep_id, "model": model, "engine": engine, "n": len(bases), "now": now},
            )
            for number, base in enumerate(bases):
                conn.execute(
                    sa.text(
                        "INSERT INTO replicas (id, deployment, number, job, state, base_url,"
                        " simulated, chip, reason, failures, restarts, port, created_at, ready_at,"
                        " last_health_at) VALUES (:id, :dep, :number, NULL, 'ready', :base, false,"
                        " '', '', 0, 0, NULL, :now, :now, :now)"
                    ),
                    {
                        "id": f"{dep_id}-{number}",
                        "dep": dep_id,
                        "number": number,
                        "base": base,
                        "now": now,
                    },
                )

    def tenant_with_key(
        self,
        name: str,
        tenant_limits: TenantLimits | None = None,
        key_limits: KeyLimits | None = None,
    ) -> tuple[str, str]:
        """Create ``name`` and a member key; returns (key secret, key id)."""
        platform = build_platform(self.settings, run_migrations=False)
        try:
            platform.tenancy.create_tenant(name, name, {})
            new = platform.tenancy.create_key(
                OPERATOR, tenant=name, scope=Scope.TENANT_MEMBER, name="test", expires_in_s=None
            )
            limits = GatewayLimits(platform.uows, platform.clock)
            if tenant_limits:
                limits.set_tenant_limits(OPERATOR, name, tenant_limits)
            if key_limits:
                limits.set_key_limits(OPERATOR, new.record.id, key_limits)
        finally:
            platform.uows.engine.dispose()  # type: ignore[attr-defined]
        return new.secret, new.record.id

    def ledger(self, tenant: str) -> list[dict[str, object]]:
        with self.engine().connect() as conn:
            rows = conn.execute(
                sa.text("SELECT * FROM usage_ledger WHERE tenant = :t AND kind = 'tokens'"),
                {"t": tenant},
            )
            return [dict(r._mapping) for r in rows]

    def redis_balance(self, tenant: str, period_s: int) -> tuple[int, int]:
        window = int(time.time() // period_s) * period_s
        client = redis.Redis.from_url(REDIS_URL)
        used, reserved = client.mget(
            f"{self.prefix}q:used:{tenant}:{window}", f"{self.prefix}q:res:{tenant}:{window}"
        )
        return int(used or 0), int(reserved or 0)


def make_stack(tmp: Path, db_url: str | None = None, factory: str | None = None) -> Stack:
    """A migrated database (SQLite in ``tmp`` unless ``db_url``), no processes yet."""
    redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    data = tmp / "data"
    data.mkdir()
    db_url = db_url or f"sqlite:///{tmp / 'suanwang.db'}"
    settings = Settings(data_dir=data, database_url=db_url)
    prefix = f"test:{secrets.token_hex(6)}:"
    env = {
        **os.environ,
        "SUANWANG_DATA_DIR": str(data),
        "SUANWANG_DATABASE_URL": db_url,
        "SUANWANG_REDIS_URL": REDIS_URL,
        "SUANWANG_REDIS_PREFIX": prefix,
        "SUANWANG_LOG_LEVEL": "info",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    build_platform(settings).uows.engine.dispose()  # type: ignore[attr-defined]  # migrates
    stack = Stack(tmp, settings, prefix, env)
    if factory:
        stack.factory = factory
    return stack


def _wait_ledger(
    self: Stack, tenant: str, count: int, timeout_s: float = 10
) -> list[dict[str, object]]:
    """The tenant's ledger rows once ``count`` are there (usage is written before the
    response ends, so this returns at once unless a test raced a disconnect)."""
    deadline = time.monotonic() + timeout_s
    rows = self.ledger(tenant)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = self.ledger(tenant)
    return rows


Stack.wait_ledger = _wait_ledger  # type: ignore[attr-defined]


# --- R2 load ---------------------------------------------------------------------------
QUOTA = 5000
PERIOD = 86400

CLIENT = r"""
import asyncio, json, sys, httpx
urls, key, n = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
body = {"model": "smollm2-135m-instruct", "max_tokens": 20, "mock": {"chunks": 20, "delay_ms": 20},
        "messages": [{"role": "user", "content": "count to twenty please"}]}
async def main():
    async with httpx.AsyncClient(timeout=30) as c:
        async def one(i):
            r = await c.post(urls[i % len(urls)] + "/chat/completions", json=body,
                             headers={"authorization": "Bearer " + key})
            return r.status_code
        print(json.dumps(await asyncio.gather(*(one(i) for i in range(n)))))
asyncio.run(main())
"""


def run_clients(stack: Stack, key: str, processes: int, each: int) -> list[int]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, json.dumps(stack.urls), key, str(each)],
            stdout=subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    statuses: list[int] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        statuses += json.loads(out)
    return statuses


@dataclass
class R2:
    statuses: list[int]
    billed: int
    """Tokens billed in the ledger."""
    used: int
    reserved: int
    """Redis counters after the load."""
    peak: int
    """Highest used + reserved sampled in Redis during the load."""


def r2_quota_load(stack: Stack, tenant: str) -> R2:
    """R2's load: 8 processes x 50 requests on a quota of QUOTA tokens, across the stack's
    gateways, while a thread samples used + reserved in Redis (the quota's invariant is that
    it never exceeds QUOTA; the ledger alone can hide an overdraft, since each request is
    billed less than it reserved)."""
    key, _ = stack.tenant_with_key(tenant, TenantLimits(token_quota=QUOTA, period_s=PERIOD))
    done = threading.Event()
    peak = [0]

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], sum(stack.redis_balance(tenant, PERIOD)))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        statuses = run_clients(stack, key, 8, 50)
    finally:
        done.set()
        sampler.join()
    assert len(statuses) == 400
    assert set(statuses) <= {200, 429}
    rows = stack.wait_ledger(tenant, 400)
    assert len({r["entry_id"] for r in rows}) == 400  # one row per request
    billed = sum(int(r["prompt_tokens"]) + int(r["completion_tokens"]) for r in rows)
    used, reserved = stack.redis_balance(tenant, PERIOD)
    return R2(statuses, billed, used, reserved, peak[0])
