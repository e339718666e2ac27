"""The control plane's side of the transfer plane: its CA, its own client certificate, and
clients of the agents (:class:`~suanwang.ports.AgentAuthority`, ``TransferAgents``).

Files in the data directory (0700; files 0600)::

    transfer-ca.pem            the CA certificate (agents get a copy at registration)
    transfer-ca.key.sealed     the CA key, sealed with the credentials box (adapters/crypto.py)
    transfer-control.pem/.key  the control plane's own client certificate (role control),
                               re-issued when it is within the rotation window of expiry

The CA is made on first use (``suanwang init`` makes it). Agents' keys are returned once,
at registration or rotation, and never stored.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from cryptography import x509

from suanwang.adapters.data_dir import PRIVATE_FILE
from suanwang.domain.datasets import ManifestEntry
from suanwang.domain.errors import Forbidden, ValidationError
from suanwang.domain.rates import effective_cap
from suanwang.domain.transfers import (
    DEFAULT_AGENT_CERT_S,
    ROTATE_BEFORE_S,
    AgentRenewal,
    IssuedCert,
    LinkCaps,
    TransferProgress,
    TransferState,
)
from suanwang.ports import AgentUnreachable, Clock, SecretBox
from suanwang.transfer import pki
from suanwang.transfer.client import AgentClient, AgentError, AgentUnavailable, Identity
from suanwang.transfer.renewal import RenewalRefused, RenewalRequest, verify_request
from suanwang.transfer.status import PushOptions, TransferStatus
from suanwang.transfer.status import TransferState as AgentState

CA_CERT = "transfer-ca.pem"
CA_KEY = "transfer-ca.key.sealed"
CONTROL_CERT = "transfer-control.pem"
CONTROL_KEY = "transfer-control.key"
CONTROL_CERT_S = 30 * 86400.0
T = TypeVar("T")


class TransferCA:
    """The CA the control plane keeps (key sealed at rest) and its own control identity."""

    def __init__(self, data_dir: Path, box: SecretBox, clock: Clock) -> None:
        self._dir, self._box, self._clock = data_dir, box, clock
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Make the CA if there is none yet."""
        with self._lock:
            if (self._dir / CA_CERT).exists():
                return
            cert, key = pki.new_ca("suanwang transfer CA", self._clock.now())
            _write(self._dir / CA_KEY, self._box.seal(key.decode()).encode())
            _write(self._dir / CA_CERT, cert)

    def issue_agent(
        self,
        name: str,
        host: str,
        valid_s: float = DEFAULT_AGENT_CERT_S,
        public_key_pem: str | None = None,
    ) -> IssuedCert:
        public = None if public_key_pem is None else public_key_pem.encode()
        try:
            cert, key = self._issue(name, [host], "agent", valid_s, public)
        except ValueError as exc:
            raise ValidationError(str(exc), field="public_key_pem") from exc
        return IssuedCert(
            cert_pem=cert.decode(),
            key_pem=key.decode(),
            ca_pem=(self._dir / CA_CERT).read_text(),
            serial=_serial(cert),
            not_after=pki.not_after(cert),
        )

    def verify_renewal(self, renewal: AgentRenewal) -> str:
        self.ensure()
        request = RenewalRequest(
            renewal.name, renewal.cert_pem, renewal.public_key_pem, renewal.at, renewal.signature
        )
        try:
            return verify_request((self._dir / CA_CERT).read_bytes(), request, self._clock.now())
        except RenewalRefused as exc:
            raise Forbidden(str(exc), field="cert_pem") from exc

    def control_identity(self) -> Identity:
        """The control plane's client identity, (re-)issued when missing or due."""
        with self._lock:
            cert_file = self._dir / CONTROL_CERT
            due = not cert_file.exists() or pki.needs_rotation(
                cert_file.read_bytes(), self._clock.now(), ROTATE_BEFORE_S
            )
        if due:
            cert, key = self._issue("suanwang-control", [], "control", CONTROL_CERT_S)
            with self._lock:
                _write(self._dir / CONTROL_KEY, key)
                _write(cert_file, cert)
        return Identity(cert_file, self._dir / CONTROL_KEY, self._dir / CA_CERT)

    def _issue(
        self,
        name: str,
        hosts: list[str],
        role: pki.Role,
        valid_s: float,
        public_key_pem: bytes | None = None,
    ) -> tuple[bytes, bytes]:
        self.ensure()
        ca_cert = (self._dir / CA_CERT).read_bytes()
        ca_key = self._box.open((self._dir / CA_KEY).read_text()).encode()
        return pki.issue(
            ca_cert, ca_key, name, hosts=hosts, role=role, now=self._clock.now(),
            valid_s=valid_s, public_key_pem=public_key_pem,
        )  # fmt: skip


