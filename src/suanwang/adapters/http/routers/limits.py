"""Gateway limits: ``/api/v1/tenants/{name}/limits`` (operator) and ``/api/v1/keys/{id}/limits``
(tenant admins, for their own tenant's keys). Omitted or null fields mean unlimited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
from suanwang.domain.limits import DEFAULT_PERIOD_S, KeyLimits, QuotaPeriod, TenantLimits
from suanwang.domain.tenancy import Principal
from suanwang.services.limits import GatewayLimits
from suanwang.services.platform import Platform

router = APIRouter(prefix="/api/v1", route_class=AuthorizedRoute, tags=["limits"])
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PlatformDep = Annotated[Platform, Depends(current_platform)]
Limit = Annotated[int | None, Field(ge=0, le=10**15)]


class TenantLimitsBody(BaseModel):
    """A tenant's gateway limits (all keys together)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    rpm: Limit = Field(None, description="requests per minute")
    tpm: Limit = Field(None, description="tokens per minute (reserved upper bounds)")
    token_quota: Limit = Field(None, description="tokens per period")
    period_s: int = Field(
        DEFAULT_PERIOD_S, ge=60, le=366 * 86400, description="quota period (period=seconds)"
    )
    period: QuotaPeriod = Field(
        QuotaPeriod.SECONDS,
        strict=False,  # its value, as JSON sends it
        description="month: calendar months in UTC; seconds: fixed windows of period_s",
    )


class KeyLimitsBody(BaseModel):
    """One key's gateway limits and model allow-list (null: every model)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    rpm: Limit = None
    tpm: Limit = None
    models: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        None, max_length=256
    )


def _service(platform: Platform) -> GatewayLimits:
    return GatewayLimits(platform.uows, platform.clock)


def _tenant_body(limits: TenantLimits) -> TenantLimitsBody:
    return TenantLimitsBody(
        rpm=limits.rpm,
        tpm=limits.tpm,
        token_quota=limits.token_quota,
        period_s=limits.period_s,
        period=limits.period,
    )


def _key_body(limits: KeyLimits) -> KeyLimitsBody:
    models = None if limits.models is None else list(limits.models)
    return KeyLimitsBody(rpm=limits.rpm, tpm=limits.tpm, models=models)


@router.get("/tenants/{name}/limits", response_model=TenantLimitsBody)
def tenant_limits(name: str, principal: PrincipalDep, platform: PlatformDep) -> TenantLimitsBody:
    return _tenant_body(_service(platform).tenant_limits(principal, name))


@router.put("/tenants/{name}/limits", response_model=TenantLimitsBody)
def set_tenant_limits(
    name: str, body: TenantLimitsBody, principal: PrincipalDep, platform: PlatformDep
) -> TenantLimitsBody:
    """Replace a tenant's limits; gateways apply them within a few seconds."""
    limits = TenantLimits(body.rpm, body.tpm, body.token_quota, body.period_s, body.period)
    return _tenant_body(_service(platform).set_tenant_limits(principal, name, limits))


@router.get("/keys/{key_id}/limits", response_model=KeyLimitsBody)
def key_limits(key_id: str, principal: PrincipalDep, platform: PlatformDep) -> KeyLimitsBody:
    return _key_body(_service(platform).key_limits(principal, key_id))


@router.put("/keys/{key_id}/limits", response_model=KeyLimitsBody)
def set_key_limits(
    key_id: str, body: KeyLimitsBody, principal: PrincipalDep, platform: PlatformDep
) -> KeyLimitsBody:
    """Replace one key's limits and model allow-list."""
    models = None if body.models is None else tuple(body.models)
    limits = KeyLimits(body.rpm, body.tpm, models)
    return _key_body(_service(platform).set_key_limits(principal, key_id, limits))
