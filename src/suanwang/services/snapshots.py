"""Builds the scheduler's :class:`~suanwang.scheduler.Snapshot` from the database.

Nodes with free cards, queued jobs, running jobs (for preemption, backfill and reallocation:
each carries its request, and its last checkpoint for the cost of a move), tenant
quotas (caps for tenants outside a cohort, Kueue-style queues for tenants in one), WAN
links, and per-chip speed and normalised units from the chip catalogue. One unit is one
V100-equivalent: 125 dense FP16 TFLOPS.
"""

from __future__ import annotations

from collections.abc import Mapping

from suanwang.domain.chips import Catalogue
from suanwang.domain.ids import (
    ChipFamily,
    ChipName,
    ClusterName,
    JobId,
    NodeId,
    RegionName,
    TenantId,
)
from suanwang.domain.records import AttemptRecord, JobRecord, TenantRecord
from suanwang.domain.workloads import Workload
from suanwang.ports import UnitOfWork
from suanwang.scheduler import NodeView, PendingJob, Placement, Snapshot
from suanwang.scheduler.learning import NOTHING_LEARNED, SpeedBook, merged_speeds
from suanwang.scheduler.snapshot import (
    DatasetRef,
    FlavorQuota,
    RunningJob,
    TenantQueue,
    WanLinkView,
)
from suanwang.services.cluster_health import placeable_clusters
from suanwang.services.transfers import staging_regions


def build_snapshot(
    uow: UnitOfWork,
    queued: list[JobRecord],
    catalogue: Catalogue,
    now: float,
    learned: SpeedBook | None = None,
    running_of: str | None = None,
) -> Snapshot:
    """Everything one scheduling cycle needs, read inside the scheduling transaction.

    ``running_of``: only that tenant's running work (a read-only view of one tenant's quota
    use; a scheduling cycle always takes everyone's).

    Nodes of a cluster the health check found unhealthy (or an engine cluster not yet
    checked) and drained nodes are not schedulable: nothing new is placed there.

    ``learned`` holds chip speeds learned from finished jobs, per tenant and kind, and the
    operator's shared ones (:class:`~suanwang.services.learning.LearnedSpeeds`); a job's
    stated speeds win over them.
    """
    learned = learned or NOTHING_LEARNED
    placeable = placeable_clusters(uow.fleet.clusters())
    nodes = tuple(
        NodeView(
            id=NodeId(n.id),
            name=n.name,
            cluster=ClusterName(n.cluster),
            region=RegionName(n.region),
            simulated=n.simulated,
            chip=ChipName(n.chip),
            family=catalogue.get(n.chip).family,
            cards_total=n.cards,
            cards_free=max(0, n.cards - n.cards_used),
            network_group=n.network_group,
            schedulable=n.state == "ready" and n.cluster in placeable,
        )
        for n in uow.fleet.nodes()
    )
    tenants = uow.tenancy.tenants()
    caps = {
        TenantId(t.id): {ChipFamily(f): q.nominal for f, q in t.quota.items()}
        for t in tenants
        if t.quota and t.cohort is None
    }
    usage = {
        TenantId(t): {ChipFamily(f): c for f, c in u.items()} for t, u in uow.jobs.usage().items()
    }
    speeds = chip_speeds(catalogue)
    datasets = dataset_refs(uow, queued)
    staging = staging_of(uow, queued)
    return Snapshot(
        now=now,
        nodes=nodes,
        pending=tuple(
            pending_job(j, learned, datasets.get(j.id), staging.get(j.id)) for j in queued
        ),
        quotas=caps,
        usage=usage,
        running=tuple(running_jobs(uow, learned, speeds, running_of)),
        queues=_queues(tenants),
        links=tuple(
            WanLinkView(w.region_a, w.region_b, w.bandwidth_gbps, w.rtt_ms)
            for w in uow.fleet.wan_links()
        ),
        chip_speed=speeds,
        chip_units=dict(speeds),
    )


def chip_speeds(catalogue: Catalogue) -> dict[ChipName, float]:
    """Default relative speed per chip: its dense FP16 TFLOPS in V100-equivalent units."""
    return {ChipName(c.name): c.units for c in catalogue.chips.values() if c.units > 0}


def _queues(tenants: list[TenantRecord]) -> dict[TenantId, TenantQueue]:
    return {
        TenantId(t.id): TenantQueue(
            tenant=TenantId(t.id),
            quotas={
                ChipFamily(f): FlavorQuota(q.nominal, q.borrowing_limit, q.lending_limit)
                for f, q in t.quota.items()
            },
            cohort=t.cohort,
            weight=t.weight,
        )
        for t in tenants
        if t.cohort is not None
    }


def _estimate(job: JobRecord) -> float | None:
    return job.spec.expected_duration_s or job.spec.simulate_duration_s


def job_speeds(job: JobRecord, learned: SpeedBook) -> dict[ChipName, float]:
    """The job's stated per-chip speeds over those learned for its tenant and kind."""
    stated = {ChipName(chip): float(speed) for chip, speed in job.spec.speed}
    return merged_speeds(job.tenant, job.spec.kind, stated, learned)


