"""SHA-256s of source files, remembered across pushes and restarts.

A dataset is pushed to several regions and its manifest is read by the control plane; its
files are hashed once. An entry is keyed by the file's real path, size, inode, mtime and
ctime (nanoseconds): any write to the file changes its ctime, which no user can set back, so
a changed file is hashed again. Entries persist as JSON lines in the agent's journal dir.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from suanwang.transfer.journal import Journal, replay
from suanwang.transfer.sha import sha256_file

Key = tuple[str, int, int, int, int]


def _key(path: Path) -> Key:
    st = os.stat(path)
    return (str(path), st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


class HashCache:
    def __init__(self, file: Path | None) -> None:
        self._lock = threading.Lock()
        self._known: dict[Key, str] = {}
        self._journal = Journal(file) if file is not None else None
        if file is not None:
            for rec in replay(file):
                if rec[0] == "h" and len(rec) == 7:
                    self._known[(str(rec[1]), *map(int, rec[2:6]))] = str(rec[6])  # type: ignore[index]

    def sha256(self, path: Path) -> str:
        """The file's SHA-256, from the cache when the file is unchanged."""
        key = _key(path)
        with self._lock:
            known = self._known.get(key)
        if known is not None:
            return known
        digest = sha256_file(path)
        if _key(path) != key:  # changed while hashed: do not remember
            return digest
        with self._lock:
            self._known[key] = digest
        if self._journal is not None:
            self._journal.append([["h", *key, digest]], sync=False)
        return digest
