"""Knowledge bases: create, upload documents, retrieve (vector, keyword or hybrid).

A knowledge base belongs to one tenant. Every lookup goes through :meth:`_owned`, which
answers 404 for another tenant's base exactly as for a missing one, so a tenant cannot
learn that another's exists. An upload is parsed in the sandbox, chunked, embedded through
the gateway with the caller's own key (so the tokens are metered and billed to it) and only
then written, in one transaction that replaces the document's old chunks.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from suanwang.domain.errors import Conflict, NotFound, ValidationError
from suanwang.domain.knowledge import (
    KB_ID,
    KB_NAME,
    MAX_CHUNKS_PER_DOCUMENT,
    MAX_DOCUMENT_BYTES,
    ChunkDraft,
    ChunkSettings,
    DocumentRecord,
    Hit,
    KnowledgeBase,
    RetrievalMode,
    chunk_text,
    fuse_rankings,
    media_type_of,
)
from suanwang.domain.serving import ModelKind
from suanwang.domain.tenancy import Principal
from suanwang.ports import Clock, DocumentParser, Embedder, KnowledgeIndex

EMBED_BATCH = 32
CANDIDATES_PER_HIT = 4
"""Hybrid retrieval fuses each index's top ``max(top_k * 4, 20)``."""


@dataclass(frozen=True, slots=True)
class KnowledgeBaseSpec:
    name: str
    description: str = ""
    chunking: ChunkSettings = field(default_factory=ChunkSettings)
    embedding_model: str | None = None


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class RetrievalQuery:
    query: str
    top_k: int = 3
    mode: RetrievalMode = RetrievalMode.HYBRID


@dataclass(frozen=True, slots=True)
class Retrieval:
    hits: list[Hit]
    mode: RetrievalMode
    """The mode that ran: ``keyword`` when hybrid was asked of a base without embeddings."""
    embedding_tokens: int


