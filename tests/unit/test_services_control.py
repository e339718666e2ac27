"""The control loop over the fake unit of work and a fake backend: admit, dispatch, finish,
retry, cancel, and a state change the domain forbids refused before any store write."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from fakes import FakeBackend, FakeClock, FakeDatabase, seed

from suanwang.domain.errors import Conflict
from suanwang.domain.ids import NodeId, TenantId
from suanwang.domain.jobs import AttemptState, JobSpec, JobState, Resources
from suanwang.domain.records import NodeCards
from suanwang.domain.tenancy import Principal, Scope
from suanwang.ports import NodeSlice
from suanwang.services.catalogue import default_catalogue
from suanwang.services.control import ControlLoop, TickReport
from suanwang.services.jobs import Jobs

ACME = Principal("key-1", Scope.TENANT_ADMIN, TenantId("acme"))
TWO_NODES = JobSpec(
    name="train",
    command=("python", "train.py"),
    resources=Resources(chip="ascend", cards_per_node=8, nodes=2),
    retries=1,
)


@dataclass
class Plane:
    db: FakeDatabase
    clock: FakeClock
    backend: FakeBackend
    jobs: Jobs
    loop: ControlLoop

    def state(self, job_id: str) -> JobState:
        return self.db.tables.jobs[job_id].state

    def cards_used(self) -> dict[str, int]:
        with self.db() as uow:
            return {n.name: n.cards_used for n in uow.fleet.nodes()}


@pytest.fixture
def plane() -> Plane:
    db, clock = FakeDatabase(), FakeClock()
    seed(db)
    backend = FakeBackend(clock)
    catalogue = default_catalogue()
    jobs = Jobs(db, clock, catalogue, {"fake": backend})
    return Plane(db, clock, backend, jobs, ControlLoop(db, {"fake": backend}, clock, catalogue))


def test_a_tick_admits_records_the_placement_then_dispatches(plane: Plane) -> None:
    job = plane.jobs.submit(ACME, TWO_NODES, None).job
    report = plane.loop.tick()
    assert (report.admitted, report.dispatched) == ([job.id], [job.id])
    assert plane.state(job.id) is JobState.RUNNING
    (attempt,) = plane.db.tables.attempts.values()
    node_ids = {spec.name: node_id for node_id, (_, spec) in plane.db.tables.nodes.items()}
    assert sorted(attempt.placements, key=lambda p: p.node) == [
        NodeCards(NodeId(node_ids["n0"]), "n0", 8),
        NodeCards(NodeId(node_ids["n1"]), "n1", 8),
    ]
    assert attempt.dispatched
    assert attempt.state is AttemptState.RUNNING
    (launch,) = plane.backend.submitted
    assert sorted(launch.placements, key=lambda s: s.node) == [
        NodeSlice("n0", 8),
        NodeSlice("n1", 8),
    ]
    assert launch.command == TWO_NODES.command
    assert plane.cards_used() == {"n0": 8, "n1": 8}


def test_a_run_that_ends_finishes_its_job_and_frees_its_cards(plane: Plane) -> None:
    job = plane.jobs.submit(ACME, TWO_NODES, None).job
    plane.loop.tick()
    plane.backend.end(job.id, 1, AttemptState.SUCCEEDED, exit_code=0)
    assert plane.loop.tick().finished == [job.id]
    assert plane.state(job.id) is JobState.SUCCEEDED
    assert plane.cards_used() == {"n0": 0, "n1": 0}


def test_a_failed_run_with_a_retry_left_runs_again_then_fails(plane: Plane) -> None:
    job = plane.jobs.submit(ACME, TWO_NODES, None).job
    plane.loop.tick()
    plane.backend.end(job.id, 1, AttemptState.FAILED, exit_code=3)
    plane.loop.tick()  # finishes attempt 1, requeues, admits and dispatches attempt 2
    assert plane.state(job.id) is JobState.RUNNING
    assert [r.attempt for r in plane.backend.submitted] == [1, 2]
    plane.backend.end(job.id, 2, AttemptState.FAILED, exit_code=3)
    plane.loop.tick()
    assert plane.state(job.id) is JobState.FAILED
    assert plane.db.tables.jobs[job.id].reason == "attempt 2 exited 3"
    assert plane.cards_used() == {"n0": 0, "n1": 0}


def test_cancel_of_a_running_job_stops_its_run(plane: Plane) -> None:
    job = plane.jobs.submit(ACME, TWO_NODES, None).job
    plane.loop.tick()
    plane.jobs.cancel(ACME, job.id)
    assert plane.state(job.id) is JobState.RUNNING  # until the loop stops the run
    plane.loop.tick()  # asks the backend to stop the run
    assert plane.backend.cancelled == [(job.id, 1)]
    plane.loop.tick()  # sees that it stopped
    assert plane.state(job.id) is JobState.CANCELLED
    assert plane.cards_used() == {"n0": 0, "n1": 0}


def test_a_stale_run_cannot_finish_a_queued_job(plane: Plane) -> None:
    """queued -> succeeded is no move of the state machine: the loop refuses it itself (the
    fake store would persist anything) and writes nothing."""
    job = plane.jobs.submit(ACME, TWO_NODES, None).job
    plane.loop.tick()
    stale = replace(plane.db.tables.jobs[job.id], state=JobState.QUEUED)
    plane.db.tables.jobs[job.id] = stale
    plane.backend.end(job.id, 1, AttemptState.SUCCEEDED, exit_code=0)
    plane.db.calls.clear()
    with pytest.raises(Conflict, match="a queued job cannot become succeeded"):
        plane.loop.reconcile(TickReport())
    assert plane.db.calls == []
    assert plane.db.tables.jobs[job.id] == stale
    assert plane.cards_used() == {"n0": 8, "n1": 8}
