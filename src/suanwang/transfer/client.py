"""The control plane's client for transfer agents (the datasets service codes against this).

A TLS connection per call (``keep_alive=True``: one kept connection, calls serialised,
:meth:`AgentClient.close` it), authenticated with a ``control`` certificate; the agent must
present an ``agent`` certificate from the same CA for the address it is reached at.

    client = AgentClient("10.0.0.5:7700", Identity(cert, key, ca))
    client.start_push("ds-42-to-nx", "tenants/t1/ds42", "10.0.1.5:7700", "tenants/t1/ds42")
    client.status("ds-42-to-nx").state  # running / verified / failed / cancelled / interrupted

Errors: :class:`AgentUnavailable` when the agent cannot be reached (it died: push again
once it is back, the transfer resumes), :class:`AgentError` when it refused the request
(``code`` and ``field`` name what was wrong).
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

from suanwang.transfer import wire
from suanwang.transfer.status import ManifestEntry, PushOptions, TransferState, TransferStatus
from suanwang.transfer.tls import Identity, PeerRefused, client_context, connect, split_address


class AgentUnavailable(ConnectionError):
    """The agent did not answer (down, unreachable, or the TLS handshake failed)."""


class AgentError(Exception):
    """The agent refused the request."""

    def __init__(self, code: str, message: str, field: str | None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field


class AgentClient:
    def __init__(
        self, address: str, identity: Identity, timeout_s: float = 30.0, *, keep_alive: bool = False
    ) -> None:
        self.address = address
        self._host, self._port = split_address(address)
        self._ctx = client_context(identity)
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._sock: ssl.SSLSocket | None = None
        self._keep_alive = keep_alive

    def _connect(self) -> ssl.SSLSocket:
        try:
            return connect(self._ctx, self._host, self._port, timeout_s=self._timeout_s)
        except (OSError, ssl.SSLError, PeerRefused) as exc:
            raise AgentUnavailable(f"agent {self.address}: {exc}") from exc

    def _call(self, kind: wire.Kind, meta: dict[str, Any]) -> dict[str, Any]:
        """One request on the kept connection; a broken kept connection is redialled once
        (every request is idempotent)."""
        with self._lock:
            for attempt in (0, 1):
                reused = self._sock is not None
                if self._sock is None:
                    self._sock = self._connect()
                try:
                    wire.send(self._sock, kind, meta)
                    reply = wire.recv(self._sock)
                except (OSError, wire.ProtocolError) as exc:
                    self.close_locked()
                    if not reused or attempt:
                        raise AgentUnavailable(f"agent {self.address}: {exc}") from exc
                    continue
                if not self._keep_alive:
                    self.close_locked()
                break
        if reply.kind is wire.Kind.ERROR:
            raise AgentError(
                str(reply.meta.get("code")), str(reply.meta.get("message")), reply.meta.get("field")
            )
        return reply.meta

    def close(self) -> None:
        with self._lock:
            self.close_locked()

    def close_locked(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def start_push(
        self,
        transfer_id: str,
        src_path: str,
        target_address: str,
        dst_path: str,
        options: PushOptions | None = None,
    ) -> TransferStatus:
        """Start (or resume: same id and arguments) pushing ``src_path`` to another agent."""
        meta = {
            "transfer_id": transfer_id,
            "src": src_path,
            "target": target_address,
            "dst": dst_path,
            "options": (options or PushOptions()).to_json(),
        }
        return TransferStatus.from_json(self._call(wire.Kind.PUSH, meta))

    def status(self, transfer_id: str) -> TransferStatus:
        return TransferStatus.from_json(self._call(wire.Kind.STATUS, {"transfer_id": transfer_id}))

    def cancel(self, transfer_id: str) -> TransferStatus:
        return TransferStatus.from_json(self._call(wire.Kind.CANCEL, {"transfer_id": transfer_id}))

    def manifest(self, path: str) -> list[ManifestEntry]:
        files = self._call(wire.Kind.MANIFEST, {"path": path})["files"]
        return [ManifestEntry(str(p), int(s), str(h)) for p, s, h in files]


__all__ = [
    "AgentClient",
    "AgentError",
    "AgentUnavailable",
    "Identity",
    "ManifestEntry",
    "PushOptions",
    "TransferState",
    "TransferStatus",
]
