"""Authentication and authorization at the edge: every route is checked against the table
in :mod:`authz` before its body is even parsed.

Each request gets an id (:func:`tag_request`): the caller's ``X-Request-Id`` when it is a
short token, else a new one. It comes back in every answer's ``X-Request-Id`` and rides on
the :class:`~suanwang.domain.tenancy.Principal`, so audit entries name the request that made
them.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from suanwang.adapters.http.authz import PUBLIC, rule_for
from suanwang.domain.errors import Forbidden
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_SHAPE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id(request: Request) -> str:
    """The request's id: set by :func:`tag_request`, else the caller's ``X-Request-Id`` if it
    is a token of 1-64 safe characters, else a new one."""
    tagged: Any = getattr(request.state, "request_id", None)
    if isinstance(tagged, str):
        return tagged
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if REQUEST_ID_SHAPE.match(given) else uuid.uuid4().hex


async def tag_request(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """HTTP middleware: give the request its id and put it on the answer, errors included."""
    rid = request.state.request_id = request_id(request)
    response = await call_next(request)
    response.headers[REQUEST_ID_HEADER] = rid
    return response


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
            rid = request_id(request)
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
                request.state.principal = dataclasses.replace(principal, request_id=rid)
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
