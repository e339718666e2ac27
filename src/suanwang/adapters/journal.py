"""A local write-ahead journal in front of the metering ledger.

The gateway must not lose the usage of a response it completed, even when it is killed
with SIGKILL a microsecond later; yet a database commit per request (an fsync) would add
milliseconds to every response. :class:`JournaledUsageSink` appends each record as one
JSON line to a journal segment with a single ``write(2)`` before ``record`` returns — the
bytes are then in the kernel, which keeps them when the process dies — and forwards the
record to the ledger (group commit) in the background. A segment is deleted once every
record in it is committed.

Each process holds an exclusive ``flock`` on its open segments. At start-up,
:meth:`JournaledUsageSink.recover` replays every segment whose lock it can take (their
writer is dead) into the ledger — idempotent on ``entry_id``, so replaying a record that
was already committed is a no-op — and deletes them. A torn last line (a write cut by a
crash of the machine itself) is skipped and logged.

Durability: a process crash (kill -9) loses nothing. A crash of the whole machine may lose
the records of the last moments unless ``fsync=True`` (then every record costs an fsync).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from suanwang.domain.usage import Outcome, TokenUsage

log = structlog.get_logger("suanwang.journal")
SUFFIX = ".usage.jsonl"


class Ledger(Protocol):
    """What the journal needs of the ledger behind it."""

    async def record(self, usage: TokenUsage) -> None: ...

    def record_many(self, entries: Iterable[TokenUsage]) -> int: ...

    def tokens_used(self, tenant: str, since: float) -> int: ...

    async def aclose(self) -> None: ...


_FIELDS = tuple(f.name for f in dataclasses.fields(TokenUsage))


def encode(usage: TokenUsage) -> bytes:
    """One journal line (fields are plain values: no deep copy as ``dataclasses.asdict``)."""
    record = {name: getattr(usage, name) for name in _FIELDS}
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def decode(line: bytes) -> TokenUsage:
    """The record of one journal line (ValueError/KeyError/TypeError if it is not one)."""
    data: dict[str, Any] = json.loads(line)
    data["outcome"] = Outcome(data["outcome"])
    return TokenUsage(**data)


@dataclass
class _Segment:
    path: Path
    fd: int
    entries: int = 0
    outstanding: int = 0
    closed: bool = False
    failed: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def retire_if_done(self) -> None:
        """Delete a closed segment whose records are all committed (kept if one failed)."""
        if self.closed and self.outstanding == 0 and self.fd >= 0:
            if not self.failed:
                self.path.unlink(missing_ok=True)
            os.close(self.fd)  # releases the flock; a failed segment is replayed next start
            self.fd = -1


class JournaledUsageSink:
    """A :class:`~suanwang.ports.UsageSink` that journals locally, then commits in batches.

    Args:
        ledger: the durable ledger (e.g. ``SqlUsageLedger``).
        directory: where segments live (one directory per host; shared by its gateways).
        segment_entries: records per segment before a new one starts.
        fsync: also fsync every record (survives a machine crash; costs an fsync each).
    """

    def __init__(
        self, ledger: Ledger, directory: Path, *, segment_entries: int = 2048, fsync: bool = False
    ) -> None:
        if segment_entries < 1:
            raise ValueError("segment_entries must be ≥ 1")
        self.ledger = ledger
        self.directory = directory
        self._segment_entries = segment_entries
        self._fsync = fsync
        self._segment: _Segment | None = None
        self._segments: list[_Segment] = []
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def recover(self) -> int:
        """Replay the segments of dead writers into the ledger; returns records replayed."""
        replayed = 0
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            fd = _try_lock(path)
            if fd is None:
                continue  # a live process owns it
            try:
                entries = list(_read(path))
                if entries:
                    replayed += len(entries)
                    self.ledger.record_many(entries)
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        if replayed:
            log.info("usage journal replayed", records=replayed)
        return replayed

    async def record(self, usage: TokenUsage) -> None:
        """Journal ``usage`` (one write) and hand it to the ledger in the background."""
        segment = self._current()
        os.write(segment.fd, encode(usage))
        if self._fsync:
            os.fdatasync(segment.fd)
        segment.entries += 1
        segment.outstanding += 1
        task = asyncio.get_running_loop().create_task(self._forward(segment, usage))
        segment.tasks.add(task)
        task.add_done_callback(segment.tasks.discard)
        if segment.entries >= self._segment_entries:
            segment.closed = True
            self._segment = None

    def tokens_used(self, tenant: str, since: float) -> int:
        """The ledger's count (call :meth:`recover` first so replayed records are in it)."""
        return self.ledger.tokens_used(tenant, since)

    async def aclose(self) -> None:
        """Wait for every forwarded record, close the ledger, retire the segments."""
        for segment in self._segments:
            segment.closed = True
            if segment.tasks:
                await asyncio.gather(*segment.tasks, return_exceptions=True)
            segment.retire_if_done()
        self._segment = None
        await self.ledger.aclose()

    def _current(self) -> _Segment:
        if self._segment is None:
            name = f"{os.getpid()}-{secrets.token_hex(6)}"
            staging = self.directory / f".{name}.new"  # locked before recover() can see it
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = staging.rename(self.directory / f"{name}{SUFFIX}")
            self._segment = _Segment(path, fd)
            self._segments = [s for s in self._segments if s.fd >= 0] + [self._segment]
        return self._segment

    async def _forward(self, segment: _Segment, usage: TokenUsage) -> None:
        try:
            await self.ledger.record(usage)
        except Exception as exc:  # noqa: BLE001 (not swallowed: the record stays journaled for replay)
            segment.failed = True
            log.error(
                "usage left in the journal for replay", entry_id=usage.entry_id, error=str(exc)
            )
        finally:
            segment.outstanding -= 1
            segment.retire_if_done()


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _read(path: Path) -> Iterable[TokenUsage]:
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            yield decode(line)
        except (ValueError, KeyError, TypeError):
            log.warning("torn usage journal line skipped", path=str(path), line=number)
