"""The sending side's view of a dataset: its files under the root, their bytes and hashes."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from suanwang.transfer.paths import confine, inside
from suanwang.transfer.plan import Chunk, FileEntry
from suanwang.transfer.status import ManifestEntry

READ_BLOCK = 4 << 20


class SourceError(Exception):
    """The source cannot be sent as asked: missing, escaping the root, or changed."""


def list_source(root: Path, src: str) -> tuple[list[FileEntry], list[Path]]:
    """The regular files under ``root/src`` sorted by relative path, with their real paths."""
    base = confine(root, src)
    if not base.is_dir():
        raise SourceError(f"source directory {src!r} not found under the storage root")
    found: list[tuple[str, Path, int]] = []
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath)
        for name in dirnames:
            if (here / name).is_symlink():
                raise SourceError(
                    f"{(here / name).relative_to(base)}: symlinked directories are not sent"
                )
        for name in filenames:
            path = here / name
            rel = str(path.relative_to(base))
            if path.is_symlink() and not inside(root, path):
                raise SourceError(f"{rel}: symlink leaves the storage root")
            real = path.resolve()
            if not real.is_file():
                raise SourceError(f"{rel}: not a regular file")
            found.append((rel, real, real.stat().st_size))
    found.sort()
    return [FileEntry(rel, size) for rel, _, size in found], [real for _, real, _ in found]


def sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(READ_BLOCK):
            sha.update(block)
    return sha.hexdigest()


def manifest(root: Path, src: str) -> list[ManifestEntry]:
    entries, paths = list_source(root, src)
    return [
        ManifestEntry(e.path, e.size, sha256_file(p)) for e, p in zip(entries, paths, strict=True)
    ]


class SourceReader:
    """Reads chunks from the source files (large files keep their descriptor open)."""

    def __init__(self, files: list[FileEntry], paths: list[Path], chunk_size: int) -> None:
        self.files = files
        self.paths = paths
        self.chunk_size = chunk_size
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def _open(self, file: int) -> tuple[int, bool]:
        try:
            if self.files[file].size < self.chunk_size:
                return os.open(self.paths[file], os.O_RDONLY), True
            with self._lock:
                fd = self._fds.get(file)
                if fd is None:
                    fd = self._fds[file] = os.open(self.paths[file], os.O_RDONLY)
                return fd, False
        except FileNotFoundError:
            raise SourceError(f"source file missing: {self.files[file].path}") from None

    def read(self, chunk: Chunk) -> bytearray:
        data = bytearray(chunk.size)
        view = memoryview(data)
        pos = 0
        for ext in chunk.extents:
            fd, close = self._open(ext.file)
            try:
                got = os.preadv(fd, [view[pos : pos + ext.length]], ext.offset)
            finally:
                if close:
                    os.close(fd)
            if got != ext.length:
                raise SourceError(
                    f"source file {self.files[ext.file].path} changed during the transfer"
                )
            pos += ext.length
        return data

    def sha256_all(self) -> list[str]:
        out = []
        for entry, path in zip(self.files, self.paths, strict=True):
            try:
                out.append(sha256_file(path))
            except FileNotFoundError:
                raise SourceError(f"source file missing: {entry.path}") from None
        return out

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
