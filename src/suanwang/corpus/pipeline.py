"""The cleaning pipeline: steps in order over a stream of documents, one report per step.

Order: normalise -> exact dedup -> near dedup -> language -> PII -> quality -> LLM score. A
document leaves at the first step that removes it; survivors are written as they come, in
batches of ``batch_size`` (the LLM step scores a batch concurrently). Memory is bounded by the
batch except for the dedup indexes. Outputs in the output directory: ``cleaned.jsonl`` (or
``.parquet``), ``removed.jsonl`` (id, step, reason and detail of every removal, no text),
``report.json`` and ``report.md``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from suanwang.corpus.config import CleanConfig
from suanwang.corpus.dedup import ExactDedup, NearDedup
from suanwang.corpus.documents import Doc, Kept, Outcome, Removed
from suanwang.corpus.language import LanguageFilter
from suanwang.corpus.normalize import NormalizeConfig, normalize
from suanwang.corpus.pii import PiiScrubber
from suanwang.corpus.quality import QualityFilter
from suanwang.corpus.records import (
    DocWriter,
    JsonlWriter,
    LineWriter,
    ParquetWriter,
    ReadItem,
    RecordFormat,
    read_docs,
)
from suanwang.corpus.report import RunTotals, StepStats, write_reports


class Step(Protocol):
    """A per-document step."""

    name: str

    def apply(self, doc: Doc) -> Outcome: ...


class BatchStep(Protocol):
    """A step that decides a batch at once (the LLM scorer)."""

    name: str

    def apply_batch(self, docs: Sequence[Doc]) -> list[Outcome]: ...


class Normalizer:
    """Step 1 as a step object."""

    name = "normalize"

    def __init__(self, config: NormalizeConfig) -> None:
        self._config = config

    def apply(self, doc: Doc) -> Outcome:
        return Kept(doc.with_text(normalize(doc.text, self._config)))


def build_steps(config: CleanConfig) -> list[Step]:
    """The enabled per-document steps, in order."""
    steps: list[Step] = []
    if config.normalize is not None:
        steps.append(Normalizer(config.normalize))
    if config.exact_dedup:
        steps.append(ExactDedup())
    if config.near_dedup is not None:
        steps.append(NearDedup(config.near_dedup))
    if config.language is not None:
        steps.append(LanguageFilter(config.language))
    if config.pii is not None:
        steps.append(PiiScrubber(config.pii))
    if config.quality is not None:
        steps.append(QualityFilter(config.quality))
    return steps


class RemovalLog:
    """``removed.jsonl``: one line per removed document (no text)."""

    def __init__(self, lines: LineWriter) -> None:
        self._lines = lines

    def add(self, step: str, outcome: Removed) -> None:
        detail = {"id": outcome.doc.id, "step": step, "reason": outcome.reason}
        self._lines.write_line({**detail, "detail": outcome.detail})


def _batches(items: Iterable[ReadItem], size: int) -> Iterator[list[ReadItem]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class Pipeline:
    """Runs the configured steps over inputs into an output directory."""

    def __init__(self, config: CleanConfig, batch_step: BatchStep | None = None) -> None:
        self._config = config
        self._steps = build_steps(config)
        self._batch_step = batch_step
        names = [s.name for s in self._steps] + ([batch_step.name] if batch_step else [])
        self.stats = [StepStats(name, config.max_examples) for name in names]

    def run(self, inputs: list[Path], output: Path) -> dict[str, Any]:
        """Clean ``inputs`` into ``output``; the report document (also written there)."""
        output.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        totals = RunTotals([str(p) for p in inputs])
        fmt = self._config.records
        removed_path = output / "removed.jsonl"
        writer_of = _writer(output, self._config.output_format, fmt)
        with writer_of as writer, LineWriter(removed_path) as removed_lines:
            log = RemovalLog(removed_lines)
            for batch in _batches(read_docs(inputs, fmt), self._config.batch_size):
                survivors = self._per_doc(batch, totals, log)
                for doc in self._scored(survivors, log):
                    totals.bytes_written += writer.write(doc)
                    totals.docs_written += 1
        totals.seconds = time.monotonic() - started
        return write_reports(output, totals, self.stats)

    def _per_doc(self, batch: list[ReadItem], totals: RunTotals, log: RemovalLog) -> list[Doc]:
        survivors: list[Doc] = []
        for item in batch:
            totals.bytes_read += item.size_bytes
            if item.doc is None:
                totals.bad_records += 1
                continue
            totals.docs_read += 1
            doc = self._through_steps(item.doc, log)
            if doc is not None:
                survivors.append(doc)
        return survivors

    def _through_steps(self, doc: Doc, log: RemovalLog) -> Doc | None:
        for step, stats in zip(self._steps, self.stats, strict=False):
            outcome = step.apply(doc)
            stats.count(doc, outcome)
            if isinstance(outcome, Removed):
                log.add(step.name, outcome)
                return None
            doc = outcome.doc
        return doc

    def _scored(self, docs: list[Doc], log: RemovalLog) -> list[Doc]:
        if self._batch_step is None or not docs:
            return docs
        stats = self.stats[-1]
        kept: list[Doc] = []
        for doc, outcome in zip(docs, self._batch_step.apply_batch(docs), strict=True):
            stats.count(doc, outcome)
            if isinstance(outcome, Removed):
                log.add(self._batch_step.name, outcome)
            else:
                kept.append(outcome.doc)
        return kept


def _writer(output: Path, output_format: str, fmt: RecordFormat) -> DocWriter:
    if output_format == "parquet":
        return ParquetWriter(output / "cleaned.parquet", fmt)
    return JsonlWriter(output / "cleaned.jsonl", fmt)
