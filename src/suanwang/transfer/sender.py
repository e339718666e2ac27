"""The sending side of a push: streams, windows, acknowledgements, resume, adaptivity.

A push runs as sessions. A session opens the transfer on the receiver (OPEN), learns which
chunks it already acknowledged (its journal is authoritative), and sends every other chunk
over N parallel TLS streams pulling from one queue. Each stream keeps at most ``window``
unacknowledged chunks in flight and asks for acknowledgements (SYNC) every half window, so
it only blocks when the receiver falls a whole window behind. The stream count starts from
the link's bandwidth-delay product and grows by one every two seconds while throughput grows.

A broken connection (the receiver died, the network dropped) ends the session: chunks in
flight go back to the queue, and a new session starts when the receiver answers again,
within ``reconnect_timeout_s``. Errors the receiver names (a full disk, a conflicting
destination) and source errors fail the push with that reason. When every chunk is
acknowledged the sender sends the whole-file SHA-256s (computed meanwhile in a thread);
the receiver either installs the dataset or names chunks to re-send.
"""

from __future__ import annotations

import math
import select
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import blake3
import structlog

from suanwang.transfer import wire
from suanwang.transfer.hashcache import HashCache
from suanwang.transfer.journal import Journal
from suanwang.transfer.plan import decode_ids, make_plan, plan_digest, remaining
from suanwang.transfer.ratelimit import TokenBucket, throttle
from suanwang.transfer.source import SourceError, SourceReader, list_source
from suanwang.transfer.status import PushOptions, TransferState, TransferStatus
from suanwang.transfer.tls import connect, split_address

log = structlog.get_logger("suanwang.transfer.sender")
WINDOW_BYTES = 64 << 20
SLICE = 1 << 20
IO_TIMEOUT_S = 120.0


class PushFailed(Exception):
    """The push cannot succeed (the reason is the message)."""


class SessionBroken(Exception):
    """The connection to the receiver broke; a new session may resume."""


@dataclass(frozen=True, slots=True)
class PushRequest:
    transfer_id: str
    src: str
    target: str
    dst: str
    options: PushOptions

    def to_json(self) -> dict[str, object]:
        return {
            "transfer_id": self.transfer_id,
            "src": self.src,
            "target": self.target,
            "dst": self.dst,
            "options": self.options.to_json(),
        }


