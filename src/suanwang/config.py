"""Settings from the environment (``SUANWANG_*``), validated once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from suanwang.domain.checkpoints import DEFAULT_MAX_PREEMPTION_GRACE_S, MAX_PREEMPTION_GRACE_S
from suanwang.domain.datasets import DEFAULT_STORAGE_QUOTA_BYTES
from suanwang.domain.deployments import PUBLIC_TENANT
from suanwang.domain.workloads import UidRange


class Settings(BaseSettings):
    """Every knob of a suanwang process. Bad values fail fast with the variable's name."""

    model_config = SettingsConfigDict(env_prefix="SUANWANG_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="state, run directories, credentials")
    database_url: str | None = Field(None, description="default: SQLite file in data_dir")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    tick_s: float = Field(0.5, gt=0, le=60, description="control-loop period")
    sim_speedup: float = Field(1.0, gt=0, le=1e6, description="simulated clock speed")
    realloc_interval_s: float = Field(
        0.0,
        ge=0,
        le=86_400,
        description="seconds between reallocation rounds that move running jobs to faster "
        "chips (0: off)",
    )
    cancel_grace_s: float = Field(10.0, ge=0, le=3600)
    max_preemption_grace_s: float = Field(
        DEFAULT_MAX_PREEMPTION_GRACE_S,
        ge=0,
        le=MAX_PREEMPTION_GRACE_S,
        description="the longest preemption_grace_s a job may ask for (SIGTERM to SIGKILL)",
    )
    max_body_bytes: int = Field(1 << 20, ge=1024)
    log_follow_per_key: int = Field(4, ge=1, le=10_000, description="log follow streams per key")
    log_follow_max: int = Field(64, ge=1, le=100_000, description="log follow streams in all")
    log_level: str = "info"
    log_json: bool = False
    gateway_port: int = Field(8001, ge=1, le=65535, description="OpenAI-compatible gateway")
    gateway_read_timeout_s: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="longest wait for an engine's first byte (above a full-context prefill)",
    )
    gateway_cold_start_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="longest wait of a request for an autoscaled model with no ready replica",
    )
    redis_url: str | None = Field(None, description="shared gateway limits; in-process if unset")
    redis_prefix: str = Field("suanwang:gw:", min_length=1, max_length=64)
    priority_classes_file: Path | None = Field(
        None, description="YAML of priority classes (default: the packaged four)"
    )
    benchmark_tenant: str = Field(
        PUBLIC_TENANT,
        description="tenant whose finished runs teach chip speeds to every tenant (empty: none)",
    )
    usage_journal_fsync: bool = Field(
        False, description="fsync every usage record (survive a machine crash, not just kill -9)"
    )
    local_isolation: Literal["sandbox", "single-user-dev"] = Field(
        "sandbox",
        description="sandbox: local jobs run as per-tenant uids in bubblewrap; single-user-dev: "
        "as this process's own user, for development only",
    )
    tenant_uid_range: str = Field(
        "200000-299999", description="numeric uids given to tenants (no user accounts needed)"
    )
    external_probe_interval_s: float = Field(
        5.0, gt=0, le=3600, description="health-check period of external endpoints"
    )
    external_probe_timeout_s: float = Field(
        3.0, gt=0, le=60, description="health-check timeout of external endpoints"
    )
    cluster_health_interval_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="seconds between checks of every cluster's engine (capacity, nodes)",
    )
    orphan_interval_s: float = Field(
        30.0, gt=0, le=3600, description="seconds between sweeps for orphan engine runs"
    )
    orphan_grace_s: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="seconds an engine run no live attempt owns is left before it is cancelled",
    )
    engine_uid: int = Field(199999, ge=1, le=2**31 - 2, description="uid of platform engines")
    llama_threads: int = Field(
        2, ge=1, le=256, description="CPU threads of each local llama.cpp replica (llama-server)"
    )
    llama_slots: int = Field(
        8, ge=1, le=256, description="requests each local llama.cpp replica decodes at once"
    )
    job_max_processes: int = Field(256, ge=8, le=1 << 22, description="per local job")
    job_max_memory_bytes: int = Field(4 << 30, ge=16 << 20, description="per local job")
    job_max_disk_bytes: int = Field(1 << 30, ge=1 << 20, description="per local job's directory")
    slurm_spool_dir: Path | None = Field(
        None,
        description="where Slurm jobs get their directories and output files: a path every "
        "Slurm node sees (shared filesystem); default: <data_dir>-slurm beside the data dir",
    )
    kube_image: str = Field(
        "python:3.12-slim",
        min_length=1,
        max_length=512,
        description="container image Kubernetes runs jobs' commands in (a name the cluster "
        "can pull; the command is its argv)",
    )
    kube_engine_images: dict[str, str] = Field(
        default_factory=dict,
        description="JSON object engine -> container image for inference replicas on "
        'Kubernetes (e.g. {"llama.cpp": "registry/suanwang:1"}); engines not named use '
        "the pinned image of their chip family (docs/backends.md), llama.cpp and "
        "sentence-transformers SUANWANG_KUBE_IMAGE",
    )

    storage_root: Path | None = Field(
        None,
        description="where datasets live: one subdirectory per region, each holding "
        "tenants/<tenant>/datasets/<id>/ (default: <data_dir>/storage)",
    )
    storage_quota_bytes: int = Field(
        DEFAULT_STORAGE_QUOTA_BYTES,
        ge=0,
        description="a tenant's dataset storage quota unless the operator sets its own",
    )

    @field_validator("tenant_uid_range")
    @classmethod
    def _uid_range(cls, value: str) -> str:
        return str(UidRange.parse(value))

    @model_validator(mode="after")
    def _engine_uid_outside_tenants(self) -> Settings:
        if self.engine_uid in self.tenant_uids:
            raise ValueError(
                f"SUANWANG_ENGINE_UID {self.engine_uid} lies inside SUANWANG_TENANT_UID_RANGE"
            )
        return self

    @property
    def tenant_uids(self) -> UidRange:
        return UidRange.parse(self.tenant_uid_range)

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'suanwang.db').resolve()}"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def slurm_spool(self) -> Path:
        """:attr:`slurm_spool_dir`, absolute (outside the 0700 data directory: jobs write
        their output there as their own uid)."""
        if self.slurm_spool_dir is not None:
            return self.slurm_spool_dir.resolve()
        data = self.data_dir.resolve()
        return data.with_name(f"{data.name}-slurm")

    @property
    def storage_dir(self) -> Path:
        """:attr:`storage_root`, or ``<data_dir>/storage``."""
        return self.storage_root if self.storage_root is not None else self.data_dir / "storage"

    @property
    def usage_journal_dir(self) -> Path:
        """Where gateways journal usage before the ledger commits it (one per host)."""
        return self.data_dir / "usage-journal"

    @property
    def operator_key_file(self) -> Path:
        return self.data_dir / "operator.key"
