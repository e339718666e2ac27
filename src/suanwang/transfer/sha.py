"""Whole-file SHA-256 from a read-only mapping (no copy into Python; the GIL is released)."""

from __future__ import annotations

import hashlib
import mmap
import os
from pathlib import Path

BLOCK = 256 << 20


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, hashed from a read-only mapping (no copy; the GIL is released)."""
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size:
            with mmap.mmap(fh.fileno(), size, prot=mmap.PROT_READ) as mm:
                mm.madvise(mmap.MADV_SEQUENTIAL)
                for pos in range(0, size, BLOCK):
                    with memoryview(mm)[pos : pos + BLOCK] as view:
                        sha.update(view)
    return sha.hexdigest()