class PushJob:
    """One push, run in its own thread by the sending agent."""

    def __init__(
        self,
        request: PushRequest,
        root: Path,
        journal: Journal,
        ctx: ssl.SSLContext,
        link_bucket: TokenBucket,
        acked_before: set[int],
        hashes: HashCache,
    ) -> None:
        self.request = request
        self.options = request.options
        self.ctx = ctx
        files, paths = list_source(root, request.src)
        self.plan = make_plan(files, self.options.chunk_size)
        self.digest = plan_digest(self.plan)
        self.reader = SourceReader(files, paths, self.plan.chunk_size)
        self.journal = journal
        self.hashes = hashes
        self.buckets = [link_bucket]
        if self.options.max_bytes_per_s:
            self.buckets.append(TokenBucket(self.options.max_bytes_per_s))
        self.window = max(2, WINDOW_BYTES // self.plan.chunk_size)
        self.state = TransferState.RUNNING
        self.error: str | None = None
        self.chunks_resent = 0
        self.duplicate_acked_arrivals = 0
        self._journal_acked = acked_before
        self._lock = threading.Lock()
        self._queue: deque[int] = deque()
        self._acked: set[int] = set(acked_before)  # until the receiver says (it is authoritative)
        self._inflight = 0
        self._retries: dict[int, int] = {}
        self._fatal: Exception | None = None
        self._broken = threading.Event()
        self._cancel = threading.Event()
        self._streams = 0
        self._sent_bytes = 0
        self._rate = 0.0
        self._sha256: list[str] | None = None
        self._sha_error: Exception | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"push-{request.transfer_id}", daemon=True
        )

    # --- public --------------------------------------------------------------------------
    def start(self) -> None:
        threading.Thread(target=self._hash_source, daemon=True).start()
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()
        self._broken.set()

    def restore(self, state: TransferState, error: str | None) -> None:
        """Report a journaled push that is not running in this process."""
        with self._lock:
            self.state, self.error = state, error
            self._acked = set(self._journal_acked)

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    def status(self) -> TransferStatus:
        with self._lock:
            done = self.plan.bytes_of(self._acked)
            rate = self._rate
            left = self.plan.total_bytes - done
            running = self.state is TransferState.RUNNING
            return TransferStatus(
                transfer_id=self.request.transfer_id,
                state=self.state,
                bytes_total=self.plan.total_bytes,
                bytes_done=done,
                rate_bytes_per_s=rate,
                eta_s=(left / rate if rate > 0 else None) if running else None,
                error=self.error,
                chunks_total=len(self.plan.chunks),
                chunks_done=len(self._acked),
                chunks_resent=self.chunks_resent,
                streams=self._streams,
                duplicate_acked_arrivals=self.duplicate_acked_arrivals,
            )

    # --- the run -------------------------------------------------------------------------
    def _hash_source(self) -> None:
        try:
            self._sha256 = self.reader.sha256_all(self.hashes)
        except (SourceError, OSError) as exc:
            self._sha_error = exc

    def _run(self) -> None:
        deadline = time.monotonic() + self.options.reconnect_timeout_s
        try:
            while True:
                try:
                    self._session()
                    self._end(TransferState.VERIFIED, None)
                    return
                except SessionBroken as exc:
                    if self._cancel.is_set():
                        self._abort_remote()
                        self._end(TransferState.CANCELLED, "cancelled")
                        return
                    if time.monotonic() > deadline:
                        raise PushFailed(
                            f"receiver {self.request.target} unreachable: {exc}"
                        ) from exc
                    log.warning(
                        "push_session_broken", transfer=self.request.transfer_id, error=str(exc)
                    )
                    time.sleep(0.5)
                else:
                    deadline = time.monotonic() + self.options.reconnect_timeout_s
        except (PushFailed, SourceError) as exc:
            self._end(TransferState.FAILED, str(exc))
        finally:
            self.reader.close()

    def _end(self, state: TransferState, error: str | None) -> None:
        with self._lock:
            self.state, self.error = state, error
        self.journal.append([["end", state.value, error]], sync=True)
        log.info("push_ended", transfer=self.request.transfer_id, state=state.value, error=error)

    def _connect(self) -> ssl.SSLSocket:
        host, port = split_address(self.request.target)
        try:
            sock = connect(self.ctx, host, port, timeout_s=10.0)
        except (OSError, ssl.SSLError) as exc:
            raise SessionBroken(f"connect: {exc}") from exc
        sock.settimeout(IO_TIMEOUT_S)
        return sock

    def _request(self, sock: ssl.SSLSocket, kind: wire.Kind, meta: dict[str, object]) -> wire.Frame:
        try:
            wire.send(sock, kind, meta)
            reply = wire.recv(sock)
        except (OSError, wire.ProtocolError) as exc:
            raise SessionBroken(str(exc)) from exc
        if reply.kind is wire.Kind.ERROR:
            raise PushFailed(
                f"receiver refused: {reply.meta.get('code')}: {reply.meta.get('message')}"
            )
        return reply

    def _open(self) -> tuple[ssl.SSLSocket, float, bool]:
        t0 = time.monotonic()
        sock = self._connect()
        rtt_s = (time.monotonic() - t0) / 2
        reply = self._request(
            sock,
            wire.Kind.OPEN,
            {
                "transfer_id": self.request.transfer_id,
                "dst": self.request.dst,
                "digest": self.digest,
                "chunk_size": self.plan.chunk_size,
                "files": [[f.path, f.size] for f in self.plan.files],
            },
        )
        acked = decode_ids(reply.meta.get("acked", []))
        if not self._journal_acked <= acked:
            log.warning(
                "receiver_forgot_acked_chunks",
                transfer=self.request.transfer_id,
                count=len(self._journal_acked - acked),
            )
        log.info(
            "push_session_opened",
            transfer=self.request.transfer_id,
            acked=len(acked),
            rtt_ms=round(rtt_s * 1000, 2),
            open_ms=round((time.monotonic() - t0) * 1000),
        )
        with self._lock:
            self._acked = acked
            self._queue = deque(remaining(self.plan, acked))
            self.duplicate_acked_arrivals = int(reply.meta.get("duplicate_acked_arrivals", 0))
        return sock, rtt_s, bool(reply.meta.get("done"))

    def _session(self) -> None:
        self._broken.clear()
        sock, rtt_s, done = self._open()
        if done:
            sock.close()
            return
        while True:
            self._run_streams(sock, rtt_s)
            sock = self._connect()
            self._request(
                sock,
                wire.Kind.JOIN,
                {"transfer_id": self.request.transfer_id, "digest": self.digest},
            )
            resend = self._finish(sock)
            if not resend:
                sock.close()
                return
            with self._lock:
                self.chunks_resent += len(resend)
                self._acked -= set(resend)
                self._queue.extend(resend)

    def _finish(self, sock: ssl.SSLSocket) -> list[int]:
        while self._sha256 is None and self._sha_error is None:
            time.sleep(0.01)
        if self._sha_error is not None:
            raise PushFailed(str(self._sha_error))
        self.reader.check_unchanged()
        reply = self._request(sock, wire.Kind.FINISH, {"sha256": self._sha256})
        with self._lock:
            self.duplicate_acked_arrivals = int(reply.meta.get("duplicate_acked_arrivals", 0))
        if reply.kind is wire.Kind.RESEND:
            return [int(i) for i in reply.meta["ids"]]
        return []

    def _abort_remote(self) -> None:
        try:
            sock = self._connect()
            wire.send(sock, wire.Kind.ABORT, {"transfer_id": self.request.transfer_id})
            wire.recv(sock)
            sock.close()
        except (SessionBroken, OSError, wire.ProtocolError) as exc:
            log.warning("abort_not_delivered", transfer=self.request.transfer_id, error=str(exc))

    # --- streams -------------------------------------------------------------------------
    def _initial_streams(self, rtt_s: float) -> int:
        if self.options.initial_streams:
            return min(self.options.initial_streams, self.options.max_streams)
        bdp = self.options.link_rate_hint_bytes_per_s * rtt_s
        return max(2, min(self.options.max_streams, 2 + math.ceil(bdp / (4 << 20))))

    def _run_streams(self, first: ssl.SSLSocket, rtt_s: float) -> None:
        threads: list[threading.Thread] = []
        self._fatal = None

        def add(sock: ssl.SSLSocket | None) -> None:
            t = threading.Thread(target=self._stream, args=(sock,), daemon=True)
            threads.append(t)
            t.start()

        add(first)
        for _ in range(self._initial_streams(rtt_s) - 1):
            add(None)
        self._adapt(threads, add)
        for t in threads:
            t.join()
        if self._fatal is not None:
            raise self._fatal
        if self._broken.is_set():
            raise SessionBroken("a stream broke")

    def _adapt(self, threads: list[threading.Thread], add: object) -> None:
        """Update the rate; add a stream every 2 s while throughput grows by > 5 %."""
        last_sent, last_t = self._sent_bytes, time.monotonic()
        best_rate, growing, tick = 0.0, True, 0
        prev_done = self.plan.bytes_of(self._acked)
        while any(t.is_alive() for t in threads):
            time.sleep(0.5)
            tick += 1
            with self._lock:
                done = self.plan.bytes_of(self._acked) if tick % 2 == 0 else prev_done
            if tick % 2 == 0:
                self._rate = 0.7 * self._rate + 0.3 * (done - prev_done)
                prev_done = done
            if tick % 4 or not growing:
                continue
            now = time.monotonic()
            rate = (self._sent_bytes - last_sent) / (now - last_t)
            last_sent, last_t = self._sent_bytes, now
            if rate > best_rate * 1.05 and len(threads) < self.options.max_streams and self._queue:
                best_rate = rate
                if callable(add):
                    add(None)
            else:
                growing = False

    def _next(self) -> int | None:
        with self._lock:
            if self._queue:
                self._inflight += 1
                return self._queue.popleft()
            return None

    def _idle(self) -> bool:
        with self._lock:
            return not self._queue and self._inflight == 0

    def _stream(self, sock: ssl.SSLSocket | None) -> None:
        inflight: set[int] = set()
        with self._lock:
            self._streams += 1
        try:
            if sock is None:
                sock = self._connect()
                self._request(
                    sock,
                    wire.Kind.JOIN,
                    {"transfer_id": self.request.transfer_id, "digest": self.digest},
                )
            self._pump(sock, inflight)
        except SessionBroken:
            self._broken.set()
        except (OSError, wire.ProtocolError) as exc:
            log.warning("stream_broken", transfer=self.request.transfer_id, error=str(exc))
            self._broken.set()
        except (PushFailed, SourceError) as exc:
            self._fatal = exc if isinstance(exc, PushFailed) else PushFailed(str(exc))
            self._broken.set()
        finally:
            with self._lock:
                self._streams -= 1
                self._inflight -= len(inflight)
                self._queue.extendleft(sorted(inflight - self._acked, reverse=True))
            if sock is not None:
                sock.close()

    def _pump(self, sock: ssl.SSLSocket, inflight: set[int]) -> None:
        syncs = 0
        since_sync = 0
        while not self._broken.is_set():
            cid = self._next()
            if cid is None:
                if inflight:
                    wire.send(sock, wire.Kind.SYNC)
                    syncs += 1
                    while syncs:
                        syncs -= self._read_one(sock, inflight)
                    continue
                if self._idle():
                    return
                time.sleep(0.02)
                continue
            inflight.add(cid)
            self._send_chunk(sock, cid)
            since_sync += 1
            if since_sync >= self.window // 2:
                wire.send(sock, wire.Kind.SYNC)
                syncs, since_sync = syncs + 1, 0
            while sock.pending() or select.select([sock], [], [], 0)[0]:
                syncs -= self._read_one(sock, inflight)
            while len(inflight) >= self.window:
                syncs -= self._read_one(sock, inflight)

    def _send_chunk(self, sock: ssl.SSLSocket, cid: int) -> None:
        chunk = self.plan.chunks[cid]
        ext = chunk.extents[0]
        if len(chunk.extents) == 1 and self.plan.files[ext.file].size >= self.plan.chunk_size:
            with self.reader.view(ext.file, ext.offset, ext.length) as view:
                self._send_data(sock, cid, view)
        else:
            self._send_data(sock, cid, memoryview(self.reader.read(chunk)))

    def _send_data(self, sock: ssl.SSLSocket, cid: int, data: memoryview) -> None:
        digest = blake3.blake3(data, max_threads=1).hexdigest()
        meta = {"id": cid, "b3": digest}
        if self.buckets[0].rate_bytes_per_s or len(self.buckets) > 1:
            wire.send_header(sock, wire.Kind.CHUNK, meta, len(data))
            for pos in range(0, len(data), SLICE):
                part = data[pos : pos + SLICE]
                throttle(self.buckets, len(part))
                sock.sendall(part)
                self._sent_bytes += len(part)
        else:
            wire.send(sock, wire.Kind.CHUNK, meta, data)
            self._sent_bytes += len(data)

    def _read_one(self, sock: ssl.SSLSocket, inflight: set[int]) -> int:
        """Handle one reply frame; 1 when it was SYNCED."""
        frame = wire.recv(sock)
        if frame.kind is wire.Kind.ACK:
            ids = decode_ids(frame.meta["ids"])
            with self._lock:
                self._acked |= ids
                gone = ids & inflight
                self._inflight -= len(gone)
            inflight -= ids
            self.journal.append([["a", sorted(ids)]], sync=False)
            return 0
        if frame.kind is wire.Kind.NACK:
            cid = int(frame.meta["id"])
            inflight.discard(cid)
            with self._lock:
                self._inflight -= 1
                self._retries[cid] = self._retries.get(cid, 0) + 1
                if self._retries[cid] > self.options.max_chunk_retries:
                    reason = frame.meta.get("reason")
                    raise PushFailed(f"chunk {cid} failed {self._retries[cid]} times: {reason}")
                self.chunks_resent += 1
                self._queue.appendleft(cid)
            return 0
        if frame.kind is wire.Kind.SYNCED:
            return 1
        if frame.kind is wire.Kind.ERROR:
            raise PushFailed(
                f"receiver failed: {frame.meta.get('code')}: {frame.meta.get('message')}"
            )
        raise wire.ProtocolError(f"unexpected {frame.kind.name} on a data stream")
