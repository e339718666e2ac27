"""Frames on a TLS connection: ``type u8 | meta_len u32 | payload_len u64 | meta | payload``.

``meta`` is a JSON object (UTF-8), ``payload`` raw bytes (a chunk's data). One frame type
list for both planes; which frames a connection may send depends on its peer's role (see
docs/transfer.md). Reads are bounded: a meta over ``MAX_META`` or a payload over
``MAX_PAYLOAD`` closes the connection.
"""

from __future__ import annotations

import enum
import json
import socket
import struct
from dataclasses import dataclass
from typing import Any

HEADER = struct.Struct("!BIQ")
MAX_META = 64 << 20
MAX_PAYLOAD = 64 << 20


class Kind(enum.IntEnum):
    # control plane -> agent
    PUSH = 1
    STATUS = 2
    CANCEL = 3
    MANIFEST = 4
    # agent -> agent (data plane)
    OPEN = 10
    JOIN = 11
    CHUNK = 12
    FINISH = 14
    ABORT = 15
    # replies
    OK = 20
    ACK = 21
    NACK = 22
    RESEND = 24
    ERROR = 30


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


class PeerClosed(ConnectionError):
    """The peer closed the connection."""


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    meta: dict[str, Any]
    payload: bytes | bytearray | memoryview = b""


def send_header(sock: socket.socket, kind: Kind, meta: dict[str, Any], payload_len: int) -> None:
    """The frame header and meta; the caller then sends exactly ``payload_len`` bytes."""
    body = json.dumps(meta, separators=(",", ":")).encode()
    sock.sendall(HEADER.pack(kind, len(body), payload_len) + body)


def send(
    sock: socket.socket,
    kind: Kind,
    meta: dict[str, Any] | None = None,
    payload: bytes | bytearray | memoryview = b"",
) -> None:
    send_header(sock, kind, meta or {}, len(payload))
    if payload:
        sock.sendall(payload)


def recv_exact(sock: socket.socket, n: int, into: bytearray | None = None) -> bytearray:
    buf = into if into is not None and len(into) == n else bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        r = sock.recv_into(view[got:], n - got)
        if r == 0:
            raise PeerClosed("connection closed by peer")
        got += r
    return buf


def recv(sock: socket.socket, payload_buf: bytearray | None = None) -> Frame:
    """Read one frame; ``payload_buf`` is reused when it has the payload's exact size."""
    kind_raw, meta_len, payload_len = HEADER.unpack(recv_exact(sock, HEADER.size))
    if meta_len > MAX_META or payload_len > MAX_PAYLOAD:
        raise ProtocolError(f"frame too large (meta {meta_len}, payload {payload_len})")
    try:
        kind = Kind(kind_raw)
    except ValueError as exc:
        raise ProtocolError(f"unknown frame type {kind_raw}") from exc
    try:
        meta = json.loads(recv_exact(sock, meta_len)) if meta_len else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("frame meta is not JSON") from exc
    if not isinstance(meta, dict):
        raise ProtocolError("frame meta is not a JSON object")
    payload = recv_exact(sock, payload_len, payload_buf) if payload_len else bytearray()
    return Frame(kind, meta, payload)


def error(sock: socket.socket, code: str, message: str, field: str | None = None) -> None:
    send(sock, Kind.ERROR, {"code": code, "message": message, "field": field})
