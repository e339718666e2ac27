"""SQLAlchemy 2 table definitions. Schema changes go through Alembic (``migrations/``).

Times are UNIX seconds as floats (UTC); money will be integer micro-units; JSON columns
hold plain data, never pickles.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from suanwang.domain.changes import changed_fields

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class Base(DeclarativeBase):
    """Declarative base; its metadata is what Alembic migrates."""


class RegionRow(Base):
    __tablename__ = "regions"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)


class ClusterRow(Base):
    __tablename__ = "clusters"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    region: Mapped[str] = mapped_column(ForeignKey("regions.name"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    backend: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    connection: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)
    """The engine connection block ``{"ray": {...}}``; NULL for local and simulated."""
    health_ok: Mapped[bool | None] = mapped_column(Boolean, default=None)
    """Last health check: NULL never checked."""
    health_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    health_checked_at: Mapped[float | None] = mapped_column(Float, default=None)


class NodeRow(Base):
    __tablename__ = "nodes"
    __table_args__ = (UniqueConstraint("cluster", "name", name="uq_nodes_cluster_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cluster: Mapped[str] = mapped_column(ForeignKey("clusters.name"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    chip: Mapped[str] = mapped_column(String(64))
    cards: Mapped[int] = mapped_column(Integer)
    network_group: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(16), default="ready")


class WanLinkRow(Base):
    __tablename__ = "wan_links"
    __table_args__ = (UniqueConstraint("region_a", "region_b", name="uq_wan_links_ends"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    region_a: Mapped[str] = mapped_column(ForeignKey("regions.name"))
    region_b: Mapped[str] = mapped_column(ForeignKey("regions.name"))
    bandwidth_gbps: Mapped[float] = mapped_column(Float)
    rtt_ms: Mapped[float] = mapped_column(Float)
    distance_km: Mapped[float] = mapped_column(Float)
    transfer_cap_bytes_per_s: Mapped[float | None] = mapped_column(Float, default=None)  # 0015


class TenantRow(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)
    cohort: Mapped[str | None] = mapped_column(String(64), default=None)
    weight: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")
    tier: Mapped[str] = mapped_column(String(32), default="standard", server_default="standard")
    """Price tier for bills (``standard`` unless the operator sets another)."""
    storage_quota_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Dataset storage quota (migration 0012); NULL: the platform's default."""


class TenantUidRow(Base):
    """The numeric uid a tenant's local runs use; rows are never deleted or reassigned."""

    __tablename__ = "tenant_uids"
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    uid: Mapped[int] = mapped_column(Integer, unique=True)
    allocated_at: Mapped[float] = mapped_column(Float)


class QuotaRow(Base):
    __tablename__ = "quotas"
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    family: Mapped[str] = mapped_column(String(32), primary_key=True)
    cards: Mapped[int] = mapped_column(Integer)
    borrowing_limit: Mapped[int | None] = mapped_column(Integer, default=0, server_default="0")
    lending_limit: Mapped[int | None] = mapped_column(Integer, default=None)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    scope: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)


class ConsoleSessionRow(Base):
    """A web-console session (migration 0016): the hash of the cookie's random id, never the
    id; deleted with its key (and by logout)."""

    __tablename__ = "console_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_tenant_idempotency"),
        Index("ix_jobs_state_priority", "state", "priority"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, object]] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    preempt_reason: Mapped[str | None] = mapped_column(Text, default=None)
    preempted_for: Mapped[str | None] = mapped_column(String(32), default=None)
    hint_cluster: Mapped[str | None] = mapped_column(String(64), default=None)
    hint_chip: Mapped[str | None] = mapped_column(String(64), default=None)
    hint_cycles: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    version: Mapped[int] = mapped_column(Integer, default=1)


class JobEventRow(Base):
    __tablename__ = "job_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    at: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")


