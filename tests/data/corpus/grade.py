"""Grade a cleaning run against the generator's labels (make_corpus.py).

``grade(labels_path, output_dir)`` reads ``<output_dir>/cleaned.jsonl``, ``removed.jsonl`` and
``report.json`` and returns :class:`Grades`:

- ``duplicate_recall``: planted copies removed / planted copies, per original's group (a group
  of an original and k copies should keep exactly one; whichever copy came first may stay);
- ``pii_recall[type]``: planted values in kept documents that are gone from the text, with the
  type's placeholder present;
- ``decoy_precision``: decoys in kept documents still present verbatim;
- ``clean_removed``: documents of clean text (``clean``, ``pii``, ``decoy`` not in a duplicate
  group, and whole duplicate groups that lost every member) removed;
- ``low_quality_removed`` and ``foreign_removed``: recall of those removals (for the record);
- ``report_consistent``: the report's per-step removals equal ``removed.jsonl``'s lines per
  step, and read = written + removed.

Nothing here imports suanwang: the grader shares no code with what it grades.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

THRESHOLDS = {
    "duplicate_recall": 0.95,
    "pii_recall": 0.98,
    "decoy_precision": 1.0,
    "clean_removed": 0.02,
}


@dataclass
class Grades:
    duplicate_recall: float
    pii_recall: dict[str, float]
    pii_counts: dict[str, int]
    decoy_precision: float
    decoys_checked: int
    clean_removed: float
    clean_docs: int
    low_quality_removed: float
    foreign_removed: float
    report_consistent: bool
    problems: list[str] = field(default_factory=list)
    """Ids and reasons of misses (first few of each kind), for tuning."""

    def passed(self) -> list[str]:
        """The acceptance criteria that fail (empty: all pass)."""
        failed = []
        if self.duplicate_recall < THRESHOLDS["duplicate_recall"]:
            failed.append(f"duplicate recall {self.duplicate_recall:.3f} < 0.95")
        for kind, recall in self.pii_recall.items():
            if recall < THRESHOLDS["pii_recall"]:
                failed.append(f"PII recall {kind} {recall:.3f} < 0.98")
        if self.decoy_precision < THRESHOLDS["decoy_precision"]:
            failed.append(f"decoys kept {self.decoy_precision:.3f} < 1.0")
        if self.clean_removed > THRESHOLDS["clean_removed"]:
            failed.append(f"clean removed {self.clean_removed:.3f} > 0.02")
        if not self.report_consistent:
            failed.append("report counts differ from the removals")
        return failed

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _lines(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def grade(labels_path: Path, output: Path) -> Grades:
    labels = {row["id"]: row for row in _lines(labels_path)}
    kept = {row["id"]: row["text"] for row in _lines(output / "cleaned.jsonl")}
    removed = {row["id"]: row for row in _lines(output / "removed.jsonl")}
    report = json.loads((output / "report.json").read_text(encoding="utf-8"))
    problems: list[str] = []

    groups: dict[str, list[str]] = defaultdict(list)
    for doc_id, label in labels.items():
        if label["kind"] in ("exact_dup", "near_dup"):
            groups[label["of"]].append(doc_id)
    dup_found = dup_planted = 0
    in_groups: set[str] = set()
    over_removed = 0
    for original, copies in groups.items():
        members = [original, *copies]
        in_groups.update(members)
        gone = sum(1 for m in members if m in removed)
        dup_planted += len(copies)
        dup_found += min(gone, len(copies))
        if gone < len(copies):
            problems.append(f"dup kept: {[m for m in copies if m in kept][:2]} of {original}")
        if gone == len(members):
            over_removed += 1

    clean_ids = [
        i
        for i, lab in labels.items()
        if lab["kind"] in ("clean", "pii", "decoy") and i not in in_groups
    ]
    clean_gone = [i for i in clean_ids if i in removed]
    for i in clean_gone[:10]:
        problems.append(f"clean removed: {i} {removed[i]['reason']} {removed[i]['detail']}")
    clean_docs = len(clean_ids) + len(groups)

    pii_hit: Counter[str] = Counter()
    pii_all: Counter[str] = Counter()
    decoy_hit = decoy_all = 0
    for doc_id, label in labels.items():
        if doc_id not in kept:
            continue
        text = kept[doc_id]
        for planted in label.get("pii", []):
            pii_all[planted["type"]] += 1
            if planted["value"] not in text and f"[{planted['type']}]" in text:
                pii_hit[planted["type"]] += 1
            else:
                problems.append(f"PII missed: {doc_id} {planted}")
        for decoy in label.get("decoys", []):
            decoy_all += 1
            if decoy["value"] in text:
                decoy_hit += 1
            else:
                problems.append(f"decoy scrubbed: {doc_id} {decoy}")

    def recall(kind: str) -> float:
        ids = [i for i, lab in labels.items() if lab["kind"] == kind]
        return sum(1 for i in ids if i in removed) / len(ids) if ids else 1.0

    per_step = Counter(row["step"] for row in removed.values())
    consistent = all(step["removed"] == per_step.get(step["step"], 0) for step in report["steps"])
    consistent = consistent and report["docs_read"] == len(kept) + len(removed) == len(labels)
    consistent = consistent and report["docs_removed"] == len(removed)
    return Grades(
        duplicate_recall=dup_found / dup_planted if dup_planted else 1.0,
        pii_recall={k: pii_hit[k] / pii_all[k] for k in sorted(pii_all)},
        pii_counts=dict(sorted(pii_all.items())),
        decoy_precision=decoy_hit / decoy_all if decoy_all else 1.0,
        decoys_checked=decoy_all,
        clean_removed=(len(clean_gone) + over_removed) / clean_docs if clean_docs else 0.0,
        clean_docs=clean_docs,
        low_quality_removed=recall("low_quality"),
        foreign_removed=recall("foreign"),
        report_consistent=consistent,
        problems=problems[:40],
    )
