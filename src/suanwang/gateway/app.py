"""The gateway ASGI app: OpenAI's routes, every error in OpenAI's shape.

Per request: request id → key check (401 before any database read for malformed keys) →
body validation → model visibility and kind → key allow-list → limits and quota
reservation → routing with failover → answer → exactly one usage record. Everything after
the key check is metered, rejections included (with zero tokens).

Collaborators are injected by :func:`suanwang.bootstrap.build_gateway_app`; this package
never touches the database itself.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from suanwang.domain.apps import APP_PREFIX
from suanwang.domain.errors import DomainError
from suanwang.domain.limits import Limits
from suanwang.domain.serving import ModelSpec
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.usage import Outcome, ledger_model
from suanwang.gateway import asgi
from suanwang.gateway.apps import AppDirectory, AppRunner, no_model, sub_request
from suanwang.gateway.asgi import DisconnectWatch, Receive, Send
from suanwang.gateway.asgi import Scope as AsgiScope
from suanwang.gateway.auth import KeyAuthenticator, TtlCache
from suanwang.gateway.demand import DemandTracker
from suanwang.gateway.errors import GatewayError, from_domain
from suanwang.gateway.errors import ending as error_ending
from suanwang.gateway.metering import RequestMeter
from suanwang.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from suanwang.gateway.proxy import Proxy
from suanwang.gateway.routing import Router, Slot
from suanwang.gateway.schema import Call, check_model, parse_call
from suanwang.gateway.upstream import Upstreams
from suanwang.ports import Clock, DemandSink, Limiter, UsageSink

log = structlog.get_logger("suanwang.gateway")
NOT_READY_RETRY_S = 5
"""Retry-After of a 503 for a deployed model whose replicas are still starting."""
COLD_START_RETRY_S = 10
"""Retry-After of a 503 for a request that waited for a cold start past the timeout."""
COLD_START_POLL_S = 0.1
ENDPOINTS = {
    "/v1/chat/completions": "chat/completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Timeouts, caches and caps (see docs/gateway.md)."""

    connect_timeout_s: float = 2.0
    read_timeout_s: float = 300.0
    """Longest wait for an engine's first byte: above a full-context prefill of the local
    model (SmolLM2, 8,192 tokens at 45-55 tokens/s on 2 busy cores: ~150-180 s)."""
    max_request_s: float = 600.0
    auth_cache_s: float = 1.0
    limits_cache_s: float = 5.0
    refresh_s: float = 1.0
    eject_s: float = 5.0
    sweep_s: float = 15.0
    max_attempts: int = 3
    default_max_tokens: int = 1024
    max_body_bytes: int = 4 << 20
    report_s: float = 1.0
    """How often demand is reported to the control plane (when a demand sink is set)."""
    cold_start_timeout_s: float = 60.0
    """Longest wait of a request for an autoscaled deployment with no ready replica."""

    @property
    def reservation_ttl_s(self) -> float:
        """Longer than any request can take, so sweeping never frees a live reservation."""
        return self.max_request_s + self.connect_timeout_s * self.max_attempts + 60.0


@dataclass
class Gateway:
    """Everything the app needs, injected."""

    authenticator: KeyAuthenticator
    limits_for: Callable[[str, str], Limits]
    """``(tenant, key_id) -> Limits`` (blocking; cached here for ``limits_cache_s``)."""
    limiter: Limiter
    router: Router
    upstreams: Upstreams
    sink: UsageSink
    models: Mapping[str, ModelSpec]
    clock: Clock
    config: GatewayConfig = field(default_factory=GatewayConfig)
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    metrics: GatewayMetrics | None = None
    """Default: this process's metrics, labelled with the catalogue's models."""
    demand_sink: DemandSink | None = None
    """Where demand is reported for the autoscaler (``None``: not reported)."""
    apps: AppDirectory | None = None
    """Where ``app:<name>`` models are resolved (``None``: apps are unknown models)."""


