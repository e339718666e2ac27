"""The receiving side of a transfer: verify chunks, stage them, journal them, acknowledge.

A chunk is acknowledged only after (1) its BLAKE3 matched the sender's, (2) its bytes
were written to the staging file and ``fdatasync``'d, and (3) its id and hash were
appended to the receiver journal with an ``fsync``. A committer thread does (2) and (3)
for whatever accumulated during its previous round (group commit), so the fsync cost is
shared by every stream, then writes the ACK on the session's acknowledgement channel (the
OPEN connection, written only by this side); data streams are only read, so a slow commit
never stalls them. The journal is authoritative on resume: a re-opened transfer
reports its acknowledged ids and the sender skips them.

Whole-file SHA-256s are computed while the transfer runs, over each file's acknowledged
prefix (re-read from the page cache), and compared with the sender's manifest at FINISH.
A mismatch re-hashes that file's chunks against their journaled BLAKE3, revokes the ones
that changed and asks for them alone. Only a fully verified transfer is renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import blake3
import structlog

from suanwang.transfer import wire
from suanwang.transfer.faults import Faults
from suanwang.transfer.journal import Journal, fsync_dir, replay
from suanwang.transfer.plan import ChunkPlan, encode_ids
from suanwang.transfer.staging import FileHasher, Staging

log = structlog.get_logger("suanwang.transfer.receiver")


class ReceiveError(Exception):
    """A failure the sender must see: ``code`` is one of enospc, conflict, bad_request, io."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Pending:
    chunk: int
    digest: str


