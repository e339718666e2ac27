"""The sending side of a push: sessions, streams, the acknowledgement channel, resume.

A push runs as sessions. A session opens the transfer on the receiver (OPEN) and learns
which chunks it already acknowledged (its journal is authoritative); that connection then
becomes the session's **acknowledgement channel**: the receiver writes ACK/NACK/ERROR frames
on it as its group commits land, and a reader thread here applies them. Every other chunk is
sent over N parallel TLS **data streams** (write-only after JOIN) pulling from one queue,
while at most ``window`` bytes are unacknowledged. No stream ever waits for a round trip or
for the receiver's fsync, so slow commits and scheduling delays do not stall the pipes. The
stream count starts from the link's bandwidth-delay product and grows by one every two
seconds while throughput grows.

A broken connection (the receiver died, the network dropped) ends the session: chunks in
flight go back to the queue, and a new session starts when the receiver answers again,
within ``reconnect_timeout_s``. Errors the receiver names (a full disk, a conflicting
destination) and source errors fail the push with that reason. When every chunk is
acknowledged the sender checks the source did not change, sends the whole-file SHA-256s
(computed meanwhile in a thread) and the receiver either installs the dataset or names the
chunks to send again.
"""

from __future__ import annotations

import math
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import blake3
import structlog

from suanwang.transfer import wire
from suanwang.transfer.flight import Flight, PushFailed
from suanwang.transfer.hashcache import HashCache
from suanwang.transfer.journal import Journal
from suanwang.transfer.plan import decode_ids, make_plan, plan_digest
from suanwang.transfer.ratelimit import TokenBucket, throttle
from suanwang.transfer.source import SourceError, SourceReader, list_source
from suanwang.transfer.status import PushOptions, TransferState, TransferStatus
from suanwang.transfer.tls import connect, split_address

log = structlog.get_logger("suanwang.transfer.sender")
WINDOW_BYTES = 256 << 20
SLICE = 1 << 20
IO_TIMEOUT_S = 120.0

