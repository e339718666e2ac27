"""Knowledge bases: a tenant's own, a create form (default chunking); one base's documents
(paginated), upload and delete a document, and a "try retrieval" box that shows the chunks
and their scores.

Upload and retrieval call the same service methods as ``POST /api/v1/knowledge-bases/
{kb}/documents`` and ``…/retrieve``, with the same size limit and parsers. Embedding goes
through the gateway as the session's principal (:func:`knowledge_as`: the server's
in-process gateway, ``GatewayApp.call_as``, as the chat playground does), so the tokens
are metered and billed to the session's key exactly as the API's forwarded key would be;
the console never holds a key.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Annotated, Final

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from suanwang.adapters.http.console.i18n import translator
from suanwang.adapters.http.console.paging import page_number, slice_page
from suanwang.adapters.http.console.web import PREFIX, ConsoleRoute, User, UserDep, allow, render
from suanwang.adapters.http.routers.knowledge import (
    RetrievalPublic,
    doc_public,
    hit_public,
    kb_public,
)
from suanwang.adapters.http.security import current_platform
from suanwang.adapters.knowledge.embedder import SessionEmbedder
from suanwang.domain.errors import Conflict, DomainError, ValidationError
from suanwang.domain.knowledge import (
    MAX_DOCUMENT_BYTES,
    MAX_QUERY_CHARS,
    MAX_TOP_K,
    ChunkSettings,
    RetrievalMode,
)
from suanwang.domain.serving import ModelKind
from suanwang.domain.tenancy import Scope
from suanwang.ports import AppChat
from suanwang.services.knowledge import KnowledgeBases, KnowledgeBaseSpec, RetrievalQuery, Upload

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
KB_UPLOAD_PATH: Final = re.compile(r"^/console/knowledge/[^/]+/documents$")
MODES: Final = [m.value for m in RetrievalMode]
INLINE_STATUSES: Final = frozenset({413, 422, 503})
"""Service refusals shown beside the form (others become the error page)."""


def _member(user: User) -> bool:
    return user.principal.scope.rank >= Scope.TENANT_MEMBER.rank and not user.operator


def _list_page(
    request: Request,
    user: User,
    page: str | None,
    status: int = 200,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    platform = current_platform(request)
    bases = [kb_public(kb) for kb in platform.knowledge.visible(user.principal)]
    embedders = [m.name for m in platform.deployments.models() if m.kind is ModelKind.EMBEDDING]
    return render(
        request,
        "knowledge.html",
        status=status,
        bases=slice_page(bases, page_number(page)),
        can_create=not user.operator and user.principal.scope.rank >= Scope.TENANT_ADMIN.rank,
        embedders=embedders,
        form=form or {"name": "", "description": "", "embedding_model": ""},
        errors=errors or {},
    )


def knowledge_as(request: Request, user: User) -> KnowledgeBases:
    """The knowledge service embedding as the session's principal through the server's
    in-process gateway (metered and billed to the session's key, as with the API, which
    forwards the key); without one (tests that build the app alone) embedding is
    unavailable and only keyword bases take uploads."""
    knowledge = current_platform(request).knowledge
    chat: AppChat | None = request.app.state.app_chat
    if chat is None:
        return knowledge
    return knowledge.embedding_with(SessionEmbedder(partial(chat.post_as, user.principal)))


@router.get("/knowledge")
def knowledge_page(
    request: Request, user: UserDep, page: Annotated[str | None, Query(max_length=8)] = None
) -> Response:
    """The tenant's knowledge bases (a tenant has few; paginated in memory)."""
    allow(user, "GET", "/api/v1/knowledge-bases")
    return _list_page(request, user, page)


