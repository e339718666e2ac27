"""``/api/v1/knowledge-bases``: a tenant's knowledge bases, their documents and retrieval.

Another tenant's knowledge base answers 404 like a missing one. Uploads are multipart
(``file``), at most :data:`~suanwang.domain.knowledge.MAX_DOCUMENT_BYTES` (413 above);
embedding tokens of uploads and retrievals are metered to the calling key by the gateway.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from suanwang.adapters.http.responses import errors
from suanwang.adapters.http.schemas import checked_pattern
from suanwang.adapters.http.security import (
    AuthorizedRoute,
    bearer_token,
    current_platform,
    current_principal,
)
from suanwang.domain.knowledge import (
    DOC_ID,
    KB_ID,
    MAX_DOCUMENT_BYTES,
    MAX_QUERY_CHARS,
    MAX_TOP_K,
    ChunkSettings,
    DocumentRecord,
    Hit,
    KnowledgeBase,
    RetrievalMode,
)
from suanwang.domain.tenancy import Principal
from suanwang.services.knowledge import KnowledgeBaseSpec, RetrievalQuery, Upload
from suanwang.services.platform import Platform

router = APIRouter(
    prefix="/api/v1/knowledge-bases", tags=["knowledge-bases"], route_class=AuthorizedRoute
)
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PlatformDep = Annotated[Platform, Depends(current_platform)]
KbId = Annotated[str, Path(max_length=19, json_schema_extra=checked_pattern(KB_ID.pattern))]
DocId = Annotated[str, Path(max_length=20, json_schema_extra=checked_pattern(DOC_ID.pattern))]
UPLOAD_PATH = r"^/api/v1/knowledge-bases/[^/]+/documents$"
"""The one route whose body may exceed the API's 1 MiB (multipart around the file)."""


class KnowledgeBaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=63, description="unique in the tenant")
    description: str = Field("", max_length=2000)
    chunk_size: int = Field(400, ge=50, le=4000, description="characters per chunk")
    chunk_overlap: int = Field(60, ge=0, le=2000, description="characters repeated")
    embedding_model: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="the platform's embedding model (e.g. all-minilm-l6-v2); "
        "null: keyword retrieval only",
    )


class KnowledgeBasePublic(BaseModel):
    id: str
    tenant: str
    name: str
    description: str
    chunk_size: int
    chunk_overlap: int
    embedding_model: str | None
    created_at: float


class DocumentPublic(BaseModel):
    id: str
    knowledge_base: str
    name: str
    media_type: str
    size_bytes: int
    sha256: str
    chunks: int
    embedding_tokens: int = Field(description="tokens metered to the uploading key")
    created_at: float
    updated_at: float


class RetrieveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    top_k: int = Field(3, ge=1, le=MAX_TOP_K)
    mode: RetrievalMode = Field(
        RetrievalMode.HYBRID,
        strict=False,
        description="vector (cosine), keyword (BM25, jieba for Chinese) or hybrid (RRF)",
    )


class HitPublic(BaseModel):
    chunk_id: str
    document_id: str
    document: str = Field(description="the document's name")
    ordinal: int = Field(description="the chunk's place in its document, from 0")
    score: float = Field(description="the mode's score: cosine, -BM25 or the RRF sum")
    vector_score: float | None
    keyword_score: float | None
    text: str


class RetrievalPublic(BaseModel):
    mode: str = Field(description="the mode that ran (keyword when the base has no vectors)")
    embedding_tokens: int
    hits: list[HitPublic]


def kb_public(kb: KnowledgeBase) -> KnowledgeBasePublic:
    return KnowledgeBasePublic(
        id=kb.id,
        tenant=kb.tenant,
        name=kb.name,
        description=kb.description,
        chunk_size=kb.chunking.size_chars,
        chunk_overlap=kb.chunking.overlap_chars,
        embedding_model=kb.embedding_model,
        created_at=kb.created_at,
    )


def doc_public(doc: DocumentRecord) -> DocumentPublic:
    return DocumentPublic(
        id=doc.id,
        knowledge_base=doc.kb_id,
        name=doc.name,
        media_type=doc.media_type.value,
        size_bytes=doc.size_bytes,
        sha256=doc.sha256,
        chunks=doc.chunks,
        embedding_tokens=doc.embedding_tokens,
        created_at=doc.created_at,
        updated_at=doc.updated_at,
    )


