"""Builds the FastAPI application: routers, problem-JSON errors, body limits, metrics."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from suanwang import __version__
from suanwang.adapters.http import problems
from suanwang.adapters.http.authz import rule_for
from suanwang.adapters.http.console import install_console, upload_limits
from suanwang.adapters.http.follow import FollowSlots
from suanwang.adapters.http.limits import (
    UPLOAD_OVERHEAD_BYTES,
    BodySizeLimit,
    LargerBody,
    is_file_upload,
)
from suanwang.adapters.http.responses import install_document, text_body
from suanwang.adapters.http.routers import (
    apps,
    audit,
    datasets,
    external,
    fleet,
    jobs,
    knowledge,
    limits,
    models,
    tenant_use,
    tenants,
    transfers,
)
from suanwang.adapters.http.routers.billing import router as billing_router
from suanwang.adapters.http.routers.operations import router as operations_router
from suanwang.adapters.http.schemas import Health, WhoAmI
from suanwang.adapters.http.security import AuthorizedRoute, tag_request
from suanwang.domain.errors import DomainError
from suanwang.domain.knowledge import MAX_DOCUMENT_BYTES
from suanwang.observability import Metrics
from suanwang.ports import AppChat
from suanwang.services.platform import Platform

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    platform: Platform,
    metrics: Metrics,
    *,
    max_body_bytes: int = 1 << 20,
    lifespan: Lifespan | None = None,
    follow_slots: FollowSlots | None = None,
    app_chat: AppChat | None = None,
) -> FastAPI:
    """The REST API over ``platform``. Refuses to build if a route lacks an authorization rule."""
    app = FastAPI(
        title="suanwang",
        version=__version__,
        lifespan=lifespan,
        description="算网 compute network: fleet, tenants, keys and jobs. "
        "Simulated clusters are labelled `simulated: true`.",
    )
    app.state.platform = platform
    app.state.metrics = metrics
    app.state.follow_slots = follow_slots or FollowSlots(per_key=4, total=64)
    app.state.app_chat = app_chat  # the console's chat playground (None: it answers 503)
    for router in (fleet.router, tenants.router, jobs.router, models.models_router, models.router):
        app.include_router(router)
    app.include_router(billing_router)
    app.include_router(limits.router)
    app.include_router(audit.router)
    app.include_router(external.router)
    app.include_router(datasets.router)
    app.include_router(transfers.router)
    app.include_router(knowledge.router)
    app.include_router(apps.router)
    app.include_router(tenant_use.router)
    app.include_router(operations_router)
    _system_routes(app, metrics)
    install_console(app)
    app.add_exception_handler(DomainError, problems.domain_error)
    app.add_exception_handler(RequestValidationError, problems.validation_error)
    app.add_exception_handler(HTTPException, problems.http_error)
    app.middleware("http")(_measure(metrics))
    app.middleware("http")(tag_request)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=max_body_bytes,
        exempt=is_file_upload,
        larger=(
            LargerBody(
                re.compile(knowledge.UPLOAD_PATH),
                MAX_DOCUMENT_BYTES + UPLOAD_OVERHEAD_BYTES,
                f"documents are limited to {MAX_DOCUMENT_BYTES} bytes: split the file",
            ),
            *upload_limits(),
        ),
    )
    install_document(app)
    check_authorization_table(app)
    return app


def _system_routes(app: FastAPI, metrics: Metrics) -> None:
    def healthz() -> Health:
        return Health(status="ok", version=__version__)

    def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def whoami(request: Request) -> WhoAmI:
        p = request.state.principal
        return WhoAmI(key_id=p.key_id, scope=p.scope.value, tenant=p.tenant_id)

    app.router.routes += [
        AuthorizedRoute("/healthz", healthz, methods=["GET"], tags=["system"]),
        AuthorizedRoute(
            "/metrics",
            metrics_endpoint,
            methods=["GET"],
            tags=["system"],
            response_class=PlainTextResponse,
            responses=text_body("Prometheus text format", CONTENT_TYPE_LATEST.split(";")[0]),
        ),
        AuthorizedRoute("/api/v1/whoami", whoami, methods=["GET"], tags=["system"]),
    ]


def _measure(
    metrics: Metrics,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path_format", "unmatched")
        metrics.requests.labels(request.method, template, str(response.status_code)).inc()
        metrics.latency.labels(template).observe(time.perf_counter() - started)
        return response

    return middleware


def check_authorization_table(app: FastAPI) -> None:
    """Every route in the OpenAPI document has an authorization rule."""
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            if rule_for(method, path) is None:
                raise RuntimeError(f"no authorization rule for {method.upper()} {path}")
