"""``/api/v1/apps``: a tenant's apps, their versions, publishing and sharing.

An app is called on the gateway as ``model="app:<name>"`` (docs/apps.md). Another
tenant's app answers 404 like a missing one; another tenant's knowledge base is refused
like a missing one (422, ``knowledge_bases``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from suanwang.adapters.http.responses import errors
from suanwang.adapters.http.schemas import checked_pattern
from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
from suanwang.domain.apps import (
    APP_NAME,
    APP_PREFIX,
    MAX_APP_KBS,
    MAX_APP_TOKENS,
    MAX_APP_TOP_K,
    MAX_PROMPT_CHARS,
    MAX_SHARED_KEYS,
    App,
    AppChange,
    AppSettings,
    AppVersion,
)
from suanwang.domain.knowledge import RetrievalMode
from suanwang.domain.tenancy import Principal
from suanwang.services.apps import AppDetail, AppSpec
from suanwang.services.platform import Platform

router = APIRouter(prefix="/api/v1/apps", tags=["apps"], route_class=AuthorizedRoute)
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PlatformDep = Annotated[Platform, Depends(current_platform)]
AppName = Annotated[str, Path(max_length=63, json_schema_extra=checked_pattern(APP_NAME.pattern))]
NOT_FOUND = (404, "No such app (or another tenant's)")
KbRef = Annotated[str, Field(min_length=1, max_length=63)]
KeyId = Annotated[str, Field(min_length=1, max_length=32)]


class AppIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=63, description="unique in the tenant")
    model: str = Field(min_length=1, max_length=128, description="a chat model of the catalogue")
    system_prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    knowledge_bases: list[KbRef] = Field(
        default_factory=list, max_length=MAX_APP_KBS, description="ids or names, your tenant's"
    )
    temperature: float | None = Field(None, ge=0, le=2, strict=False)
    max_tokens: int | None = Field(None, ge=1, le=MAX_APP_TOKENS, description="caps callers'")
    top_k: int = Field(3, ge=1, le=MAX_APP_TOP_K, description="chunks given to the model")
    retrieval_mode: RetrievalMode = Field(RetrievalMode.HYBRID, strict=False)
    score_floor: float | None = Field(None, strict=False, description="drop chunks below it")
    description: str = Field("", max_length=2000)
    template: str | None = Field(None, max_length=64, description="the template it came from")
    key_ids: list[KeyId] = Field(
        default_factory=list,
        max_length=MAX_SHARED_KEYS,
        description="keys of your tenant that may call it; empty: every key of the tenant",
    )


class AppUpdateIn(BaseModel):
    """The fields to change; the others keep the latest version's values."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model: str | None = Field(None, min_length=1, max_length=128)
    system_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    knowledge_bases: list[KbRef] | None = Field(None, max_length=MAX_APP_KBS)
    temperature: float | None = Field(None, ge=0, le=2, strict=False)
    max_tokens: int | None = Field(None, ge=1, le=MAX_APP_TOKENS)
    top_k: int | None = Field(None, ge=1, le=MAX_APP_TOP_K)
    retrieval_mode: RetrievalMode | None = Field(None, strict=False)
    score_floor: float | None = Field(None, strict=False)
    publish: bool = Field(True, description="publish the new version (false: keep the old)")


class PublishIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    version: int = Field(ge=1, le=10**9)


class SharingIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    key_ids: list[KeyId] = Field(max_length=MAX_SHARED_KEYS, description="empty: every key")


class KbRefPublic(BaseModel):
    id: str
    name: str
    embedding_model: str | None


class AppVersionPublic(BaseModel):
    version: int
    model: str
    system_prompt: str
    knowledge_bases: list[str] = Field(description="knowledge base ids")
    temperature: float | None
    max_tokens: int | None
    top_k: int
    retrieval_mode: str
    score_floor: float | None
    note: str
    created_at: float


class AppPublic(BaseModel):
    id: str
    tenant: str
    name: str
    call_as: str = Field(description='the gateway model string, e.g. "app:tutor"')
    description: str
    published_version: int
    latest_version: int
    shared_keys: list[str] = Field(description="empty: every key of the tenant")
    template: str | None
    created_at: float
    updated_at: float


class AppDetailPublic(AppPublic):
    version: AppVersionPublic = Field(description="the published version (or the one asked)")
    bases: list[KbRefPublic] = Field(description="that version's knowledge bases")


class DeletedPublic(BaseModel):
    app: AppPublic
    deleted_knowledge_bases: list[KbRefPublic]


def app_public(app: App) -> AppPublic:
    return AppPublic(
        id=app.id,
        tenant=app.tenant,
        name=app.name,
        call_as=f"{APP_PREFIX}{app.name}",
        description=app.description,
        published_version=app.published,
        latest_version=app.latest,
        shared_keys=list(app.shared_keys),
        template=app.template,
        created_at=app.created_at,
        updated_at=app.updated_at,
    )


