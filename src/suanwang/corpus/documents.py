"""The shapes every cleaning step shares: a document, and what a step decided about it.

A :class:`Doc` carries the text being cleaned, its id (the record's id field, else
``<file>:<line>``) and the input record it came from (other fields pass through to the output
untouched). A step answers :class:`Kept` (possibly with changed text) or :class:`Removed` with
a reason code and a short human detail. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Doc:
    """One input document."""

    id: str
    text: str
    record: dict[str, object] = field(default_factory=dict, compare=False)
    """The input record as read (JSON object or Parquet row); its text field is replaced
    by :attr:`text` when written."""
    language: str = ""
    """Set by the language step (ISO 639-1), empty before it."""

    def with_text(self, text: str) -> Doc:
        return Doc(self.id, text, self.record, self.language)

    def with_language(self, language: str) -> Doc:
        return Doc(self.id, self.text, self.record, language)


@dataclass(frozen=True, slots=True)
class Kept:
    """The document goes on; ``changes`` counts edits by kind (e.g. PII placeholders)."""

    doc: Doc
    changes: tuple[tuple[str, int], ...] = ()
    note: str = ""
    """Why the step flags a kept document (e.g. a failed score call kept by policy)."""


@dataclass(frozen=True, slots=True)
class Removed:
    """The document is dropped by this step for ``reason`` (a stable code)."""

    doc: Doc
    reason: str
    detail: str = ""


Outcome = Kept | Removed
