"""Reading and writing corpus records: JSONL and Parquet, streamed (the I/O edge).

Input: ``.jsonl``/``.json`` files with one JSON object per line, or ``.parquet`` files read
batch by batch with pyarrow (imported only when a Parquet file is met). Each record must have
the text field (a string); a record without it, or a line that is not a JSON object, is a
bad record: counted and skipped (``on_bad_record = "skip"``) or fatal with its file and line.

Output: ``cleaned.jsonl`` (one object per line, UTF-8, the input record with its text replaced)
or ``cleaned.parquet`` (schema of the first batch), written under a ``.partial`` name and
renamed only when the run completes, so a failed run never leaves a complete-looking file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from suanwang.corpus.documents import Doc

PARQUET_BATCH_ROWS = 1024


class CorpusInputError(Exception):
    """An input that cannot be read; the message names the file, line and what to do."""


@dataclass(frozen=True, slots=True)
class RecordFormat:
    """Field names of the records."""

    text_field: str = "text"
    id_field: str = "id"
    skip_bad: bool = False


@dataclass(frozen=True, slots=True)
class ReadItem:
    """A parsed document, or None for a skipped bad record, with its size in bytes."""

    doc: Doc | None
    size_bytes: int


def read_docs(paths: list[Path], fmt: RecordFormat) -> Iterator[ReadItem]:
    """Every record of ``paths`` in order, as documents."""
    for path in paths:
        if not path.is_file():
            raise CorpusInputError(f"{path}: no such file (give existing .jsonl or .parquet)")
        if path.suffix == ".parquet":
            yield from _parquet(path, fmt)
        else:
            yield from _jsonl(path, fmt)


def _jsonl(path: Path, fmt: RecordFormat) -> Iterator[ReadItem]:
    try:
        opened = path.open("rb")
    except OSError as exc:
        raise CorpusInputError(f"{path}: cannot read it ({exc.strerror})") from exc
    with opened as stream:
        for number, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                record = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                yield _bad(fmt, where, f"not JSON ({exc})", len(raw))
                continue
            yield _item(record, where, fmt, len(raw))


def _parquet(path: Path, fmt: RecordFormat) -> Iterator[ReadItem]:
    import pyarrow.parquet as pq  # heavy: only when a Parquet file is met

    try:
        source = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:
        raise CorpusInputError(f"{path}: not a readable Parquet file ({exc})") from exc
    number = 0
    for batch in source.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for record in batch.to_pylist():
            number += 1
            size = len(str(record.get(fmt.text_field, "")).encode("utf-8"))
            yield _item(record, f"{path.name}:{number}", fmt, size)


def _item(record: object, where: str, fmt: RecordFormat, size: int) -> ReadItem:
    if not isinstance(record, dict):
        return _bad(fmt, where, "not a JSON object", size)
    text = record.get(fmt.text_field)
    if not isinstance(text, str):
        return _bad(fmt, where, f"no string field {fmt.text_field!r}", size)
    key = record.get(fmt.id_field)
    doc_id = str(key) if isinstance(key, str | int) and not isinstance(key, bool) else where
    return ReadItem(Doc(doc_id, text, record), size)


def _bad(fmt: RecordFormat, where: str, why: str, size: int) -> ReadItem:
    if not fmt.skip_bad:
        raise CorpusInputError(
            f"{where}: {why}; fix the record, set text_field, or set on_bad_record = 'skip'"
        )
    return ReadItem(None, size)


class DocWriter(Protocol):
    def write(self, doc: Doc) -> int: ...
    def __enter__(self) -> DocWriter: ...
    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def output_record(doc: Doc, fmt: RecordFormat) -> dict[str, Any]:
    """The record to write: the input record with the cleaned text."""
    record = dict(doc.record)
    record[fmt.text_field] = doc.text
    return record


class _Partial:
    """A file written as ``<name>.partial`` and renamed into place on success only."""

    def __init__(self, path: Path) -> None:
        self.path, self.partial = path, path.with_name(path.name + ".partial")

    def finish(self, ok: bool) -> None:
        if ok:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


class LineWriter(_Partial):
    """A text file of JSON lines."""

    def __enter__(self) -> LineWriter:
        self._stream = self.partial.open("w", encoding="utf-8")
        return self

    def write_line(self, value: dict[str, Any]) -> int:
        """Write one object as a line; its size in bytes."""
        line = json.dumps(value, ensure_ascii=False, default=str) + "\n"
        self._stream.write(line)
        return len(line.encode("utf-8"))

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stream.close()
        self.finish(kind is None)


class JsonlWriter(LineWriter):
    """Cleaned documents, one JSON object per line."""

    def __init__(self, path: Path, fmt: RecordFormat) -> None:
        super().__init__(path)
        self._fmt = fmt

    def __enter__(self) -> JsonlWriter:
        super().__enter__()
        return self

    def write(self, doc: Doc) -> int:
        return self.write_line(output_record(doc, self._fmt))


class ParquetWriter(_Partial):
    """Rows buffered per :data:`PARQUET_BATCH_ROWS` and written as row groups."""

    def __init__(self, path: Path, fmt: RecordFormat) -> None:
        super().__init__(path)
        self._fmt = fmt
        self._rows: list[dict[str, Any]] = []
        self._writer: Any = None

    def __enter__(self) -> ParquetWriter:
        return self

    def write(self, doc: Doc) -> int:
        self._rows.append(output_record(doc, self._fmt))
        if len(self._rows) >= PARQUET_BATCH_ROWS:
            self._flush()
        return len(doc.text.encode("utf-8"))

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._rows:
            return
        schema = None if self._writer is None else self._writer.schema
        table = pa.Table.from_pylist(self._rows, schema=schema)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.partial, table.schema)
        self._writer.write_table(table)
        self._rows = []

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self._flush()
        if self._writer is not None:
            self._writer.close()
        if kind is None and self._writer is None:  # nothing kept: an empty text column
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(
                pa.table({self._fmt.text_field: pa.array([], pa.string())}), self.partial
            )
        self.finish(kind is None)