class ReceiverTransfer:
    """One incoming transfer: staging files, journal, committer thread, file hashers."""

    def __init__(
        self,
        transfer_id: str,
        plan: ChunkPlan,
        digest: str,
        staging_dir: Path,
        journal_path: Path,
        dst: Path,
        faults: Faults,
    ) -> None:
        self.transfer_id = transfer_id
        self.plan = plan
        self.digest = digest
        self.dst = dst
        self.faults = faults
        self.staging = Staging(staging_dir, plan)
        self.acked: dict[int, str] = {}
        self.done = False
        self.duplicate_acked_arrivals = 0
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._committing = 0
        self._closed = False
        self._channel: ssl.SSLSocket | None = None
        self._channel_released = threading.Event()
        self._channel_lock = threading.Lock()
        self._journal_path = journal_path
        self._arrivals_path = journal_path.with_suffix(".arrivals")
        self._replay()
        self._journal = Journal(journal_path)
        self._hashers = [FileHasher(self.staging, i) for i in range(len(plan.files))]
        self._file_chunks = self._index_files()
        self._committer = threading.Thread(target=self._commit_loop, daemon=True)
        self._committer.start()

    # --- setup ---------------------------------------------------------------------------
    def _replay(self) -> None:
        records = replay(self._journal_path)
        if records and (records[0][0] != "plan" or records[0][1] != self.digest):
            raise ReceiveError("conflict", f"transfer {self.transfer_id} exists with another plan")
        for rec in records[1:]:
            if rec[0] == "c":
                self.acked[int(rec[1])] = str(rec[2])
            elif rec[0] == "r":
                self.acked.pop(int(rec[1]), None)
            elif rec[0] == "done":
                self.done = True
        for line in replay(self._arrivals_path):
            if line[0] == "dup":
                self.duplicate_acked_arrivals += 1

    def _index_files(self) -> list[list[tuple[int, int]]]:
        """For each file, its extents in order as (end offset, chunk id)."""
        index: list[list[tuple[int, int]]] = [[] for _ in self.plan.files]
        for chunk in self.plan.chunks:
            for ext in chunk.extents:
                index[ext.file].append((ext.offset + ext.length, chunk.id))
        return index

    def open(self, free_bytes: int) -> None:
        """Create the journal header and the staging files on first open."""
        if self.done or replay(self._journal_path):
            return
        empty_dir = self.dst.is_dir() and not any(self.dst.iterdir())
        if self.dst.exists() and not empty_dir:
            raise ReceiveError("conflict", f"destination {self.dst.name!r} already exists")
        if self.plan.total_bytes > free_bytes:
            raise ReceiveError(
                "enospc",
                f"target disk full: {self.plan.total_bytes} bytes needed, {free_bytes} free",
            )
        try:
            self.staging.create()
        except OSError as exc:
            shutil.rmtree(self.staging.directory, ignore_errors=True)
            raise ReceiveError("enospc" if exc.errno == 28 else "io", f"staging: {exc}") from exc
        self._journal.append([["plan", self.digest, self.transfer_id]], sync=True)

    # --- chunks --------------------------------------------------------------------------
    def accept(self, chunk_id: int, digest: str, data: bytearray) -> None:
        """Verify and stage one chunk; it is acknowledged once the committer journals it."""
        if not 0 <= chunk_id < len(self.plan.chunks):
            raise ReceiveError("bad_request", f"chunk {chunk_id} is not in the plan")
        chunk = self.plan.chunks[chunk_id]
        if len(data) != chunk.size:
            raise ReceiveError(
                "bad_request", f"chunk {chunk_id} has {len(data)} bytes, not {chunk.size}"
            )
        with self._cond:
            already = chunk_id in self.acked
            if already:
                self.duplicate_acked_arrivals += 1
        if already:
            Journal(self._arrivals_path).append([["dup", chunk_id]], sync=False)
            log.warning("acked_chunk_received_again", transfer=self.transfer_id, chunk=chunk_id)
            self._send(wire.Kind.ACK, {"ids": encode_ids([chunk_id])})
            return
        if self.faults.fire(self.faults.recv_flip, chunk_id):
            data[0] ^= 0xFF
        if blake3.blake3(data, max_threads=1).hexdigest() != digest:
            self._send(
                wire.Kind.NACK, {"id": chunk_id, "reason": "chunk hash mismatch after decryption"}
            )
            return
        try:
            self.staging.write(chunk, memoryview(data))
        except OSError as exc:
            raise ReceiveError("enospc" if exc.errno == 28 else "io", f"write: {exc}") from exc
        with self._cond:
            self._pending.append(_Pending(chunk_id, digest))
            self._cond.notify_all()

    # --- the acknowledgement channel -----------------------------------------------------
    def attach_channel(self, sock: ssl.SSLSocket) -> threading.Event:
        """Make ``sock`` (the session's OPEN connection) the channel acks are written to."""
        with self._channel_lock:
            self._release_locked()
            self._channel = sock
            self._channel_released = threading.Event()
            return self._channel_released

    def detach_channel(self, sock: ssl.SSLSocket) -> None:
        with self._channel_lock:
            if self._channel is sock:
                self._release_locked()

    def _release_locked(self) -> None:
        self._channel = None
        self._channel_released.set()

    def _send(self, kind: wire.Kind, meta: dict[str, object]) -> None:
        """Write one frame on the channel; without one (the sender left) it is dropped."""
        with self._channel_lock:
            if self._channel is None:
                return
            try:
                wire.send(self._channel, kind, meta)
            except OSError as exc:
                log.info("ack_channel_lost", transfer=self.transfer_id, error=str(exc))
                self._release_locked()

    def fail(self, error: ReceiveError) -> None:
        """Tell the sender why its stream is being closed."""
        self._send(wire.Kind.ERROR, {"code": error.code, "message": str(error), "field": None})

    def _commit_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                batch, self._pending = self._pending, []
                self._committing += 1
            try:
                self._commit(batch)
            except OSError as exc:
                log.error("commit_failed", transfer=self.transfer_id, error=str(exc))
                code = "enospc" if exc.errno == 28 else "io"
                self.fail(ReceiveError(code, f"commit: {exc}"))
            finally:
                with self._cond:
                    self._committing -= 1
                    self._cond.notify_all()

    def _commit(self, batch: list[_Pending]) -> None:
        files = {e.file for p in batch for e in self.plan.chunks[p.chunk].extents}
        self.staging.sync(files)
        self._journal.append([["c", p.chunk, p.digest] for p in batch], sync=True)
        with self._cond:
            for p in batch:
                self.acked[p.chunk] = p.digest
        self._send(wire.Kind.ACK, {"ids": encode_ids(p.chunk for p in batch)})
        for p in batch:
            if self.faults.fire(self.faults.disk_flip, p.chunk):
                self.staging.flip_byte(self.plan.chunks[p.chunk])
        for file in sorted(files):
            self._advance_hash(file)

    def _advance_hash(self, file: int) -> None:
        upto = 0
        for end, chunk_id in self._file_chunks[file]:
            if chunk_id not in self.acked:
                break
            upto = end
        self._hashers[file].advance(upto)

    # --- finish --------------------------------------------------------------------------
    def finish(self, sha256: list[str]) -> list[int]:
        """Verify every file; the chunk ids to re-send (empty: verified and installed)."""
        if self.done:
            return []
        if len(sha256) != len(self.plan.files):
            raise ReceiveError("bad_request", "manifest does not match the plan's files")
        with self._cond:
            while self._pending or self._committing:
                self._cond.wait()
            missing = len(self.plan.chunks) - len(self.acked)
        if missing:
            raise ReceiveError("bad_request", f"finish with {missing} chunks not acknowledged")
        bad: list[int] = []
        for file, hasher in enumerate(self._hashers):
            self._advance_hash(file)
            if hasher.sha.hexdigest() != sha256[file]:
                bad.extend(self._revoke_file(file))
        if bad:
            return bad
        self._install()
        return []

    def _revoke_file(self, file: int) -> list[int]:
        """Re-check the file's chunks against their journaled hashes; revoke those that changed."""
        ids = sorted({cid for _, cid in self._file_chunks[file]})
        bad = [c for c in ids if self.staging.chunk_hash(self.plan.chunks[c]) != self.acked.get(c)]
        if not bad:
            bad = ids  # the chunks match what was sent: the source changed, or a hash collided
        self._journal.append([["r", c] for c in bad], sync=True)
        with self._cond:
            for c in bad:
                self.acked.pop(c, None)
        for c in bad:
            for ext in self.plan.chunks[c].extents:
                self._hashers[ext.file].reset()
        log.warning("file_hash_mismatch", transfer=self.transfer_id, file=file, resend=bad)
        return bad

    def _install(self) -> None:
        self.staging.create_empty()
        self.staging.close()
        _private_parents(self.dst)
        if self.dst.is_dir() and not any(self.dst.iterdir()):
            self.dst.rmdir()
        os.rename(self.staging.directory, self.dst)
        fsync_dir(self.dst.parent)
        self._journal.append([["done"]], sync=True)
        self.done = True
        with self._channel_lock:
            self._release_locked()
        log.info("transfer_installed", transfer=self.transfer_id, bytes=self.plan.total_bytes)

    def abort(self) -> None:
        self.close()
        shutil.rmtree(self.staging.directory, ignore_errors=True)
        for path in (self._journal_path, self._arrivals_path):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        with self._channel_lock:
            self._release_locked()
        self._journal.close()
        self.staging.close()


def _private_parents(dst: Path) -> None:
    """Create ``dst``'s missing ancestors 0700: the storage root above them can be searched
    by job uids (docs/datasets.md), so nothing new may be listable or readable there."""
    missing = [p for p in (dst.parent, *dst.parent.parents) if not p.exists()]
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
