"""The transfer PKI: a CA the control plane keeps, and the certificates it issues.

Every connection in the transfer plane is mutual TLS 1.3 against this CA. A certificate's
role is its subject's organizational unit (``suanwang-agent`` or ``suanwang-control``) and
its extended key usage: agents are TLS servers and clients (they receive and send data),
the control plane is a client only. The peer's role is checked after the handshake
(:func:`suanwang.transfer.tls.peer_role`), so an agent certificate cannot drive another
agent's control API and a control certificate cannot push data.

Rotation: :func:`needs_rotation` says when a certificate is within ``before_s`` of its
``notAfter``; the control plane re-issues then (same key type, new serial) and the agent
restarts with the new files. Nothing here does I/O or reads the clock: ``now`` is passed in.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Role = Literal["agent", "control"]
ROLE_OU: dict[Role, str] = {"agent": "suanwang-agent", "control": "suanwang-control"}
CA_VALID_S = 10 * 365 * 86400.0
BACKDATE_S = 60.0
"""Certificates are valid from a minute before they are issued (clock skew)."""


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_ca(common_name: str, now: float, valid_s: float = CA_VALID_S) -> tuple[bytes, bytes]:
    """A self-signed CA certificate and its key, both PEM, valid ``valid_s`` from ``now``."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now - BACKDATE_S))
        .not_valid_after(_utc(now + valid_s))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def issue(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    common_name: str,
    *,
    hosts: Sequence[str],
    role: Role,
    now: float,
    valid_s: float,
    public_key_pem: bytes | None = None,
) -> tuple[bytes, bytes]:
    """A certificate for ``role`` signed by the CA, with ``hosts`` (IPs or DNS names) as SANs,
    and its new key; or, given ``public_key_pem`` (the holder made its own key), the
    certificate for that key and an empty key."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an EC key made by new_ca")
    key = _new_key() if public_key_pem is None else None
    public = key.public_key() if key is not None else _public_key(public_key_pem or b"")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ROLE_OU[role]),
        ]
    )
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role == "agent":
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now - BACKDATE_S))
        .not_valid_after(_utc(now + valid_s))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), b"" if key is None else _key_pem(key)


def _public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """An agent's own P-256 public key (ValueError for anything else)."""
    public = serialization.load_pem_public_key(pem)
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise ValueError("the public key must be an EC P-256 key")
    return public


def not_after(cert_pem: bytes) -> float:
    """The certificate's expiry as a UNIX timestamp."""
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc.timestamp()


def needs_rotation(cert_pem: bytes, now: float, before_s: float) -> bool:
    """True once ``now`` is within ``before_s`` of the certificate's expiry (or past it)."""
    return now >= not_after(cert_pem) - before_s


def role_of(cert_pem: bytes) -> Role | None:
    """The role a certificate carries in its subject OU, or None."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    units = {a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)}
    for role, unit in ROLE_OU.items():
        if unit in units:
            return role
    return None
