"""A job's output registered as a dataset of its tenant (``output_dataset``, e.g. the corpus
cleaner's cleaned files).

When a job whose spec names ``output_dataset`` succeeds, the control loop calls
:meth:`JobOutputs.register`: the files below ``output_path`` of the job's own directory
become a new dataset of the job's tenant, named ``output_dataset``, in the region of the
cluster the job ran on, through the same path as an upload (the tenant's quota, a SHA-256
per file, sealed at the end). The job acts as its tenant (audit actor ``job:<id>``): it can
only create a dataset of its own tenant, and only below its own directory (links and
special files refuse the output, see adapters/job_outputs.py). Any failure deletes what was
made, so a dataset is either complete and ready or absent; the job's events say which
(``output registered as dataset …`` or ``output not registered as dataset …: why``). The
job stays ``succeeded`` either way: its program did its work.
"""

from __future__ import annotations

import structlog

from suanwang.domain.datasets import DatasetFormat, DatasetRecord
from suanwang.domain.errors import DomainError
from suanwang.domain.ids import TenantId
from suanwang.domain.jobs import output_parts
from suanwang.domain.records import AttemptRecord, JobRecord
from suanwang.domain.tenancy import Principal, Scope
from suanwang.ports import Clock, JobOutputFiles, UnitOfWorkFactory
from suanwang.services.datasets import Datasets

log = structlog.get_logger("suanwang.job_outputs")


class JobOutputs:
    def __init__(
        self, uows: UnitOfWorkFactory, clock: Clock, datasets: Datasets, files: JobOutputFiles
    ) -> None:
        self._uows, self._clock, self._datasets, self._files = uows, clock, datasets, files

    def register(self, job: JobRecord, attempt: AttemptRecord) -> DatasetRecord | None:
        """Register the succeeded ``job``'s output (None, with the reason in its events,
        when it cannot be)."""
        name = job.spec.output_dataset
        if name is None:
            return None
        actor = Principal(f"job:{job.id}", Scope.TENANT_MEMBER, TenantId(job.tenant))
        made: DatasetRecord | None = None
        try:
            parts = output_parts(job.spec)
            listed = self._files.files(attempt.backend, job.id, parts)
            made = self._datasets.create(actor, name, _format(listed), self._region(attempt))
            for path, _ in listed:
                upload = self._datasets.begin_file(actor, made.id, path)
                for chunk in self._files.read(attempt.backend, job.id, parts, path):
                    upload.write(chunk)
                self._datasets.finish_file(actor, upload)
            sealed = self._datasets.seal(actor, made.id)
        except (DomainError, OSError) as exc:
            why = exc.message if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"
            self._undo(actor, made)
            self._event(job, f"output not registered as dataset {name}: {why}")
            log.warning("job output not registered", job=job.id, dataset=name, why=why)
            return None
        self._event(
            job,
            f"output registered as dataset {name} ({sealed.id}): {len(sealed.files)} file(s), "
            f"{sealed.size_bytes:,} bytes in {sealed.replicas[0].region}",
        )
        return sealed

    def _region(self, attempt: AttemptRecord) -> str:
        with self._uows() as uow:
            cluster = next((c for c in uow.fleet.clusters() if c.name == attempt.cluster), None)
        if cluster is None:
            raise DomainError(f"the job's cluster {attempt.cluster} is gone", field="cluster")
        return str(cluster.region)

    def _undo(self, actor: Principal, made: DatasetRecord | None) -> None:
        if made is None:
            return
        try:
            self._datasets.delete(actor, made.id)
        except DomainError:
            log.exception("could not delete a half-registered output dataset", dataset=made.id)

    def _event(self, job: JobRecord, reason: str) -> None:
        with self._uows() as uow:
            uow.jobs.add_event(job.id, self._clock.now(), "succeeded", reason[:1000])
            uow.commit()


def _format(files: list[tuple[str, int]]) -> DatasetFormat:
    """JSONL or Parquet when every file is one, else binary."""
    for fmt, suffixes in (
        (DatasetFormat.JSONL, (".jsonl", ".json")),
        (DatasetFormat.PARQUET, (".parquet",)),
    ):
        if all(path.endswith(suffixes) for path, _ in files):
            return fmt
    return DatasetFormat.BINARY
