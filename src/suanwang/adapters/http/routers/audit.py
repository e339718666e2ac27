"""``/api/v1/audit``: the audit log, newest first, one page at a time.

The operator reads every entry; a tenant admin the entries that concern its own tenant
(another tenant is 404). ``next_cursor`` continues the listing; it is null on the last page.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from suanwang.adapters.http.responses import errors
from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
from suanwang.domain.audit import (
    DEFAULT_PAGE,
    MAX_PAGE,
    AuditAction,
    AuditEntry,
    AuditQuery,
    AuditResource,
)
from suanwang.domain.tenancy import Principal
from suanwang.services.audit import AuditLog
from suanwang.services.platform import Platform

router = APIRouter(prefix="/api/v1", route_class=AuthorizedRoute, tags=["audit"])
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PlatformDep = Annotated[Platform, Depends(current_platform)]
Seconds = Annotated[float | None, Query(ge=0, le=1e11, description="UNIX seconds (UTC)")]
Short = Annotated[str | None, Query(max_length=200)]


class AuditActorPublic(BaseModel):
    key_id: str = Field(description="the key's id; 'operator' when a tenant reads the operator's")
    key_prefix: str | None
    scope: str
    tenant: str | None


class AuditEntryPublic(BaseModel):
    id: int
    at: float = Field(description="when the change committed, UNIX seconds (UTC)")
    actor: AuditActorPublic
    action: str = Field(description="<resource>.<verb>, e.g. key.create")
    resource: str
    resource_id: str | None
    tenant: str | None = Field(description="the tenant the change concerns; null: the platform")
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None = Field(description="X-Request-Id of the API call; null if local")
    outcome: str


class AuditPagePublic(BaseModel):
    entries: list[AuditEntryPublic]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next (older) page")


def entry_public(e: AuditEntry) -> AuditEntryPublic:
    assert e.id is not None
    return AuditEntryPublic(
        id=e.id,
        at=e.at,
        actor=AuditActorPublic(
            key_id=e.actor.key_id,
            key_prefix=e.actor.key_prefix,
            scope=e.actor.scope.value,
            tenant=e.actor.tenant,
        ),
        action=e.action.value,
        resource=e.resource.value,
        resource_id=e.resource_id,
        tenant=e.tenant,
        before=None if e.before is None else dict(e.before),
        after=None if e.after is None else dict(e.after),
        request_id=e.request_id,
        outcome=e.outcome,
    )


@router.get(
    "/audit",
    response_model=AuditPagePublic,
    summary="Read the audit log",
    responses=errors((404, "No such tenant (or not yours)")),
)
def list_audit(
    principal: PrincipalDep,
    platform: PlatformDep,
    since: Seconds = None,
    until: Seconds = None,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    action: AuditAction | None = None,
    resource: AuditResource | None = None,
    resource_id: Short = None,
    actor: Annotated[str | None, Query(max_length=64, description="the actor's key id")] = None,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> AuditPagePublic:
    """Changes made through the API (and by `suanwang init`), newest first."""
    query = AuditQuery(
        since=since,
        until=until,
        tenant=tenant,
        action=action,
        resource=resource,
        resource_id=resource_id,
        actor=actor,
        before_id=None if cursor is None else int(cursor),
        limit=limit,
    )
    page = AuditLog(platform.uows).entries(principal, query)
    next_cursor = None if page.next_before is None else str(page.next_before)
    return AuditPagePublic(entries=[entry_public(e) for e in page.entries], next_cursor=next_cursor)
