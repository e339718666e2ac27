"""The sending side's view of a dataset: its files under the root, their bytes and hashes."""

from __future__ import annotations

import mmap
import os
import threading
from pathlib import Path

import structlog

from suanwang.transfer.hashcache import HashCache
from suanwang.transfer.paths import confine, inside
from suanwang.transfer.plan import Chunk, FileEntry
from suanwang.transfer.status import ManifestEntry

log = structlog.get_logger("suanwang.transfer.source")


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


def manifest(root: Path, src: str, hashes: HashCache) -> list[ManifestEntry]:
    entries, paths = list_source(root, src)
    return [
        ManifestEntry(e.path, e.size, hashes.sha256(p)) for e, p in zip(entries, paths, strict=True)
    ]


class SourceReader:
    """Reads chunks from the source files.

    A chunk of a large file is a view of the file's read-only mapping: hashed and encrypted
    from the page cache without a copy. Batches of small files are read into one buffer.
    """

    def __init__(self, files: list[FileEntry], paths: list[Path], chunk_size: int) -> None:
        self.files = files
        self.paths = paths
        self.chunk_size = chunk_size
        self._fds: dict[int, int] = {}
        self._maps: dict[int, mmap.mmap] = {}
        self._lock = threading.Lock()
        self._stamps = [_stamp(p) for p in paths]

    def check_unchanged(self) -> None:
        """SourceError naming the first file that went missing or changed since the listing."""
        for entry, path, stamp in zip(self.files, self.paths, self._stamps, strict=True):
            try:
                now = _stamp(path)
            except FileNotFoundError:
                raise SourceError(f"source file missing: {entry.path}") from None
            if now != stamp:
                raise SourceError(f"source file changed during the transfer: {entry.path}")

    def view(self, file: int, offset: int, length: int) -> memoryview:
        """A view of a large file's bytes (its mapping is kept until :meth:`close`)."""
        with self._lock:
            mm = self._maps.get(file)
        if mm is None:
            fd, _ = self._open(file)
            size = os.fstat(fd).st_size
            if size < offset + length:
                raise SourceError(
                    f"source file {self.files[file].path} changed during the transfer"
                )
            mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
            with self._lock:
                mm = self._maps.setdefault(file, mm)
        return memoryview(mm)[offset : offset + length]

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

    def sha256_all(self, hashes: HashCache) -> list[str]:
        out = []
        for entry, path in zip(self.files, self.paths, strict=True):
            try:
                out.append(hashes.sha256(path))
            except FileNotFoundError:
                raise SourceError(f"source file missing: {entry.path}") from None
        return out

    def close(self) -> None:
        with self._lock:
            for mm in self._maps.values():
                try:
                    mm.close()
                except BufferError:
                    log.warning("source_mapping_still_in_use")
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            self._maps.clear()


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns
