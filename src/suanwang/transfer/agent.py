"""The transfer agent: one storage root, a mutual-TLS listener, control and data handlers.

Each accepted connection completes a TLS 1.3 handshake against the CA, then is served by
its peer's role: a ``control`` certificate may push, query, cancel and read manifests; an
``agent`` certificate may send data (OPEN/JOIN/CHUNK/FINISH/ABORT). One thread per
connection; the bytes move in the data handlers (receiver side) and in :class:`PushJob`
threads (sender side).
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from suanwang.transfer import wire
from suanwang.transfer.faults import Faults
from suanwang.transfer.hashcache import HashCache
from suanwang.transfer.journal import Journal, replay
from suanwang.transfer.paths import PathRefused, check_relative, confine
from suanwang.transfer.plan import FileEntry, encode_ids, make_plan, plan_digest
from suanwang.transfer.ratelimit import TokenBucket
from suanwang.transfer.receiver import ReceiveError, ReceiverTransfer
from suanwang.transfer.sender import PushFailed, PushJob, PushRequest
from suanwang.transfer.source import SourceError, manifest
from suanwang.transfer.status import TRANSFER_ID, PushOptions, TransferState
from suanwang.transfer.tls import Identity, PeerRefused, client_context, peer_role, server_context

log = structlog.get_logger("suanwang.transfer.agent")
STAGING = ".suanwang-staging"
HANDSHAKE_TIMEOUT_S = 15.0
IDLE_TIMEOUT_S = 600.0


class BadRequest(Exception):
    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


@dataclass
class AgentConfig:
    region: str
    root: Path
    identity: Identity
    journal_dir: Path
    faults: Faults = field(default_factory=Faults)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.root = config.root.resolve(strict=True)
        self._server_ctx = server_context(config.identity)
        self._server_ctx.num_tickets = 0
        self._client_ctx = client_context(config.identity)
        self._lock = threading.Lock()
        self._jobs: dict[str, PushJob] = {}
        self._receivers: dict[str, ReceiverTransfer] = {}
        # pushes to one target naming the same link cap share its bucket
        self._links: dict[tuple[str, float], TokenBucket] = {}
        self._stop = threading.Event()
        for private in (self.root / STAGING, config.journal_dir):  # the root may be 0711
            private.mkdir(mode=0o700, parents=True, exist_ok=True)
            private.chmod(0o700)
        self._hashes = HashCache(config.journal_dir / "sha256-cache.jsonl")
        self._listener: socket.socket | None = None

    # --- server --------------------------------------------------------------------------
    def bind(self, host: str, port: int) -> int:
        sock = socket.create_server((host, port), reuse_port=False, backlog=128)
        self._listener = sock
        return int(sock.getsockname()[1])

    def serve_forever(self) -> None:
        assert self._listener is not None, "bind() first"
        log.info(
            "agent_serving",
            region=self.config.region,
            root=str(self.root),
            address=self._listener.getsockname(),
        )
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                if self._stop.is_set():
                    return
                raise
            threading.Thread(target=self._serve_conn, args=(conn,), daemon=True).start()

    def reload_identity(self) -> None:
        """Load the (renewed) certificate and key again: new connections, and pushes
        reconnecting, use them; connections already open keep their TLS session."""
        server = server_context(self.config.identity)
        server.num_tickets = 0
        client = client_context(self.config.identity)
        with self._lock:
            self._server_ctx, self._client_ctx = server, client
            for job in self._jobs.values():
                job.ctx = client
        log.info("identity_reloaded", cert=str(self.config.identity.cert_file))

    @property
    def stopping(self) -> threading.Event:
        return self._stop

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()

    def _serve_conn(self, conn: socket.socket) -> None:
        conn.settimeout(HANDSHAKE_TIMEOUT_S)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock = self._server_ctx.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.info("handshake_refused", error=str(exc))
            conn.close()
            return
        try:
            role = peer_role(sock)
            sock.settimeout(IDLE_TIMEOUT_S)
            if role == "control":
                self._serve_control(sock)
            else:
                self._serve_data(sock)
        except PeerRefused as exc:
            log.info("peer_refused", error=str(exc))
        except (OSError, wire.ProtocolError) as exc:
            log.debug("connection_closed", error=str(exc))
        finally:
            sock.close()

    # --- control plane -------------------------------------------------------------------
    def _serve_control(self, sock: ssl.SSLSocket) -> None:
        while True:
            try:
                frame = wire.recv(sock)
            except wire.PeerClosed:
                return
            try:
                wire.send(sock, wire.Kind.OK, self._control(frame))
            except BadRequest as exc:
                wire.error(sock, exc.code, str(exc), exc.field)

    def _control(self, frame: wire.Frame) -> dict[str, Any]:
        meta = frame.meta
        if frame.kind is wire.Kind.PUSH:
            return self.push(self._parse_push(meta)).status().to_json()
        if frame.kind is wire.Kind.MANIFEST:
            path = _text(meta, "path")
            try:
                entries = manifest(self.root, path, self._hashes)
            except (PathRefused, SourceError) as exc:
                raise BadRequest("bad_path", str(exc), "path") from exc
            return {"files": [[e.path, e.size, e.sha256] for e in entries]}
        if frame.kind not in (wire.Kind.STATUS, wire.Kind.CANCEL):
            raise BadRequest("bad_request", f"{frame.kind.name} is not a control request")
        job = self._job(_text(meta, "transfer_id"))
        if frame.kind is wire.Kind.CANCEL:
            job.cancel()
            job.join(30.0)
        return job.status().to_json()

    def _parse_push(self, meta: dict[str, Any]) -> PushRequest:
        tid = _text(meta, "transfer_id")
        if not TRANSFER_ID.match(tid):
            raise BadRequest(
                "bad_request", "transfer_id must match [A-Za-z0-9._-]{1,128}", "transfer_id"
            )
        try:
            options = PushOptions.from_json(meta.get("options") or {})
        except ValueError as exc:
            raise BadRequest("bad_request", str(exc), "options") from exc
        return PushRequest(
            tid, _text(meta, "src"), _text(meta, "target"), _text(meta, "dst"), options
        )

    def _send_journal(self, tid: str) -> Path:
        return self.config.journal_dir / "send" / f"{tid}.jsonl"

    def push(self, request: PushRequest) -> PushJob:
        """Start the push, or resume it (same transfer id and arguments), or report it."""
        with self._lock:
            job = self._jobs.get(request.transfer_id)
            if job is not None and not same_push(job.request.to_json(), request.to_json()):
                raise BadRequest(
                    "conflict",
                    f"transfer {request.transfer_id} exists with other arguments",
                    "transfer_id",
                )
            if job is not None and job.state in (TransferState.RUNNING, TransferState.VERIFIED):
                return job
            path = self._send_journal(request.transfer_id)
            records = replay(path)
            if records and not same_push(records[0][1], request.to_json()):
                raise BadRequest(
                    "conflict",
                    f"transfer {request.transfer_id} exists with other arguments",
                    "transfer_id",
                )
            ended = [r for r in records if r[0] == "end"]
            acked = {int(i) for r in records if r[0] == "a" for i in r[1]}
            journal = Journal(path)
            if not records:
                journal.append([["start", request.to_json()]], sync=True)
            cap = request.options.link_max_bytes_per_s
            link = self._links.setdefault((request.target, cap), TokenBucket(cap))
            try:
                job = PushJob(
                    request, self.root, journal, self._client_ctx, link, acked, self._hashes
                )
            except (PathRefused, SourceError, ValueError) as exc:
                journal.append([["end", "failed", str(exc)]], sync=True)
                raise BadRequest("bad_path", str(exc), "src_path") from exc
            self._jobs[request.transfer_id] = job
            if ended and ended[-1][1] == TransferState.VERIFIED.value:
                job.state = TransferState.VERIFIED
                return job
            job.start()
            return job

    def _job(self, tid: str) -> PushJob:
        with self._lock:
            job = self._jobs.get(tid)
        if job is not None:
            return job
        records = replay(self._send_journal(tid))
        if not records:
            raise BadRequest("not_found", f"no transfer {tid} on this agent", "transfer_id")
        request = records[0][1]
        options = PushOptions.from_json(request["options"])
        req = PushRequest(tid, request["src"], request["target"], request["dst"], options)
        link = TokenBucket(0.0)
        acked = {int(i) for r in records if r[0] == "a" for i in r[1]}
        journal = Journal(self._send_journal(tid))
        job = PushJob(req, self.root, journal, self._client_ctx, link, acked, self._hashes)
        ended = [r for r in records if r[0] == "end"]
        job.restore(
            TransferState(ended[-1][1]) if ended else TransferState.INTERRUPTED,
            ended[-1][2] if ended else "the sending agent restarted; push again to resume",
        )
        return job

    # --- data plane ----------------------------------------------------------------------
    def _serve_data(self, sock: ssl.SSLSocket) -> None:
        """OPEN (then this connection is the ack channel), JOIN (then CHUNKs, or FINISH),
        ABORT. Every refusal is an ERROR frame; chunk errors also go to the ack channel."""
        try:
            frame = wire.recv(sock)
            if frame.kind is wire.Kind.OPEN:
                self._hold_channel(sock, self._open_transfer(frame.meta))
            elif frame.kind is wire.Kind.JOIN:
                transfer = self._receiver(
                    _text(frame.meta, "transfer_id"), _text(frame.meta, "digest")
                )
                wire.send(sock, wire.Kind.OK, {})
                self._serve_stream(sock, transfer)
            elif frame.kind is wire.Kind.ABORT:
                self._abort(_text(frame.meta, "transfer_id"))
                wire.send(sock, wire.Kind.OK, {})
            else:
                raise BadRequest("bad_request", f"{frame.kind.name} not allowed here")
        except wire.PeerClosed:
            return
        except ReceiveError as exc:
            log.warning("receive_failed", code=exc.code, error=str(exc))
            wire.error(sock, exc.code, str(exc))
        except (BadRequest, PathRefused, KeyError, ValueError, TypeError) as exc:
            wire.error(sock, "bad_request", str(exc))

    def _hold_channel(self, sock: ssl.SSLSocket, transfer: ReceiverTransfer) -> None:
        """Answer OPEN, then lend the connection to the transfer's committer (which only
        writes on it) until the sender closes it or another session replaces it."""
        wire.send(
            sock,
            wire.Kind.OK,
            {
                "acked": encode_ids(transfer.acked),
                "done": transfer.done,
                "duplicate_acked_arrivals": transfer.duplicate_acked_arrivals,
            },
        )
        if transfer.done:
            return
        released = transfer.attach_channel(sock)
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        while not released.is_set():
            if poller.poll(500):
                transfer.detach_channel(sock)
                return

    def _serve_stream(self, sock: ssl.SSLSocket, transfer: ReceiverTransfer) -> None:
        buf = bytearray()
        while True:
            try:
                frame = wire.recv(sock, buf)
            except wire.PeerClosed:
                return
            if frame.kind is wire.Kind.CHUNK:
                if isinstance(frame.payload, bytearray):
                    buf = frame.payload
                try:
                    transfer.accept(int(frame.meta["id"]), str(frame.meta["b3"]), buf)
                except ReceiveError as exc:
                    transfer.fail(exc)
                    raise
            elif frame.kind is wire.Kind.FINISH:
                resend = transfer.finish([str(h) for h in frame.meta["sha256"]])
                kind = wire.Kind.RESEND if resend else wire.Kind.OK
                wire.send(
                    sock,
                    kind,
                    {
                        "ids": resend,
                        "duplicate_acked_arrivals": transfer.duplicate_acked_arrivals,
                    },
                )
            else:
                raise BadRequest("bad_request", f"{frame.kind.name} not allowed on a stream")

    def _abort(self, tid: str) -> None:
        with self._lock:
            found = self._receivers.pop(tid, None)
        if found is not None:
            found.abort()

    def _open_transfer(self, meta: dict[str, Any]) -> ReceiverTransfer:
        tid = _text(meta, "transfer_id")
        if not TRANSFER_ID.match(tid):
            raise BadRequest("bad_request", "bad transfer_id")
        files = [FileEntry(check_relative(str(p)), int(s)) for p, s in meta["files"]]
        plan = make_plan(files, int(meta["chunk_size"]))
        digest = plan_digest(plan)
        if digest != meta.get("digest"):
            raise BadRequest("bad_request", "plan digest does not match its files")
        dst = confine(self.root, _text(meta, "dst"))
        with self._lock:
            transfer = self._receivers.get(tid)
            if transfer is None:
                journal = self.config.journal_dir / "recv" / f"{tid}.jsonl"
                staging = self.root / STAGING / tid
                transfer = ReceiverTransfer(
                    tid, plan, digest, staging, journal, dst, self.config.faults
                )
                self._receivers[tid] = transfer
            elif transfer.digest != digest:
                raise ReceiveError("conflict", f"transfer {tid} exists with another plan")
        (self.root / STAGING).mkdir(exist_ok=True)
        transfer.open(shutil.disk_usage(self.root).free + _allocated(transfer))
        return transfer

    def _receiver(self, tid: str, digest: str) -> ReceiverTransfer:
        with self._lock:
            transfer = self._receivers.get(tid)
        if transfer is None or transfer.digest != digest:
            raise BadRequest("bad_request", f"transfer {tid} is not open (OPEN first)")
        return transfer


RETUNABLE = frozenset(("max_bytes_per_s", "link_max_bytes_per_s", "link_rate_hint_bytes_per_s"))
"""Options a resumed push may change (the operator re-capped the link meanwhile)."""


def same_push(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same push, caps and the rate hint aside (they apply from the next start)."""

    def fixed(request: dict[str, Any]) -> dict[str, Any]:
        options = {k: v for k, v in request.get("options", {}).items() if k not in RETUNABLE}
        return request | {"options": options}

    return fixed(a) == fixed(b)


def _allocated(transfer: ReceiverTransfer) -> int:
    """Bytes already allocated to this transfer's staging files (a reopen needs no more)."""
    total = 0
    for index in range(len(transfer.plan.files)):
        try:
            total += os.stat(transfer.staging.path(index)).st_blocks * 512
        except FileNotFoundError:
            continue
    return total


def _text(meta: dict[str, Any], name: str) -> str:
    value = meta.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest("bad_request", f"{name} must be a non-empty string", name)
    return value


__all__ = ["Agent", "AgentConfig", "PushFailed"]
