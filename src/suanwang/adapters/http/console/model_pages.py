"""Deployments and models: a tenant's own deployments (the operator's: every tenant's),
one deployment's replicas, scale and delete; the model catalogue with a deploy form.

Every page stands for an API route (:func:`allow`) and calls the same service method as
that route with the session's principal, so another tenant's private deployment is 404
here as in the API. A replica's address and job are shown to the operator only (the
gateway is how a tenant reaches a model: the ``model`` string, never a replica's port).
Bad form input is shown next to the field with 422 and changes nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from suanwang.adapters.http.console.i18n import translator
from suanwang.adapters.http.console.paging import page_number, slice_page
from suanwang.adapters.http.console.web import PREFIX, ConsoleRoute, User, UserDep, allow, render
from suanwang.adapters.http.routers.models import deployment_public, model_public
from suanwang.adapters.http.security import current_platform
from suanwang.domain.errors import NotFound, ValidationError
from suanwang.domain.serving import MAX_REPLICAS
from suanwang.domain.tenancy import Scope

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
FormText = Annotated[str, Form(max_length=128)]


def parse_replicas(raw: str) -> int | None:
    """A replica count as typed: a whole number in [0, MAX_REPLICAS], else ``None``."""
    text = raw.strip()
    if not text.isdecimal() or len(text) > 6 or int(text) > MAX_REPLICAS:
        return None
    return int(text)


def _manages(user: User, tenant: str | None) -> bool:
    """May the user scale or delete a deployment owned by ``tenant`` (None: public)?"""
    if user.operator:
        return True
    admin = user.principal.scope.rank >= Scope.TENANT_ADMIN.rank
    return admin and tenant is not None and tenant == user.principal.tenant_id


def _list_page(
    request: Request,
    user: User,
    page: str | None,
    status: int = 200,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    deployments = current_platform(request).deployments
    shown = [deployment_public(d) for d in deployments.list(user.principal)]
    newest_first = sorted(shown, key=lambda d: d.created_at, reverse=True)
    return render(
        request,
        "deployments.html",
        status=status,
        deployments=slice_page(newest_first, page_number(page)),
        models=[model_public(m) for m in deployments.models()],
        can_deploy=user.principal.scope.rank >= Scope.TENANT_ADMIN.rank,
        form=form or {"model": "", "cluster": "", "replicas": "1"},
        errors=errors or {},
    )


@router.get("/deployments")
def deployments_page(
    request: Request, user: UserDep, page: Annotated[str | None, Query(max_length=8)] = None
) -> Response:
    """The user's deployments (newest first, paginated) and the model catalogue."""
    allow(user, "GET", "/api/v1/deployments")
    allow(user, "GET", "/api/v1/models")
    return _list_page(request, user, page)


@router.post("/deployments")
def deploy(
    request: Request,
    user: UserDep,
    model: FormText = "",
    cluster: FormText = "",
    replicas: Annotated[str, Form(max_length=16)] = "1",
) -> Response:
    """Deploy a model (``POST /api/v1/deployments``): private to the tenant, public for
    the operator."""
    allow(user, "POST", "/api/v1/deployments")
    t = translator(user.lang)
    form = {"model": model, "cluster": cluster, "replicas": replicas}
    errors = {name: t("dep_required") for name in ("model", "cluster") if not form[name].strip()}
    count = parse_replicas(replicas)
    if count is None:
        errors["replicas"] = t("bad_int", max=MAX_REPLICAS)
    if errors or count is None:
        return _list_page(request, user, None, 422, form, errors)
    try:
        detail = current_platform(request).deployments.deploy(
            user.principal, model.strip(), cluster.strip(), count, None, None
        )
    except (ValidationError, NotFound) as exc:  # a typed model or cluster: beside its field
        field = exc.field if exc.field in form else "model"
        return _list_page(request, user, None, 422, form, {field: exc.message})
    return RedirectResponse(f"{PREFIX}/deployments/{detail.deployment.id}", status_code=303)


def _detail_page(
    request: Request,
    user: User,
    deployment_id: str,
    status: int = 200,
    errors: dict[str, str] | None = None,
    typed: str | None = None,
) -> Response:
    detail = current_platform(request).deployments.get(user.principal, deployment_id)
    public = deployment_public(detail)
    return render(
        request,
        "deployment.html",
        status=status,
        d=public,
        manages=_manages(user, public.tenant) and public.state != "deleted",
        replicas_typed=str(public.replicas) if typed is None else typed,
        errors=errors or {},
    )


@router.get("/deployments/{deployment_id}")
def deployment_page(request: Request, deployment_id: str, user: UserDep) -> Response:
    allow(user, "GET", "/api/v1/deployments/{deployment_id}")
    return _detail_page(request, user, deployment_id)


@router.post("/deployments/{deployment_id}/scale")
def scale(
    request: Request,
    deployment_id: str,
    user: UserDep,
    replicas: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """``PUT /api/v1/deployments/{id}/replicas`` from a form: the count checked first."""
    allow(user, "PUT", "/api/v1/deployments/{deployment_id}/replicas")
    count = parse_replicas(replicas)
    if count is None:
        message = translator(user.lang)("bad_int", max=MAX_REPLICAS)
        return _detail_page(request, user, deployment_id, 422, {"replicas": message}, replicas)
    try:
        current_platform(request).deployments.scale(user.principal, deployment_id, count)
    except ValidationError as exc:
        return _detail_page(request, user, deployment_id, 422, {"replicas": exc.message}, replicas)
    return RedirectResponse(f"{PREFIX}/deployments/{deployment_id}", status_code=303)


@router.post("/deployments/{deployment_id}/delete")
def delete(request: Request, deployment_id: str, user: UserDep) -> Response:
    """``DELETE /api/v1/deployments/{id}``: its replicas stop; the row stays (deleted)."""
    allow(user, "DELETE", "/api/v1/deployments/{deployment_id}")
    current_platform(request).deployments.delete(user.principal, deployment_id)
    return RedirectResponse(f"{PREFIX}/deployments/{deployment_id}", status_code=303)