@dataclass(slots=True)
class Exchange:
    """One HTTP request as the app's outer layer sees it (ids, status, model)."""

    request_id: str
    client_id: str
    status: int = 499
    """The answer's status; 499 until one is sent (a client that went away)."""
    sent: bool = False
    model: str = ""


class GatewayApp:
    """The ASGI callable (``uvicorn --factory suanwang.bootstrap:gateway_app_from_env``)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        cfg = gateway.config
        self.metrics = gateway.metrics or GatewayMetrics(gateway.models)
        self._proxy = Proxy(
            gateway.router, gateway.upstreams, cfg.max_attempts, cfg.max_request_s, self.metrics
        )
        self._limits: TtlCache[tuple[str, str], Limits] = TtlCache(
            gateway.clock, cfg.limits_cache_s
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._boot = secrets.token_hex(7)
        """Random per process: request ids are unique across processes and restarts."""
        self._served = 0
        self.demand = DemandTracker(gateway.clock, f"gw-{self._boot}")
        self._apps = (
            AppRunner(gateway.apps, gateway.clock, cfg.auth_cache_s, cfg.default_max_tokens)
            if gateway.apps is not None
            else None
        )

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        await self._exchange(scope, receive, send, None)

    async def call_as(
        self, principal: Principal, scope: AsgiScope, receive: Receive, send: Send
    ) -> None:
        """Serve one HTTP request for ``principal``, whom the caller has authenticated (the
        console's chat playground, by its session): the same path, limits and metering as a
        request with a key in its ``Authorization`` header, minus the key check."""
        await self._exchange(scope, receive, send, principal)

    async def _exchange(
        self, scope: AsgiScope, receive: Receive, send: Send, principal: Principal | None
    ) -> None:
        began = time.perf_counter()
        self._served += 1
        request_id = f"req_{self._boot}{self._served:010x}"
        ex = Exchange(request_id, asgi.client_request_id(scope) or request_id)

        async def tracked(message: asgi.Message) -> None:
            if not ex.sent:
                ex.sent, ex.status = True, message.get("status", 200)
            await send(message)

        try:
            await self._route(scope, receive, tracked, ex, principal)
        except GatewayError as error:
            if not ex.sent:
                await asgi.send_error(tracked, error, ex.client_id)
        except Exception:
            log.exception("gateway request failed", request_id=request_id)
            if not ex.sent:
                internal = GatewayError(500, "internal error; retry later", code="internal_error")
                await asgi.send_error(tracked, internal, ex.client_id)
        finally:
            route = _route_label(scope["path"])
            self.metrics.request(route, ex.model, ex.status, time.perf_counter() - began)

    async def _route(
        self,
        scope: AsgiScope,
        receive: Receive,
        send: Send,
        ex: Exchange,
        known: Principal | None = None,
    ) -> None:
        path, method, client_id = scope["path"], scope["method"], ex.client_id
        endpoint = ENDPOINTS.get(path)
        if endpoint is not None and method == "POST":
            await self._call(scope, (receive, send), endpoint, ex, known)
        elif path == "/v1/models" and method == "GET":
            principal = await self._tenant(scope)
            await asgi.send_json(send, 200, await self._model_list(principal), client_id)
        elif path.startswith("/v1/models/") and method == "GET":
            principal = await self._tenant(scope)
            wanted = path.removeprefix("/v1/models/")
            found = [m for m in (await self._model_list(principal))["data"] if m["id"] == wanted]
            if not found:
                raise no_model(wanted)
            await asgi.send_json(send, 200, found[0], client_id)
        elif path in ("/health", "/healthz") and method == "GET":
            await asgi.send_json(send, 200, {"status": "ok"}, client_id)
        elif path == "/metrics" and method == "GET":
            await asgi.send_bytes(send, 200, self.metrics.render(), client_id, None, CONTENT_TYPE)
        elif endpoint is not None or path.startswith("/v1/models"):
            raise GatewayError(405, f"{method} is not allowed on {path}", code="method_not_allowed")
        else:
            raise GatewayError(404, f"no route {method} {path}", code="unknown_url")

    async def _tenant(self, scope: AsgiScope, known: Principal | None = None) -> Principal:
        if known is None:
            principal = await self.gw.authenticator.principal(scope["headers"])
        else:
            principal = known  # authenticated by the in-process caller (call_as)
        if principal.tenant_id is None:
            raise GatewayError(
                403, "the gateway serves tenant keys; operator keys cannot call models"
            )
        return principal

    async def _model_list(self, principal: Principal) -> dict[str, Any]:
        """The models ``principal`` may call: visible to its tenant and on its key's list."""
        assert principal.tenant_id is not None
        limits = await self._limits_of(principal.tenant_id, principal.key_id)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "suanwang"}
            for name in self.gw.router.models(principal.tenant_id)
            if limits.key.allows(name)
        ]
        return {"object": "list", "data": data}

    async def _limits_of(self, tenant: str, key_id: str) -> Limits:
        return await self._limits.get(
            (tenant, key_id), lambda: asyncio.to_thread(self.gw.limits_for, tenant, key_id)
        )

    async def _call(
        self,
        scope: AsgiScope,
        io: tuple[Receive, Send],
        endpoint: str,
        ex: Exchange,
        known: Principal | None,
    ) -> None:
        request_id, client_id = ex.request_id, ex.client_id
        receive, send = io
        gw = self.gw
        principal = await self._tenant(scope, known)
        assert principal.tenant_id is not None
        meter = RequestMeter(
            gw.sink,
            gw.limiter,
            gw.clock,
            request_id,
            principal.tenant_id,
            principal.key_id,
            endpoint,
            gw.clock.now(),
            metrics=self.metrics,
            demand=self.demand,
        )
        ending = (500, Outcome.UPSTREAM_ERROR)  # unless told otherwise: cancelled or crashed
        try:
            await self._serve(scope, receive, send, principal, meter, client_id)
        except GatewayError as error:
            ending = error_ending(error)
            raise
        finally:
            ex.model = meter.model
            if not meter.closed:  # an answer the proxy billed is closed already
                await asyncio.shield(meter.close(*ending))

    async def _serve(
        self,
        scope: AsgiScope,
        receive: Receive,
        send: Send,
        principal: Principal,
        meter: RequestMeter,
        client_id: str,
    ) -> None:
        gw, cfg = self.gw, self.gw.config
        if principal.scope is Scope.READ_ONLY:
            raise GatewayError(403, "read-only keys cannot call models", code="read_only_key")
        raw = await asgi.read_body(scope, receive, cfg.max_body_bytes)
        call = parse_call(meter.endpoint, raw, cfg.default_max_tokens)
        meter.model = ledger_model(call.model, gw.models)
        if self._apps is not None and call.model.startswith(APP_PREFIX):

            async def embed(sub: Call) -> Any:
                return await self._sub_call(sub, meter, receive, client_id)

            call = await self._apps.prepare(call, principal, meter, embed)
        await self._dispatch(call, meter, (receive, send, client_id))

    async def _dispatch(
        self, call: Call, meter: RequestMeter, io: tuple[Receive, Send, str]
    ) -> None:
        """Check a parsed call against the catalogue, the key and the limits; route it."""
        gw, receive = self.gw, io[0]
        meter.model = ledger_model(call.model, gw.models)
        tenant = meter.tenant
        slots = gw.router.visible(call.model, tenant)
        spec = gw.models.get(call.model)
        if spec is not None:
            check_model(call, spec)
        wakeable = [] if slots else gw.router.wakeable(call.model, tenant)
        if not slots and not wakeable and gw.router.deployed(call.model, tenant):
            raise GatewayError(
                503,
                f"no replica of {call.model!r} is ready yet; retry shortly",
                code="model_not_ready",
                headers={"retry-after": str(NOT_READY_RETRY_S)},
            )
        if not slots and not wakeable:  # not in the catalogue, not deployed, or another
            raise no_model(call.model)  # tenant's: all alike
        if spec is None:  # an external endpoint's model: a name the operator registered
            meter.model = call.model
        limits = await self._limits_of(tenant, meter.key_id)
        if not limits.key.allows(call.model):
            message = f"this key may not call {call.model!r}"
            raise GatewayError(403, message, param="model", code="model_not_allowed")
        try:
            meter.reservation = await gw.limiter.reserve(
                meter.request_id, tenant, meter.key_id, call.reserve_tokens, limits
            )
        except DomainError as error:
            self.metrics.rejected(error.field)
            raise from_domain(error) from None
        if not slots:
            slots = await self._cold_start(call.model, tenant, wakeable, receive)
        answer = self._proxy.stream if call.stream else self._proxy.plain
        await answer(call, slots, meter, io)

    async def _sub_call(
        self, call: Call, parent: RequestMeter, receive: Receive, client_id: str
    ) -> Any:
        """Run ``call`` (an app's query embedding) as a request of its own: its own usage
        row (the parent's id + ``-e``) on the same key; its JSON answer."""
        meter = replace(
            parent,
            request_id=f"{parent.request_id}-e",
            endpoint=call.endpoint,
            started_at=self.gw.clock.now(),
        )
        return await sub_request(self._dispatch, call, meter, (receive, client_id))

    async def _cold_start(
        self, model: str, tenant: str, wakeable: list[str], receive: Receive
    ) -> list[Slot]:
        """Wait (counted as queued demand, which makes the autoscaler start a replica) for a
        ready replica of ``model``; 503 with Retry-After past the cold-start timeout; a
        client that leaves stops waiting (and counting) at once."""
        timeout_s = self.gw.config.cold_start_timeout_s
        deadline = time.monotonic() + timeout_s
        slots: list[Slot] = []
        with self.demand.waiting(wakeable):
            async with DisconnectWatch(receive) as watch:
                while not slots and time.monotonic() < deadline:
                    await asyncio.sleep(COLD_START_POLL_S)
                    slots = self.gw.router.visible(model, tenant)
        if watch.gone:
            raise GatewayError(499, "client disconnected", code="client_disconnect")
        if slots:
            return slots
        raise GatewayError(
            503,
            f"no replica of {model!r} became ready within the {timeout_s:g} s cold-start "
            "timeout; retry shortly",
            code="cold_start_timeout",
            headers={"retry-after": str(COLD_START_RETRY_S)},
        )

    async def _report_demand(self, sink: DemandSink) -> None:
        """Report this process's demand every ``report_s`` (a background task)."""
        router = self.gw.router
        while True:
            await asyncio.sleep(self.gw.config.report_s)
            reports = self.demand.reports(
                router.known_deployments(), router.inflight(), router.routed_at
            )
            try:
                await asyncio.to_thread(sink.record, self.demand.gateway, reports)
            except Exception:
                log.exception("demand report failed")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        """Load the replicas and start the background tasks (refresh, sweep, demand): what
        an ASGI server's lifespan startup does; :meth:`aclose` stops them."""
        await self.gw.router.refresh()
        self._tasks = [
            asyncio.create_task(self.gw.router.run()),
            asyncio.create_task(self._sweep()),
        ]
        if self.gw.demand_sink is not None:
            sink = self.gw.demand_sink
            self._tasks.append(asyncio.create_task(self._report_demand(sink)))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        await self.gw.upstreams.aclose()
        for close in self.gw.on_close:
            await close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.gw.config.sweep_s)
            try:
                swept = await self.gw.limiter.sweep()
            except Exception:
                log.exception("reservation sweep failed")
                continue
            if swept:
                log.warning("released expired reservations", count=swept)


def _route_label(path: str) -> str:
    """A bounded label for ``path``: the route it hit, or ``other``."""
    endpoint = ENDPOINTS.get(path)
    if endpoint is not None:
        return endpoint
    if path.startswith("/v1/models"):
        return "models"
    return path[1:] if path in ("/health", "/healthz", "/metrics") else "other"
