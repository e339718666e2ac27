"""Cluster health and orphan runs through the Backend port, with fakes: an unhealthy engine
keeps its jobs queued while another cluster admits, a node missing from the engine is
drained, and a run no live attempt owns is reported then cancelled after the grace period."""

from __future__ import annotations

import threading
from dataclasses import replace

import structlog.testing
from fakes import FakeBackend, FakeClock, FakeDatabase, seed

from suanwang.domain.audit import AuditAction
from suanwang.domain.connections import RayConnection
from suanwang.domain.fleet import ClusterKind, ClusterSpec, NodeSpec
from suanwang.domain.ids import ChipName, ClusterName, RegionName, TenantId
from suanwang.domain.jobs import JobSpec, JobState, Resources
from suanwang.domain.records import ClusterHealth, ClusterRecord
from suanwang.domain.tenancy import Principal, Scope
from suanwang.ports import ClusterCapacity, EngineUnreachable, RunRef
from suanwang.services.catalogue import default_catalogue
from suanwang.services.cluster_health import ClusterHealthCheck, placeable_clusters
from suanwang.services.control import ControlLoop, TickReport
from suanwang.services.jobs import Jobs
from suanwang.services.orphans import OrphanSweep

ACME = Principal("key-1", Scope.TENANT_ADMIN, TenantId("acme"))
ONE_NODE = JobSpec(
    name="t", command=("true",), resources=Resources(chip="ascend", cards_per_node=8)
)
CAT = default_catalogue()


def two_clusters() -> tuple[FakeDatabase, FakeClock, FakeBackend, FakeBackend]:
    """``here`` (backend fake, 2 nodes) and ``there`` (backend ray, 1 node), both ascend."""
    db, clock = FakeDatabase(), FakeClock()
    seed(db, quota=64)
    there = ClusterSpec(
        ClusterName("there"),
        RegionName("r1"),
        ClusterKind.REAL,
        "ray",
        (NodeSpec("t0", ChipName("ascend-910b"), 8),),
        connection=RayConnection("http://10.9.9.9:8265"),
    )
    with db() as uow:
        uow.fleet.put_cluster(there, 0.0)
        uow.fleet.add_nodes("there", list(there.nodes))
        uow.commit()
    return db, clock, FakeBackend(clock), FakeBackend(clock)


def test_placeable_clusters() -> None:
    def rec(name: str, backend: str, health: ClusterHealth | None) -> ClusterRecord:
        return ClusterRecord(name, "r", "real", backend, "", None, health)

    ok, bad = ClusterHealth(True, "", 1.0), ClusterHealth(False, "down", 1.0)
    records = [
        rec("local-unchecked", "local", None),
        rec("ray-unchecked", "ray", None),
        rec("ray-ok", "ray", ok),
        rec("ray-down", "ray", bad),
        rec("local-down", "local", bad),
    ]
    assert placeable_clusters(records) == {"local-unchecked", "ray-ok"}


def test_an_unhealthy_engine_keeps_its_jobs_queued_while_another_cluster_admits() -> None:
    db, clock, here, ray = two_clusters()
    backends = {"fake": here, "ray": ray}
    ray.health = ClusterCapacity(healthy=False, reason="connection refused")
    health = ClusterHealthCheck(db, backends, clock)
    report = health.check()
    assert report.unhealthy == {"there": "connection refused"}
    assert ray.capacity_calls == [("there", RayConnection("http://10.9.9.9:8265"))]
    jobs = Jobs(db, clock, CAT, backends)
    loop = ControlLoop(db, backends, clock, CAT)
    submitted = [jobs.submit(ACME, ONE_NODE, None).job.id for _ in range(3)]
    loop.tick()
    states = [db.tables.jobs[j].state for j in submitted]
    assert states.count(JobState.RUNNING) == 2  # the two nodes of "here"
    assert states.count(JobState.QUEUED) == 1  # not on "there", not lost
    assert ray.submitted == []
    assert db.tables.clusters["there"].health == ClusterHealth(
        False, "connection refused", clock.now()
    )
    # the engine comes back: the queued job goes there
    ray.health = ClusterCapacity(healthy=True, nodes=(NodeSpec("t0", ChipName("ascend-910b"), 8),))
    clock.advance(31)
    assert health.tick() is not None
    loop.tick()
    assert [db.tables.jobs[j].state for j in submitted].count(JobState.RUNNING) == 3
    assert [r.cluster for r in ray.submitted] == ["there"]