__all__ = ["PushFailed", "PushJob", "PushRequest", "SessionBroken"]


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
        # until the receiver says (it is authoritative), what our journal recorded
        self.flight = Flight(self.plan, WINDOW_BYTES, self.options.max_chunk_retries, acked_before)
        self.state = TransferState.RUNNING
        self.error: str | None = None
        self.duplicate_acked_arrivals = 0
        self._journal_acked = acked_before
        self._cancel = threading.Event()
        self._streams = 0
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
        self.flight.stop()

    def restore(self, state: TransferState, error: str | None) -> None:
        """Report a journaled push that is not running in this process."""
        self.state, self.error = state, error

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    def status(self) -> TransferStatus:
        with self.flight.cond:
            done_ids = len(self.flight.acked)
            done = self.plan.bytes_of(self.flight.acked)
            resent = self.flight.resent
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
            chunks_done=done_ids,
            chunks_resent=resent,
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
            sock.close()
            raise SessionBroken(str(exc)) from exc
        if reply.kind is wire.Kind.ERROR:
            sock.close()
            raise PushFailed(
                f"receiver refused: {reply.meta.get('code')}: {reply.meta.get('message')}"
            )
        return reply

    def _join(self) -> ssl.SSLSocket:
        """Another connection to the open transfer (a refusal means the receiver restarted)."""
        sock = self._connect()
        meta: dict[str, object] = {"transfer_id": self.request.transfer_id, "digest": self.digest}
        try:
            self._request(sock, wire.Kind.JOIN, meta)
        except PushFailed as exc:
            raise SessionBroken(str(exc)) from exc
        return sock

    def _open(self) -> tuple[ssl.SSLSocket, float, bool]:
        t0 = time.monotonic()
        sock = self._connect()
        rtt_s = (time.monotonic() - t0) / 2
        meta: dict[str, object] = {
            "transfer_id": self.request.transfer_id,
            "dst": self.request.dst,
            "digest": self.digest,
            "chunk_size": self.plan.chunk_size,
            "files": [[f.path, f.size] for f in self.plan.files],
        }
        reply = self._request(sock, wire.Kind.OPEN, meta)
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
        self.flight.start(acked)
        self.duplicate_acked_arrivals = int(reply.meta.get("duplicate_acked_arrivals", 0))
        return sock, rtt_s, bool(reply.meta.get("done"))

    def _session(self) -> None:
        channel, rtt_s, done = self._open()
        if done:
            channel.close()
            return
        t0 = time.monotonic()
        while True:
            spare = _Spare(self._join)  # dialled now so FINISH costs one round trip, not four
            self._run_streams(channel, rtt_s)
            log.info(
                "push_all_acknowledged",
                transfer=self.request.transfer_id,
                seconds=round(time.monotonic() - t0, 2),
            )
            resend = self._finish_on(spare.take())
            log.info(
                "push_finished",
                transfer=self.request.transfer_id,
                resend=len(resend),
                seconds=round(time.monotonic() - t0, 2),
            )
            if not resend:
                return
            self.flight.resend(resend)
            channel = self._reopen_channel()

    def _reopen_channel(self) -> ssl.SSLSocket:
        channel, _, _ = self._open()
        return channel

    def _finish_on(self, sock: ssl.SSLSocket | None) -> list[int]:
        """FINISH on the spare connection; on a new one if it was lost meanwhile."""
        if sock is not None:
            try:
                return self._finish(sock)
            except SessionBroken:
                log.info("spare_connection_lost", transfer=self.request.transfer_id)
            finally:
                sock.close()
        sock = self._join()
        try:
            return self._finish(sock)
        finally:
            sock.close()

    def _finish(self, sock: ssl.SSLSocket) -> list[int]:
        while self._sha256 is None and self._sha_error is None:
            time.sleep(0.01)
        if self._sha_error is not None:
            raise PushFailed(str(self._sha_error))
        self.reader.check_unchanged()
        reply = self._request(sock, wire.Kind.FINISH, {"sha256": self._sha256})
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

    def _run_streams(self, channel: ssl.SSLSocket, rtt_s: float) -> None:
        reader = threading.Thread(target=self._read_acks, args=(channel,), daemon=True)
        reader.start()
        threads: list[threading.Thread] = []

        def add() -> None:
            t = threading.Thread(target=self._stream, daemon=True)
            threads.append(t)
            t.start()

        for _ in range(self._initial_streams(rtt_s)):
            add()
        self._adapt(threads, add)
        for t in threads:
            t.join()
        if not self.flight.complete and self.flight.fatal is None:
            reader.join(1.0)  # an ERROR the receiver sent before closing a stream
        _shutdown(channel)
        reader.join()
        channel.close()
        self.flight.requeue_inflight()
        if self.flight.fatal is not None:
            raise self.flight.fatal
        if self._cancel.is_set() or not self.flight.complete:
            raise SessionBroken("a connection to the receiver broke")

    def _adapt(self, threads: list[threading.Thread], add: Callable[[], None]) -> None:
        """Update the rate; add a stream every 2 s while throughput grows by > 5 %."""
        last_sent, last_t = self.flight.sent_bytes, time.monotonic()
        best_rate, growing, tick = 0.0, True, 0
        prev_done = self.plan.bytes_of(self.flight.acked)
        while any(t.is_alive() for t in threads):
            self.flight.wait_complete(0.5)
            tick += 1
            if tick % 2 == 0:
                with self.flight.cond:
                    done = self.plan.bytes_of(self.flight.acked)
                self._rate = 0.7 * self._rate + 0.3 * (done - prev_done)
                prev_done = done
            if tick % 4 or not growing:
                continue
            now = time.monotonic()
            rate = (self.flight.sent_bytes - last_sent) / (now - last_t)
            last_sent, last_t = self.flight.sent_bytes, now
            if (
                rate > best_rate * 1.05
                and len(threads) < self.options.max_streams
                and self.flight.queue
            ):
                best_rate = rate
                add()
            else:
                growing = False

    def _count_stream(self, delta: int) -> None:
        with self.flight.cond:
            self._streams += delta

    def _stream(self) -> None:
        self._count_stream(1)
        sock: ssl.SSLSocket | None = None
        try:
            sock = self._join()
            while (cid := self.flight.take()) is not None:
                self._send_chunk(sock, cid)
        except SessionBroken as exc:
            log.warning("stream_broken", transfer=self.request.transfer_id, error=str(exc))
            self.flight.stop()
        except OSError as exc:
            log.warning("stream_broken", transfer=self.request.transfer_id, error=str(exc))
            self.flight.stop()
        except (PushFailed, SourceError) as exc:
            self.flight.stop(exc if isinstance(exc, PushFailed) else PushFailed(str(exc)))
        finally:
            self._count_stream(-1)
            if sock is not None:
                sock.close()

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
                self.flight.sent(len(part))
        else:
            wire.send(sock, wire.Kind.CHUNK, meta, data)
            self.flight.sent(len(data))

    def _read_acks(self, channel: ssl.SSLSocket) -> None:
        """Apply the receiver's ACK/NACK/ERROR frames until the channel closes."""
        try:
            while True:
                frame = wire.recv(channel)
                if frame.kind is wire.Kind.ACK:
                    new = self.flight.on_ack(decode_ids(frame.meta["ids"]))
                    if new:
                        self.journal.append([["a", new]], sync=False)
                elif frame.kind is wire.Kind.NACK:
                    self.flight.on_nack(int(frame.meta["id"]), str(frame.meta.get("reason")))
                elif frame.kind is wire.Kind.ERROR:
                    code, message = frame.meta.get("code"), frame.meta.get("message")
                    self.flight.stop(PushFailed(f"receiver failed: {code}: {message}"))
                    return
                else:
                    raise wire.ProtocolError(f"unexpected {frame.kind.name} on the ack channel")
        except (OSError, wire.ProtocolError, ValueError, KeyError) as exc:
            if not self.flight.complete:
                log.warning("ack_channel_broken", transfer=self.request.transfer_id, error=str(exc))
                self.flight.stop()


class _Spare:
    """A connection dialled in the background (None if that failed)."""

    def __init__(self, dial: Callable[[], ssl.SSLSocket]) -> None:
        self._sock: ssl.SSLSocket | None = None
        self._dial = dial
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._sock = self._dial()
        except (SessionBroken, PushFailed) as exc:
            log.info("spare_connection_failed", error=str(exc))

    def take(self) -> ssl.SSLSocket | None:
        self._thread.join()
        return self._sock

    def discard(self) -> None:
        sock = self.take()
        if sock is not None:
            sock.close()


def _shutdown(sock: ssl.SSLSocket) -> None:
    """Wake a thread blocked reading ``sock`` (the ack reader) without touching TLS state."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        return
