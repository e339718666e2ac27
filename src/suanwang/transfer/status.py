"""The typed shapes the control API speaks: push options, transfer status, manifest entries."""

from __future__ import annotations

import enum
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from suanwang.transfer.plan import DEFAULT_CHUNK_SIZE

TRANSFER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class TransferState(enum.StrEnum):
    RUNNING = "running"
    VERIFIED = "verified"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # journaled but not running (the sending agent restarted): start_push again resumes it
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class PushOptions:
    """How to push: caps (0 = none), chunking, stream bounds, retry budget."""

    max_bytes_per_s: float = 0.0
    link_max_bytes_per_s: float = 0.0
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_streams: int = 16
    initial_streams: int = 0  # 0: from the link's bandwidth-delay product
    link_rate_hint_bytes_per_s: float = 125e6
    max_chunk_retries: int = 3
    reconnect_timeout_s: float = 60.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> PushOptions:
        if not isinstance(data, dict):
            raise ValueError("options must be an object")
        known = {f.name: f for f in fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            kind = (
                int
                if name in {"chunk_size", "max_streams", "initial_streams", "max_chunk_retries"}
                else float
            )
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"option {name} must be a non-negative number")
            values[name] = kind(value)
        opts = cls(**values)
        if not 1 <= opts.max_streams <= 64:
            raise ValueError("option max_streams must be in [1, 64]")
        return opts


@dataclass(frozen=True, slots=True)
class TransferStatus:
    transfer_id: str
    state: TransferState
    bytes_total: int
    bytes_done: int
    rate_bytes_per_s: float
    eta_s: float | None
    error: str | None
    chunks_total: int
    chunks_done: int
    chunks_resent: int
    streams: int
    duplicate_acked_arrivals: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TransferStatus:
        values = {f.name: data[f.name] for f in fields(cls)}
        values["state"] = TransferState(values["state"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    path: str
    size: int
    sha256: str
