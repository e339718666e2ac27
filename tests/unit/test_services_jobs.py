"""Job use cases over the fake unit of work: submit (durable, idempotent), cancel, and the
state machine applied by the service before it asks the store for anything."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fakes import FakeBackend, FakeClock, FakeDatabase, seed

from suanwang.domain.audit import AuditAction, AuditQuery
from suanwang.domain.errors import Conflict, ValidationError
from suanwang.domain.ids import TenantId
from suanwang.domain.jobs import (
    JobSpec,
    JobState,
    Resources,
    resources_accepting,
    spec_from_dict,
    spec_to_dict,
)
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.catalogue import default_catalogue
from suanwang.services.jobs import Jobs
from suanwang.services.snapshots import pending_job

ACME = Principal("key-1", Scope.TENANT_ADMIN, TenantId("acme"))
SPEC = JobSpec(
    name="train",
    command=("python", "train.py"),
    resources=Resources(chip="ascend", cards_per_node=8),
    env=(("MODE", "fast"),),
)


@pytest.fixture
def db() -> FakeDatabase:
    database = FakeDatabase()
    seed(database)
    return database


@pytest.fixture
def jobs(db: FakeDatabase) -> Jobs:
    clock = FakeClock()
    return Jobs(db, clock, default_catalogue(), {"fake": FakeBackend(clock)})


def test_submit_queues_the_job_with_its_event_and_audit_entry(db: FakeDatabase, jobs: Jobs) -> None:
    submitted = jobs.submit(ACME, SPEC, None)
    assert not submitted.replayed
    with db() as uow:
        stored = uow.jobs.job(submitted.job.id)
        events = uow.jobs.events(submitted.job.id)
        audit = uow.audit.entries(AuditQuery())
    assert stored is not None
    assert stored.state is JobState.QUEUED
    assert stored.spec == SPEC
    assert [(e.state, e.reason) for e in events] == [("queued", "submitted")]
    assert [e.action for e in audit] == [AuditAction.JOB_SUBMIT]


def test_submit_replays_a_key_and_refuses_the_key_with_another_body(
    db: FakeDatabase, jobs: Jobs
) -> None:
    first = jobs.submit(ACME, SPEC, "k1")
    again = jobs.submit(ACME, SPEC, "k1")
    assert again.replayed
    assert again.job.id == first.job.id
    with pytest.raises(ValidationError, match="Idempotency-Key"):
        jobs.submit(ACME, replace(SPEC, name="another"), "k1")
    assert list(db.tables.jobs) == [first.job.id]


def test_a_job_no_cluster_could_hold_is_refused_and_nothing_is_kept(
    db: FakeDatabase, jobs: Jobs
) -> None:
    three_nodes = replace(SPEC, resources=Resources(chip="ascend", cards_per_node=8, nodes=3))
    with pytest.raises(ValidationError, match="no real cluster"):
        jobs.submit(ACME, three_nodes, None)
    assert db.tables.jobs == {}
    assert db.wrote("add_job") == []


def test_a_job_accepting_several_chips_is_stored_with_all_of_them(
    db: FakeDatabase, jobs: Jobs
) -> None:
    """The fleet has only Ascend 910B: a job accepting H20 or Ascend fits; the list is
    stored canonically and reaches the scheduler whole."""
    several = replace(SPEC, resources=resources_accepting(["nvidia-h20", "ascend", "ascend"], 8))
    assert several.resources.accepted == ("nvidia-h20", "ascend")
    job = jobs.submit(ACME, several, None).job
    with db() as uow:
        stored = uow.jobs.job(job.id)
    assert stored is not None
    assert stored.spec.resources.accepted == ("nvidia-h20", "ascend")
    assert pending_job(stored).chips == ("nvidia-h20", "ascend")


def test_a_job_accepting_only_chips_outside_the_fleet_is_refused(jobs: Jobs) -> None:
    elsewhere = replace(SPEC, resources=resources_accepting(["nvidia-h20", "metax"], 8))
    with pytest.raises(ValidationError, match="'nvidia-h20\\|metax' cards"):
        jobs.submit(ACME, elsewhere, None)
    unknown = replace(SPEC, resources=resources_accepting(["ascend", "nvidia-b900"], 8))
    with pytest.raises(ValidationError, match="unknown chip"):
        jobs.submit(ACME, unknown, None)


def test_accepted_chips_round_trip_and_old_specs_hash_the_same() -> None:
    several = replace(SPEC, resources=resources_accepting(["ascend", "nvidia-h20"], 8))
    data = spec_to_dict(several)
    assert data["resources"]["chip"] == "ascend"
    assert data["resources"]["chips"] == ["ascend", "nvidia-h20"]
    assert spec_from_dict(data) == several
    assert "chips" not in spec_to_dict(SPEC)["resources"]
    assert spec_from_dict(spec_to_dict(SPEC)) == SPEC
    assert resources_accepting(["any", "ascend"]) == Resources(chip="any")
    assert resources_accepting(["ascend"], 8) == Resources(chip="ascend", cards_per_node=8)


@pytest.mark.parametrize(
    "resources",
    [
        Resources(chip="ascend", chips=("ascend",)),
        Resources(chip="nvidia-h20", chips=("ascend", "nvidia-h20")),
        Resources(chip="ascend", chips=("ascend", "any")),
        Resources(chip="ascend", chips=("ascend", "ascend", "metax")),
        Resources(chip="c0", chips=tuple(f"c{i}" for i in range(17))),
    ],
)
def test_malformed_accepted_chips_are_refused(jobs: Jobs, resources: Resources) -> None:
    with pytest.raises(ValidationError) as raised:
        jobs.submit(ACME, replace(SPEC, resources=resources), None)
    assert raised.value.field == "resources.chip"


def test_cancel_of_a_queued_job_cancels_it_at_once(db: FakeDatabase, jobs: Jobs) -> None:
    job = jobs.submit(ACME, SPEC, None).job
    cancelled = jobs.cancel(ACME, job.id)
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.cancel_requested
    assert db.tables.jobs[job.id].version == job.version + 1
    assert [e.action for e in db.tables.audit] == [AuditAction.JOB_SUBMIT, AuditAction.JOB_CANCEL]


@pytest.mark.parametrize("terminal", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
def test_cancel_of_a_finished_job_is_refused_before_any_store_write(
    db: FakeDatabase, jobs: Jobs, terminal: JobState
) -> None:
    job = jobs.submit(ACME, SPEC, None).job
    db.tables.jobs[job.id] = replace(db.tables.jobs[job.id], state=terminal)
    db.calls.clear()
    with pytest.raises(Conflict, match=f"already {terminal}"):
        jobs.cancel(ACME, job.id)
    assert db.calls == []
    assert db.tables.jobs[job.id].state is terminal


def test_cancel_of_a_running_job_only_asks_for_it(db: FakeDatabase, jobs: Jobs) -> None:
    job = jobs.submit(ACME, SPEC, None).job
    db.tables.jobs[job.id] = replace(db.tables.jobs[job.id], state=JobState.RUNNING)
    asked = jobs.cancel(ACME, job.id)
    assert asked.state is JobState.RUNNING
    assert asked.cancel_requested
    assert asked.reason == "cancelling"
    assert jobs.cancel(ACME, job.id) == asked  # asking twice changes nothing
    assert db.wrote("update_job") == [job.id]
