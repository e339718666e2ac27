"""Keeps replicas in step with their jobs, restarts them by policy and health-checks engines.

:class:`Converger` is the database half (one transaction under the scheduler lock, so two
control planes never both restart one replica): it creates missing replicas, gives every
wanted replica a job (a new one when the last ended, per the restart policy ``after_run``),
stops unwanted ones and maps job states to replica states. :class:`HealthChecker` is the
network half, run outside any transaction: it probes running engines with bounded timeouts
and records ready / unhealthy. Both are idempotent, so a kill -9 at any point is recovered
by the next tick from the database and the backends alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from suanwang.domain.changes import UNCHANGED
from suanwang.domain.demand import DemandReport, drained, replica_inflight
from suanwang.domain.deployments import (
    MAX_FAST_FAILURES,
    PUBLIC_TENANT,
    STARTUP_TIMEOUT_S,
    DeploymentRecord,
    DeploymentState,
    ReplicaChange,
    ReplicaRecord,
    after_probe,
    after_run,
    live_state,
)
from suanwang.domain.endpoints import EndpointRejected, placed_endpoint
from suanwang.domain.ids import new_job_id
from suanwang.domain.jobs import (
    MAX_RUNTIME_S,
    JobSpec,
    JobState,
    Resources,
    check_transition,
    validate_job,
)
from suanwang.domain.records import JobChange, JobRecord
from suanwang.domain.serving import ModelSpec, ReplicaState
from suanwang.domain.workloads import Workload
from suanwang.ports import (
    Clock,
    EngineLauncher,
    EngineProbe,
    ReplicaLaunch,
    UnitOfWork,
    UnitOfWorkFactory,
)
from suanwang.services.jobs import request_hash

REPLICA_PRIORITY = 500
PROBE_INTERVAL_S = 1.0
NEW_PORT_AFTER_FAILURES = 2
"""A local replica that failed fast this often in a row gets a fresh port (its own may be taken)."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a deployment's replicas run: chip, family, cards and the cluster's backend."""

    chip: str
    family: str
    cards: int
    backend: str

    @property
    def on_engine(self) -> bool:
        """Whether replicas run on an engine backend (Slurm, Ray, Kubernetes): their node,
        and so their address, is chosen by the engine when the run is submitted."""
        return self.backend not in ("local", "simulated")


