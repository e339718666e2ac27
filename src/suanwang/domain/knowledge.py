"""Knowledge bases: their settings, documents, chunks and retrieval results (pure).

What is here: the shapes a knowledge base is made of (:class:`KnowledgeBase`,
:class:`DocumentRecord`, :class:`Hit`), the limits uploads must respect, the Chinese-aware
chunker (:func:`chunk_text`) and the fusion of vector and keyword rankings
(:func:`fuse_rankings`). What is not: parsing files (``adapters/knowledge/parse``), the
index (``adapters/knowledge/store``) and embedding (the gateway).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from suanwang.domain.errors import ValidationError

KB_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
KB_ID = re.compile(r"^kb_[0-9a-f]{16}$")
DOC_ID = re.compile(r"^doc_[0-9a-f]{16}$")
MAX_DOCUMENT_BYTES = 20 << 20
"""The largest upload a knowledge base takes (20 MiB); larger bodies get 413."""
MAX_DOCUMENT_NAME = 200
MAX_CHUNKS_PER_DOCUMENT = 5000
MAX_TOP_K = 50
MAX_QUERY_CHARS = 2000
RRF_K = 60
"""Reciprocal rank fusion constant (Cormack et al. 2009): score = sum 1 / (k + rank)."""


class MediaType(enum.StrEnum):
    """The document formats a knowledge base parses."""

    TEXT = "text/plain"
    MARKDOWN = "text/markdown"
    HTML = "text/html"
    PDF = "application/pdf"
    DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


SUFFIXES: dict[str, MediaType] = {
    ".txt": MediaType.TEXT,
    ".md": MediaType.MARKDOWN,
    ".markdown": MediaType.MARKDOWN,
    ".html": MediaType.HTML,
    ".htm": MediaType.HTML,
    ".pdf": MediaType.PDF,
    ".docx": MediaType.DOCX,
}


def media_type_of(filename: str) -> MediaType:
    """The format named by a file's suffix, or a 422 naming the supported ones."""
    dot = filename.rfind(".")
    found = SUFFIXES.get(filename[dot:].lower()) if dot >= 0 else None
    if found is None:
        raise ValidationError(
            f"unsupported document type: {filename!r}",
            field="file",
            hint="upload one of: " + ", ".join(sorted(SUFFIXES)),
        )
    return found


class RetrievalMode(enum.StrEnum):
    VECTOR = "vector"
    KEYWORD = "keyword"
    HYBRID = "hybrid"


@dataclass(frozen=True, slots=True)
class ChunkSettings:
    """How documents are cut: at most ``size_chars`` per chunk, ``overlap_chars`` repeated."""

    size_chars: int = 400
    overlap_chars: int = 60

    def __post_init__(self) -> None:
        if not 50 <= self.size_chars <= 4000:
            raise ValidationError(
                "chunk size must be 50-4000 characters", field="chunk_size", hint="e.g. 400"
            )
        if not 0 <= self.overlap_chars <= self.size_chars // 2:
            raise ValidationError(
                "chunk overlap must be 0 to half the chunk size",
                field="chunk_overlap",
                hint=f"at most {self.size_chars // 2}",
            )


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    id: str
    tenant: str
    name: str
    description: str
    chunking: ChunkSettings
    embedding_model: str | None
    """The platform's embedding model that indexes it; None: keyword retrieval only."""
    created_at: float


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    id: str
    kb_id: str
    name: str
    media_type: MediaType
    size_bytes: int
    sha256: str
    chunks: int
    embedding_tokens: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class ChunkDraft:
    """A chunk ready to store: its text, place in the document and (maybe) its vector."""

    ordinal: int
    text: str
    vector: tuple[float, ...] | None


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved chunk: ``score`` is the mode's score (cosine similarity, BM25 made
    positive, or the fused RRF score); the per-index scores are kept when known."""

    chunk_id: str
    document_id: str
    document_name: str
    ordinal: int
    text: str
    score: float
    vector_score: float | None = None
    keyword_score: float | None = None


_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])|(?<=[.])(?=\s)|\n\s*\n|\n(?=\s*[-*#>\d])")


def split_sentences(text: str) -> list[str]:
    """Sentences and paragraphs: after 。！？；!?; and '. ', at blank lines and list items.
    No whitespace is assumed between Chinese sentences."""
    parts = (p.strip() for p in _SENTENCE_END.split(text))
    return [p for p in parts if p]


def _hard_split(sentence: str, size: int, overlap: int) -> list[str]:
    step = size - overlap
    return [sentence[i : i + size] for i in range(0, max(len(sentence) - overlap, 1), step)]


def _joined(parts: Sequence[str]) -> str:
    out = ""
    for part in parts:
        if out and (out[-1].isascii() or part[0].isascii()):
            out += " "
        out += part
    return out


def chunk_text(text: str, settings: ChunkSettings) -> list[str]:
    """Pack sentences into chunks of at most ``size_chars``; each chunk after the first
    starts with the previous chunk's last sentences up to ``overlap_chars``."""
    size, overlap = settings.size_chars, settings.overlap_chars
    pieces: list[str] = []
    for sentence in split_sentences(text):
        pieces += [sentence] if len(sentence) <= size else _hard_split(sentence, size, overlap)
    chunks: list[str] = []
    current: list[str] = []
    for piece in pieces:
        if current and len(_joined([*current, piece])) > size:
            chunks.append(_joined(current))
            current = _tail(current, overlap, size - len(piece) - 1)
        current.append(piece)
    if current:
        chunks.append(_joined(current))
    return chunks


def _tail(sentences: list[str], overlap: int, room: int) -> list[str]:
    kept: list[str] = []
    total = 0
    for sentence in reversed(sentences):
        total += len(sentence) + 1
        if total > min(overlap, room):
            break
        kept.insert(0, sentence)
    return kept


def fuse_rankings(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal rank fusion: each id scores ``sum(1 / (k + rank))`` over the rankings
    (rank from 1); ids missing from a ranking get nothing from it."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (k + rank)
    return scores
