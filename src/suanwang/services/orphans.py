"""Orphan runs: runs an engine holds under suanwang's name that no live attempt owns.

After a control-plane restart, live attempts re-attach through ``poll`` (the control loop);
a run the engine lost is finished by ``poll`` as ``lost`` and its job retried or failed by
its policy. What is left is the other direction: a run the engine still runs that suanwang
does not own (its attempt ended, was never recorded, or belongs to a deleted database).
:class:`OrphanSweep` lists each cluster's runs (:meth:`~suanwang.ports.Backend.runs`),
reports an alive run that matches no live attempt (log, job event, audit entry), and
cancels it once it has been seen as an orphan for ``grace_s``, or at once when another
attempt of its job is live. So no job keeps two runs.

The engine is asked first and the database read after, so a run dispatched meanwhile is
always found with its attempt; before cancelling, the attempt is looked up once more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from suanwang.domain.audit import AuditAction
from suanwang.domain.records import ClusterRecord
from suanwang.domain.tenancy import LOCAL_OPERATOR
from suanwang.ports import Backend, Clock, EngineUnreachable, RunRef, UnitOfWorkFactory
from suanwang.services import audit

log = structlog.get_logger("suanwang.orphans")

RunKey = tuple[str, str, int]
"""(cluster, job id, attempt)."""


@dataclass(slots=True)
class SweepReport:
    """What one sweep found: orphans seen (still in their grace period) and cancelled."""

    seen: list[RunKey] = field(default_factory=list)
    cancelled: list[RunKey] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Clusters whose runs could not be listed, with why."""


class OrphanSweep:
    """Finds and (after ``grace_s``) cancels orphan runs, at most once per ``interval_s``."""

    def __init__(
        self,
        uows: UnitOfWorkFactory,
        backends: Mapping[str, Backend],
        clock: Clock,
        grace_s: float = 300.0,
        interval_s: float = 30.0,
    ) -> None:
        if grace_s < 0 or interval_s < 0:
            raise ValueError("grace_s and interval_s must be >= 0")
        self._uows = uows
        self._backends = backends
        self._clock = clock
        self._grace_s = grace_s
        self._interval_s = interval_s
        self._last_at: float | None = None
        self._first_seen: dict[RunKey, float] = {}
        """When each current orphan was first seen by this process (a restart starts its
        grace period again: later, never sooner)."""

    def tick(self) -> SweepReport | None:
        """A sweep if one is due (None otherwise)."""
        now = self._clock.now()
        if self._last_at is not None and now - self._last_at < self._interval_s:
            return None
        self._last_at = now
        return self.sweep()

    def sweep(self) -> SweepReport:
        report = SweepReport()
        with self._uows() as uow:
            clusters = uow.fleet.clusters()
        runs = self._list_runs(clusters, report)
        with self._uows() as uow:
            live = {(a.job, a.number) for a in uow.jobs.live_attempts()}
        now = self._clock.now()
        orphans = {
            (c.name, r.job_id, r.attempt): (c, r)
            for c, r in runs
            if r.alive and (r.job_id, r.attempt) not in live
        }
        for key in list(self._first_seen):
            if key not in orphans and key[0] not in report.skipped:
                del self._first_seen[key]  # ended, or owned after all
        live_jobs = {job for job, _ in live}
        for key, (cluster, run) in orphans.items():
            new = key not in self._first_seen
            first = self._first_seen.setdefault(key, now)
            twice = run.job_id in live_jobs  # another attempt of the job is live: no grace
            if new and not twice:
                self._report(cluster, run, now, "found; cancelled after the grace period")
            if (twice or now - first >= self._grace_s) and self._cancel(cluster, run, now):
                report.cancelled.append(key)
                del self._first_seen[key]
            else:
                report.seen.append(key)
        return report

    def _list_runs(
        self, clusters: list[ClusterRecord], report: SweepReport
    ) -> list[tuple[ClusterRecord, RunRef]]:
        """Every cluster's runs; clusters sharing one engine (local) are asked once."""
        found: list[tuple[ClusterRecord, RunRef]] = []
        asked: set[tuple[str, object]] = set()
        for cluster in clusters:
            backend = self._backends.get(cluster.backend)
            engine = (cluster.backend, cluster.connection)
            if backend is None or engine in asked:
                continue
            asked.add(engine)
            if cluster.health is not None and not cluster.health.healthy:
                report.skipped[cluster.name] = f"unhealthy: {cluster.health.reason}"
                continue
            try:
                found.extend(
                    (cluster, run) for run in backend.runs(cluster.name, cluster.connection)
                )
            except EngineUnreachable as exc:  # expected while an engine is down: no traceback
                log.warning("could not list runs", cluster=cluster.name, reason=str(exc))
                report.skipped[cluster.name] = f"{type(exc).__name__}: {exc}"
            except Exception as exc:
                log.warning("could not list runs", cluster=cluster.name, exc_info=True)
                report.skipped[cluster.name] = f"{type(exc).__name__}: {exc}"
        return found

    def _cancel(self, cluster: ClusterRecord, run: RunRef, now: float) -> bool:
        """Cancel ``run`` unless its attempt became live meanwhile; True if it was asked to stop."""
        with self._uows() as uow:
            live = {(a.job, a.number) for a in uow.jobs.live_attempts()}
        if (run.job_id, run.attempt) in live:
            return False
        try:
            self._backends[cluster.backend].cancel(run.job_id, run.attempt, run.handle)
        except Exception:
            log.warning("cancelling an orphan failed; tried again next sweep", exc_info=True)
            return False
        self._report(cluster, run, now, "cancelled")
        return True

    def _report(self, cluster: ClusterRecord, run: RunRef, now: float, what: str) -> None:
        """Log, job event (if the job exists) and audit entry for an orphan."""
        reason = f"orphan run of attempt {run.attempt} on {cluster.name} {what}"
        log.warning(
            "orphan run", cluster=cluster.name, job=run.job_id, attempt=run.attempt, what=what
        )
        with self._uows() as uow:
            job = uow.jobs.job(run.job_id)
            if job is not None:
                uow.jobs.add_event(job.id, now, job.state, reason)
            audit.record(
                uow,
                LOCAL_OPERATOR,
                AuditAction.ORPHAN_RUN,
                cluster.name,
                tenant=job.tenant if job is not None else None,
                at=now,
                after={"job": run.job_id, "attempt": run.attempt, "what": what},
            )
            uow.commit()
