"""Append-only JSON-lines journals for both ends of a transfer.

One record per line, written with a single ``write(2)``; ``sync=True`` adds an ``fsync``,
so a group of records is durable (and only then acknowledged) at the cost of one fsync.
Replay reads every complete line; a torn last line (the process or machine died in the
middle of a write) is dropped and logged: its records were never acknowledged, because an
acknowledgement is only sent after the fsync that made its line whole.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("suanwang.transfer.journal")


class Journal:
    """A journal file opened for appending (created with its directory if missing)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()

    def append(self, records: list[list[Any]], *, sync: bool) -> None:
        if not records:
            return
        data = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
        with self._lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            if sync:
                os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def replay(path: Path) -> list[list[Any]]:
    """The journal's complete records, in order (none when the file does not exist)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    records: list[list[Any]] = []
    for i, line in enumerate(lines):
        if not line:
            continue
        try:
            record = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            if i == len(lines) - 1:
                log.warning("journal_torn_tail_dropped", path=str(path), bytes=len(line))
                continue
            raise ValueError(f"journal {path} is corrupt at line {i + 1}") from None
        if i == len(lines) - 1:
            # a line without its newline was cut by a crash even if it parses
            log.warning("journal_torn_tail_dropped", path=str(path), bytes=len(line))
            continue
        if isinstance(record, list) and record:
            records.append(record)
    return records


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