def dataset_refs(uow: UnitOfWork, jobs: list[JobRecord]) -> dict[str, DatasetRef]:
    """Job id -> its dataset's size and the regions with a ready replica (jobs that name
    one; a dataset gone since submission is a ref with no replicas: the job waits)."""
    refs: dict[str, DatasetRef] = {}
    seen: dict[tuple[str, str], DatasetRef] = {}
    for job in jobs:
        name = job.spec.dataset
        if name is None:
            continue
        key = (job.tenant, name)
        if key not in seen:
            found = uow.datasets.by_name(job.tenant, name)
            regions = found.ready_regions() if found is not None else ()
            size = found.size_bytes if found is not None else 0
            seen[key] = DatasetRef(name, size, tuple(RegionName(r) for r in regions))
        refs[job.id] = seen[key]
    return refs


def staging_of(uow: UnitOfWork, jobs: list[JobRecord]) -> dict[str, RegionName]:
    """Job id -> the region its dataset is being staged to by the scheduler, if any."""
    wanted = [j for j in jobs if j.spec.dataset is not None]
    if not wanted:
        return {}
    targets = staging_regions(uow)
    found: dict[str, RegionName] = {}
    for job in wanted:
        assert job.spec.dataset is not None
        dataset = uow.datasets.by_name(job.tenant, job.spec.dataset)
        if dataset is not None and dataset.id in targets:
            found[job.id] = RegionName(targets[dataset.id])
    return found


def pending_job(
    job: JobRecord,
    learned: SpeedBook | None = None,
    dataset: DatasetRef | None = None,
    staging_to: RegionName | None = None,
) -> PendingJob:
    """A queued job as the scheduler sees it (with its dataset's replicas, if it names one)."""
    spec, res = job.spec, job.spec.resources
    return PendingJob(
        id=JobId(job.id),
        tenant=TenantId(job.tenant),
        priority=job.priority,
        seq=int(job.created_at * 1_000_000),
        chips=res.accepted,
        cards_per_node=res.cards_per_node,
        nodes=res.nodes,
        simulated=spec.simulated,
        cluster=ClusterName(res.cluster) if res.cluster else None,
        region=RegionName(res.region) if res.region else None,
        duration_s=_estimate(job),
        max_runtime_s=spec.max_runtime_s,
        preemptible=spec.preemptible,
        checkpoint_interval_s=spec.checkpoint_interval_s,
        submitted_at=job.created_at,
        kind=spec.kind or "",
        speed=job_speeds(job, learned or NOTHING_LEARNED),
        serving=spec.workload is Workload.PLATFORM_ENGINE,
        dataset=dataset,
        staging_to=staging_to,
    )


def preemption_reason(for_job: str, why: str) -> str:
    """The ``preempt_reason`` (prose, for people) a job stopping for ``for_job`` carries
    until it has stopped; whom it stops for is the ``preempted_for`` column."""
    return f"preempted for {for_job}: {why}"


def stopping_for(job: JobRecord) -> JobId | None:
    """Whom a stopping job stops for (``RunningJob.preempted_for``): its ``preempted_for``
    column (its own id for a move). A job asked to stop without one (a row written before
    the column existed) stops for itself, so it is never chosen again and its cards go to
    whoever comes first once it has stopped."""
    if job.preempt_reason is None and job.preempted_for is None:
        return None
    return JobId(job.preempted_for or job.id)


def running_jobs(
    uow: UnitOfWork,
    learned: SpeedBook | None = None,
    defaults: Mapping[ChipName, float] | None = None,
    tenant: str | None = None,
) -> list[RunningJob]:
    """Work holding cards now (admitted or running attempts), ``tenant``'s only if given."""
    live = uow.jobs.live_attempts(tenant)
    jobs = uow.jobs.jobs_by_id([a.job for a in live])
    found = [(a, jobs[a.job]) for a in live if a.job in jobs]
    refs = dataset_refs(uow, [j for _, j in found])
    learned = learned or NOTHING_LEARNED
    return [_running(j, a, learned, defaults or {}, refs.get(j.id)) for a, j in found]


def _expected_run_s(
    job: JobRecord, chip: ChipName, learned: SpeedBook, defaults: Mapping[ChipName, float]
) -> float | None:
    """The estimate on the reference chip, scaled by the job's speed on ``chip``. Simulated
    runs last their simulated duration on any chip."""
    estimate = _estimate(job)
    if not estimate or job.spec.simulated:
        return estimate
    speed = job_speeds(job, learned).get(chip, defaults.get(chip, 1.0))
    return estimate / speed if speed > 0 else None


def _running(
    job: JobRecord,
    attempt: AttemptRecord,
    learned: SpeedBook,
    defaults: Mapping[ChipName, float],
    dataset: DatasetRef | None = None,
) -> RunningJob:
    started = attempt.started_at or attempt.admitted_at
    run_s = _expected_run_s(job, ChipName(attempt.chip), learned, defaults)
    limits = [v for v in (run_s, job.spec.max_runtime_s) if v]
    return RunningJob(
        id=JobId(job.id),
        tenant=TenantId(job.tenant),
        priority=job.priority,
        cluster=ClusterName(attempt.cluster),
        chip=ChipName(attempt.chip),
        family=ChipFamily(attempt.family),
        placements=tuple(Placement(p.node_id, p.cards) for p in attempt.placements),
        started_at=started,
        expected_end=started + min(limits) if limits else None,
        preemptible=job.spec.preemptible,
        last_checkpoint_at=attempt.last_checkpoint_at,
        checkpoint_interval_s=job.spec.checkpoint_interval_s,
        request=pending_job(job, learned, dataset),
        serving=job.spec.workload is Workload.PLATFORM_ENGINE,
        preempted_for=stopping_for(job),
    )
