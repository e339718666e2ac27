"""The control loop keeps going when one job is bad: it fails alone, logged, with its reason.

A job whose stored spec cannot be launched (a NUL byte in ``working_dir``, stored before
submission checked for it) or whose backend raises while polling must not stop the tick:
eight good jobs of other tenants, admitted in the same ticks, still run. On SQLite and
PostgreSQL.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from suanwang.adapters.db.tables import JobRow
from suanwang.domain.jobs import JobSpec, JobState, Resources
from suanwang.domain.tenancy import Principal, Scope
from suanwang.ports import Backend, Handle, LaunchRequest, RunStatus
from suanwang.services.control import ControlLoop
from suanwang.services.platform import Platform

FLEET = """
regions: [{name: r1}]
clusters:
  - {name: sim, region: r1, kind: simulated, nodes: [{name: s1, chip: ascend-910b, cards: 16}]}
  - {name: here, region: r1, kind: real, nodes: [{name: n1, chip: cpu, cards: 16}]}
"""
GOOD_TENANTS = [f"good{i}" for i in range(8)]
OPERATOR = Principal("op", Scope.OPERATOR, None)


def tenant(platform: Platform, name: str) -> Principal:
    platform.tenancy.create_tenant(name, name, {})
    key = platform.tenancy.create_key(
        OPERATOR, tenant=name, scope=Scope.TENANT_MEMBER, name="", expires_in_s=None
    )
    return platform.tenancy.authenticate(key.secret)


def simulated(priority: int = 0) -> JobSpec:
    return JobSpec(
        name="sim",
        command=(),
        resources=Resources(chip="ascend-910b"),
        simulate_duration_s=10,
        priority=priority,
    )


def submit_good(platform: Platform, spec: JobSpec) -> list[tuple[Principal, str]]:
    jobs = []
    for name in GOOD_TENANTS:
        principal = tenant(platform, name)
        jobs.append((principal, platform.jobs.submit(principal, spec, None).job.id))
    return jobs


def tick_until(platform: Platform, control: ControlLoop, done: Any, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "condition not met in time"
        control.tick()  # never raises: a bad job fails alone
        time.sleep(0.05)


def states(platform: Platform, jobs: list[tuple[Principal, str]]) -> list[JobState]:
    return [platform.jobs.get(p, j).job.state for p, j in jobs]


def test_a_stored_job_with_a_nul_byte_fails_alone_and_others_run(platform: Platform) -> None:
    """The issue's case: the tick raised on the bad job each time, so no job started."""
    platform.fleet.apply_yaml(FLEET)
    bad_tenant = tenant(platform, "mallory")
    spec = JobSpec(name="bad", command=("true",), resources=Resources(chip="cpu"), priority=9)
    bad = platform.jobs.submit(bad_tenant, spec, None).job
    with platform.uows.engine.begin() as conn:  # type: ignore[attr-defined]
        stored = dict(conn.execute(sa.select(JobRow.spec).where(JobRow.id == bad.id)).scalar_one())
        stored["working_dir"] = "/tmp\x00/x"  # as an older server accepted it
        conn.execute(sa.update(JobRow).where(JobRow.id == bad.id).values(spec=stored))
    platform.clock.advance(1)  # type: ignore[attr-defined]
    good = submit_good(platform, replace(spec, name="good", priority=0))

    tick_until(
        platform,
        platform.control,
        lambda: all(s is JobState.SUCCEEDED for s in states(platform, good)),
    )
    detail = platform.jobs.get(bad_tenant, bad.id)
    assert detail.job.state is JobState.FAILED
    # The local backend refuses the path itself now (its launch checks it, outside the
    # sandbox); a backend that raises instead is the RaisingBackend cases below.
    assert "working_dir" in detail.job.reason
    assert "NUL byte" in detail.job.reason
    assert detail.attempts[0].state.value == "failed"
    assert any(detail.job.reason in e.reason for e in detail.events)


class RaisingBackend:
    """A backend that raises for one job's polls (or submits) and passes the rest through."""

    def __init__(self, inner: Backend, bad_job: str, on: str) -> None:
        self.name = inner.name
        self.inner, self.bad_job, self.on = inner, bad_job, on
        self.cancelled: list[str] = []

    def submit(self, request: LaunchRequest) -> RunStatus:
        if self.on == "submit" and request.job_id == self.bad_job:
            raise RuntimeError("the cluster refused this job")
        return self.inner.submit(request)

    def poll(self, job_id: str, attempt: int, handle: Handle) -> RunStatus:
        if self.on == "poll" and job_id == self.bad_job:
            raise RuntimeError("the cluster lost track of this job")
        return self.inner.poll(job_id, attempt, handle)

    def cancel(self, job_id: str, attempt: int, handle: Handle) -> None:
        self.cancelled.append(job_id)
        self.inner.cancel(job_id, attempt, handle)

    def logs(self, job_id: str, attempt: int, handle: Handle, offset: int, limit: int) -> bytes:
        return self.inner.logs(job_id, attempt, handle, offset, limit)


def loop_with(platform: Platform, backend: RaisingBackend) -> ControlLoop:
    backends = {**platform.backends, "simulated": backend}
    return ControlLoop(platform.uows, backends, platform.clock, platform.catalogue)


def test_a_job_whose_backend_raises_at_dispatch_fails_alone(platform: Platform) -> None:
    platform.fleet.apply_yaml(FLEET)
    bad_tenant = tenant(platform, "mallory")
    bad = platform.jobs.submit(bad_tenant, simulated(priority=9), None).job
    good = submit_good(platform, simulated())
    backend = RaisingBackend(platform.backends["simulated"], bad.id, on="submit")
    control = loop_with(platform, backend)

    report = control.tick()
    assert sorted(report.dispatched) == sorted(j for _, j in good)
    assert states(platform, good) == [JobState.RUNNING] * 8
    failed = platform.jobs.get(bad_tenant, bad.id)
    assert failed.job.state is JobState.FAILED
    assert failed.job.reason == (
        "attempt 1 failed: dispatch failed: RuntimeError: the cluster refused this job"
    )
    assert failed.events[-1].reason == failed.job.reason


def test_a_job_whose_backend_raises_at_poll_fails_alone(platform: Platform) -> None:
    platform.fleet.apply_yaml(FLEET)
    bad_tenant = tenant(platform, "mallory")
    bad = platform.jobs.submit(bad_tenant, replace(simulated(9), retries=3), None).job
    good = submit_good(platform, simulated())
    backend = RaisingBackend(platform.backends["simulated"], bad.id, on="poll")
    control = loop_with(platform, backend)

    control.tick()  # all nine dispatched
    platform.clock.advance(11)  # type: ignore[attr-defined]
    report = control.tick()  # the bad one's poll raises; the others finish
    assert bad.id in report.finished
    assert states(platform, good) == [JobState.SUCCEEDED] * 8
    failed = platform.jobs.get(bad_tenant, bad.id)
    assert failed.job.state is JobState.FAILED  # no retry: the backend error is the reason
    assert "poll failed: RuntimeError: the cluster lost track of this job" in failed.job.reason
    assert backend.cancelled == [bad.id]  # asked to stop what may still run
    assert control.tick().finished == []  # not polled again