def version_public(v: AppVersion) -> AppVersionPublic:
    s = v.settings
    return AppVersionPublic(
        version=v.version,
        model=s.model,
        system_prompt=s.system_prompt,
        knowledge_bases=list(s.knowledge_bases),
        temperature=s.temperature,
        max_tokens=s.max_tokens,
        top_k=s.top_k,
        retrieval_mode=s.retrieval_mode.value,
        score_floor=s.score_floor,
        note=v.note,
        created_at=v.created_at,
    )


def detail_public(d: AppDetail) -> AppDetailPublic:
    bases = [KbRefPublic(id=k.id, name=k.name, embedding_model=k.embedding_model) for k in d.bases]
    return AppDetailPublic(
        **app_public(d.app).model_dump(), version=version_public(d.version), bases=bases
    )


@router.post(
    "",
    status_code=201,
    response_model=AppDetailPublic,
    summary="Create an app (version 1, published)",
    responses=errors((409, "The tenant has an app of that name")),
)
def create_app(body: AppIn, principal: PrincipalDep, platform: PlatformDep) -> AppDetailPublic:
    settings = AppSettings(
        model=body.model,
        system_prompt=body.system_prompt,
        knowledge_bases=tuple(body.knowledge_bases),
        temperature=body.temperature,
        max_tokens=body.max_tokens,
        top_k=body.top_k,
        retrieval_mode=body.retrieval_mode,
        score_floor=body.score_floor,
    )
    spec = AppSpec(
        name=body.name,
        settings=settings,
        description=body.description,
        template=body.template,
        shared_keys=tuple(body.key_ids),
    )
    return detail_public(platform.apps.create(principal, spec))


@router.get("", response_model=list[AppPublic], summary="List apps")
def list_apps(principal: PrincipalDep, platform: PlatformDep) -> list[AppPublic]:
    return [app_public(a) for a in platform.apps.visible(principal)]


@router.get(
    "/{name}", response_model=AppDetailPublic, summary="Show an app", responses=errors(NOT_FOUND)
)
def show_app(
    name: AppName,
    principal: PrincipalDep,
    platform: PlatformDep,
    version: Annotated[int | None, Query(ge=1, le=10**9)] = None,
) -> AppDetailPublic:
    return detail_public(platform.apps.get(principal, name, version))


@router.patch(
    "/{name}",
    response_model=AppDetailPublic,
    summary="Update an app: a new immutable version (published unless publish is false)",
    responses=errors(NOT_FOUND),
)
def update_app(
    name: AppName, body: AppUpdateIn, principal: PrincipalDep, platform: PlatformDep
) -> AppDetailPublic:
    given = body.model_fields_set - {"publish"}
    values = {f: getattr(body, f) for f in given}
    if "knowledge_bases" in values and values["knowledge_bases"] is not None:
        values["knowledge_bases"] = tuple(values["knowledge_bases"])
    for required in ("model", "system_prompt", "knowledge_bases", "top_k", "retrieval_mode"):
        if required in values and values[required] is None:
            del values[required]  # null for a field that cannot be empty: unchanged
    change = AppChange(**values)
    return detail_public(platform.apps.update(principal, name, change, publish=body.publish))


@router.get(
    "/{name}/versions",
    response_model=list[AppVersionPublic],
    summary="An app's versions, oldest first",
    responses=errors(NOT_FOUND),
)
def list_versions(
    name: AppName, principal: PrincipalDep, platform: PlatformDep
) -> list[AppVersionPublic]:
    return [version_public(v) for v in platform.apps.versions(principal, name)]


@router.post(
    "/{name}/publish",
    response_model=AppDetailPublic,
    summary="Publish a version (an older one: a rollback)",
    responses=errors(NOT_FOUND),
)
def publish_app(
    name: AppName, body: PublishIn, principal: PrincipalDep, platform: PlatformDep
) -> AppDetailPublic:
    return detail_public(platform.apps.publish(principal, name, body.version))


@router.put(
    "/{name}/sharing",
    response_model=AppPublic,
    summary="Restrict the app to keys of its tenant (empty list: every key of the tenant)",
    responses=errors(NOT_FOUND),
)
def share_app(
    name: AppName, body: SharingIn, principal: PrincipalDep, platform: PlatformDep
) -> AppPublic:
    return app_public(platform.apps.share(principal, name, body.key_ids))


@router.delete(
    "/{name}",
    response_model=DeletedPublic,
    summary="Delete an app and its versions (and, if asked, its knowledge bases)",
    responses=errors(NOT_FOUND),
)
def delete_app(
    name: AppName,
    principal: PrincipalDep,
    platform: PlatformDep,
    with_knowledge_bases: Annotated[bool, Query()] = False,
) -> DeletedPublic:
    app, gone = platform.apps.delete(principal, name, with_knowledge_bases=with_knowledge_bases)
    return DeletedPublic(
        app=app_public(app),
        deleted_knowledge_bases=[
            KbRefPublic(id=k.id, name=k.name, embedding_model=k.embedding_model) for k in gone
        ],
    )
