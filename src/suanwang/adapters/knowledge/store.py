"""The embedded knowledge index: one SQLite file with sqlite-vec and FTS5.

Knowledge bases, documents and chunks are rows; a chunk's vector is a float32 blob searched
exactly with sqlite-vec's ``vec_distance_cosine`` (filtered by knowledge base first, so one
tenant's search never reads another's vectors); its Chinese-segmented text is in an FTS5
table (``porter unicode61``) ranked by BM25. Python's own ``sqlite3`` cannot load
extensions here, so the file is opened with ``sqlean`` (the same API, extensions enabled).

The index lives beside the main database (``<data>/knowledge.db``), also when the main
database is PostgreSQL: the machines' PostgreSQL has no pgvector (docs/knowledge-bases.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlean  # type: ignore[import-untyped]
import sqlite_vec  # type: ignore[import-untyped]

from suanwang.adapters.knowledge.tokens import Segmenter
from suanwang.domain.knowledge import (
    ChunkDraft,
    ChunkSettings,
    DocumentRecord,
    Hit,
    KnowledgeBase,
    MediaType,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kb (
  id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
  chunk_size INTEGER NOT NULL, chunk_overlap INTEGER NOT NULL, embedding_model TEXT,
  created_at REAL NOT NULL, UNIQUE (tenant, name));
CREATE TABLE IF NOT EXISTS doc (
  id TEXT PRIMARY KEY, kb_id TEXT NOT NULL REFERENCES kb(id) ON DELETE CASCADE,
  name TEXT NOT NULL, media_type TEXT NOT NULL, size_bytes INTEGER NOT NULL,
  sha256 TEXT NOT NULL, chunks INTEGER NOT NULL, embedding_tokens INTEGER NOT NULL,
  created_at REAL NOT NULL, updated_at REAL NOT NULL, UNIQUE (kb_id, name));
CREATE TABLE IF NOT EXISTS chunk (
  id TEXT PRIMARY KEY, doc_id TEXT NOT NULL REFERENCES doc(id) ON DELETE CASCADE,
  kb_id TEXT NOT NULL, ordinal INTEGER NOT NULL, text TEXT NOT NULL, embedding BLOB);
CREATE INDEX IF NOT EXISTS chunk_by_kb ON chunk (kb_id);
CREATE INDEX IF NOT EXISTS chunk_by_doc ON chunk (doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_fts USING fts5(
  terms, chunk_id UNINDEXED, kb_id UNINDEXED, tokenize = 'porter unicode61');
"""


