"""Datasets: a tenant's named input data, its files (the manifest) and its replicas per region.

What is here: the records (:class:`DatasetRecord`, :class:`DatasetReplica`,
:class:`ManifestEntry`), the rules for names and for file paths inside a dataset
(:func:`check_dataset_name`, :func:`upload_path_parts`), the storage quota check, and the
cutting of stored bytes into ledger pieces for billing (:func:`meter_storage`).

What is not: where the bytes live on disk (``adapters/dataset_files.py``: the platform
chooses ``<root>/<region>/tenants/<tenant>/datasets/<id>/``, a tenant never names a host
path) and moving them between regions (issue 14's transfer engine). Pure: no I/O.
"""

from __future__ import annotations

import enum
import re
import secrets
from dataclasses import dataclass

from suanwang.domain.errors import DomainError, ValidationError
from suanwang.domain.metering import DEFAULT_INTERVAL_S
from suanwang.domain.usage import StorageUsage

GIB = 1 << 30
DEFAULT_STORAGE_QUOTA_BYTES = 100 * GIB
"""A tenant's storage quota unless the operator sets another (``SUANWANG_STORAGE_QUOTA_BYTES``)."""
MAX_FILES = 100_000
MAX_PATH_LEN = 1024
MAX_PART_LEN = 255
DATASET_MOUNT = "/data/input"
"""Where a sandboxed job sees its dataset, read-only (also ``$SUANWANG_DATASET_DIR``)."""
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_ID = re.compile(r"^ds-[0-9a-f]{12}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class QuotaExceeded(DomainError):
    """The change would take a tenant past a quota (HTTP 413)."""

    status = 413


class DatasetFormat(enum.StrEnum):
    JSONL = "jsonl"
    PARQUET = "parquet"
    TEXT = "text"
    BINARY = "binary"


class DatasetState(enum.StrEnum):
    """``uploading``: files may be added, no job may use it; ``ready``: sealed, read-only."""

    UPLOADING = "uploading"
    READY = "ready"


class ReplicaState(enum.StrEnum):
    READY = "ready"
    STAGING = "staging"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One file of a dataset: its path inside the dataset, size and SHA-256 (hex)."""

    path: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class DatasetReplica:
    """A copy of a dataset in one region, at a directory the platform chose."""

    dataset: str
    region: str
    state: ReplicaState
    path: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class DatasetRecord:
    id: str
    tenant: str
    name: str
    format: DatasetFormat
    state: DatasetState
    size_bytes: int
    files: tuple[ManifestEntry, ...]
    created_at: float
    sealed_at: float | None = None
    deleted_at: float | None = None
    metered_to: float | None = None
    """Storage metering has written ledger rows up to here (``None``: from ``created_at``)."""
    replicas: tuple[DatasetReplica, ...] = ()

    def ready_regions(self) -> tuple[str, ...]:
        """Regions holding a full, verified replica (a sealed dataset only)."""
        if self.state is not DatasetState.READY:
            return ()
        return tuple(sorted(r.region for r in self.replicas if r.state is ReplicaState.READY))

    def replica_in(self, region: str) -> DatasetReplica | None:
        return next((r for r in self.replicas if r.region == region), None)


def replica_path(tenant: str, dataset_id: str) -> str:
    """A replica's directory relative to its region's storage root (agents speak these)."""
    return f"tenants/{tenant}/datasets/{dataset_id}"


def new_dataset_id() -> str:
    """A fresh dataset id such as ``ds-3f9c1a2b7d4e`` (also its directory name)."""
    return f"ds-{secrets.token_hex(6)}"


def is_dataset_id(text: str) -> bool:
    return bool(_ID.fullmatch(text))


def check_dataset_name(name: str, field_name: str = "name") -> str:
    """A dataset name: 1-63 of ``a-z 0-9 . _ -``, starting with a letter or digit."""
    if not _NAME.fullmatch(name) or is_dataset_id(name):
        raise ValidationError(
            f"invalid dataset name {name[:80]!r}",
            field=field_name,
            hint="1-63 characters a-z, 0-9, '.', '_' or '-', starting with a letter or digit "
            "(and not of the form ds-<12 hex>, which names dataset ids)",
        )
    return name


def upload_path_parts(path: str) -> tuple[str, ...]:
    """The components of a file path inside a dataset, or ``ValidationError`` (``path``).

    Accepted: a relative path of plain names, ``/``-separated (``.`` and empty components
    are dropped). Refused: absolute paths, ``..``, control characters and NUL, backslashes,
    over-long paths or names, names starting with ``.suanwang``. Symlinks cannot arise from
    a path (the platform writes plain files); the writer still opens every component
    without following links.
    """
    if not path or len(path) > MAX_PATH_LEN or _CONTROL.search(path) or "\\" in path:
        raise _bad_path(path, "empty, too long, or with control characters or backslashes")
    if path.startswith("/"):
        raise _bad_path(path, "absolute paths are not allowed")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if not parts:
        raise _bad_path(path, "it names no file")
    if ".." in parts:
        raise _bad_path(path, "'..' is not allowed")
    if any(len(p) > MAX_PART_LEN or p.startswith(".suanwang") for p in parts):
        raise _bad_path(path, f"a component is longer than {MAX_PART_LEN} or reserved")
    return parts


def _bad_path(path: str, why: str) -> ValidationError:
    shown = path[:200].encode("unicode_escape").decode()
    return ValidationError(
        f"file path {shown!r} is not a path inside the dataset: {why}",
        field="path",
        hint="give a relative path such as train/part-0001.jsonl",
    )


def check_storage_quota(tenant: str, used_bytes: int, adding_bytes: int, quota_bytes: int) -> None:
    """``QuotaExceeded`` (naming the quota) if ``adding_bytes`` more would pass it."""
    if adding_bytes > 0 and used_bytes + adding_bytes > quota_bytes:
        raise QuotaExceeded(
            f"tenant {tenant!r} would use {used_bytes + adding_bytes} bytes of storage, over "
            f"its storage quota of {quota_bytes} bytes",
            field="storage_quota",
            hint="delete datasets you no longer need, or ask the operator for a larger "
            "storage quota (suanwang tenants storage-quota)",
        )


def meter_storage(
    dataset: DatasetRecord, now: float, interval_s: float = DEFAULT_INTERVAL_S
) -> tuple[tuple[StorageUsage, ...], float | None]:
    """The closed grid pieces of ``dataset``'s storage not yet metered, and the new watermark.

    Pieces run from the watermark (or ``created_at``) to the last grid boundary at or before
    ``now``, or to ``deleted_at``; each bills ``size_bytes`` x every ready replica (a dataset
    still uploading counts once: its bytes are on disk). Entry ids are stable
    (``storage:<id>:<start ms>``), so metering again writes nothing twice.
    """
    step = round(interval_s * 1000)
    start = round((dataset.metered_to or dataset.created_at) * 1000)
    end_ms = (round(now * 1000) // step) * step
    if dataset.deleted_at is not None and dataset.deleted_at <= now:
        end_ms = round(dataset.deleted_at * 1000)  # the last piece ends at the deletion
    if end_ms <= start:
        return (), dataset.metered_to
    copies = max(1, len(dataset.ready_regions()))
    pieces = []
    while start < end_ms:
        stop = min(end_ms, (start // step + 1) * step)
        pieces.append(
            StorageUsage(
                entry_id=f"storage:{dataset.id}:{start}",
                tenant=dataset.tenant,
                dataset=dataset.id,
                byte_s=dataset.size_bytes * copies * (stop - start) // 1000,
                started_at=start / 1000,
                ended_at=stop / 1000,
            )
        )
        start = stop
    return tuple(pieces), end_ms / 1000