class KnowledgeBases:
    def __init__(
        self,
        index: KnowledgeIndex,
        parser: DocumentParser,
        embedder: Embedder,
        clock: Clock,
        model_kinds: Mapping[str, ModelKind],
    ) -> None:
        self._index = index
        self._parser = parser
        self._embedder = embedder
        self._clock = clock
        self._kinds = model_kinds

    def embedding_with(self, embedder: Embedder) -> KnowledgeBases:
        """The same bases, embedding through ``embedder`` (the console's, as its session)."""
        return KnowledgeBases(self._index, self._parser, embedder, self._clock, self._kinds)

    # knowledge bases
    def create(self, principal: Principal, spec: KnowledgeBaseSpec) -> KnowledgeBase:
        tenant = _tenant_of(principal)
        if not KB_NAME.match(spec.name):
            raise ValidationError(
                f"bad knowledge base name {spec.name!r}",
                field="name",
                hint="1-63 of a-z 0-9 . _ -, starting with a letter or digit",
            )
        model = spec.embedding_model
        if model is not None and self._kinds.get(model, ModelKind.EMBEDDING) != ModelKind.EMBEDDING:
            raise ValidationError(
                f"{model} is not an embedding model", field="embedding_model", hint="e.g. null"
            )
        if self._index.base_named(tenant, spec.name) is not None:
            raise Conflict(f"knowledge base {spec.name!r} exists", field="name")
        kb = KnowledgeBase(
            id=f"kb_{secrets.token_hex(8)}",
            tenant=tenant,
            name=spec.name,
            description=spec.description,
            chunking=spec.chunking,
            embedding_model=model,
            created_at=self._clock.now(),
        )
        self._index.create_base(kb)
        return kb

    def visible(self, principal: Principal) -> list[KnowledgeBase]:
        return self._index.bases(None if principal.is_operator else principal.tenant_id or "")

    def get(self, principal: Principal, kb_id: str) -> KnowledgeBase:
        return self._owned(principal, kb_id)

    def delete(self, principal: Principal, kb_id: str) -> KnowledgeBase:
        kb = self._owned(principal, kb_id)
        self._index.delete_base(kb.id)
        return kb

    # documents
    def documents(self, principal: Principal, kb_id: str) -> list[DocumentRecord]:
        return self._index.documents(self._owned(principal, kb_id).id)

    def delete_document(self, principal: Principal, kb_id: str, doc_id: str) -> DocumentRecord:
        kb = self._owned(principal, kb_id)
        doc = self._index.document(kb.id, doc_id)
        if doc is None:
            raise NotFound(f"no document {doc_id} in {kb_id}", field="doc_id")
        self._index.delete_document(kb.id, doc.id)
        return doc

    def upload(
        self, principal: Principal, kb_id: str, upload: Upload, credential: str | None
    ) -> DocumentRecord:
        """Parse, chunk, embed, then store (replacing a document of the same name)."""
        kb = self._owned(principal, kb_id)
        _check_upload(upload)
        media_type = media_type_of(upload.filename)
        text = self._parser.parse(upload.data, media_type)
        pieces = chunk_text(text, kb.chunking)
        if not pieces:
            raise ValidationError("the document has no text", field="file")
        if len(pieces) > MAX_CHUNKS_PER_DOCUMENT:
            raise ValidationError(
                f"the document makes {len(pieces)} chunks (limit {MAX_CHUNKS_PER_DOCUMENT})",
                field="file",
                hint="split it, or use a larger chunk size",
            )
        vectors, tokens = self._embed_all(kb, pieces, credential)
        now = self._clock.now()
        old = self._index.document_named(kb.id, upload.filename)
        doc = DocumentRecord(
            id=f"doc_{secrets.token_hex(8)}",
            kb_id=kb.id,
            name=upload.filename,
            media_type=media_type,
            size_bytes=len(upload.data),
            sha256=hashlib.sha256(upload.data).hexdigest(),
            chunks=len(pieces),
            embedding_tokens=tokens,
            created_at=old.created_at if old else now,
            updated_at=now,
        )
        drafts = [
            ChunkDraft(i, piece, tuple(vectors[i]) if vectors else None)
            for i, piece in enumerate(pieces)
        ]
        self._index.put_document(doc, drafts)
        return doc

    # retrieval
    def retrieve(
        self, principal: Principal, kb_id: str, query: RetrievalQuery, credential: str | None
    ) -> Retrieval:
        kb = self._owned(principal, kb_id)
        return self.retrieve_from([kb], query, credential)

    def retrieve_from(
        self, bases: Sequence[KnowledgeBase], query: RetrievalQuery, credential: str | None
    ) -> Retrieval:
        """Retrieve from bases the caller already owns (an app's)."""
        ids = [kb.id for kb in bases]
        models = {kb.embedding_model for kb in bases if kb.embedding_model}
        mode = query.mode
        if mode is RetrievalMode.VECTOR and not models:
            raise ValidationError(
                "this knowledge base has no embedding model",
                field="mode",
                hint="use mode keyword, or create the base with an embedding_model",
            )
        if mode is RetrievalMode.HYBRID and not models:
            mode = RetrievalMode.KEYWORD
        if mode is RetrievalMode.KEYWORD:
            return Retrieval(self._index.search_keyword(ids, query.query, query.top_k), mode, 0)
        if len(models) > 1:
            raise ValidationError("the bases use different embedding models", field="mode")
        embedded = self._embedder.embed(models.pop(), [query.query], credential)
        hits = self.search(bases, replace(query, mode=mode), embedded.vectors[0])
        return Retrieval(hits, mode, embedded.prompt_tokens)

    def search(
        self,
        bases: Sequence[KnowledgeBase],
        query: RetrievalQuery,
        vector: Sequence[float] | None,
    ) -> list[Hit]:
        """Search bases the caller owns with a query vector embedded already (the gateway
        embeds an app's query itself, metered); without a vector the search is keyword."""
        ids = [kb.id for kb in bases]
        if vector is None or query.mode is RetrievalMode.KEYWORD:
            return self._index.search_keyword(ids, query.query, query.top_k)
        if query.mode is RetrievalMode.VECTOR:
            return self._index.search_vector(ids, vector, query.top_k)
        wide = max(query.top_k * CANDIDATES_PER_HIT, 20)
        by_vector = self._index.search_vector(ids, vector, wide)
        by_keyword = self._index.search_keyword(ids, query.query, wide)
        return _fused(by_vector, by_keyword)[: query.top_k]

    def owned(self, principal: Principal, ref: str) -> KnowledgeBase | None:
        """The caller's tenant's base with id or name ``ref`` (None for another's)."""
        kb = self._index.base(ref) if KB_ID.match(ref) else None
        if kb is None and principal.tenant_id is not None:
            kb = self._index.base_named(principal.tenant_id, ref)
        return kb if kb is not None and kb.tenant == principal.tenant_id else None

    def _embed_all(
        self, kb: KnowledgeBase, pieces: list[str], credential: str | None
    ) -> tuple[list[list[float]], int]:
        if kb.embedding_model is None:
            return [], 0
        vectors: list[list[float]] = []
        tokens = 0
        for start in range(0, len(pieces), EMBED_BATCH):
            batch = pieces[start : start + EMBED_BATCH]
            embedded = self._embedder.embed(kb.embedding_model, batch, credential)
            vectors += embedded.vectors
            tokens += embedded.prompt_tokens
        return vectors, tokens

    def _owned(self, principal: Principal, kb_id: str) -> KnowledgeBase:
        kb = self._index.base(kb_id)
        if kb is None or not principal.can_see_tenant(kb.tenant):
            raise NotFound(f"no knowledge base {kb_id}", field="kb_id")
        return kb


def _tenant_of(principal: Principal) -> str:
    if principal.tenant_id is None:
        raise ValidationError(
            "knowledge bases belong to a tenant; the operator key has none",
            field="authorization",
            hint="use a tenant admin or member key",
        )
    return principal.tenant_id


def _check_upload(upload: Upload) -> None:
    if len(upload.data) > MAX_DOCUMENT_BYTES:
        raise ValidationError(
            f"the document exceeds {MAX_DOCUMENT_BYTES} bytes", field="file", hint="split it"
        )
    if not upload.data.strip():
        raise ValidationError("the document is empty", field="file", hint="upload some text")
    name = upload.filename
    if not name or len(name) > 200 or "/" in name or "\\" in name or name.startswith("."):
        raise ValidationError(
            f"bad file name {name!r}", field="file", hint="1-200 characters, no slashes"
        )


def _fused(by_vector: list[Hit], by_keyword: list[Hit]) -> list[Hit]:
    scores = fuse_rankings([[h.chunk_id for h in by_vector], [h.chunk_id for h in by_keyword]])
    vec = {h.chunk_id: h for h in by_vector}
    key = {h.chunk_id: h for h in by_keyword}
    out: list[Hit] = []
    for chunk_id, score in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])):
        base = vec.get(chunk_id) or key[chunk_id]
        out.append(
            Hit(
                chunk_id=chunk_id,
                document_id=base.document_id,
                document_name=base.document_name,
                ordinal=base.ordinal,
                text=base.text,
                score=score,
                vector_score=vec[chunk_id].vector_score if chunk_id in vec else None,
                keyword_score=key[chunk_id].keyword_score if chunk_id in key else None,
            )
        )
    return out
