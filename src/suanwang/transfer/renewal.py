"""Automatic certificate renewal: an agent asks the control plane for a new certificate.

The agent checks its certificate every ``check_s``; once it is within :func:`rotate_before_s`
of its expiry (7 days, or a third of its lifetime for short certificates) it makes a new
P-256 key and sends a :class:`RenewalRequest`: its current certificate, the new public key,
the time, and a signature over (name, time, new public key) made with the *current* key.
The control plane (:func:`verify_request`, then the service's checks) issues a certificate
only if the current one was issued by its CA, has not expired, names the agent in the URL,
is the one it issued last (a replaced certificate cannot renew) and the request is newer
than the last rotation. The private key never leaves the agent. The agent writes key and
certificate (each file atomically, 0600) and reloads its TLS contexts: connections already
open keep their session; new ones use the new certificate.

The HTTP call is injected (``post``): this package speaks no HTTP (``suanwang agent serve``
passes an httpx one).
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from suanwang.transfer.pki import BACKDATE_S, ROLE_OU, needs_rotation, not_after
from suanwang.transfer.tls import Identity

log = structlog.get_logger("suanwang.transfer.renewal")
ROTATE_BEFORE_S = 7 * 86400.0
MAX_SKEW_S = 300.0
"""A request's time may differ from the control plane's by at most this."""


class RenewalRefused(Exception):
    """The request does not prove the current certificate (message says why)."""


@dataclass(frozen=True, slots=True)
class RenewalRequest:
    name: str
    cert_pem: str
    public_key_pem: str
    at: float
    signature: str  # base64 ECDSA-SHA256 by the current key over :func:`renewal_message`

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def renewal_message(name: str, at: float, public_key_pem: str) -> bytes:
    digest = hashlib.sha256(public_key_pem.encode()).hexdigest()
    return f"suanwang-agent-renew\n{name}\n{at:.3f}\n{digest}".encode()


def rotate_before_s(cert_pem: bytes) -> float:
    """How long before expiry to renew: 7 days, or a third of a shorter lifetime."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    lifetime = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds()
    return min(ROTATE_BEFORE_S, (lifetime - BACKDATE_S) / 3)


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def make_request(cert_pem: bytes, key_pem: bytes, now: float) -> tuple[RenewalRequest, bytes]:
    """The request to renew ``cert_pem`` (signed with ``key_pem``) and the new private key."""
    current = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(current, ec.EllipticCurvePrivateKey):
        raise ValueError("the agent key must be an EC key")
    new = ec.generate_private_key(ec.SECP256R1())
    public = new.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    name = common_name(x509.load_pem_x509_certificate(cert_pem))
    signature = current.sign(renewal_message(name, now, public.decode()), ec.ECDSA(hashes.SHA256()))
    new_pem = new.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    request = RenewalRequest(
        name, cert_pem.decode(), public.decode(), now, base64.b64encode(signature).decode()
    )
    return request, new_pem


def verify_request(ca_cert_pem: bytes, request: RenewalRequest, now: float) -> str:
    """The serial (hex) of the request's certificate once it proves itself; RenewalRefused."""
    try:
        cert = x509.load_pem_x509_certificate(request.cert_pem.encode())
        ca = x509.load_pem_x509_certificate(ca_cert_pem)
        cert.verify_directly_issued_by(ca)
        signature = base64.b64decode(request.signature, validate=True)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise RenewalRefused(f"the certificate was not issued by this CA: {exc}") from exc
    if not cert.not_valid_before_utc.timestamp() <= now <= not_after(request.cert_pem.encode()):
        raise RenewalRefused("the certificate has expired (register the agent again)")
    units = {a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)}
    if ROLE_OU["agent"] not in units or common_name(cert) != request.name:
        raise RenewalRefused(f"the certificate is not agent {request.name!r}'s")
    if abs(request.at - now) > MAX_SKEW_S:
        raise RenewalRefused("the request's time is off by more than 5 minutes")
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise RenewalRefused("the certificate's key is not an EC key")
    message = renewal_message(request.name, request.at, request.public_key_pem)
    try:
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise RenewalRefused("the signature does not match the certificate's key") from exc
    return format(cert.serial_number, "x")


Post = Callable[[str, dict[str, Any]], dict[str, Any]]
"""``post(agent_name, request_json)`` -> the control plane's answer (``cert_pem``)."""


class Renewer:
    """Checks the agent's certificate and renews it when due; ``reload`` is then called."""

    def __init__(
        self,
        identity: Identity,
        post: Post,
        reload: Callable[[], None],
        clock: Callable[[], float],
    ) -> None:
        self._identity, self._post, self._reload, self._clock = identity, post, reload, clock

    def due(self) -> bool:
        cert = self._identity.cert_file.read_bytes()
        return needs_rotation(cert, self._clock(), rotate_before_s(cert))

    def renew_if_due(self) -> bool:
        """Renew when due (True when it did). Errors propagate: the caller logs and retries."""
        if not self.due():
            return False
        cert = self._identity.cert_file.read_bytes()
        request, new_key = make_request(cert, self._identity.key_file.read_bytes(), self._clock())
        answer = self._post(request.name, request.to_json())
        new_cert = str(answer["cert_pem"]).encode()
        loaded = x509.load_pem_x509_certificate(new_cert)
        ca = x509.load_pem_x509_certificate(self._identity.ca_file.read_bytes())
        try:
            loaded.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise RenewalRefused("the new certificate is not from the transfer CA") from exc
        if (
            loaded.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            != request.public_key_pem.encode()
        ):
            raise RenewalRefused("the control plane answered with a certificate for another key")
        # key first: a crash between the two leaves the old certificate with a new key,
        # which the agent refuses at start (the operator rotates by hand then)
        write_private(self._identity.key_file, new_key)
        write_private(self._identity.cert_file, new_cert)
        self._reload()
        log.info("certificate_renewed", agent=request.name, not_after=not_after(new_cert))
        return True

    def run(self, stop: threading.Event, check_s: float) -> None:
        """Check every ``check_s`` until ``stop``; failures are logged and retried."""
        while not stop.wait(check_s):
            try:
                self.renew_if_due()
            except Exception as exc:  # noqa: BLE001 - logged, retried next check
                log.warning("certificate_renewal_failed", error=f"{type(exc).__name__}: {exc}")


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (a 0600 temporary file, fsync, rename)."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
