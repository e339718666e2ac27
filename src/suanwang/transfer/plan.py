"""The chunk plan: how a directory's files are cut into chunks, and what a resume sends.

Pure: no I/O. Files are taken in the order given (the sender sorts them by path). A file of
at least ``chunk_size`` bytes is cut into ``chunk_size`` pieces (the last one shorter);
smaller files are batched, in order, into chunks of up to ``chunk_size`` bytes, so a
dataset of a million small files does not cost a million round trips. A chunk is therefore
a tuple of extents ``(file index, offset, length)``; its hash covers the extents'
bytes concatenated. Empty files have no extent: they exist once the transfer is verified.

The plan is deterministic, so sender and receiver agree on chunk ids from the file list and
the chunk size alone; :func:`plan_digest` names a plan so a resume against a different plan
is refused instead of mixing two datasets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MIB = 1 << 20
DEFAULT_CHUNK_SIZE = 8 * MIB
MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 64 * MIB


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file of the dataset: its path relative to the dataset root and its size."""

    path: str
    size: int


@dataclass(frozen=True, slots=True)
class Extent:
    """A byte range of one file."""

    file: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """The unit that is hashed, sent, verified and acknowledged."""

    id: int
    extents: tuple[Extent, ...]

    @property
    def size(self) -> int:
        return sum(e.length for e in self.extents)


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    files: tuple[FileEntry, ...]
    chunk_size: int
    chunks: tuple[Chunk, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def bytes_of(self, ids: Iterable[int]) -> int:
        return sum(self.chunks[i].size for i in ids)

    def chunks_of_file(self, file: int) -> list[int]:
        return [c.id for c in self.chunks if any(e.file == file for e in c.extents)]


def make_plan(files: Sequence[FileEntry], chunk_size: int = DEFAULT_CHUNK_SIZE) -> ChunkPlan:
    """Cut ``files`` into chunks (see the module docstring)."""
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
    chunks: list[Chunk] = []
    batch: list[Extent] = []
    batch_bytes = 0

    def flush() -> None:
        nonlocal batch, batch_bytes
        if batch:
            chunks.append(Chunk(len(chunks), tuple(batch)))
            batch, batch_bytes = [], 0

    for index, entry in enumerate(files):
        if entry.size < 0:
            raise ValueError(f"file {entry.path!r} has a negative size")
        if entry.size == 0:
            continue
        if entry.size >= chunk_size:
            flush()
            for offset in range(0, entry.size, chunk_size):
                length = min(chunk_size, entry.size - offset)
                chunks.append(Chunk(len(chunks), (Extent(index, offset, length),)))
            continue
        if batch_bytes + entry.size > chunk_size:
            flush()
        batch.append(Extent(index, 0, entry.size))
        batch_bytes += entry.size
    flush()
    return ChunkPlan(tuple(files), chunk_size, tuple(chunks))


def plan_digest(plan: ChunkPlan) -> str:
    """A name for the plan: SHA-256 of its file list and chunk size."""
    body = json.dumps([plan.chunk_size, [[f.path, f.size] for f in plan.files]])
    return hashlib.sha256(body.encode()).hexdigest()


def remaining(plan: ChunkPlan, acked: Iterable[int]) -> list[int]:
    """The chunk ids still to send, in plan order: everything not acknowledged."""
    done = set(acked)
    return [c.id for c in plan.chunks if c.id not in done]


def encode_ids(ids: Iterable[int]) -> list[list[int]]:
    """Chunk ids as sorted inclusive ranges ``[[first, last], ...]`` (compact on the wire)."""
    ranges: list[list[int]] = []
    for i in sorted(set(ids)):
        if ranges and ranges[-1][1] == i - 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ranges


def decode_ids(ranges: Iterable[Sequence[int]]) -> set[int]:
    out: set[int] = set()
    for first, last in ranges:
        out.update(range(first, last + 1))
    return out
