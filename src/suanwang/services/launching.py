"""What the control loop tells a backend about one attempt (:class:`~suanwang.ports.LaunchRequest`).

Most of it comes from the stored job and attempt. A platform engine (an inference
replica's job) also carries its deployment's engine and the replica's port, read from the
replica whose job it is: Kubernetes needs them to pick the container image and to expose
the port through a Service (other engine backends find the port in the engine's command).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from suanwang.domain.connections import Connection
from suanwang.domain.records import AttemptRecord, JobRecord
from suanwang.domain.workloads import Workload
from suanwang.ports import LaunchRequest, NodeSlice, UnitOfWork


@dataclass(frozen=True, slots=True)
class EngineOf:
    """The engine and port of the replica a platform-engine job serves."""

    engine: str
    port: int | None


def replica_engines(uow: UnitOfWork, jobs: Iterable[JobRecord | None]) -> dict[str, EngineOf]:
    """Job id -> :class:`EngineOf` for the platform-engine jobs among ``jobs`` (read once)."""
    wanted = {j.id for j in jobs if j is not None and j.spec.workload is Workload.PLATFORM_ENGINE}
    if not wanted:
        return {}
    found: dict[str, EngineOf] = {}
    for replica in uow.deployments.replicas():
        if replica.job not in wanted:
            continue
        deployment = uow.deployments.deployment(replica.deployment)
        if deployment is not None:
            found[replica.job] = EngineOf(deployment.engine, replica.port)
    return found


@dataclass(frozen=True, slots=True)
class DatasetInput:
    """Where a job's dataset is in its attempt's region, or why it cannot start there."""

    path: str | None = None
    missing: str = ""


def dataset_input(uow: UnitOfWork, job: JobRecord, region: str) -> DatasetInput:
    """The ready replica of the job's dataset in ``region`` (nothing if it names none)."""
    name = job.spec.dataset
    if name is None:
        return DatasetInput()
    found = uow.datasets.by_name(job.tenant, name)
    replica = found.replica_in(region) if found is not None else None
    if found is None or replica is None or region not in found.ready_regions():
        return DatasetInput(missing=f"dataset {name} has no ready replica in region {region}")
    return DatasetInput(path=replica.path)


def launch_request(
    job: JobRecord,
    attempt: AttemptRecord,
    connection: Connection | None,
    engine: EngineOf | None = None,
    resume_count: int = 0,
    dataset_dir: str | None = None,
) -> LaunchRequest:
    """The request that starts ``attempt`` of ``job`` (``engine`` for replicas' jobs), the
    job's ``resume_count``-th resume."""
    spec = job.spec
    return LaunchRequest(
        job_id=job.id,
        attempt=attempt.number,
        tenant=job.tenant,
        cluster=attempt.cluster,
        command=spec.command,
        placements=tuple(NodeSlice(p.node, p.cards) for p in attempt.placements),
        env=spec.env,
        working_dir=spec.working_dir,
        max_runtime_s=spec.max_runtime_s,
        simulate_duration_s=spec.simulate_duration_s,
        admitted_at=attempt.admitted_at,
        workload=spec.workload,
        network=spec.network,
        chip=attempt.chip,
        family=attempt.family,
        preemptible=spec.preemptible,
        gang=spec.gang,
        connection=connection,
        engine=engine.engine if engine else "",
        port=engine.port if engine else None,
        grace_s=spec.preemption_grace_s,
        resume_count=resume_count,
        dataset_dir=dataset_dir,
    )
