"""The receiver's staging area: files of one transfer, written in place by chunk.

Files live under ``<root>/.suanwang-staging/<transfer id>/``. Large files (at least one
chunk) are created at their full size with ``posix_fallocate`` when the transfer opens, so
their space is reserved and a target without room fails at once with ENOSPC; small files
(batched several to a chunk) are created by their one write, empty files at install. Large
files keep their descriptor open; small ones are opened per write. :meth:`Staging.sync`
makes the given files' data durable before their chunks are journaled as acknowledged:
``fdatasync`` per file, or one ``syncfs`` when a group touched many (small) files, since
every fdatasync costs a journal commit and a device flush.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import threading
from pathlib import Path

import blake3

from suanwang.transfer.plan import Chunk, ChunkPlan

READ_BLOCK = 4 << 20
SYNCFS_OVER_FILES = 8
_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(path: Path) -> None:
    """Flush the filesystem holding ``path`` (one journal commit for many files)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs: {os.strerror(err)}")
    finally:
        os.close(fd)


class Staging:
    def __init__(self, directory: Path, plan: ChunkPlan) -> None:
        self.directory = directory
        self.plan = plan
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def path(self, file: int) -> Path:
        return self.directory / self.plan.files[file].path

    def create(self) -> None:
        """Make the directories and allocate the large files; OSError(ENOSPC) when full."""
        self.directory.mkdir(parents=True, exist_ok=True)
        made = {self.directory}
        for index, entry in enumerate(self.plan.files):
            path = self.path(index)
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            if entry.size < self.plan.chunk_size:
                continue
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                os.posix_fallocate(fd, 0, entry.size)
            finally:
                os.close(fd)

    def create_empty(self) -> None:
        """Create the empty files (they have no chunk to write them)."""
        for index, entry in enumerate(self.plan.files):
            if entry.size == 0:
                self.path(index).touch()

    def _fd(self, file: int) -> tuple[int, bool]:
        """A descriptor for ``file`` and whether the caller must close it."""
        if self.plan.files[file].size < self.plan.chunk_size:
            return os.open(self.path(file), os.O_RDWR | os.O_CREAT, 0o644), True
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
        if len(files) > SYNCFS_OVER_FILES:
            syncfs(self.directory)
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
            if os.fstat(fd).st_size < upto:
                raise OSError(f"staged file {self.staging.path(self.file)} is short")
            with (
                mmap.mmap(fd, upto, prot=mmap.PROT_READ) as mm,
                memoryview(mm)[self.offset : upto] as view,
            ):
                self.sha.update(view)
            self.offset = upto
        finally:
            os.close(fd)

    def reset(self) -> None:
        self.offset = 0
        self.sha = hashlib.sha256()
