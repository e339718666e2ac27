"""Tenants and quotas: the operator's list and quota editor, and a tenant's own quota.

A quota form is parsed whole before anything is saved; a bad field (or one the service
refuses) re-renders the form with the message beside that field and the values as typed,
and nothing is written (the service replaces the quota map in one transaction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from suanwang.adapters.http.console.i18n import translator
from suanwang.adapters.http.console.paging import page_number, slice_page
from suanwang.adapters.http.console.web import (
    PREFIX,
    ConsoleRoute,
    User,
    UserDep,
    allow,
    render,
)
from suanwang.adapters.http.routers.tenant_use import quota_use_public, quota_use_view
from suanwang.adapters.http.security import current_platform
from suanwang.domain.errors import ValidationError
from suanwang.domain.records import TenantRecord
from suanwang.domain.tenancy import MAX_QUOTA_CARDS, UNITS, QuotaSpec
from suanwang.services.platform import Platform

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
QUOTA_FIELD = "quota."


@dataclass
class QuotaForm:
    """What the form holds (as typed) and the errors by field name."""

    values: dict[str, str]
    cohort: str
    weight: str
    errors: dict[str, str] = field(default_factory=dict)


def families(platform: Platform, tenant: TenantRecord) -> list[str]:
    return sorted(set(platform.catalogue.families) | {UNITS} | set(tenant.quota))


def form_of(platform: Platform, tenant: TenantRecord) -> QuotaForm:
    values = {
        f: str(tenant.quota[f].nominal) if f in tenant.quota else ""
        for f in families(platform, tenant)
    }
    return QuotaForm(values, tenant.cohort or "", f"{tenant.weight:g}")


def parse_quota(
    form: QuotaForm, old: TenantRecord, t: Any
) -> tuple[dict[str, int | QuotaSpec], str | None, float] | None:
    """The quota map, cohort and weight, or None with ``form.errors`` filled in."""
    quota: dict[str, int | QuotaSpec] = {}
    for family, raw in form.values.items():
        text = raw.strip()
        if not text:
            continue
        if not text.isdecimal() or len(text) > 10 or int(text) > MAX_QUOTA_CARDS:
            form.errors[f"{QUOTA_FIELD}{family}"] = t("bad_int", max=f"{MAX_QUOTA_CARDS:,}")
            continue
        spec = old.quota.get(family)
        nominal = int(text)
        lending = None if spec is None else spec.lending_limit
        quota[family] = QuotaSpec(
            nominal,
            None if spec is None else spec.borrowing_limit,
            None if lending is None else min(lending, nominal),
        )
    try:
        weight = float(form.weight.strip())
    except ValueError:
        weight = math.nan
    if not math.isfinite(weight) or weight <= 0:
        form.errors["weight"] = t("bad_weight")
    if form.errors:
        return None
    return quota, form.cohort.strip() or None, weight


@router.get("/tenants")
def tenants_page(
    request: Request, user: UserDep, page: Annotated[str | None, Query(max_length=8)] = None
) -> Response:
    allow(user, "GET", "/api/v1/tenants")
    tenants = current_platform(request).tenancy.tenants(user.principal)
    return render(request, "tenants.html", tenants=slice_page(tenants, page_number(page)))


def _tenant_page(
    request: Request,
    user: User,
    tenant: TenantRecord,
    form: QuotaForm,
    status: int = 200,
    saved: bool = False,
) -> Response:
    allow(user, "GET", "/api/v1/tenants/{name}/quota-use")
    use = quota_use_view(current_platform(request)).of(user.principal, tenant.id)
    return render(
        request,
        "tenant.html",
        status=status,
        tenant=tenant,
        form=form,
        saved=saved,
        editable=user.operator,
        use=quota_use_public(use),
    )


@router.get("/tenants/{name}")
def tenant_page(request: Request, name: str, user: UserDep) -> Response:
    allow(user, "GET", "/api/v1/tenants/{name}")
    platform = current_platform(request)
    tenant = platform.tenancy.tenant(user.principal, name)
    saved = request.query_params.get("saved") == "1"
    return _tenant_page(request, user, tenant, form_of(platform, tenant), saved=saved)


@router.post("/tenants/{name}/quota")
async def save_quota(request: Request, name: str, user: UserDep) -> Response:
    """Validate the whole form, then replace the quota in one transaction (or save nothing)."""
    posted = {k: str(v) for k, v in (await request.form()).items()}
    return await run_in_threadpool(_save_quota, request, name, user, posted)


def _save_quota(request: Request, name: str, user: User, posted: dict[str, str]) -> Response:
    allow(user, "PUT", "/api/v1/tenants/{name}/quota")
    platform = current_platform(request)
    tenant = platform.tenancy.tenant(user.principal, name)
    form = QuotaForm(
        values={f: posted.get(f"{QUOTA_FIELD}{f}", "") for f in families(platform, tenant)},
        cohort=posted.get("cohort", ""),
        weight=posted.get("weight", ""),
    )
    parsed = parse_quota(form, tenant, translator(user.lang))
    if parsed is not None:
        quota, cohort, weight = parsed
        try:
            platform.tenancy.set_quota(name, quota, cohort, weight, actor=user.principal)
        except ValidationError as exc:
            form.errors[".".join((exc.field or "quota").split(".")[:2])] = exc.message
        else:
            return RedirectResponse(f"{PREFIX}/tenants/{name}?saved=1", status_code=303)
    return _tenant_page(request, user, tenant, form, status=422)


@router.get("/quota")
def my_quota(request: Request, user: UserDep) -> Response:
    """A tenant's own quota (the operator is sent to the tenants page)."""
    if user.principal.tenant_id is None:
        return RedirectResponse(f"{PREFIX}/tenants", status_code=303)
    return tenant_page(request, user.principal.tenant_id, user)