@dataclass(frozen=True, slots=True)
class Converger:
    """The database half of reconciliation, for one unit of work."""

    uow: UnitOfWork
    launcher: EngineLauncher
    models: dict[str, ModelSpec]
    placement: Placement
    now: float
    demand: Sequence[DemandReport] | None = None
    """The gateways' fresh reports: a ready replica scaled away drains first (no new
    requests, stopped once its requests finish). ``None``: replicas stop at once."""

    def run(self, dep: DeploymentRecord) -> None:
        active = dep.state is DeploymentState.ACTIVE
        wanted = dep.replicas if active else 0
        existing = {r.number: r for r in self.uow.deployments.replicas(dep.id)}
        for number in range(wanted):
            if number not in existing:
                self._new_replica(dep, number)  # created with its first job: nothing to keep
        for replica in existing.values():
            if replica.number >= wanted:
                self._retire(replica, "scaled down" if active else "deployment stopped", active)
            else:
                self._keep(dep, replica)

    def _retire(self, replica: ReplicaRecord, reason: str, drain: bool) -> None:
        """Stop an unwanted replica: a ready one drains first (if ``drain`` and the gateways
        report), see :func:`~suanwang.domain.demand.drained` for when it is done."""
        demand = self.demand
        if not demand or not drain:  # no gateway reports: none routes to it
            self._stop(replica, reason)
        elif replica.state is ReplicaState.READY:
            change = ReplicaChange(
                state=ReplicaState.DRAINING,
                reason=f"{reason}: draining (no new requests; stopped when its requests end)",
                drain_started_at=self.now,
            )
            self.uow.deployments.update_replica(replica.id, change)
        elif replica.state is ReplicaState.DRAINING:
            since = replica.drain_started_at or self.now
            if drained(replica.id, since, demand, self.now):
                left = replica_inflight(replica.id, demand, self.now)
                how = "drained" if not left else f"drain timed out with {left} in flight"
                self._stop(replica, f"{reason}; {how} after {self.now - since:.1f} s")
        else:
            self._stop(replica, reason)

    def _new_replica(self, dep: DeploymentRecord, number: int) -> None:
        port = None
        if self.placement.backend != "simulated":
            port = self._fresh_port()
        replica = ReplicaRecord(
            id=f"{dep.id}-{number}",
            deployment=dep.id,
            number=number,
            job=None,
            state=ReplicaState.PENDING,
            base_url="",
            simulated=dep.simulated,
            chip=self.placement.chip,
            reason="created",
            failures=0,
            restarts=0,
            port=port,
            created_at=self.now,
            ready_at=None,
            last_health_at=None,
        )
        self.uow.deployments.add_replica(replica)
        self._start(dep, replica, failures=0, reason="starting")

    def _keep(self, dep: DeploymentRecord, replica: ReplicaRecord) -> None:
        if replica.state is ReplicaState.DRAINING:  # wanted again before it stopped
            again = ReplicaChange(
                state=ReplicaState.READY,
                reason="wanted again while draining",
                drain_started_at=None,
            )
            self.uow.deployments.update_replica(replica.id, again)
            replica = replace(
                replica, state=ReplicaState.READY, reason="wanted again while draining"
            )
        job = self.uow.jobs.job(replica.job) if replica.job else None
        if replica.state is ReplicaState.STOPPED:
            if replica.failures < MAX_FAST_FAILURES:  # scaled down earlier, wanted again
                self._start(dep, replica, failures=0, reason="starting")
            return
        if job is None or job.state.terminal:
            self._restart(dep, replica, job)
            return
        state = live_state(replica.state, job.state)
        if dep.simulated and job.state is JobState.RUNNING:
            state = ReplicaState.READY
        reason = job.reason if state is ReplicaState.PENDING else replica.reason
        if state is ReplicaState.STARTING and replica.state is not ReplicaState.STARTING:
            reason = "engine starting; waiting for its health check"
        if state is ReplicaState.STARTING and self._startup_overdue(job):
            self._cancel(job, f"engine not healthy within {STARTUP_TIMEOUT_S:.0f} s")
            return
        base_url = replica.base_url
        if self.placement.on_engine:
            try:
                base_url = self._engine_endpoint(job, replica.port)
            except EndpointRejected as exc:
                self._reject(replica, job, str(exc))
                return
            if base_url != replica.base_url and state is not ReplicaState.PENDING:
                state, reason = (
                    ReplicaState.STARTING,
                    "engine starting; waiting for its health check",
                )
        if state is not replica.state or reason != replica.reason or base_url != replica.base_url:
            ready_at = self.now if state is ReplicaState.READY else replica.ready_at
            change = ReplicaChange(state=state, reason=reason, ready_at=ready_at, base_url=base_url)
            self.uow.deployments.update_replica(replica.id, change)

    def _engine_endpoint(self, job: JobRecord, port: int | None) -> str:
        """The validated base URL of a replica's run on an engine backend ("" while none
        runs): the node the backend reports placing it on, checked against the attempt's
        placement, and the replica's ``port`` (``domain/endpoints.py``)."""
        if job.state is not JobState.RUNNING:
            return ""
        attempts = self.uow.jobs.attempts(job.id)
        attempt = attempts[-1] if attempts else None
        if attempt is None or not attempt.dispatched or attempt.state.ended:
            return ""
        if attempt.backend != self.placement.backend:
            raise EndpointRejected(
                f"the run is on backend {attempt.backend!r}, not the cluster's "
                f"{self.placement.backend!r}"
            )
        nodes = [p.node for p in attempt.placements]
        return placed_endpoint(attempt.handle, nodes, port, attempt.backend)

    def _reject(self, replica: ReplicaRecord, job: JobRecord, why: str) -> None:
        """Never route to an endpoint the backend did not place: unhealthy, run stopped."""
        reason = f"endpoint rejected: {why}"
        if replica.state is not ReplicaState.UNHEALTHY or replica.reason != reason:
            change = ReplicaChange(state=ReplicaState.UNHEALTHY, reason=reason, base_url="")
            self.uow.deployments.update_replica(replica.id, change)
        self._cancel(job, reason)

    def _startup_overdue(self, job: JobRecord) -> bool:
        attempts = self.uow.jobs.attempts(job.id)
        started = attempts[-1].started_at if attempts else None
        return started is not None and self.now - started > STARTUP_TIMEOUT_S

    def _restart(
        self, dep: DeploymentRecord, replica: ReplicaRecord, job: JobRecord | None
    ) -> None:
        state = job.state if job else JobState.FAILED
        why = job.reason if job else "its job is missing"
        decision = after_run(replica.failures, state, why, self._ran_s(job))
        if decision.give_up:
            given_up = ReplicaChange(
                state=ReplicaState.STOPPED,
                reason=decision.reason,
                failures=decision.failures,
                base_url="",
            )
            self.uow.deployments.update_replica(replica.id, given_up)
            return
        if replica.port is not None and decision.failures >= NEW_PORT_AFTER_FAILURES:
            replica = replace(replica, port=self._fresh_port())
            self.uow.deployments.update_replica(replica.id, ReplicaChange(port=replica.port))
        self._start(dep, replica, decision.failures, decision.reason, restart=True)

    def _fresh_port(self) -> int:
        return self.launcher.free_port(self.uow.deployments.ports_in_use())

    def _ran_s(self, job: JobRecord | None) -> float | None:
        attempts = self.uow.jobs.attempts(job.id) if job else []
        last = attempts[-1] if attempts else None
        if last is None or last.started_at is None:
            return None
        return (last.ended_at or self.now) - last.started_at

    def _start(
        self,
        dep: DeploymentRecord,
        replica: ReplicaRecord,
        failures: int,
        reason: str,
        *,
        restart: bool = False,
    ) -> None:
        model = self.models[dep.model]
        p = self.placement
        if replica.port is None and p.backend != "simulated":  # made before it needed one
            replica = replace(replica, port=self._fresh_port())
            self.uow.deployments.update_replica(replica.id, ReplicaChange(port=replica.port))
        plan = self.launcher.plan(
            ReplicaLaunch(
                replica.id, model, dep.engine, p.chip, p.family, p.cards, p.backend, replica.port
            )
        )
        spec = validate_job(
            JobSpec(
                name=f"replica {replica.id} ({dep.model})",
                command=plan.command,
                resources=Resources(
                    chip=p.chip, cards_per_node=p.cards, nodes=1, cluster=dep.cluster
                ),
                env=tuple(sorted(plan.env)),
                priority=REPLICA_PRIORITY,
                simulate_duration_s=float(MAX_RUNTIME_S) if dep.simulated else None,
                preemptible=False,
                workload=Workload.PLATFORM_ENGINE,
            )
        )
        job = _job_record(dep.tenant or PUBLIC_TENANT, spec, self.now)
        self.uow.jobs.add_job(job)
        self.uow.jobs.add_event(
            job.id, self.now, JobState.QUEUED, f"replica {replica.id}: {reason}"
        )
        started = ReplicaChange(
            job=job.id,
            state=ReplicaState.PENDING,
            reason=reason,
            failures=failures,
            base_url=plan.base_url,
            ready_at=None,
            restarts=replica.restarts + (1 if restart else 0),
        )
        self.uow.deployments.update_replica(replica.id, started)

    def _stop(self, replica: ReplicaRecord, reason: str) -> None:
        if replica.state is ReplicaState.STOPPED:
            return
        job = self.uow.jobs.job(replica.job) if replica.job else None
        if job is not None and not job.state.terminal:
            self._cancel(job, reason)
        stopped = ReplicaChange(
            state=ReplicaState.STOPPED,
            reason=reason,
            base_url="",
            failures=0,
            drain_started_at=None,
        )
        self.uow.deployments.update_replica(replica.id, stopped)

    def _cancel(self, job: JobRecord, reason: str) -> None:
        """Stop a replica's job the way a user's cancel does (the control loop stops the run)."""
        if job.cancel_requested:
            return
        if job.state in (JobState.QUEUED, JobState.PREEMPTED):
            check_transition(job.state, JobState.CANCELLED)
            cancelled = JobChange(state=JobState.CANCELLED, reason=reason, cancel_requested=True)
            self.uow.jobs.update_job(job, self.now, cancelled)
            self.uow.jobs.add_event(job.id, self.now, JobState.CANCELLED, reason)
        else:
            self.uow.jobs.update_job(job, self.now, JobChange(cancel_requested=True, reason=reason))
            self.uow.jobs.add_event(job.id, self.now, job.state, f"cancel requested: {reason}")