class AgentClients:
    """``TransferAgents``: the agents' control API, as the control plane's client."""

    def __init__(self, ca: TransferCA, timeout_s: float = 10.0) -> None:
        self._ca, self._timeout_s = ca, timeout_s

    def start_push(
        self,
        source: str,
        transfer_id: str,
        src: str,
        target: str,
        dst: str,
        link: LinkCaps | None = None,
    ) -> TransferProgress:
        options = push_options(link or LinkCaps())
        push = lambda c: c.start_push(transfer_id, src, target, dst, options)  # noqa: E731
        return _progress(self._call(source, push))

    def status(self, source: str, transfer_id: str) -> TransferProgress:
        return _progress(self._call(source, lambda c: c.status(transfer_id)))

    def manifest(self, address: str, path: str) -> list[ManifestEntry]:
        entries = self._call(address, lambda c: c.manifest(path))
        return [ManifestEntry(e.path, e.size, e.sha256) for e in entries]

    def _call(self, address: str, call: Callable[[AgentClient], T]) -> T:
        client = AgentClient(address, self._ca.control_identity(), timeout_s=self._timeout_s)
        try:
            return call(client)
        except AgentUnavailable as exc:
            raise AgentUnreachable(str(exc)) from exc
        except AgentError as exc:
            raise AgentUnreachable(f"agent {address} refused: {exc}") from exc


def push_options(link: LinkCaps) -> PushOptions:
    """The agent's options: the rate hint, the link's shared bucket, the transfer's cap
    (the lower of its own and the link's, so a tenant's cap only ever lowers it)."""
    options = PushOptions()
    if link.rate_bytes_per_s:
        options = replace(options, link_rate_hint_bytes_per_s=link.rate_bytes_per_s)
    if link.link_cap_bytes_per_s:
        options = replace(options, link_max_bytes_per_s=link.link_cap_bytes_per_s)
    cap = effective_cap(link.transfer_cap_bytes_per_s, link.link_cap_bytes_per_s)
    if cap:
        options = replace(options, max_bytes_per_s=cap)
    return options


def _progress(status: TransferStatus) -> TransferProgress:
    state = {
        AgentState.RUNNING: TransferState.RUNNING,
        AgentState.INTERRUPTED: TransferState.PENDING,  # push again: it resumes
        AgentState.VERIFIED: TransferState.VERIFIED,
        AgentState.FAILED: TransferState.FAILED,
        AgentState.CANCELLED: TransferState.FAILED,
    }[status.state]
    return TransferProgress(
        state=state,
        bytes_total=status.bytes_total,
        bytes_done=status.bytes_done,
        rate_bytes_per_s=status.rate_bytes_per_s,
        eta_s=status.eta_s,
        chunks_resent=status.chunks_resent,
        error=status.error
        or ("cancelled on the agent" if status.state is AgentState.CANCELLED else ""),
    )


def _serial(cert_pem: bytes) -> str:
    return format(x509.load_pem_x509_certificate(cert_pem).serial_number, "x")


def _write(path: Path, data: bytes) -> None:
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
