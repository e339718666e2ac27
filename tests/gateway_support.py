"""Helpers for the gateway tests: fakes for its ports, the mock engine, key strings."""

from __future__ import annotations

import importlib.util
import secrets
import string
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from suanwang.domain.errors import Unauthenticated
from suanwang.domain.ids import TenantId
from suanwang.domain.limits import Limits
from suanwang.domain.serving import DeploymentView, ReplicaView
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.usage import TokenUsage
from suanwang.gateway import (
    Gateway,
    GatewayApp,
    GatewayConfig,
    InProcessLimiter,
    KeyAuthenticator,
    Router,
    Timeouts,
    Upstreams,
)
from suanwang.ports import Clock, Limiter
from suanwang.services.models import default_models

ROOT = Path(__file__).resolve().parent.parent
CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"


def load_mock() -> ModuleType:
    """benchmarks/mock_openai.py as a module."""
    if "mock_openai" in sys.modules:
        return sys.modules["mock_openai"]
    spec = importlib.util.spec_from_file_location("mock_openai", ROOT / "benchmarks/mock_openai.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mock_openai"] = module
    spec.loader.exec_module(module)
    return module


def make_key() -> str:
    alnum = string.ascii_letters + string.digits
    return (
        "sw_" + "".join(secrets.choice(alnum) for _ in range(8)) + "_" + secrets.token_urlsafe(32)
    )


class FakeKeys:
    """``Tenancy.authenticate`` over a dict of key -> principal."""

    def __init__(self) -> None:
        self.keys: dict[str, Principal] = {}
        self.calls = 0

    def add(self, tenant: str | None, scope: Scope = Scope.TENANT_MEMBER) -> str:
        key = make_key()
        key_id = f"key-{len(self.keys)}"
        self.keys[key] = Principal(key_id, scope, TenantId(tenant) if tenant else None)
        return key

    def authenticate(self, presented: str | None) -> Principal:
        self.calls += 1
        if presented not in self.keys:
            raise Unauthenticated("bad key")
        return self.keys[presented]


class MemorySink:
    """A UsageSink in memory, idempotent on entry_id like the ledger."""

    def __init__(self) -> None:
        self.rows: dict[str, TokenUsage] = {}
        self.writes = 0

    async def record(self, usage: TokenUsage) -> None:
        self.writes += 1
        self.rows.setdefault(usage.entry_id, usage)

    def tokens_used(self, tenant: str, since: float) -> int:
        return sum(
            u.prompt_tokens + u.completion_tokens
            for u in self.rows.values()
            if u.tenant == tenant and u.ended_at >= since
        )


class StaticDirectory:
    def __init__(
        self, replicas: list[ReplicaView], autoscaled: list[DeploymentView] | None = None
    ) -> None:
        self.replicas = replicas
        self.autoscaled = autoscaled or []

    def ready_replicas(self) -> list[ReplicaView]:
        return list(self.replicas)

    def autoscaled_deployments(self) -> list[DeploymentView]:
        return list(self.autoscaled)


class SystemClockForTests:
    def now(self) -> float:
        import time

        return time.time()


def replica(
    rid: str,
    model: str = CHAT,
    base: str | None = None,
    owner: str | None = None,
    engine: str = "vllm",
) -> ReplicaView:
    return ReplicaView(rid, f"dep-{model[:8]}", model, engine, base or f"mock://{rid}", owner)


def make_gateway(
    replicas: list[ReplicaView],
    *,
    keys: FakeKeys,
    sink: MemorySink,
    limits: Limits | None = None,
    limiter: Limiter | None = None,
    clock: Clock | None = None,
    transports: dict[str, httpx.AsyncBaseTransport] | None = None,
    config: GatewayConfig | None = None,
) -> GatewayApp:
    """A gateway app over fakes; ``mock://`` replicas are answered by the mock engine."""
    clock = clock or SystemClockForTests()
    config = config or GatewayConfig(eject_s=5.0)
    if transports is None:
        transports = {"mock": httpx.ASGITransport(app=load_mock().MockEngine())}
    router = Router(StaticDirectory(replicas), clock, refresh_s=1.0, eject_s=config.eject_s)
    router.load(replicas)
    gateway = Gateway(
        authenticator=KeyAuthenticator(keys.authenticate, clock, 1.0),
        limits_for=lambda _t, _k: limits or Limits(),
        limiter=limiter or InProcessLimiter(clock, sink.tokens_used, config.reservation_ttl_s),
        router=router,
        upstreams=Upstreams(Timeouts(1.0, 10.0), transports),
        sink=sink,
        models=default_models(),
        clock=clock,
        config=config,
    )
    return GatewayApp(gateway)


def client_for(app: GatewayApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def chat_body(content: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": CHAT, "messages": [{"role": "user", "content": content}], **extra}
