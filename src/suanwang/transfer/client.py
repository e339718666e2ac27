"""The control plane's client for transfer agents (the datasets service codes against this).

One TLS connection per call, authenticated with a ``control`` certificate; the agent must
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
    def __init__(self, address: str, identity: Identity, timeout_s: float = 30.0) -> None:
        self.address = address
        self._host, self._port = split_address(address)
        self._ctx = client_context(identity)
        self._timeout_s = timeout_s

    def _call(self, kind: wire.Kind, meta: dict[str, Any]) -> dict[str, Any]:
        try:
            sock = connect(self._ctx, self._host, self._port, timeout_s=self._timeout_s)
        except (OSError, ssl.SSLError, PeerRefused) as exc:
            raise AgentUnavailable(f"agent {self.address}: {exc}") from exc
        try:
            with sock:
                wire.send(sock, kind, meta)
                reply = wire.recv(sock)
        except (OSError, wire.ProtocolError) as exc:
            raise AgentUnavailable(f"agent {self.address}: {exc}") from exc
        if reply.kind is wire.Kind.ERROR:
            raise AgentError(
                str(reply.meta.get("code")), str(reply.meta.get("message")), reply.meta.get("field")
            )
        return reply.meta

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
