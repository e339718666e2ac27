"""Apps: the tenant's apps (who may call each: every key, or named keys, yours or not),
creating one from an industry template, one app with its versions, publish, sharing and
delete, all through :class:`~suanwang.services.apps.Apps` with the session's principal
(another tenant's app is 404, as in the API). The chat playground is in
:mod:`~suanwang.adapters.http.console.chat_pages`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from suanwang.adapters.http.console import chat_pages
from suanwang.adapters.http.console.paging import page_number, slice_page
from suanwang.adapters.http.console.web import PREFIX, ConsoleRoute, User, UserDep, allow, render
from suanwang.adapters.http.security import current_platform
from suanwang.domain.apps import App
from suanwang.domain.errors import DomainError
from suanwang.domain.tenancy import Scope
from suanwang.services.app_templates import instantiate_keyword, template, templates

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
router.include_router(chat_pages.router)
PageArg = Annotated[str | None, Query(max_length=8)]


def sharing_of(app: App, user: User) -> str:
    """Who may call ``app``, from the caller's side: a message key."""
    if not app.shared_keys:
        return "app_shared_all"
    return "app_shared_you" if user.principal.key_id in app.shared_keys else "app_shared_not_you"


def _is_admin(user: User) -> bool:
    return user.principal.scope.rank >= Scope.TENANT_ADMIN.rank and not user.operator


def _apps_page(
    request: Request,
    user: User,
    page: str | None,
    status: int = 200,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    apps = current_platform(request).apps.visible(user.principal)
    ordered = sorted(apps, key=lambda a: (a.tenant, a.name))
    return render(
        request,
        "apps.html",
        status=status,
        apps=slice_page(ordered, page_number(page)),
        sharing={a.id: sharing_of(a, user) for a in ordered},
        templates=list(templates().values()),
        admin=_is_admin(user),
        form=form or {"template": "", "name": ""},
        errors=errors or {},
    )


@router.get("/apps")
def apps_page(request: Request, user: UserDep, page: PageArg = None) -> Response:
    allow(user, "GET", "/api/v1/apps")
    return _apps_page(request, user, page)


@router.post("/apps")
async def create_app(
    request: Request,
    user: UserDep,
    template_name: Annotated[str, Form(alias="template", max_length=64)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Create an app from a template: nothing is made unless every step succeeds."""
    form = {"template": template_name, "name": name.strip()}
    return await run_in_threadpool(_create, request, user, form)


def _create(request: Request, user: User, form: dict[str, str]) -> Response:
    allow(user, "POST", "/api/v1/apps")
    platform = current_platform(request)
    errors: dict[str, str] = {}
    if form["template"] not in templates():
        errors["template"] = "choose a template"
    if not form["name"]:
        errors["name"] = "required"
    if not errors:
        try:
            made = instantiate_keyword(
                platform.apps,
                platform.knowledge,
                user.principal,
                template(form["template"]),
                form["name"],
            )
        except DomainError as exc:
            if exc.status in (401, 403, 404):
                raise
            field = exc.field if exc.field in ("template", "name") else "name"
            errors[field] = exc.message
        else:
            target = f"{PREFIX}/apps/{made.app.name}?created=1"
            return RedirectResponse(target, status_code=303)
    return _apps_page(request, user, None, 422, form=form, errors=errors)


def _app_page(
    request: Request,
    user: User,
    name: str,
    status: int = 200,
    errors: dict[str, str] | None = None,
    created: bool = False,
) -> Response:
    platform = current_platform(request)
    detail = platform.apps.get(user.principal, name)
    versions = platform.apps.versions(user.principal, name)
    admin = _is_admin(user)
    keys = (
        [k for k in platform.tenancy.keys(user.principal) if k.revoked_at is None] if admin else []
    )
    return render(
        request,
        "app.html",
        status=status,
        detail=detail,
        versions=list(reversed(versions)),
        sharing=sharing_of(detail.app, user),
        keys=keys,
        admin=admin,
        errors=errors or {},
        created=created,
    )


@router.get("/apps/{name}")
def app_page(request: Request, name: str, user: UserDep) -> Response:
    allow(user, "GET", "/api/v1/apps/{name}")
    created = request.query_params.get("created") == "1"
    return _app_page(request, user, name, created=created)


@router.post("/apps/{name}/publish")
def publish_version(
    request: Request,
    name: str,
    user: UserDep,
    version: Annotated[int, Form(ge=1, le=10**9)],
) -> Response:
    allow(user, "POST", "/api/v1/apps/{name}/publish")
    current_platform(request).apps.publish(user.principal, name, version)
    return RedirectResponse(f"{PREFIX}/apps/{name}", status_code=303)


@router.post("/apps/{name}/sharing")
async def share_app(request: Request, name: str, user: UserDep) -> Response:
    """The keys ticked in the form (none ticked: every key of the tenant)."""
    form = await request.form()
    key_ids = [str(v) for v in form.getlist("key_ids")][:100]
    return await run_in_threadpool(_share, request, user, name, key_ids)


def _share(request: Request, user: User, name: str, key_ids: list[str]) -> Response:
    allow(user, "PUT", "/api/v1/apps/{name}/sharing")
    try:
        current_platform(request).apps.share(user.principal, name, key_ids)
    except DomainError as exc:
        if exc.status != 422:
            raise
        return _app_page(request, user, name, 422, errors={"key_ids": exc.message})
    return RedirectResponse(f"{PREFIX}/apps/{name}", status_code=303)


@router.post("/apps/{name}/delete")
def delete_app(
    request: Request,
    name: str,
    user: UserDep,
    with_knowledge_bases: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    allow(user, "DELETE", "/api/v1/apps/{name}")
    current_platform(request).apps.delete(
        user.principal, name, with_knowledge_bases=with_knowledge_bases == "1"
    )
    return RedirectResponse(f"{PREFIX}/apps", status_code=303)
