"""The cleaning pipeline graded on the committed tuning (seed 1) and held-out (seed 2) samples.

The same grading as benchmarks/corpus_quality.py (tests/data/corpus/grade.py): duplicate
recall >= 0.95, PII recall >= 0.98 per type, every decoy kept, clean text removed <= 2 %, and
the report's counts equal to the removals. The held-out sample was never used for tuning.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from suanwang.corpus import Pipeline, load

DATA = Path(__file__).parents[1] / "data" / "corpus"
sys.path.insert(0, str(DATA))
import grade  # noqa: E402


@pytest.mark.parametrize("sample", ["tuning", "heldout"])
def test_sample_meets_the_acceptance_numbers(tmp_path: Path, sample: str) -> None:
    out = tmp_path / "out"
    Pipeline(load(None)).run([DATA / f"{sample}.jsonl"], out)
    grades = grade.grade(DATA / f"{sample}.labels.jsonl", out)
    assert grades.passed() == [], grades.problems
    assert min(grades.pii_counts.values()) >= 50  # enough of each type to mean something
    assert grades.decoys_checked >= 100


@pytest.mark.parametrize(("sample", "seed"), [("tuning", 1), ("heldout", 2)])
def test_the_committed_samples_are_the_generators(tmp_path: Path, sample: str, seed: int) -> None:
    import make_corpus

    make_corpus.write(make_corpus.generate(seed), tmp_path / sample)
    for suffix in (".jsonl", ".labels.jsonl"):
        made = (tmp_path / f"{sample}{suffix}").read_bytes()
        assert made == (DATA / f"{sample}{suffix}").read_bytes(), suffix
