"""What each step did: counts, reasons and examples, written as report.json and report.md.

One :class:`StepStats` per step counts the documents in, removed, kept and modified, the
removals by reason, the edits by kind (PII placeholders, scores) and keeps the first
``max_examples`` removals per reason. Example excerpts are PII-scrubbed before they are stored,
so the report never carries what the pipeline removes from the text.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suanwang.corpus.documents import Doc, Kept, Outcome
from suanwang.corpus.pii import scrub

EXCERPT_CHARS = 160


def excerpt(text: str) -> str:
    """The first characters of ``text`` on one line, PII-scrubbed."""
    return scrub(text[: EXCERPT_CHARS * 2])[0].replace("\n", " ⏎ ")[:EXCERPT_CHARS]


@dataclass
class StepStats:
    """Counters of one step (mutable: the pipeline owns one per step)."""

    name: str
    max_examples: int = 5
    docs_in: int = 0
    removed: int = 0
    kept: int = 0
    modified: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    changes: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, str]] = field(default_factory=list)
    flagged: list[dict[str, str]] = field(default_factory=list)

    def count(self, before: Doc, outcome: Outcome) -> None:
        """Add one document's outcome."""
        self.docs_in += 1
        if isinstance(outcome, Kept):
            self.kept += 1
            self.modified += outcome.doc.text != before.text
            self.changes.update(dict(outcome.changes))
            if outcome.note and len(self.flagged) < self.max_examples:
                self.flagged.append({"id": before.id, "note": outcome.note})
            return
        self.removed += 1
        self.reasons[outcome.reason] += 1
        if sum(1 for e in self.examples if e["reason"] == outcome.reason) < self.max_examples:
            self.examples.append(
                {
                    "id": before.id,
                    "reason": outcome.reason,
                    "detail": outcome.detail,
                    "excerpt": excerpt(before.text),
                }
            )

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "in": self.docs_in,
            "removed": self.removed,
            "kept": self.kept,
            "modified": self.modified,
            "removed_by_reason": dict(sorted(self.reasons.items())),
            "changes": dict(sorted(self.changes.items())),
            "examples": self.examples,
            "flagged": self.flagged,
        }


@dataclass
class RunTotals:
    """Whole-run numbers besides the steps."""

    inputs: list[str]
    docs_read: int = 0
    bytes_read: int = 0
    bad_records: int = 0
    docs_written: int = 0
    bytes_written: int = 0
    seconds: float = 0.0


def write_reports(directory: Path, totals: RunTotals, steps: list[StepStats]) -> dict[str, Any]:
    """Write report.json and report.md into ``directory``; return the JSON document."""
    document = {
        "inputs": totals.inputs,
        "docs_read": totals.docs_read,
        "bad_records_skipped": totals.bad_records,
        "docs_written": totals.docs_written,
        "docs_removed": sum(s.removed for s in steps),
        "bytes_read": totals.bytes_read,
        "bytes_written": totals.bytes_written,
        "seconds": round(totals.seconds, 3),
        "docs_per_s": round(totals.docs_read / totals.seconds, 1) if totals.seconds else None,
        "steps": [s.as_json() for s in steps],
    }
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    (directory / "report.json").write_text(text, encoding="utf-8")
    (directory / "report.md").write_text(markdown(document, steps), encoding="utf-8")
    return document


def markdown(document: dict[str, Any], steps: list[StepStats]) -> str:
    """The short human report."""
    lines = [
        "# Corpus cleaning report",
        "",
        f"{document['docs_read']} documents read ({document['bytes_read']:,} bytes), "
        f"{document['docs_written']} written, {document['docs_removed']} removed, "
        f"{document['bad_records_skipped']} bad records skipped, in {document['seconds']} s.",
        "",
        "| step | in | removed | kept | modified | removed by reason | changes |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for s in steps:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s.reasons.items())) or "-"
        changes = ", ".join(f"{k} {v}" for k, v in sorted(s.changes.items())) or "-"
        lines.append(
            f"| {s.name} | {s.docs_in} | {s.removed} | {s.kept} | {s.modified} | "
            f"{reasons} | {changes} |"
        )
    lines += ["", "Examples of removals (PII-scrubbed excerpts) are in report.json.", ""]
    return "\n".join(lines)
