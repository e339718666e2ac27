"""Mutual TLS 1.3 contexts for agents and the control plane, and the peer-role check."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from suanwang.transfer.pki import ROLE_OU, Role


@dataclass(frozen=True, slots=True)
class Identity:
    """Who we are on the transfer plane: our certificate, its key, and the CA we trust."""

    cert_file: Path
    key_file: Path
    ca_file: Path


class PeerRefused(Exception):
    """The peer's certificate is valid but carries the wrong role (or none)."""


def _base(identity: Identity, purpose: ssl.Purpose) -> ssl.SSLContext:
    ctx = ssl.SSLContext(
        ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(identity.cert_file), str(identity.key_file))
    ctx.load_verify_locations(cafile=str(identity.ca_file))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def server_context(identity: Identity) -> ssl.SSLContext:
    """An agent's listening context: TLS 1.3 only, a client certificate from the CA required."""
    return _base(identity, ssl.Purpose.CLIENT_AUTH)


def client_context(identity: Identity) -> ssl.SSLContext:
    """A client context: verifies the server against the CA and its address (SAN)."""
    ctx = _base(identity, ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = True
    return ctx


def peer_role(sock: ssl.SSLSocket) -> Role:
    """The role in the verified peer certificate's OU; PeerRefused for a certificate without one."""
    cert = sock.getpeercert()
    subject: tuple[tuple[tuple[str, str], ...], ...] = cert.get("subject", ()) if cert else ()  # type: ignore[assignment]
    units = {str(value) for rdn in subject for key, value in rdn if key == "organizationalUnitName"}
    for role, unit in ROLE_OU.items():
        if unit in units:
            return role
    raise PeerRefused("peer certificate carries no suanwang role")


def connect(
    ctx: ssl.SSLContext, host: str, port: int, *, timeout_s: float, expect: Role = "agent"
) -> ssl.SSLSocket:
    """A verified TLS connection to an agent whose certificate carries role ``expect``."""
    raw = socket.create_connection((host, port), timeout=timeout_s)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = ctx.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise
    if peer_role(sock) != expect:
        sock.close()
        raise PeerRefused(f"{host}:{port} is not a suanwang {expect}")
    return sock


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); ValueError with a hint otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"address {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)
