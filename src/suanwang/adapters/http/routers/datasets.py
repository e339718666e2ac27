"""``/api/v1/datasets``: create, upload files (streamed), seal, list, show, delete; and a
tenant's storage quota (``/api/v1/tenants/{name}/storage``).

``{dataset}`` is a dataset id (``ds-…``) or, for a tenant key, one of its dataset names.
A file upload is ``PUT /api/v1/datasets/{dataset}/files?path=a/b.jsonl`` with the raw bytes
as the body, streamed to disk (the server's body-size limit does not apply to it; the
tenant's storage quota does) and hashed on the way.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from suanwang.adapters.http.responses import errors
from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
from suanwang.domain.datasets import DatasetFormat, DatasetRecord, ManifestEntry
from suanwang.domain.tenancy import Principal
from suanwang.services.datasets import StorageUse
from suanwang.services.platform import Platform

router = APIRouter(prefix="/api/v1", route_class=AuthorizedRoute, tags=["datasets"])
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PlatformDep = Annotated[Platform, Depends(current_platform)]
WRITE_BATCH = 4 << 20
"""Bytes gathered from the request stream before one write to disk."""
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class DatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=63, description="unique among your datasets")
    format: DatasetFormat = DatasetFormat.BINARY
    region: str | None = Field(
        None, max_length=64, description="where it is stored (default: the only region)"
    )


class ManifestEntryPublic(BaseModel):
    path: str
    size_bytes: int
    sha256: str


class ReplicaPublic(BaseModel):
    region: str
    state: str
    updated_at: float


class DatasetPublic(BaseModel):
    id: str
    tenant: str
    name: str
    format: str
    state: str = Field(description="uploading (files may be added) or ready (sealed)")
    size_bytes: int
    files: int
    created_at: float
    sealed_at: float | None
    replicas: list[ReplicaPublic]
    manifest: list[ManifestEntryPublic] | None = Field(None, description="every file (show only)")


class StoragePublic(BaseModel):
    tenant: str
    used_bytes: int
    quota_bytes: int
    default: bool = Field(description="the quota is the platform's default")


class StorageQuotaBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    bytes: int | None = Field(
        description="the tenant's dataset storage quota; null: the platform's default",
        ge=0,
        le=2**62,
    )


def dataset_public(dataset: DatasetRecord, *, manifest: bool = False) -> DatasetPublic:
    return DatasetPublic(
        id=dataset.id,
        tenant=dataset.tenant,
        name=dataset.name,
        format=dataset.format.value,
        state=dataset.state.value,
        size_bytes=dataset.size_bytes,
        files=len(dataset.files),
        created_at=dataset.created_at,
        sealed_at=dataset.sealed_at,
        replicas=[
            ReplicaPublic(region=r.region, state=r.state.value, updated_at=r.updated_at)
            for r in dataset.replicas
        ],
        manifest=[_entry(e) for e in dataset.files] if manifest else None,
    )


def _entry(entry: ManifestEntry) -> ManifestEntryPublic:
    return ManifestEntryPublic(path=entry.path, size_bytes=entry.size_bytes, sha256=entry.sha256)


def _storage(use: StorageUse) -> StoragePublic:
    return StoragePublic(
        tenant=use.tenant,
        used_bytes=use.used_bytes,
        quota_bytes=use.quota_bytes,
        default=use.quota_is_default,
    )


@router.post(
    "/datasets",
    status_code=201,
    response_model=DatasetPublic,
    summary="Create a dataset (then upload its files and seal it)",
    responses=errors(409),
)
def create_dataset(body: DatasetCreate, principal: PrincipalDep, platform: PlatformDep) -> Any:
    created = platform.datasets.create(principal, body.name, body.format, body.region)
    return dataset_public(created)


@router.get("/datasets", response_model=list[DatasetPublic], summary="List datasets")
def list_datasets(
    principal: PrincipalDep,
    platform: PlatformDep,
    name: Annotated[str | None, Query(max_length=63)] = None,
) -> Any:
    """Yours (the operator: every tenant's), newest first; ``name`` filters."""
    return [dataset_public(d) for d in platform.datasets.list(principal, name)]


@router.get(
    "/datasets/{dataset}",
    response_model=DatasetPublic,
    summary="Show a dataset with its manifest and replicas",
)
def show_dataset(dataset: str, principal: PrincipalDep, platform: PlatformDep) -> Any:
    return dataset_public(platform.datasets.get(principal, dataset), manifest=True)


@router.put(
    "/datasets/{dataset}/files",
    status_code=201,
    response_model=ManifestEntryPublic,
    summary="Upload one file of a dataset (raw body, streamed)",
    openapi_extra=UPLOAD_BODY,
    responses=errors(409, (413, "The file would take the tenant past its storage quota")),
)
async def upload_file(
    dataset: str,
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    path: Annotated[str, Query(min_length=1, max_length=1024)],
    x_content_sha256: Annotated[
        str | None, Header(max_length=64, description="the file's SHA-256, checked on arrival")
    ] = None,
) -> Any:
    """Stores the body at ``path`` inside the dataset (replacing a file of that path)."""
    upload = await run_in_threadpool(platform.datasets.begin_file, principal, dataset, path)
    try:
        pending: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            pending.append(chunk)
            size += len(chunk)
            if size >= WRITE_BATCH:
                await run_in_threadpool(upload.write, b"".join(pending))
                pending, size = [], 0
        if pending:
            await run_in_threadpool(upload.write, b"".join(pending))
    except BaseException:
        upload.abort()
        raise
    entry = await run_in_threadpool(
        platform.datasets.finish_file, principal, upload, x_content_sha256
    )
    return _entry(entry)


@router.post(
    "/datasets/{dataset}/seal",
    response_model=DatasetPublic,
    summary="Seal an uploaded dataset: read-only and usable by jobs",
    responses=errors(409),
)
def seal_dataset(dataset: str, principal: PrincipalDep, platform: PlatformDep) -> Any:
    return dataset_public(platform.datasets.seal(principal, dataset))


@router.delete(
    "/datasets/{dataset}",
    response_model=DatasetPublic,
    summary="Delete a dataset no unfinished job uses",
    responses=errors((409, "An unfinished job uses the dataset")),
)
def delete_dataset(dataset: str, principal: PrincipalDep, platform: PlatformDep) -> Any:
    return dataset_public(platform.datasets.delete(principal, dataset))


@router.get(
    "/tenants/{name}/storage",
    response_model=StoragePublic,
    summary="A tenant's dataset storage: bytes used and quota",
)
def tenant_storage(name: str, principal: PrincipalDep, platform: PlatformDep) -> Any:
    return _storage(platform.datasets.storage(principal, name))


@router.put(
    "/tenants/{name}/storage",
    response_model=StoragePublic,
    summary="Set a tenant's dataset storage quota (operator)",
)
def set_tenant_storage(
    name: str, body: StorageQuotaBody, principal: PrincipalDep, platform: PlatformDep
) -> Any:
    return _storage(platform.datasets.set_storage_quota(principal, name, body.bytes))
