"""Log in with an API key (exchanged for a session cookie), log out, and the landing page."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from suanwang.adapters.http.console.web import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    ConsoleRoute,
    UserDep,
    error_page,
    render,
    sessions,
)
from suanwang.adapters.http.security import current_platform, request_id
from suanwang.domain.console_sessions import SESSION_TTL_S
from suanwang.domain.errors import Unauthenticated

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
MAX_KEY_FIELD = 200


@router.get("/")
def root() -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=303)


@router.get(f"{PREFIX}/")
def home(user: UserDep) -> Response:
    """The operator starts at the fleet, a tenant at its jobs."""
    return RedirectResponse(f"{PREFIX}/fleet" if user.operator else f"{PREFIX}/jobs", 303)


def _login_form(request: Request, failed: bool = False, status: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", status=status, login_csrf=token, failed=failed)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get(f"{PREFIX}/login")
def login_page(request: Request) -> Response:
    return _login_form(request)


@router.post(f"{PREFIX}/login")
async def login(
    request: Request,
    key: Annotated[str, Form(max_length=MAX_KEY_FIELD)] = "",
    csrf: Annotated[str, Form(alias=CSRF_FIELD, max_length=100)] = "",
) -> Response:
    """Check the form's double-submit token, then exchange the key for a session."""
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not secrets.compare_digest(expected, csrf):
        return error_page(request, 403, "csrf_failed")
    platform = current_platform(request)
    try:
        new = await run_in_threadpool(sessions(platform).login, key.strip(), request_id(request))
    except Unauthenticated:
        return _login_form(request, failed=True, status=401)
    response = RedirectResponse(f"{PREFIX}/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        new.session_id,
        max_age=SESSION_TTL_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post(f"{PREFIX}/logout")
def logout(request: Request, user: UserDep) -> Response:
    """End the session (the row is deleted) and clear the cookie."""
    sessions(current_platform(request)).logout(user.session_id, user.principal)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