def test_an_engine_cluster_is_not_used_before_its_first_check() -> None:
    db, clock, here, ray = two_clusters()
    backends = {"fake": here, "ray": ray}
    jobs = Jobs(db, clock, CAT, backends)
    for _ in range(3):
        jobs.submit(ACME, ONE_NODE, None)
    ControlLoop(db, backends, clock, CAT).tick()
    assert ray.submitted == []
    assert len(here.submitted) == 2


def test_a_backend_not_installed_or_raising_makes_the_cluster_unhealthy() -> None:
    db, clock, here, ray = two_clusters()
    report = ClusterHealthCheck(db, {"fake": here}, clock).check()
    assert "not installed" in report.unhealthy["there"]

    def boom(cluster: str, connection: object) -> ClusterCapacity:
        raise RuntimeError("engine exploded")

    ray.capacity = boom  # type: ignore[method-assign]
    report = ClusterHealthCheck(db, {"fake": here, "ray": ray}, clock).check()
    assert report.unhealthy["there"] == "capacity check failed: RuntimeError: engine exploded"
    assert report.healthy == ["here"]


def test_a_node_missing_from_the_engine_is_drained_then_restored() -> None:
    db, clock, here, ray = two_clusters()
    backends = {"fake": here, "ray": ray}
    health = ClusterHealthCheck(db, backends, clock, interval_s=0)
    ray.health = ClusterCapacity(healthy=True, nodes=())  # complete: t0 is gone
    assert health.check().drained == ["there/t0"]
    with db() as uow:
        assert {n.name: n.state for n in uow.fleet.nodes("there")} == {"t0": "drained"}
    # an incomplete answer (local, simulated) drains nothing
    here.health = ClusterCapacity(healthy=True, complete=False)
    with db() as uow:
        assert {n.state for n in uow.fleet.nodes("here")} == {"ready"}
    ray.health = ClusterCapacity(healthy=True, nodes=(NodeSpec("t0", ChipName("ascend-910b"), 8),))
    assert health.check().restored == ["there/t0"]
    with db() as uow:
        assert {n.name: n.state for n in uow.fleet.nodes("there")} == {"t0": "ready"}


def test_an_orphan_is_reported_then_cancelled_after_the_grace_period() -> None:
    db, clock, here, _ = two_clusters()
    backends = {"fake": here}
    jobs = Jobs(db, clock, CAT, backends)
    job = jobs.submit(ACME, ONE_NODE, None).job
    ControlLoop(db, backends, clock, CAT).tick()
    # attempt 1 is live and owned; an unknown job's run is an orphan with a grace period,
    # an attempt 7 of the live job is a second run of it: cancelled at once
    here.foreign = [RunRef("nobody", 1, {}, True), RunRef(job.id, 7, {"x": 1}, True)]
    sweep = OrphanSweep(db, backends, clock, grace_s=60, interval_s=0)
    first = sweep.sweep()
    assert first.seen == [("here", "nobody", 1)]
    assert first.cancelled == [("here", job.id, 7)]
    assert here.cancelled == [(job.id, 7)]
    events = [e.reason for j, e in db.tables.events if j == job.id]
    assert any("orphan run of attempt 7 on here cancelled" in r for r in events)
    clock.advance(59)
    assert sweep.sweep().cancelled == []
    clock.advance(1)
    assert sweep.sweep().cancelled == [("here", "nobody", 1)]
    assert here.cancelled == [(job.id, 7), ("nobody", 1)]  # never attempt 1
    assert db.tables.jobs[job.id].state is JobState.RUNNING
    entries = [e for e in db.tables.audit if e.action is AuditAction.ORPHAN_RUN]
    assert [(e.tenant, e.after["what"] if e.after else "") for e in entries] == [
        (None, "found; cancelled after the grace period"),
        ("acme", "cancelled"),
        (None, "cancelled"),
    ]
    assert sweep.sweep().seen == []  # cancelled runs are no longer alive