class SqliteKnowledgeIndex:
    """:class:`~suanwang.ports.KnowledgeIndex` in one SQLite file (WAL, one connection per
    call: safe from the API's worker threads)."""

    def __init__(self, path: Path, segmenter: Segmenter | None = None) -> None:
        self._path = path
        self._segmenter = segmenter or Segmenter()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        path.chmod(0o600)

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        db = sqlean.connect(str(self._path), timeout=30.0, isolation_level=None)
        try:
            db.enable_load_extension(True)
            sqlite_vec.load(db)
            db.enable_load_extension(False)
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # knowledge bases
    def create_base(self, kb: KnowledgeBase) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO kb VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kb.id,
                    kb.tenant,
                    kb.name,
                    kb.description,
                    kb.chunking.size_chars,
                    kb.chunking.overlap_chars,
                    kb.embedding_model,
                    kb.created_at,
                ),
            )

    def bases(self, tenant: str | None) -> list[KnowledgeBase]:
        with self._connect() as db:
            if tenant is None:
                rows = db.execute("SELECT * FROM kb ORDER BY tenant, name").fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM kb WHERE tenant = ? ORDER BY name", (tenant,)
                ).fetchall()
        return [_base(r) for r in rows]

    def base(self, kb_id: str) -> KnowledgeBase | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM kb WHERE id = ?", (kb_id,)).fetchone()
        return _base(row) if row else None

    def base_named(self, tenant: str, name: str) -> KnowledgeBase | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM kb WHERE tenant = ? AND name = ?", (tenant, name)
            ).fetchone()
        return _base(row) if row else None

    def delete_base(self, kb_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM chunk_fts WHERE kb_id = ?", (kb_id,))
            db.execute("DELETE FROM kb WHERE id = ?", (kb_id,))

    # documents
    def documents(self, kb_id: str) -> list[DocumentRecord]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM doc WHERE kb_id = ? ORDER BY name", (kb_id,))
            return [_document(r) for r in rows.fetchall()]

    def document(self, kb_id: str, doc_id: str) -> DocumentRecord | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM doc WHERE kb_id = ? AND id = ?", (kb_id, doc_id)
            ).fetchone()
        return _document(row) if row else None

    def document_named(self, kb_id: str, name: str) -> DocumentRecord | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM doc WHERE kb_id = ? AND name = ?", (kb_id, name)
            ).fetchone()
        return _document(row) if row else None

    def put_document(self, doc: DocumentRecord, chunks: Sequence[ChunkDraft]) -> None:
        """Replace the document of the same name (its chunks too) in one transaction."""
        terms = [self._segmenter.index_text(c.text) for c in chunks]
        with self._transaction() as db:
            old = db.execute(
                "SELECT id FROM doc WHERE kb_id = ? AND name = ?", (doc.kb_id, doc.name)
            ).fetchone()
            if old:
                _drop_document(db, old[0])
            db.execute(
                "INSERT INTO doc VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    doc.id,
                    doc.kb_id,
                    doc.name,
                    doc.media_type.value,
                    doc.size_bytes,
                    doc.sha256,
                    doc.chunks,
                    doc.embedding_tokens,
                    doc.created_at,
                    doc.updated_at,
                ),
            )
            for chunk, chunk_terms in zip(chunks, terms, strict=True):
                chunk_id = f"{doc.id}:{chunk.ordinal}"
                blob = sqlite_vec.serialize_float32(list(chunk.vector)) if chunk.vector else None
                db.execute(
                    "INSERT INTO chunk VALUES (?, ?, ?, ?, ?, ?)",
                    (chunk_id, doc.id, doc.kb_id, chunk.ordinal, chunk.text, blob),
                )
                db.execute(
                    "INSERT INTO chunk_fts (terms, chunk_id, kb_id) VALUES (?, ?, ?)",
                    (chunk_terms, chunk_id, doc.kb_id),
                )

    def delete_document(self, kb_id: str, doc_id: str) -> None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT id FROM doc WHERE kb_id = ? AND id = ?", (kb_id, doc_id)
            ).fetchone()
            if row:
                _drop_document(db, row[0])

    # retrieval
    def search_vector(
        self, kb_ids: Sequence[str], vector: Sequence[float], limit: int
    ) -> list[Hit]:
        if not kb_ids:
            return []
        marks = ", ".join("?" * len(kb_ids))
        sql = (
            "SELECT c.id, c.doc_id, d.name, c.ordinal, c.text, "
            "vec_distance_cosine(c.embedding, ?) AS distance "
            "FROM chunk c JOIN doc d ON d.id = c.doc_id "
            f"WHERE c.kb_id IN ({marks}) AND c.embedding IS NOT NULL "
            "AND vec_length(c.embedding) = ? ORDER BY distance, c.id LIMIT ?"
        )
        blob = sqlite_vec.serialize_float32(list(vector))
        with self._connect() as db:
            rows = db.execute(sql, (blob, *kb_ids, len(vector), limit)).fetchall()
        return [_hit(r, 1.0 - float(r[5]), vector=True) for r in rows]

    def search_keyword(self, kb_ids: Sequence[str], query: str, limit: int) -> list[Hit]:
        match = self._segmenter.match_expression(query)
        if not kb_ids or match is None:
            return []
        marks = ", ".join("?" * len(kb_ids))
        with self._connect() as db:
            rows = db.execute(
                f"SELECT c.id, c.doc_id, d.name, c.ordinal, c.text, -bm25(chunk_fts) AS score "
                f"FROM chunk_fts JOIN chunk c ON c.id = chunk_fts.chunk_id "
                f"JOIN doc d ON d.id = c.doc_id "
                f"WHERE chunk_fts MATCH ? AND chunk_fts.kb_id IN ({marks}) "
                "ORDER BY score DESC, c.id LIMIT ?",
                (match, *kb_ids, limit),
            ).fetchall()
        return [_hit(r, float(r[5]), vector=False) for r in rows]


def _drop_document(db: Any, doc_id: str) -> None:
    db.execute(
        "DELETE FROM chunk_fts WHERE chunk_id IN (SELECT id FROM chunk WHERE doc_id = ?)",
        (doc_id,),
    )
    db.execute("DELETE FROM doc WHERE id = ?", (doc_id,))


def _base(r: Sequence[Any]) -> KnowledgeBase:
    return KnowledgeBase(
        id=r[0],
        tenant=r[1],
        name=r[2],
        description=r[3],
        chunking=ChunkSettings(int(r[4]), int(r[5])),
        embedding_model=r[6],
        created_at=float(r[7]),
    )


def _document(r: Sequence[Any]) -> DocumentRecord:
    return DocumentRecord(
        id=r[0],
        kb_id=r[1],
        name=r[2],
        media_type=MediaType(r[3]),
        size_bytes=int(r[4]),
        sha256=r[5],
        chunks=int(r[6]),
        embedding_tokens=int(r[7]),
        created_at=float(r[8]),
        updated_at=float(r[9]),
    )


def _hit(r: Sequence[Any], score: float, *, vector: bool) -> Hit:
    return Hit(
        chunk_id=r[0],
        document_id=r[1],
        document_name=r[2],
        ordinal=int(r[3]),
        text=r[4],
        score=score,
        vector_score=score if vector else None,
        keyword_score=None if vector else score,
    )
