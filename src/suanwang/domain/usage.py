"""Usage records: what the append-only ledger holds, one row per metered event.

Three kinds share the ledger so that one tenant gets one bill: ``tokens`` (one row per
gateway request, whatever its outcome), ``compute`` (card-seconds of a job attempt or
a deployment replica) and ``storage`` (byte-seconds of a dataset). ``entry_id`` is unique:
writing the same record twice is a no-op, which is how duplicated settlements and retried
writes never double-bill.
"""

from __future__ import annotations

import enum
from collections.abc import Container
from dataclasses import dataclass

UNKNOWN_MODEL = "unknown"
"""The ledger's label for a requested model that is not in the catalogue."""


class UsageKind(enum.StrEnum):
    TOKENS = "tokens"
    COMPUTE = "compute"
    STORAGE = "storage"


class Outcome(enum.StrEnum):
    """How a metered request ended."""

    OK = "ok"
    CLIENT_DISCONNECT = "client_disconnect"
    UPSTREAM_ERROR = "upstream_error"
    REJECTED = "rejected"
    TIMEOUT = "timeout"


def ledger_model(requested: str, catalogue: Container[str]) -> str:
    """The model name a ledger row may hold: a catalogue name, ``""`` when the request named
    none, else :data:`UNKNOWN_MODEL`.

    A caller's model string is caller input: it can be a pasted API key or a spreadsheet
    formula (``=HYPERLINK(…)``), and it ends up in bills, CSV exports and the usage journal.
    """
    if not requested or requested in catalogue:
        return requested
    return UNKNOWN_MODEL


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """One gateway request (``entry_id`` is its request id)."""

    entry_id: str
    tenant: str
    key_id: str
    model: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    status: int
    outcome: Outcome
    started_at: float
    ended_at: float
    latency_ms: float
    deployment: str | None = None
    replica: str | None = None
    streamed: bool = False
    source: str = ""
    """``app:<name>@<version>`` for an app's requests (its model call and its query's
    embedding); empty for a direct call."""


@dataclass(frozen=True, slots=True)
class ComputeUsage:
    """Cards held by one job attempt or replica between ``started_at`` and ``ended_at``.

    ``entry_id`` is stable per metered interval (e.g. ``attempt:<id>``) so re-metering
    after a restart cannot double-bill.
    """

    entry_id: str
    tenant: str
    source: str
    """``job:<id>#<attempt>`` or ``replica:<id>``."""
    chip: str
    cards: int
    started_at: float
    ended_at: float


@dataclass(frozen=True, slots=True)
class StorageUsage:
    """Bytes of one dataset stored over ``[started_at, ended_at)`` (one metering grid piece).

    ``entry_id`` is ``storage:<dataset id>:<start ms>``: metering again writes nothing twice.
    """

    entry_id: str
    tenant: str
    dataset: str
    byte_s: int
    """Byte-seconds: stored bytes x whole milliseconds / 1000 (rounded down)."""
    started_at: float
    ended_at: float