def _job_record(tenant: str, spec: JobSpec, now: float) -> JobRecord:
    return JobRecord(
        id=new_job_id(),
        tenant=tenant,
        name=spec.name,
        state=JobState.QUEUED,
        reason="waiting for the scheduler",
        priority=spec.priority,
        spec=spec,
        idempotency_key=None,
        request_hash=request_hash(spec),
        attempts=0,
        cancel_requested=False,
        created_at=now,
        updated_at=now,
        version=1,
    )


def _probed(
    replica: ReplicaRecord, state: ReplicaState, healthy: bool, now: float
) -> ReplicaChange:
    """The change a health check at ``now`` makes to ``replica``, now in ``state``."""
    if state is replica.state:
        return ReplicaChange(last_health_at=now)
    return ReplicaChange(
        last_health_at=now,
        state=state,
        reason="engine answers" if healthy else "health check failed",
        ready_at=now if state is ReplicaState.READY else UNCHANGED,
    )


class HealthChecker:
    """Probes running, non-simulated engines (each at most every ``interval_s``)."""

    def __init__(
        self, uows: UnitOfWorkFactory, probe: EngineProbe, clock: Clock, interval_s: float
    ) -> None:
        self._uows = uows
        self._probe = probe
        self._clock = clock
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._misses: dict[str, int] = {}

    def check(self) -> None:
        now = self._clock.now()
        probing = (ReplicaState.STARTING, ReplicaState.READY, ReplicaState.UNHEALTHY)
        with self._uows() as uow:
            due = [
                r
                for r in uow.deployments.replicas()
                if r.state in probing
                and not r.simulated
                and r.job is not None  # no job: an external endpoint (services/external.py)
                and r.base_url
                and now - self._last.get(r.id, 0.0) >= self._interval_s
            ]
        if not due:
            return
        results = self._probe.healthy(sorted({r.base_url for r in due}))
        for r in due:
            self._last[r.id] = now
        with self._uows() as uow:
            current = {r.id: r for r in uow.deployments.replicas()}
            for r in due:
                fresh = current.get(r.id)
                if fresh is None or fresh.job != r.job or fresh.state not in probing:
                    continue  # restarted or stopped while we probed
                healthy = results.get(r.base_url, False)
                misses = 0 if healthy else self._misses.get(r.id, 0) + 1
                self._misses[r.id] = misses
                state = after_probe(fresh.state, healthy, misses)
                uow.deployments.update_replica(r.id, _probed(fresh, state, healthy, now))
            uow.commit()
