"""The console's plumbing: templates, the session cookie, CSRF, language and errors.

Every console route uses :class:`ConsoleRoute`. It finds the caller's session (no session:
a redirect to the login page), refuses a write without the session's CSRF token, and
renders a domain error (404 for another tenant's job, 403, 422) as an HTML page with the
same status the API would give. Scopes come from the API's own table
(:func:`allow`): the console has no permission model of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from suanwang.adapters.http.authz import PUBLIC, rule_for
from suanwang.adapters.http.console.i18n import HTML_LANG, LANGS, pick_lang, translator
from suanwang.adapters.http.security import current_platform, request_id
from suanwang.domain.console_sessions import csrf_matches, csrf_token
from suanwang.domain.errors import DomainError, Forbidden, Unauthenticated
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform
from suanwang.services.sessions import ConsoleSessions

HERE: Final = Path(__file__).parent
SESSION_COOKIE: Final = "sw_session"
LANG_COOKIE: Final = "sw_lang"
LOGIN_COOKIE: Final = "sw_login"
"""Double-submit token of the login form (there is no session yet to bind it to)."""
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
PREFIX: Final = "/console"
WRITES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PAGE_SIZE: Final = 50
PUBLIC_PAGES: Final = frozenset({f"{PREFIX}/login", "/"})


def utc_text(seconds: float) -> str:
    """UNIX seconds as ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["datetime"] = utc_text
    return env


templates: Final = _environment()
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """No live session: the browser is sent to the login page."""


@dataclass(frozen=True, slots=True)
class User:
    """The caller of a console page: principal (from the session), CSRF token, language."""

    principal: Principal
    session_id: str
    csrf: str
    lang: str

    @property
    def operator(self) -> bool:
        return self.principal.is_operator


def sessions(platform: Platform) -> ConsoleSessions:
    return ConsoleSessions(platform.uows, platform.clock, platform.tenancy)


def lang_of(request: Request) -> str:
    return pick_lang(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


async def _user(request: Request) -> User:
    platform = current_platform(request)
    session_id = request.cookies.get(SESSION_COOKIE, "")
    try:
        principal = await run_in_threadpool(
            sessions(platform).principal, session_id, request_id(request)
        )
    except Unauthenticated as exc:
        raise LoginRequired from exc
    return User(principal, session_id, csrf_token(session_id), lang_of(request))


def current_user(request: Request) -> User:
    """FastAPI dependency: the console user :class:`ConsoleRoute` found."""
    user: Any = request.state.console_user
    assert isinstance(user, User)
    return user


UserDep = Annotated[User, Depends(current_user)]
"""The signed-in user of a console page (a dependency)."""
Short = Annotated[str | None, Query(max_length=64)]
"""A short free-text filter from the query string."""


def allow(user: User, method: str, api_path: str) -> None:
    """Refuse (403) unless the user's key may call the API route the page stands for."""
    rule = rule_for(method, api_path)
    assert rule is not None, f"no API rule for {method} {api_path}"
    if rule != PUBLIC:
        assert isinstance(rule, Scope)
        if user.principal.scope.rank < rule.rank:
            raise Forbidden(f"this page needs a {rule} key; yours is {user.principal.scope}")


async def _presented_csrf(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    form = await request.form()
    value = form.get(CSRF_FIELD)
    return value if isinstance(value, str) else None


class ConsoleRoute(APIRoute):
    """Session, CSRF on writes, language cookie, and HTML error pages for one route."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        public = self.path_format in PUBLIC_PAGES

        async def console(request: Request) -> Response:
            lang = lang_of(request)
            try:
                if not public:
                    user = await _user(request)
                    request.state.console_user = user
                    if request.method in WRITES and not csrf_matches(
                        user.session_id, await _presented_csrf(request)
                    ):
                        return error_page(request, 403, "csrf_failed")
                response = await handler(request)
            except LoginRequired:
                return login_redirect(request)
            except DomainError as exc:
                key = {404: "not_found", 403: "forbidden"}.get(exc.status, "error")
                return error_page(request, exc.status, key, exc.message)
            finally:
                await request.close()  # a parsed multipart form's spooled files
            if request.query_params.get("lang") in LANGS:
                response.set_cookie(
                    LANG_COOKIE,
                    lang,
                    max_age=365 * 86400,
                    path="/",
                    samesite="strict",
                    httponly=True,
                )
            return response

        return console


def login_redirect(request: Request) -> Response:
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": f"{PREFIX}/login"})
    return RedirectResponse(f"{PREFIX}/login", status_code=303)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with the user (if any), translator, CSRF token and ``context``."""
    user: Any = getattr(request.state, "console_user", None)
    lang = user.lang if isinstance(user, User) else lang_of(request)
    body = templates.get_template(template).render(
        request=request,
        user=user,
        t=translator(lang),
        lang=lang,
        html_lang=HTML_LANG[lang],
        other_lang="en" if lang == "zh" else "zh",
        csrf=user.csrf if isinstance(user, User) else "",
        prefix=PREFIX,
        **context,
    )
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def error_page(request: Request, status: int, key: str, detail: str = "") -> HTMLResponse:
    return render(request, "error.html", status=status, message_key=key, detail=detail)
