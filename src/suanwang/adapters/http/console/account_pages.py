"""A tenant's keys (create: the secret is shown once; revoke), usage and bills (the CSV is
the API's own), and the audit log (operator: all; tenant admin: its own tenant)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from suanwang.adapters.http.console.paging import page_number, slice_page
from suanwang.adapters.http.console.web import (
    PAGE_SIZE,
    PREFIX,
    ConsoleRoute,
    Short,
    User,
    UserDep,
    allow,
    render,
)
from suanwang.adapters.http.routers.billing import CSV, bill_csv, bill_public
from suanwang.adapters.http.routers.tenant_use import DailyUsagePublic, daily_public
from suanwang.adapters.http.security import current_platform
from suanwang.domain.audit import AuditAction, AuditQuery, AuditResource
from suanwang.domain.billing import Period
from suanwang.domain.errors import DomainError, ValidationError
from suanwang.domain.tenancy import Scope
from suanwang.services.audit import AuditLog
from suanwang.services.billing import Billing

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
TENANT_SCOPES = [Scope.TENANT_MEMBER.value, Scope.READ_ONLY.value, Scope.TENANT_ADMIN.value]


def _keys_page(
    request: Request, user: User, page: str | None, status: int = 200, **extra: object
) -> Response:
    keys = current_platform(request).tenancy.keys(user.principal)
    newest_first = sorted(keys, key=lambda k: k.created_at, reverse=True)
    return render(
        request,
        "keys.html",
        status=status,
        keys=slice_page(newest_first, page_number(page)),
        scopes=TENANT_SCOPES,
        **extra,
    )


@router.get("/keys")
def keys_page(
    request: Request, user: UserDep, page: Annotated[str | None, Query(max_length=8)] = None
) -> Response:
    allow(user, "GET", "/api/v1/keys")
    return _keys_page(request, user, page)


@router.post("/keys")
def create_key(
    request: Request,
    user: UserDep,
    name: Annotated[str, Form(max_length=200)] = "",
    scope: Annotated[str, Form(max_length=20)] = Scope.TENANT_MEMBER.value,
    tenant: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Create a key; the answer is the only time its secret is shown (never redirected to)."""
    allow(user, "POST", "/api/v1/keys")
    if scope not in TENANT_SCOPES:
        return _keys_page(request, user, None, 422, errors={"scope": f"one of {TENANT_SCOPES}"})
    try:
        new = current_platform(request).tenancy.create_key(
            user.principal,
            tenant=tenant.strip() or None,
            scope=Scope(scope),
            name=name.strip() or "console",
            expires_in_s=None,
        )
    except DomainError as exc:
        if exc.status in (401, 403):
            raise
        return _keys_page(request, user, None, 422, errors={exc.field or "name": exc.message})
    response = _keys_page(request, user, None, 201, created=new.record, secret=new.secret)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/keys/{key_id}/revoke")
def revoke_key(request: Request, key_id: str, user: UserDep) -> Response:
    allow(user, "DELETE", "/api/v1/keys/{key_id}")
    current_platform(request).tenancy.revoke_key(user.principal, key_id)
    return RedirectResponse(f"{PREFIX}/keys", status_code=303)


@router.get("/usage")
def usage_page(
    request: Request,
    user: UserDep,
    period: Annotated[str | None, Query(max_length=40)] = None,
    tenant: Short = None,
) -> Response:
    """Usage totals of the period (default this month) and, for one tenant, its bill."""
    allow(user, "GET", "/api/v1/usage")
    billing = current_platform(request).billing
    chosen = billing.period(period or None)
    who = tenant or user.principal.tenant_id
    report = billing.usage(user.principal, who, chosen)
    bill = None if who is None else bill_public(billing.bill(user.principal, who, chosen))
    daily = None if who is None else _daily(billing, user, who, chosen)
    return render(
        request,
        "usage.html",
        report=report,
        bill=bill,
        period=chosen.name,
        tenant=who or "",
        daily=daily,
        chart=None if daily is None else daily_chart(daily),
    )


def daily_chart(daily: DailyUsagePublic) -> dict[str, list[str] | list[int] | list[float]]:
    """The chart's series (amount in currency units, for the axis; the table has micro-units)."""
    return {
        "days": [d.day for d in daily.days],
        "tokens": [d.tokens for d in daily.days],
        "card_hours": [round(d.card_hours, 4) for d in daily.days],
        "amount": [d.amount_micro / 1_000_000 for d in daily.days],
    }


def _daily(billing: Billing, user: User, tenant: str, period: Period) -> DailyUsagePublic | None:
    """The period by day (``GET /api/v1/tenants/{name}/usage/daily``); None past 92 days."""
    allow(user, "GET", "/api/v1/tenants/{name}/usage/daily")
    try:
        return daily_public(tenant, period, billing.daily(user.principal, tenant, period))
    except ValidationError:
        return None


@router.get("/bills/{tenant}/{period}.csv")
def bill_download(request: Request, tenant: str, period: str, user: UserDep) -> Response:
    """The bill as CSV: the bytes of ``GET /api/v1/tenants/{name}/bills/{period}?format=csv``."""
    allow(user, "GET", "/api/v1/tenants/{name}/bills/{period}")
    billing = current_platform(request).billing
    public = bill_public(billing.bill(user.principal, tenant, billing.period(period)))
    return Response(
        bill_csv(public),
        media_type=CSV,
        headers={"Content-Disposition": f'attachment; filename="bill-{tenant}-{period}.csv"'},
    )


@router.get("/audit")
def audit_page(
    request: Request,
    user: UserDep,
    action: Short = None,
    resource: Short = None,
    tenant: Short = None,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
) -> Response:
    """Newest first, PAGE_SIZE a page; ``cursor`` continues with older entries."""
    allow(user, "GET", "/api/v1/audit")
    actions = [a.value for a in AuditAction]
    resources = [r.value for r in AuditResource]
    query = AuditQuery(
        tenant=tenant or None,
        action=AuditAction(action) if action in actions else None,
        resource=AuditResource(resource) if resource in resources else None,
        before_id=None if cursor is None else int(cursor),
        limit=PAGE_SIZE,
    )
    page = AuditLog(current_platform(request).uows).entries(user.principal, query)
    return render(
        request,
        "audit.html",
        entries=page.entries,
        next_cursor=page.next_before,
        actions=actions,
        resources=resources,
        filters={"action": action or "", "resource": resource or "", "tenant": tenant or ""},
    )
