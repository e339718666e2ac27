"""Dataset use cases: create, upload files (streamed), seal, list, show, delete; storage quota.

A dataset is created ``uploading`` with a replica directory in one region that the
platform chooses (:class:`~suanwang.ports.DatasetFiles`); files are streamed into it one by
one, each hashed (SHA-256) as it is written, and the manifest records path, size and hash.
Sealing makes it ``ready``: read-only, usable by jobs. Every change is checked against the
tenant's storage quota while the bytes arrive and again, under the scheduler lock, when a
file is committed, so concurrent uploads of one tenant cannot pass it together.

Tenant isolation as for jobs: a dataset of another tenant is "not found", named or by id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from suanwang.domain.audit import AuditAction
from suanwang.domain.datasets import (
    DatasetFormat,
    DatasetRecord,
    DatasetReplica,
    DatasetState,
    ManifestEntry,
    QuotaExceeded,
    ReplicaState,
    check_dataset_name,
    check_storage_quota,
    is_dataset_id,
    new_dataset_id,
    upload_path_parts,
)
from suanwang.domain.errors import Conflict, NotFound, ValidationError
from suanwang.domain.jobs import JobState
from suanwang.domain.tenancy import Principal
from suanwang.ports import Clock, DatasetFiles, FileSink, UnitOfWork, UnitOfWorkFactory
from suanwang.services import audit

log = structlog.get_logger("suanwang.datasets")
UNFINISHED = (JobState.QUEUED, JobState.ADMITTED, JobState.RUNNING, JobState.PREEMPTED)


@dataclass(frozen=True, slots=True)
class StorageUse:
    tenant: str
    used_bytes: int
    quota_bytes: int
    quota_is_default: bool


@dataclass(slots=True)
class Upload:
    """One file on its way into a dataset; refuses bytes past the tenant's headroom."""

    dataset: DatasetRecord
    parts: tuple[str, ...]
    sink: FileSink
    headroom_bytes: int
    quota_bytes: int
    aborted: bool = field(default=False)

    def write(self, chunk: bytes) -> None:
        if self.sink.written + len(chunk) > self.headroom_bytes:
            self.abort()
            check_storage_quota(
                self.dataset.tenant,
                self.quota_bytes - self.headroom_bytes,
                self.sink.written + len(chunk),
                self.quota_bytes,
            )
        self.sink.write(chunk)

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            self.sink.abort()


