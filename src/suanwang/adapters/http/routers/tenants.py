"""``/api/v1/tenants`` and ``/api/v1/keys``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from suanwang.adapters.http.responses import errors
from suanwang.adapters.http.schemas import (
    KeyCreate,
    KeyCreated,
    KeyPublic,
    LimitsPublic,
    QuotaUpdate,
    TenantCreate,
    TenantPublic,
    quota_specs,
)
from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
from suanwang.domain.records import KeyRecord, TenantRecord
from suanwang.domain.tenancy import Principal
from suanwang.services.platform import Platform

router = APIRouter(prefix="/api/v1", route_class=AuthorizedRoute)
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PlatformDep = Annotated[Platform, Depends(current_platform)]


def tenant_public(t: TenantRecord) -> TenantPublic:
    return TenantPublic(
        name=t.id,
        display_name=t.display_name,
        created_at=t.created_at,
        quota={f: q.nominal for f, q in t.quota.items()},
        limits={
            f: LimitsPublic(borrowing_limit=q.borrowing_limit, lending_limit=q.lending_limit)
            for f, q in t.quota.items()
        },
        cohort=t.cohort,
        weight=t.weight,
    )


def key_public(k: KeyRecord) -> KeyPublic:
    return KeyPublic(
        id=k.id,
        prefix=k.prefix,
        tenant=k.tenant,
        scope=k.scope.value,
        name=k.name,
        created_at=k.created_at,
        expires_at=k.expires_at,
        revoked_at=k.revoked_at,
    )


@router.post(
    "/tenants",
    status_code=201,
    response_model=TenantPublic,
    tags=["tenants"],
    responses=errors((409, "A tenant of this name exists")),
)
def create_tenant(
    body: TenantCreate, principal: PrincipalDep, platform: PlatformDep
) -> TenantPublic:
    """Create a tenant with an optional quota (cards per chip family; absent = unlimited)."""
    tenant = platform.tenancy.create_tenant(
        body.name,
        body.display_name,
        quota_specs(body.quota),
        body.cohort,
        body.weight,
        actor=principal,
    )
    return tenant_public(tenant)


@router.get("/tenants", response_model=list[TenantPublic], tags=["tenants"])
def list_tenants(principal: PrincipalDep, platform: PlatformDep) -> list[TenantPublic]:
    """All tenants for the operator; a tenant sees only itself."""
    return [tenant_public(t) for t in platform.tenancy.tenants(principal)]


@router.get("/tenants/{name}", response_model=TenantPublic, tags=["tenants"])
def show_tenant(name: str, principal: PrincipalDep, platform: PlatformDep) -> TenantPublic:
    return tenant_public(platform.tenancy.tenant(principal, name))


@router.put("/tenants/{name}/quota", response_model=TenantPublic, tags=["tenants"])
def set_quota(
    name: str, body: QuotaUpdate, principal: PrincipalDep, platform: PlatformDep
) -> TenantPublic:
    """Replace a tenant's quota map, cohort and fair-share weight."""
    quota = quota_specs(body.quota)
    tenant = platform.tenancy.set_quota(name, quota, body.cohort, body.weight, actor=principal)
    return tenant_public(tenant)


@router.post(
    "/keys",
    status_code=201,
    response_model=KeyCreated,
    tags=["keys"],
    responses=errors((404, "No such tenant (or not yours)")),
)
def create_key(body: KeyCreate, principal: PrincipalDep, platform: PlatformDep) -> KeyCreated:
    """Create a key. The secret is in this response only; it is stored as a hash."""
    new = platform.tenancy.create_key(
        principal,
        tenant=body.tenant,
        scope=body.scope,
        name=body.name,
        expires_in_s=body.expires_in_s,
    )
    return KeyCreated(**key_public(new.record).model_dump(), key=new.secret)


@router.get(
    "/keys",
    response_model=list[KeyPublic],
    tags=["keys"],
    responses=errors((404, "No such tenant (or not yours)")),
)
def list_keys(
    principal: PrincipalDep,
    platform: PlatformDep,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
) -> list[KeyPublic]:
    return [key_public(k) for k in platform.tenancy.keys(principal, tenant)]


@router.delete("/keys/{key_id}", response_model=KeyPublic, tags=["keys"])
def revoke_key(key_id: str, principal: PrincipalDep, platform: PlatformDep) -> KeyPublic:
    """Revoke a key; it stops working at once."""
    return key_public(platform.tenancy.revoke_key(principal, key_id))
