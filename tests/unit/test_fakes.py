"""The fake unit of work behaves like the real one where services rely on it: nothing is
kept without a commit, and a job update is compare-and-set on its version."""

from __future__ import annotations

from fakes import FakeDatabase, seed

from suanwang.domain.jobs import JobSpec, JobState
from suanwang.domain.records import JobChange, JobRecord


def a_job() -> JobRecord:
    return JobRecord(
        id="job-1", tenant="acme", name="t", state=JobState.QUEUED, reason="", priority=0,
        spec=JobSpec(name="t", command=("true",)), idempotency_key=None, request_hash="h",
        attempts=0, cancel_requested=False, created_at=0.0, updated_at=0.0, version=1,
    )  # fmt: skip


def test_an_uncommitted_unit_of_work_changes_nothing() -> None:
    db = FakeDatabase()
    seed(db)
    with db() as uow:
        uow.jobs.add_job(a_job())
        assert uow.jobs.job("job-1") is not None
    with db() as uow:
        assert uow.jobs.job("job-1") is None
    assert db.wrote("add_job") == ["job-1"]  # the call is logged all the same


def test_a_job_update_is_compare_and_set_on_its_version() -> None:
    db = FakeDatabase()
    with db() as uow:
        uow.jobs.add_job(a_job())
        uow.commit()
    with db() as uow:
        stale = uow.jobs.job("job-1")
        assert stale is not None
        assert uow.jobs.update_job(stale, 5.0, JobChange(reason="first"))
        assert not uow.jobs.update_job(stale, 6.0, JobChange(reason="second"))
        current = uow.jobs.job("job-1")
        uow.commit()
    assert current is not None
    assert (current.reason, current.version, current.updated_at) == ("first", 2, 5.0)