def test_an_orphan_whose_attempt_turns_out_live_is_not_cancelled() -> None:
    db, clock, here, _ = two_clusters()
    backends = {"fake": here}
    sweep = OrphanSweep(db, backends, clock, grace_s=0, interval_s=0)
    jobs = Jobs(db, clock, CAT, backends)
    job = jobs.submit(ACME, ONE_NODE, None).job
    here.foreign = [RunRef(job.id, 1, {}, True)]
    # the run is listed before its attempt exists in the database; admitted meanwhile
    listed = here.runs

    def runs_then_admit(cluster: str, connection: object) -> list[RunRef]:
        found = listed(cluster, None)
        ControlLoop(db, backends, clock, CAT).schedule(TickReport())
        return found

    here.runs = runs_then_admit  # type: ignore[method-assign]
    assert sweep.sweep().cancelled == []
    assert here.cancelled == []


def test_unhealthy_clusters_are_not_swept_and_shared_engines_are_asked_once() -> None:
    db, clock, here, ray = two_clusters()
    with db() as uow:
        there = db.tables.clusters["there"]
        uow.t.clusters["there"] = replace(there, health=ClusterHealth(False, "down", 0.0))
        uow.t.clusters["here2"] = replace(db.tables.clusters["here"], name="here2")
        uow.commit()
    asked: list[str] = []
    listed = here.runs

    def counting(cluster: str, connection: object) -> list[RunRef]:
        asked.append(cluster)
        return listed(cluster, None)

    here.runs = counting  # type: ignore[method-assign]
    report = OrphanSweep(db, {"fake": here, "ray": ray}, clock).sweep()
    assert asked == ["here"]
    assert report.skipped == {"there": "unhealthy: down"}


def test_an_engine_that_cannot_be_asked_is_skipped_with_its_reason_and_no_traceback() -> None:
    db, clock, here, ray = two_clusters()

    def unreachable(cluster: str, connection: object) -> list[RunRef]:
        raise EngineUnreachable("connection refused")

    here.runs = unreachable  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        report = OrphanSweep(db, {"fake": here, "ray": ray}, clock).sweep()
    assert report.skipped["here"] == "EngineUnreachable: connection refused"
    (line,) = [entry for entry in logs if entry["event"] == "could not list runs"]
    assert line["reason"] == "connection refused"
    assert "exc_info" not in line


def test_nothing_is_drained_when_no_engine_node_matches_the_fleets_names() -> None:
    db, clock, here, ray = two_clusters()
    other = (NodeSpec("10.0.0.7", ChipName("ascend-910b"), 8),)
    ray.health = ClusterCapacity(healthy=True, nodes=other)
    report = ClusterHealthCheck(db, {"fake": here, "ray": ray}, clock).check()
    assert report.drained == []
    with db() as uow:
        assert {n.state for n in uow.fleet.nodes("there")} == {"ready"}


def test_a_cluster_applied_between_rounds_is_checked_at_the_next_tick() -> None:
    db, clock, here, ray = two_clusters()
    health = ClusterHealthCheck(db, {"fake": here, "ray": ray}, clock, interval_s=30)
    assert health.tick() is not None
    assert len(ray.capacity_calls) == 1
    clock.advance(1)
    assert health.tick() is None  # not due, and every cluster has been checked
    with db() as uow:
        late = replace(db.tables.clusters["there"], name="late", health=None)
        uow.t.clusters["late"] = late
        uow.commit()
    report = health.tick()
    assert report is not None
    assert report.healthy == ["late"]
    assert [c for c, _ in ray.capacity_calls] == ["there", "late"]


def test_engines_are_asked_at_once() -> None:
    db, clock, here, ray = two_clusters()
    asked = threading.Event()
    answered_while_waiting: list[bool] = []

    def slow(cluster: str, connection: object) -> ClusterCapacity:
        # answers only once the other engine was asked meanwhile (sequential asking would
        # wait the whole timeout here and then see nothing)
        answered_while_waiting.append(asked.wait(timeout=10))
        return ClusterCapacity(healthy=False, reason="timed out")

    def fast(cluster: str, connection: object) -> ClusterCapacity:
        asked.set()
        return ClusterCapacity(healthy=True, complete=False)

    here.capacity = slow  # type: ignore[method-assign]  # "here" is asked first
    ray.capacity = fast  # type: ignore[method-assign]
    report = ClusterHealthCheck(db, {"fake": here, "ray": ray}, clock).check()
    assert answered_while_waiting == [True]
    assert (report.healthy, report.unhealthy) == (["there"], {"here": "timed out"})
