"""Datasets: a tenant's own (the operator's: every tenant's), newest first and paginated in
the database; one dataset's files (paginated) and replicas; create, upload a file, seal,
delete; and the tenant's storage use against its cap.

The upload form is multipart (``file``, optional ``path``) and goes through the same
service calls as ``PUT /api/v1/datasets/{dataset}/files``: the same path checks, the same
storage quota (checked while streaming and again at commit), nothing kept on a refusal.
A browser upload's body is capped at :data:`CONSOLE_UPLOAD_MAX_BYTES` (the API streams
larger files). Knowledge bases are in ``knowledge_pages.py``.
"""

from __future__ import annotations

import re
from typing import Annotated, Final
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from suanwang.adapters.http.console.i18n import translator
from suanwang.adapters.http.console.paging import page_number, page_of, slice_page
from suanwang.adapters.http.console.web import (
    PAGE_SIZE,
    PREFIX,
    ConsoleRoute,
    User,
    UserDep,
    allow,
    render,
)
from suanwang.adapters.http.routers.datasets import WRITE_BATCH, dataset_public
from suanwang.adapters.http.security import current_platform
from suanwang.domain.datasets import DatasetFormat, QuotaExceeded
from suanwang.domain.errors import Conflict, ValidationError
from suanwang.domain.tenancy import Scope
from suanwang.services.datasets import StorageUse
from suanwang.services.platform import Platform

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
CONSOLE_UPLOAD_MAX_BYTES: Final = 256 << 20
"""Largest multipart body of a browser upload (the API's raw upload has no such cap)."""
CONSOLE_UPLOAD_PATH: Final = re.compile(r"^/console/datasets/[^/]+/files$")
FORMATS: Final = [f.value for f in DatasetFormat]
PageParam = Annotated[str | None, Query(max_length=8)]


def _storage(platform: Platform, user: User) -> StorageUse | None:
    tenant = user.principal.tenant_id
    return None if tenant is None else platform.datasets.storage(user.principal, tenant)


def _list_page(
    request: Request,
    user: User,
    page: str | None,
    status: int = 200,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    platform = current_platform(request)
    number = page_number(page)
    offset = (number - 1) * PAGE_SIZE
    fetched = platform.datasets.list(user.principal, None, offset, PAGE_SIZE + 1)
    return render(
        request,
        "datasets.html",
        status=status,
        datasets=page_of([dataset_public(d) for d in fetched], number),
        storage=_storage(platform, user),
        formats=FORMATS,
        can_write=_member(user),
        form=form or {"name": "", "format": DatasetFormat.JSONL.value, "region": ""},
        errors=errors or {},
    )


def _member(user: User) -> bool:
    return not user.operator and user.principal.scope.rank >= Scope.TENANT_MEMBER.rank


@router.get("/datasets")
def datasets_page(request: Request, user: UserDep, page: PageParam = None) -> Response:
    allow(user, "GET", "/api/v1/datasets")
    return _list_page(request, user, page)


@router.post("/datasets")
def create_dataset(
    request: Request,
    user: UserDep,
    name: Annotated[str, Form(max_length=200)] = "",
    format: Annotated[str, Form(max_length=16)] = DatasetFormat.JSONL.value,
    region: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """``POST /api/v1/datasets`` from a form; a refusal is shown beside its field."""
    allow(user, "POST", "/api/v1/datasets")
    form = {"name": name, "format": format, "region": region}
    if format not in FORMATS:
        errors = {"format": translator(user.lang)("ds_one_of", values=", ".join(FORMATS))}
        return _list_page(request, user, None, 422, form, errors)
    try:
        created = current_platform(request).datasets.create(
            user.principal, name.strip(), DatasetFormat(format), region.strip() or None
        )
    except (ValidationError, Conflict) as exc:
        field = exc.field if exc.field in form else "name"
        return _list_page(request, user, None, 422, form, {field: exc.message})
    return RedirectResponse(f"{PREFIX}/datasets/{created.id}", status_code=303)


def _detail_page(
    request: Request,
    user: User,
    ref: str,
    page: str | None = None,
    status: int = 200,
    errors: dict[str, str] | None = None,
    uploaded: str = "",
) -> Response:
    platform = current_platform(request)
    shown = dataset_public(platform.datasets.get(user.principal, ref), manifest=True)
    return render(
        request,
        "dataset.html",
        status=status,
        d=shown,
        files=slice_page(shown.manifest or [], page_number(page)),
        storage=_storage(platform, user),
        can_write=_member(user) and shown.state == "uploading",
        errors=errors or {},
        uploaded=uploaded if any(f.path == uploaded for f in shown.manifest or []) else "",
        max_upload_mib=CONSOLE_UPLOAD_MAX_BYTES >> 20,
    )


@router.get("/datasets/{ref}")
def dataset_page(request: Request, ref: str, user: UserDep, page: PageParam = None) -> Response:
    allow(user, "GET", "/api/v1/datasets/{dataset}")
    return _detail_page(request, user, ref, page, uploaded=request.query_params.get("up", ""))


@router.post("/datasets/{ref}/files")
async def upload_file(request: Request, ref: str, user: UserDep) -> Response:
    """One file from a multipart form, streamed into the dataset as the API does."""
    allow(user, "PUT", "/api/v1/datasets/{dataset}/files")
    form = await request.form()
    file, typed = form.get("file"), form.get("path")
    if not isinstance(file, UploadFile) or not file.filename:
        message = translator(user.lang)("ds_choose_file")
        return await run_in_threadpool(
            _detail_page, request, user, ref, None, 422, {"file": message}
        )
    path = typed.strip() if isinstance(typed, str) and typed.strip() else file.filename
    try:
        stored = await _store(request, user, ref, path, file)
    except (ValidationError, QuotaExceeded) as exc:
        field = "path" if exc.field == "path" else "file"
        errors = {field: exc.message}
        return await run_in_threadpool(_detail_page, request, user, ref, None, exc.status, errors)
    return RedirectResponse(f"{PREFIX}/datasets/{ref}?up={quote(stored)}", status_code=303)


async def _store(request: Request, user: User, ref: str, path: str, file: UploadFile) -> str:
    """Stream ``file`` into the dataset at ``path``; the stored path (or an error, nothing kept)."""
    datasets = current_platform(request).datasets
    upload = await run_in_threadpool(datasets.begin_file, user.principal, ref, path)
    try:
        while chunk := await file.read(WRITE_BATCH):
            await run_in_threadpool(upload.write, chunk)
    except BaseException:
        upload.abort()
        raise
    entry = await run_in_threadpool(datasets.finish_file, user.principal, upload, None)
    return entry.path


@router.post("/datasets/{ref}/seal")
def seal_dataset(request: Request, ref: str, user: UserDep) -> Response:
    """``POST /api/v1/datasets/{dataset}/seal``: read-only from now on, usable by jobs."""
    allow(user, "POST", "/api/v1/datasets/{dataset}/seal")
    try:
        current_platform(request).datasets.seal(user.principal, ref)
    except ValidationError as exc:
        return _detail_page(request, user, ref, None, 422, {"seal": exc.message})
    return RedirectResponse(f"{PREFIX}/datasets/{ref}", status_code=303)


@router.post("/datasets/{ref}/delete")
def delete_dataset(request: Request, ref: str, user: UserDep) -> Response:
    """``DELETE /api/v1/datasets/{dataset}`` (409 while an unfinished job uses it)."""
    allow(user, "DELETE", "/api/v1/datasets/{dataset}")
    current_platform(request).datasets.delete(user.principal, ref)
    return RedirectResponse(f"{PREFIX}/datasets", status_code=303)
