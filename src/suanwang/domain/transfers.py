"""Transfers of dataset replicas between regions, and the agents that move the bytes.

A :class:`TransferRecord` is the control plane's view of one copy of a dataset from a
source region's agent to a target region's agent: ``pending`` until the source agent
accepted the push, ``running`` while bytes move (progress polled by the control loop),
``verified`` once the target holds every file with the manifest's SHA-256 (only then is the
target replica ``ready``), ``failed`` with a reason otherwise. An :class:`AgentRecord` is a
registered agent and the certificate the control plane's CA issued it. Pure: no I/O.
"""

from __future__ import annotations

import enum
import re
import secrets
from dataclasses import dataclass

from suanwang.domain.errors import ValidationError

DEFAULT_AGENT_CERT_S = 30 * 86400.0
"""How long an agent certificate is valid (``suanwang agents register`` / ``rotate``)."""
MIN_AGENT_CERT_S = 10.0
"""The shortest certificate lifetime the CA issues (tests use 20 s certificates)."""
ROTATE_BEFORE_S = 7 * 86400.0
"""Certificates within this of their expiry are due for rotation (the control loop warns)."""
_AGENT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class TransferState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    VERIFIED = "verified"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (TransferState.PENDING, TransferState.RUNNING)


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """What the source agent last said about a transfer (and the new state to record)."""

    state: TransferState
    bytes_total: int = 0
    bytes_done: int = 0
    rate_bytes_per_s: float = 0.0
    eta_s: float | None = None
    chunks_resent: int = 0
    error: str = ""
    ended_at: float | None = None


@dataclass(frozen=True, slots=True)
class TransferRecord:
    id: str
    dataset: str
    source_region: str
    target_region: str
    state: TransferState
    bytes_total: int
    bytes_done: int
    rate_bytes_per_s: float
    eta_s: float | None
    error: str
    chunks_resent: int
    started_at: float
    ended_at: float | None = None
    max_bytes_per_s: float | None = None
    """The tenant's cap on this transfer (None: only the link's cap, if any)."""


@dataclass(frozen=True, slots=True)
class LinkCaps:
    """What a push is told about its path: the link's rate (a hint for sizing streams), the
    operator's cap on the link (shared by every push over it) and the transfer's own cap."""

    rate_bytes_per_s: float | None = None
    link_cap_bytes_per_s: float | None = None
    transfer_cap_bytes_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class AgentRecord:
    name: str
    region: str
    address: str
    cert_serial: str
    cert_not_after: float
    registered_at: float
    rotated_at: float | None = None

    def due_for_rotation(self, now: float, before_s: float = ROTATE_BEFORE_S) -> bool:
        return now >= self.cert_not_after - before_s


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A certificate the CA just issued: shown once, never stored in plain by the platform."""

    cert_pem: str
    key_pem: str
    ca_pem: str
    serial: str
    not_after: float


@dataclass(frozen=True, slots=True)
class AgentRenewal:
    """An agent's request for a new certificate: its current certificate, its new public
    key, the time, and a signature over them by its current key (base64; see
    ``suanwang.transfer.renewal``)."""

    name: str
    cert_pem: str
    public_key_pem: str
    at: float
    signature: str


def new_transfer_id() -> str:
    return f"tr-{secrets.token_hex(6)}"


def check_agent_name(name: str) -> str:
    if not _AGENT_NAME.fullmatch(name):
        raise ValidationError(
            f"invalid agent name {name[:80]!r}",
            field="name",
            hint="1-63 characters a-z, 0-9 and '-', starting with a letter or digit",
        )
    return name


def check_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as a pair, or ValidationError naming ``address``."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValidationError(
            f"invalid agent address {address[:80]!r}", field="address", hint="HOST:PORT"
        )
    if any(c.isspace() or c in "/@\x00" for c in host) or len(host) > 253:
        raise ValidationError(f"invalid agent host {host[:80]!r}", field="address")
    return host, int(port)