@router.post("/knowledge")
def create_kb(
    request: Request,
    user: UserDep,
    name: Annotated[str, Form(max_length=200)] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
    embedding_model: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """``POST /api/v1/knowledge-bases`` with the default chunking; a refusal beside its field."""
    allow(user, "POST", "/api/v1/knowledge-bases")
    form = {"name": name, "description": description, "embedding_model": embedding_model}
    spec = KnowledgeBaseSpec(name.strip(), description, ChunkSettings(), embedding_model or None)
    try:
        kb = current_platform(request).knowledge.create(user.principal, spec)
    except (ValidationError, Conflict) as exc:
        field = exc.field if exc.field in form else "name"
        return _list_page(request, user, None, 422, form, {field: exc.message})
    return RedirectResponse(f"{PREFIX}/knowledge/{kb.id}", status_code=303)


def _kb_page(
    request: Request,
    user: User,
    kb_id: str,
    page: str | None = None,
    status: int = 200,
    errors: dict[str, str] | None = None,
    retrieval: RetrievalPublic | None = None,
    asked: dict[str, str] | None = None,
) -> Response:
    knowledge = current_platform(request).knowledge
    kb = kb_public(knowledge.get(user.principal, kb_id))
    docs = [doc_public(d) for d in knowledge.documents(user.principal, kb_id)]
    return render(
        request,
        "knowledge_base.html",
        status=status,
        kb=kb,
        docs=slice_page(docs, page_number(page)),
        doc_total=len(docs),
        can_write=_member(user),
        errors=errors or {},
        retrieval=retrieval,
        asked=asked or {"query": "", "top_k": "3", "mode": RetrievalMode.KEYWORD.value},
        modes=MODES,
        max_mib=MAX_DOCUMENT_BYTES >> 20,
    )


@router.get("/knowledge/{kb_id}")
def kb_page(
    request: Request,
    kb_id: str,
    user: UserDep,
    page: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    allow(user, "GET", "/api/v1/knowledge-bases/{kb_id}")
    allow(user, "GET", "/api/v1/knowledge-bases/{kb_id}/documents")
    return _kb_page(request, user, kb_id, page)


@router.post("/knowledge/{kb_id}/documents")
async def upload_document(request: Request, kb_id: str, user: UserDep) -> Response:
    """One document from a multipart form (``file``): parsed, chunked, stored in one go."""
    allow(user, "POST", "/api/v1/knowledge-bases/{kb_id}/documents")
    form = await request.form()
    file = form.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        errors = {"file": translator(user.lang)("ds_choose_file")}
        return await run_in_threadpool(_kb_page, request, user, kb_id, None, 422, errors)
    upload = Upload(filename=file.filename, data=await file.read(MAX_DOCUMENT_BYTES + 1))
    return await run_in_threadpool(_store_document, request, user, kb_id, upload)


def _store_document(request: Request, user: User, kb_id: str, upload: Upload) -> Response:
    try:
        knowledge_as(request, user).upload(user.principal, kb_id, upload, None)
    except DomainError as exc:
        if exc.status not in INLINE_STATUSES:
            raise
        return _kb_page(request, user, kb_id, None, exc.status, {"file": exc.message})
    return RedirectResponse(f"{PREFIX}/knowledge/{kb_id}", status_code=303)


@router.post("/knowledge/{kb_id}/documents/{doc_id}/delete")
def delete_document(request: Request, kb_id: str, doc_id: str, user: UserDep) -> Response:
    allow(user, "DELETE", "/api/v1/knowledge-bases/{kb_id}/documents/{doc_id}")
    current_platform(request).knowledge.delete_document(user.principal, kb_id, doc_id)
    return RedirectResponse(f"{PREFIX}/knowledge/{kb_id}", status_code=303)


@router.post("/knowledge/{kb_id}/retrieve")
def retrieve(
    request: Request,
    kb_id: str,
    user: UserDep,
    query: Annotated[str, Form(max_length=MAX_QUERY_CHARS)] = "",
    top_k: Annotated[str, Form(max_length=8)] = "3",
    mode: Annotated[str, Form(max_length=16)] = RetrievalMode.KEYWORD.value,
) -> Response:
    """``POST /api/v1/knowledge-bases/{kb}/retrieve`` from the form: the hits and scores."""
    allow(user, "POST", "/api/v1/knowledge-bases/{kb_id}/retrieve")
    asked = {"query": query, "top_k": top_k, "mode": mode}
    t = translator(user.lang)
    errors: dict[str, str] = {}
    if not query.strip():
        errors["query"] = t("dep_required")
    if not top_k.strip().isdecimal() or not 1 <= int(top_k.strip()[:4]) <= MAX_TOP_K:
        errors["top_k"] = t("kb_bad_top_k", max=MAX_TOP_K)
    if mode not in MODES:
        errors["mode"] = t("ds_one_of", values=", ".join(MODES))
    if errors:
        return _kb_page(request, user, kb_id, None, 422, errors, None, asked)
    wanted = RetrievalQuery(query, int(top_k.strip()), RetrievalMode(mode))
    try:
        found = knowledge_as(request, user).retrieve(user.principal, kb_id, wanted, None)
    except DomainError as exc:
        if exc.status not in INLINE_STATUSES:
            raise
        return _kb_page(request, user, kb_id, None, exc.status, {"query": exc.message}, None, asked)
    shown = RetrievalPublic(
        mode=found.mode.value,
        embedding_tokens=found.embedding_tokens,
        hits=[hit_public(h) for h in found.hits],
    )
    return _kb_page(request, user, kb_id, None, 200, None, shown, asked)
