"""Authentication and authorization at the edge: every route is checked against the table
in :mod:`authz` before its body is even parsed."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from suanwang.adapters.http.authz import PUBLIC, rule_for
from suanwang.domain.errors import Forbidden
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class AuthorizedRoute(APIRoute):
    """An APIRoute that authenticates and checks the scope before anything else runs."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        method = next(iter(self.methods or {"GET"}))
        rule = rule_for(method, self.path_format)
        if rule is None:
            raise RuntimeError(f"route {method} {self.path_format} has no authorization rule")

        async def authorized(request: Request) -> Response:
            if rule != PUBLIC:
                platform: Platform = request.app.state.platform
                principal = await run_in_threadpool(
                    platform.tenancy.authenticate, bearer_token(request)
                )
                assert isinstance(rule, Scope)
                if principal.scope.rank < rule.rank:
                    raise Forbidden(
                        f"this route needs a {rule} key; yours is {principal.scope}",
                        field="Authorization",
                    )
                request.state.principal = principal
            return await handler(request)

        return authorized


def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the caller, already authenticated by :class:`AuthorizedRoute`."""
    principal: Any = request.state.principal
    assert isinstance(principal, Principal)
    return principal


def current_platform(request: Request) -> Platform:
    """FastAPI dependency: the application facade."""
    platform: Any = request.app.state.platform
    assert isinstance(platform, Platform)
    return platform
