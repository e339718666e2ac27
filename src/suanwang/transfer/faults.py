"""Test-only fault hooks (off unless ``SUANWANG_TRANSFER_FAULTS`` is set; never in production).

``SUANWANG_TRANSFER_FAULTS="recv_flip=3,7;disk_flip=5"`` makes a receiving agent
- ``recv_flip``: flip one byte of chunks 3 and 7 right after TLS decryption (before the
  chunk hash is checked) — the chunk is refused and re-sent;
- ``disk_flip``: flip one byte of chunk 5's data on disk after it was acknowledged and
  before the final whole-file verification — the file's SHA-256 fails, the receiver finds
  the chunk whose hash no longer matches and asks for that chunk alone.
Each fires once per chunk id per process.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

ENV = "SUANWANG_TRANSFER_FAULTS"


@dataclass
class Faults:
    recv_flip: set[int] = field(default_factory=set)
    disk_flip: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_env(cls) -> Faults:
        return cls.parse(os.environ.get(ENV, ""))

    @classmethod
    def parse(cls, spec: str) -> Faults:
        faults = cls()
        for part in filter(None, (p.strip() for p in spec.split(";"))):
            name, _, ids = part.partition("=")
            target = {"recv_flip": faults.recv_flip, "disk_flip": faults.disk_flip}.get(name)
            if target is None:
                raise ValueError(f"{ENV}: unknown fault {name!r}")
            target.update(int(i) for i in ids.split(",") if i)
        return faults

    def fire(self, which: set[int], chunk_id: int) -> bool:
        """True once for each armed chunk id (then disarmed)."""
        with self._lock:
            if chunk_id in which:
                which.discard(chunk_id)
                return True
            return False