def hit_public(hit: Hit) -> HitPublic:
    return HitPublic(
        chunk_id=hit.chunk_id,
        document_id=hit.document_id,
        document=hit.document_name,
        ordinal=hit.ordinal,
        score=hit.score,
        vector_score=hit.vector_score,
        keyword_score=hit.keyword_score,
        text=hit.text,
    )


NOT_FOUND = (404, "No such knowledge base (or another tenant's)")


@router.post(
    "",
    status_code=201,
    response_model=KnowledgeBasePublic,
    summary="Create a knowledge base",
    responses=errors((409, "The tenant has one of that name")),
)
def create_kb(
    body: KnowledgeBaseIn, principal: PrincipalDep, platform: PlatformDep
) -> KnowledgeBasePublic:
    spec = KnowledgeBaseSpec(
        name=body.name,
        description=body.description,
        chunking=ChunkSettings(body.chunk_size, body.chunk_overlap),
        embedding_model=body.embedding_model,
    )
    return kb_public(platform.knowledge.create(principal, spec))


@router.get("", response_model=list[KnowledgeBasePublic], summary="List knowledge bases")
def list_kbs(principal: PrincipalDep, platform: PlatformDep) -> list[KnowledgeBasePublic]:
    return [kb_public(kb) for kb in platform.knowledge.visible(principal)]


@router.get(
    "/{kb_id}",
    response_model=KnowledgeBasePublic,
    summary="Show a knowledge base",
    responses=errors(NOT_FOUND),
)
def show_kb(kb_id: KbId, principal: PrincipalDep, platform: PlatformDep) -> KnowledgeBasePublic:
    return kb_public(platform.knowledge.get(principal, kb_id))


@router.delete(
    "/{kb_id}",
    response_model=KnowledgeBasePublic,
    summary="Delete a knowledge base with its documents and chunks",
    responses=errors(NOT_FOUND),
)
def delete_kb(kb_id: KbId, principal: PrincipalDep, platform: PlatformDep) -> KnowledgeBasePublic:
    return kb_public(platform.knowledge.delete(principal, kb_id))


@router.post(
    "/{kb_id}/documents",
    status_code=201,
    response_model=DocumentPublic,
    summary="Upload a document (txt, md, html, pdf, docx); same name replaces it",
    responses=errors(
        NOT_FOUND,
        (413, f"Larger than {MAX_DOCUMENT_BYTES} bytes"),
        (422, "Unsupported type, corrupt, hostile or empty file"),
        (503, "The embedding model cannot answer; nothing was indexed"),
    ),
)
def upload_document(
    kb_id: KbId,
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    file: Annotated[UploadFile, File(description="the document; its name picks the parser")],
) -> DocumentPublic:
    """Parsed in a sandbox, chunked, embedded with the caller's key, then stored in one
    transaction: a failed upload leaves the knowledge base as it was."""
    data = file.file.read(MAX_DOCUMENT_BYTES + 1)
    upload = Upload(filename=file.filename or "", data=data)
    credential = bearer_token(request)
    return doc_public(platform.knowledge.upload(principal, kb_id, upload, credential))


@router.get(
    "/{kb_id}/documents",
    response_model=list[DocumentPublic],
    summary="List a knowledge base's documents",
    responses=errors(NOT_FOUND),
)
def list_documents(
    kb_id: KbId, principal: PrincipalDep, platform: PlatformDep
) -> list[DocumentPublic]:
    return [doc_public(d) for d in platform.knowledge.documents(principal, kb_id)]


@router.delete(
    "/{kb_id}/documents/{doc_id}",
    response_model=DocumentPublic,
    summary="Delete a document and its chunks",
    responses=errors(NOT_FOUND),
)
def delete_document(
    kb_id: KbId, doc_id: DocId, principal: PrincipalDep, platform: PlatformDep
) -> DocumentPublic:
    return doc_public(platform.knowledge.delete_document(principal, kb_id, doc_id))


@router.post(
    "/{kb_id}/retrieve",
    response_model=RetrievalPublic,
    summary="Retrieve the chunks that best match a query, with scores",
    responses=errors(NOT_FOUND, (503, "The embedding model cannot answer")),
)
def retrieve(
    kb_id: KbId, body: RetrieveIn, request: Request, principal: PrincipalDep, platform: PlatformDep
) -> RetrievalPublic:
    query = RetrievalQuery(body.query, body.top_k, body.mode)
    found = platform.knowledge.retrieve(principal, kb_id, query, bearer_token(request))
    return RetrievalPublic(
        mode=found.mode.value,
        embedding_tokens=found.embedding_tokens,
        hits=[hit_public(h) for h in found.hits],
    )