class Datasets:
    """Use cases for tenants' datasets."""

    def __init__(
        self,
        uows: UnitOfWorkFactory,
        clock: Clock,
        files: DatasetFiles,
        default_quota_bytes: int,
    ) -> None:
        self._uows, self._clock, self._files = uows, clock, files
        self._default_quota = default_quota_bytes

    # --- create, read --------------------------------------------------------------------
    def create(
        self, principal: Principal, name: str, fmt: DatasetFormat, region: str | None
    ) -> DatasetRecord:
        tenant = _own_tenant(principal)
        check_dataset_name(name)
        now = self._clock.now()
        with self._uows() as uow:
            chosen = _region(uow, region)
            if uow.datasets.by_name(tenant, name) is not None:
                raise Conflict(
                    f"you have a dataset named {name!r}",
                    field="name",
                    hint="choose another name, or delete the old dataset first",
                )
            dataset_id = new_dataset_id()
            path = self._files.create(chosen, tenant, dataset_id)
            replica = DatasetReplica(dataset_id, chosen, ReplicaState.STAGING, path, now)
            record = DatasetRecord(
                dataset_id,
                tenant,
                name,
                fmt,
                DatasetState.UPLOADING,
                0,
                (),
                now,
                replicas=(replica,),
            )
            uow.datasets.add(record)
            audit.record(
                uow,
                principal,
                AuditAction.DATASET_CREATE,
                dataset_id,
                tenant=tenant,
                at=now,
                after={"name": name, "format": fmt.value, "region": chosen},
            )
            uow.commit()
        return record

    def list(
        self,
        principal: Principal,
        name: str | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[DatasetRecord]:
        """Live datasets the principal sees, newest first (``offset``/``limit``: one page)."""
        tenant = None if principal.is_operator else principal.tenant_id
        with self._uows() as uow:
            return uow.datasets.live(tenant, name, offset, limit)

    def get(self, principal: Principal, ref: str) -> DatasetRecord:
        with self._uows() as uow:
            return visible_dataset(uow, principal, ref)

    # --- upload ----------------------------------------------------------------------------
    def begin_file(self, principal: Principal, ref: str, path: str) -> Upload:
        """Check the upload may start and open its file; stream into :meth:`Upload.write`,
        then :meth:`finish_file` (or :meth:`Upload.abort`)."""
        parts = upload_path_parts(path)
        with self._uows() as uow:
            dataset = _uploading(visible_dataset(uow, principal, ref))
            quota = self._quota(uow, dataset.tenant)
            replaced = sum(f.size_bytes for f in dataset.files if f.path == "/".join(parts))
            used = uow.datasets.used_bytes(dataset.tenant) - replaced
        if used >= quota:
            check_storage_quota(dataset.tenant, used, 1, quota)
        region = dataset.replicas[0].region
        sink = self._files.open_file(region, dataset.tenant, dataset.id, parts)
        return Upload(dataset, parts, sink, quota - used, quota)

    def finish_file(
        self, principal: Principal, upload: Upload, expected_sha256: str | None = None
    ) -> ManifestEntry:
        """Commit the uploaded file into the manifest, within the quota (checked again
        under the scheduler lock so concurrent uploads cannot pass it together); 422 if
        the client's ``expected_sha256`` differs from what arrived."""
        try:
            if expected_sha256 is not None and expected_sha256.lower() != upload.sink.sha256():
                raise ValidationError(
                    f"the file arrived with SHA-256 {upload.sink.sha256()}, not "
                    f"{expected_sha256[:64]!r}",
                    field="X-Content-SHA256",
                    hint="the upload was damaged or the file changed while sending; retry",
                )
            with self._uows() as uow:
                uow.lock_scheduler()
                dataset = _uploading(visible_dataset(uow, principal, upload.dataset.id))
                path = "/".join(upload.parts)
                old = next((f.size_bytes for f in dataset.files if f.path == path), 0)
                used = uow.datasets.used_bytes(dataset.tenant) - old
                check_storage_quota(
                    dataset.tenant, used, upload.sink.written, self._quota(uow, dataset.tenant)
                )
                entry = upload.sink.finish()
                uow.datasets.put_file(dataset.id, entry)
                uow.commit()
        except BaseException:
            upload.abort()
            raise
        return entry

    def seal(self, principal: Principal, ref: str) -> DatasetRecord:
        """Make an uploaded dataset ready: read-only from now on, usable by jobs."""
        now = self._clock.now()
        with self._uows() as uow:
            uow.lock_scheduler()
            dataset = _uploading(visible_dataset(uow, principal, ref))
            if not dataset.files:
                raise ValidationError(
                    f"dataset {dataset.name!r} has no files",
                    field="dataset",
                    hint="upload at least one file before sealing",
                )
            uow.datasets.seal(dataset.id, now)
            for replica in dataset.replicas:
                ready = DatasetReplica(
                    dataset.id, replica.region, ReplicaState.READY, replica.path, now
                )
                uow.datasets.put_replica(ready)
            audit.record(
                uow,
                principal,
                AuditAction.DATASET_SEAL,
                dataset.id,
                tenant=dataset.tenant,
                at=now,
                after={"files": len(dataset.files), "size_bytes": dataset.size_bytes},
            )
            uow.commit()
            sealed = uow.datasets.get(dataset.id)
        assert sealed is not None
        return sealed

    # --- delete ----------------------------------------------------------------------------
    def delete(self, principal: Principal, ref: str) -> DatasetRecord:
        """Delete a dataset no unfinished job uses (409 naming the job otherwise)."""
        now = self._clock.now()
        with self._uows() as uow:
            uow.lock_scheduler()
            dataset = visible_dataset(uow, principal, ref)
            users = [
                j.id
                for j in uow.jobs.with_states(UNFINISHED)
                if j.tenant == dataset.tenant and j.spec.dataset == dataset.name
            ]
            if users:
                raise Conflict(
                    f"dataset {dataset.name!r} is used by {len(users)} unfinished job(s), "
                    f"e.g. {users[0]}",
                    field="dataset",
                    hint="cancel those jobs or wait for them to end, then delete",
                )
            if uow.datasets.transfers(dataset=dataset.id, active_only=True):
                raise Conflict(
                    f"dataset {dataset.name!r} is being copied to another region",
                    field="dataset",
                    hint="wait for the transfer to end (suanwang data show), then delete",
                )
            uow.datasets.mark_deleted(dataset.id, now)
            audit.record(
                uow,
                principal,
                AuditAction.DATASET_DELETE,
                dataset.id,
                tenant=dataset.tenant,
                at=now,
                before={"name": dataset.name, "size_bytes": dataset.size_bytes},
            )
            uow.commit()
        for replica in dataset.replicas:
            try:
                self._files.remove(replica.region, dataset.tenant, dataset.id)
            except OSError:
                log.exception("could not remove a deleted dataset's files", dataset=dataset.id)
        return dataset

    # --- storage quota ---------------------------------------------------------------------
    def storage(self, principal: Principal, tenant: str) -> StorageUse:
        if not principal.can_see_tenant(tenant):
            raise NotFound(f"no tenant {tenant!r}", field="name")
        with self._uows() as uow:
            if uow.tenancy.tenant(tenant) is None:
                raise NotFound(f"no tenant {tenant!r}", field="name")
            own = uow.datasets.storage_quota(tenant)
            used = uow.datasets.used_bytes(tenant)
        quota = self._default_quota if own is None else own
        return StorageUse(tenant, used, quota, own is None)

    def set_storage_quota(
        self, principal: Principal, tenant: str, quota_bytes: int | None
    ) -> StorageUse:
        """Set (or, with None, reset to the default) a tenant's storage quota (operator)."""
        if quota_bytes is not None and quota_bytes < 0:
            raise ValidationError("a quota cannot be negative", field="bytes")
        now = self._clock.now()
        with self._uows() as uow:
            if uow.tenancy.tenant(tenant) is None:
                raise NotFound(f"no tenant {tenant!r}", field="name")
            before = uow.datasets.storage_quota(tenant)
            uow.datasets.set_storage_quota(tenant, quota_bytes)
            audit.record(
                uow,
                principal,
                AuditAction.STORAGE_QUOTA_UPDATE,
                tenant,
                tenant=tenant,
                at=now,
                before={"bytes": before},
                after={"bytes": quota_bytes},
            )
            uow.commit()
        return self.storage(principal, tenant)

    def _quota(self, uow: UnitOfWork, tenant: str) -> int:
        own = uow.datasets.storage_quota(tenant)
        return self._default_quota if own is None else own


def visible_dataset(uow: UnitOfWork, principal: Principal, ref: str) -> DatasetRecord:
    """The live dataset ``ref`` (an id, or a name in the caller's tenant) the caller may
    see; otherwise 404, the same whether it is missing or another tenant's."""
    missing = NotFound(f"no dataset {ref[:80]!r}", field="dataset")
    if is_dataset_id(ref):
        found = uow.datasets.get(ref)
        if found is None or found.deleted_at is not None:
            raise missing
        if not principal.can_see_tenant(found.tenant):
            raise missing
        return found
    if principal.tenant_id is not None:
        named = uow.datasets.by_name(principal.tenant_id, ref)
        if named is None:
            raise missing
        return named
    matches = uow.datasets.live(None, ref)
    if not matches:
        raise missing
    if len(matches) > 1:
        raise ValidationError(
            f"{len(matches)} tenants have a dataset named {ref[:80]!r}",
            field="dataset",
            hint="name it by id (ds-...): suanwang data list shows ids",
        )
    return matches[0]


def usable_dataset(uow: UnitOfWork, tenant: str, name: str) -> DatasetRecord:
    """The tenant's ready dataset ``name`` for a job: 404 if it has none of that name (the
    same for another tenant's), 409 while it is still uploading."""
    found = uow.datasets.by_name(tenant, name)
    if found is None:
        raise NotFound(
            f"no dataset {name[:80]!r}", field="dataset", hint="suanwang data list shows yours"
        )
    if found.state is not DatasetState.READY:
        raise Conflict(
            f"dataset {name!r} is still uploading",
            field="dataset",
            hint="seal it first (suanwang data upload seals when done)",
        )
    return found


def _own_tenant(principal: Principal) -> str:
    if principal.tenant_id is None:
        raise ValidationError(
            "datasets belong to a tenant; use a tenant key", field="Authorization"
        )
    return principal.tenant_id


def _uploading(dataset: DatasetRecord) -> DatasetRecord:
    if dataset.state is not DatasetState.UPLOADING:
        raise Conflict(
            f"dataset {dataset.name!r} is sealed (read-only)",
            field="dataset",
            hint="upload into a new dataset",
        )
    return dataset


def _region(uow: UnitOfWork, region: str | None) -> str:
    names = sorted(r.name for r in uow.fleet.regions())
    if region is None:
        if len(names) == 1:
            return names[0]
        raise ValidationError(
            "name the region the dataset is stored in",
            field="region",
            hint=f"one of: {', '.join(names) or '(no regions: apply a fleet first)'}",
        )
    if region not in names:
        raise ValidationError(
            f"no region {region[:64]!r}", field="region", hint=f"one of: {', '.join(names)}"
        )
    return region


__all__ = [
    "Datasets",
    "QuotaExceeded",
    "StorageUse",
    "Upload",
    "usable_dataset",
    "visible_dataset",
]