class AttemptRow(Base):
    __tablename__ = "attempts"
    __table_args__ = (UniqueConstraint("job", "number", name="uq_attempts_job_number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    cluster: Mapped[str] = mapped_column(String(64))
    backend: Mapped[str] = mapped_column(String(32))
    chip: Mapped[str] = mapped_column(String(64))
    family: Mapped[str] = mapped_column(String(32))
    cards: Mapped[int] = mapped_column(Integer)
    placements: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    handle: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    admitted_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, index=True)  # 0017
    last_checkpoint_at: Mapped[float | None] = mapped_column(Float, default=None)
    metered_to: Mapped[float | None] = mapped_column(Float, default=None)
    """Compute metering has written this attempt's ledger rows up to here."""


class AllocationRow(Base):
    __tablename__ = "allocations"
    __table_args__ = (Index("ix_allocations_active_node", "active", "node"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    attempt: Mapped[int] = mapped_column(ForeignKey("attempts.id"), index=True)
    node: Mapped[int] = mapped_column(Integer)  # no FK: history outlives deleted nodes
    tenant: Mapped[str] = mapped_column(String(64))
    family: Mapped[str] = mapped_column(String(32))
    cards: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


# --- models as a service (migration 0003) ---------------------------------------------------
class DeploymentRow(Base):
    __tablename__ = "deployments"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    """Owner; ``None`` for a public deployment run by the operator."""
    model: Mapped[str] = mapped_column(String(128), index=True)
    cluster: Mapped[str] = mapped_column(String(64))
    engine: Mapped[str] = mapped_column(String(32))
    replicas: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    version: Mapped[int] = mapped_column(Integer, default=1)
    autoscale: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)
    """Autoscaling settings (migration 0010); ``None``: a fixed replica count."""
    scale_memory: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)
    """The autoscaler's memory between decisions (last scale-up/down, recent recommendations)."""


class ReplicaRow(Base):
    __tablename__ = "replicas"
    __table_args__ = (UniqueConstraint("deployment", "number", name="uq_replicas_number"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    deployment: Mapped[str] = mapped_column(ForeignKey("deployments.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    job: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    base_url: Mapped[str] = mapped_column(String(256), default="")
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    chip: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    port: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[float] = mapped_column(Float)
    ready_at: Mapped[float | None] = mapped_column(Float, default=None)
    last_health_at: Mapped[float | None] = mapped_column(Float, default=None)
    drain_started_at: Mapped[float | None] = mapped_column(Float, default=None)
    """When the replica stopped receiving new requests before being stopped (migration 0010)."""


class DemandRow(Base):
    """What one gateway process last reported about one deployment (migration 0010)."""

    __tablename__ = "model_demand"
    gateway: Mapped[str] = mapped_column(String(64), primary_key=True)
    deployment: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    inflight: Mapped[int] = mapped_column(Integer)
    queued: Mapped[int] = mapped_column(Integer)
    tokens_per_s: Mapped[float] = mapped_column(Float)
    ttft_p95_s: Mapped[float | None] = mapped_column(Float, default=None)
    last_request_at: Mapped[float | None] = mapped_column(Float, default=None)
    routed_at: Mapped[float] = mapped_column(Float)
    replica_inflight: Mapped[dict[str, object]] = mapped_column(JSON)
    requests_per_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    service_s: Mapped[float | None] = mapped_column(Float, default=None)
    first_token_s: Mapped[float | None] = mapped_column(Float, default=None)


class ExternalEndpointRow(Base):
    """An external OpenAI-compatible endpoint (migration 0007); its deployment row says who
    owns it. ``credential`` is Fernet ciphertext (``adapters/crypto.py``), never plaintext."""

    __tablename__ = "external_endpoints"
    deployment: Mapped[str] = mapped_column(ForeignKey("deployments.id"), primary_key=True)
    base_url: Mapped[str] = mapped_column(String(256))
    upstream_model: Mapped[str | None] = mapped_column(String(128), default=None)
    health: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    input_per_million: Mapped[int] = mapped_column(BigInteger, default=0)
    output_per_million: Mapped[int] = mapped_column(BigInteger, default=0)
    allow_private_network: Mapped[bool] = mapped_column(Boolean, default=False)
    credential: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


# --- datasets and transfers (migration 0012) -------------------------------------------------
class DatasetRow(Base):
    """A tenant's dataset; ``manifest`` lists ``{path, size_bytes, sha256}`` per file. A
    deleted dataset keeps its row (billing runs up to ``deleted_at``) and frees its name."""

    __tablename__ = "datasets"
    __table_args__ = (
        Index(
            "uq_datasets_tenant_name_live",
            "tenant",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    manifest: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    sealed_at: Mapped[float | None] = mapped_column(Float, default=None)
    deleted_at: Mapped[float | None] = mapped_column(Float, default=None)
    metered_to: Mapped[float | None] = mapped_column(Float, default=None)


class DatasetReplicaRow(Base):
    __tablename__ = "dataset_replicas"
    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    region: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)


class TransferRow(Base):
    """A copy of a dataset from one region's agent to another's (issue 14, phase 2)."""

    __tablename__ = "transfers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    source_region: Mapped[str] = mapped_column(String(64))
    target_region: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    rate_bytes_per_s: Mapped[float] = mapped_column(Float, default=0.0)
    eta_s: Mapped[float | None] = mapped_column(Float, default=None)
    error: Mapped[str] = mapped_column(Text, default="")
    chunks_resent: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, default=None)
    max_bytes_per_s: Mapped[float | None] = mapped_column(Float, default=None)  # 0015


class AgentRow(Base):
    """A region's transfer agent and the certificate the control plane's CA issued it."""

    __tablename__ = "agents"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    region: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str] = mapped_column(String(256))
    cert_serial: Mapped[str] = mapped_column(String(64))
    cert_not_after: Mapped[float] = mapped_column(Float)
    registered_at: Mapped[float] = mapped_column(Float)
    rotated_at: Mapped[float | None] = mapped_column(Float, default=None)


# --- metering (migration 0004) ---------------------------------------------------------------
class UsageLedgerRow(Base):
    """Append-only: rows are inserted, never updated or deleted."""

    __tablename__ = "usage_ledger"
    __table_args__ = (Index("ix_usage_ledger_tenant_at", "tenant", "ended_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(96), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    tenant: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32), default="")
    model: Mapped[str] = mapped_column(String(128), default="")
    endpoint: Mapped[str] = mapped_column(String(64), default="")
    deployment: Mapped[str | None] = mapped_column(String(32), default=None)
    replica: Mapped[str | None] = mapped_column(String(40), default=None)
    source: Mapped[str] = mapped_column(String(96), default="")
    chip: Mapped[str] = mapped_column(String(64), default="")
    cards: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    card_ms: Mapped[int] = mapped_column(Integer, default=0)
    byte_s: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Stored byte-seconds of a ``storage`` row (migration 0012)."""
    status: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(32), default="")
    streamed: Mapped[bool] = mapped_column(Boolean, default=False)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[float] = mapped_column(Float)


# --- gateway limits (migration 0003) ----------------------------------------------------------
class TenantLimitsRow(Base):
    """A tenant's gateway limits; NULL means unlimited."""

    __tablename__ = "tenant_limits"
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    rpm: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tpm: Mapped[int | None] = mapped_column(BigInteger, default=None)
    token_quota: Mapped[int | None] = mapped_column(BigInteger, default=None)
    period_s: Mapped[int] = mapped_column(Integer)
    period: Mapped[str] = mapped_column(String(16), server_default="seconds")
    """``seconds`` (fixed windows of period_s) or ``month`` (calendar months, UTC); 0004."""
    updated_at: Mapped[float] = mapped_column(Float)


class KeyLimitsRow(Base):
    """An API key's gateway limits and model allow-list (NULL models: every model)."""

    __tablename__ = "key_limits"
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    rpm: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tpm: Mapped[int | None] = mapped_column(BigInteger, default=None)
    models: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    updated_at: Mapped[float] = mapped_column(Float)


# --- audit log (migration 0005) ---------------------------------------------------------------
class AuditRow(Base):
    """Append-only: rows are inserted, never updated or deleted (database triggers refuse both).

    ``tenant`` is the tenant the change concerns (no foreign key: the log outlives what it
    describes); ``before``/``after`` are JSON with secrets removed.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_tenant_id", "tenant", "id"),
        Index("ix_audit_log_at", "at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    actor_key_id: Mapped[str] = mapped_column(String(64))
    actor_key_prefix: Mapped[str | None] = mapped_column(String(32))
    actor_scope: Mapped[str] = mapped_column(String(16))
    actor_tenant: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40), index=True)
    resource: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(200))
    tenant: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, object] | None] = mapped_column(JSON)
    after: Mapped[dict[str, object] | None] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))


# --- apps (migration 0014) -------------------------------------------------------------------
class AppRow(Base):
    """A tenant's app (issue 15): ``published`` is the version ``app:<name>`` calls use;
    ``shared_keys`` lists the key ids that may call it (empty: every key of the tenant)."""

    __tablename__ = "apps"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_apps_tenant_name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    published: Mapped[int] = mapped_column(Integer)
    latest: Mapped[int] = mapped_column(Integer)
    shared_keys: Mapped[list[str]] = mapped_column(JSON)
    template: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class AppVersionRow(Base):
    """One immutable version of an app; ``parameters`` holds temperature, max_tokens,
    top_k, retrieval_mode and score_floor."""

    __tablename__ = "app_versions"
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    system_prompt: Mapped[str] = mapped_column(Text)
    knowledge_bases: Mapped[list[str]] = mapped_column(JSON)
    parameters: Mapped[dict[str, object]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[float] = mapped_column(Float)


def column_values(change: DataclassInstance) -> dict[str, object]:
    """What a typed change (:mod:`suanwang.domain.changes`) sets, as column values."""
    return {
        name: value.value if isinstance(value, enum.Enum) else value
        for name, value in changed_fields(change).items()
    }
