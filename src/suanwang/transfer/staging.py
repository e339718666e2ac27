"""The receiver's staging area: files of one transfer, written in place by chunk.

Files live under ``<root>/.suanwang-staging/<transfer id>/`` and are created at their full
size with ``posix_fallocate`` when the transfer opens, so a target without room fails at
once with ENOSPC instead of half-way. Large files keep their descriptor open; small files
(batched several to a chunk) are opened per write. :meth:`Staging.sync` makes the given
files' data durable (``fdatasync``) before their chunks are journaled as acknowledged.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import blake3

from suanwang.transfer.plan import Chunk, ChunkPlan

READ_BLOCK = 4 << 20


class Staging:
    def __init__(self, directory: Path, plan: ChunkPlan) -> None:
        self.directory = directory
        self.plan = plan
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def path(self, file: int) -> Path:
        return self.directory / self.plan.files[file].path

    def create(self) -> None:
        """Create every file at its size (allocating the space); OSError(ENOSPC) when full."""
        for index, entry in enumerate(self.plan.files):
            path = self.path(index)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if entry.size:
                    os.posix_fallocate(fd, 0, entry.size)
                os.ftruncate(fd, entry.size)
            finally:
                os.close(fd)

    def _fd(self, file: int) -> tuple[int, bool]:
        """A descriptor for ``file`` and whether the caller must close it."""
        if self.plan.files[file].size < self.plan.chunk_size:
            return os.open(self.path(file), os.O_RDWR), True
        with self._lock:
            fd = self._fds.get(file)
            if fd is None:
                fd = self._fds[file] = os.open(self.path(file), os.O_RDWR)
            return fd, False

    def write(self, chunk: Chunk, data: memoryview) -> None:
        pos = 0
        for ext in chunk.extents:
            fd, close = self._fd(ext.file)
            try:
                view = data[pos : pos + ext.length]
                offset = ext.offset
                while view:
                    n = os.pwrite(fd, view, offset)
                    view, offset = view[n:], offset + n
            finally:
                if close:
                    os.close(fd)
            pos += ext.length

    def read(self, chunk: Chunk) -> bytes:
        parts: list[bytes] = []
        for ext in chunk.extents:
            fd, close = self._fd(ext.file)
            try:
                parts.append(os.pread(fd, ext.length, ext.offset))
            finally:
                if close:
                    os.close(fd)
        return b"".join(parts)

    def flip_byte(self, chunk: Chunk) -> None:
        """Test-only: change one byte of ``chunk`` on disk (the disk_flip fault)."""
        ext = chunk.extents[0]
        fd, close = self._fd(ext.file)
        try:
            old = os.pread(fd, 1, ext.offset)
            os.pwrite(fd, bytes([old[0] ^ 0xFF]), ext.offset)
        finally:
            if close:
                os.close(fd)

    def sync(self, files: set[int]) -> None:
        if os.environ.get("XNOSYNC"):
            return
        for file in files:
            fd, close = self._fd(file)
            try:
                os.fdatasync(fd)
            finally:
                if close:
                    os.close(fd)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def chunk_hash(self, chunk: Chunk) -> str:
        return blake3.blake3(self.read(chunk)).hexdigest()


class FileHasher:
    """SHA-256 of one staged file, advanced over its prefix as chunks are acknowledged."""

    def __init__(self, staging: Staging, file: int) -> None:
        self.staging = staging
        self.file = file
        self.offset = 0
        self.sha = hashlib.sha256()

    @property
    def complete(self) -> bool:
        return self.offset >= self.staging.plan.files[self.file].size

    def advance(self, upto: int) -> None:
        """Hash the file's bytes from the current offset to ``upto``."""
        if upto <= self.offset:
            return
        fd = os.open(self.staging.path(self.file), os.O_RDONLY)
        try:
            while self.offset < upto:
                block = os.pread(fd, min(READ_BLOCK, upto - self.offset), self.offset)
                if not block:
                    raise OSError(f"staged file {self.staging.path(self.file)} is short")
                self.sha.update(block)
                self.offset += len(block)
        finally:
            os.close(fd)

    def reset(self) -> None:
        self.offset = 0
        self.sha = hashlib.sha256()
