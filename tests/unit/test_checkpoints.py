"""The checkpoint contract's pure parts and the control loop's side of it (fakes).

- ``preemption_grace_s``: stored only when given, refused out of range (naming the field)
  by the domain and by the operator's bound at submission;
- lost work and the resume count of a job's attempts;
- exit 75 requeues without a retry (bounded), other exits use retries as before; the
  launch carries the grace and the resume count; a preempted attempt keeps the checkpoint
  time its backend reported at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from fakes import FakeBackend, FakeClock, FakeDatabase, seed
from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.checkpoints import (
    MAX_RESUMES,
    RESUME_EXIT_CODE,
    attempt_lost_work_s,
    check_preemption_grace,
    resume_summary,
)
from suanwang.domain.errors import ValidationError
from suanwang.domain.ids import TenantId
from suanwang.domain.jobs import (
    AttemptState,
    JobSpec,
    JobState,
    Resources,
    spec_from_dict,
    spec_to_dict,
    validate_job,
)
from suanwang.domain.records import AttemptChange, AttemptRecord, JobChange, JobRecord
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.workloads import Workload
from suanwang.ports import Handle
from suanwang.services.catalogue import default_catalogue
from suanwang.services.control import ControlLoop
from suanwang.services.jobs import Jobs
from suanwang.services.replicas import REPLICA_PRIORITY
from suanwang.services.snapshots import preemption_reason, stopping_for

ACME = Principal("key-1", Scope.TENANT_ADMIN, TenantId("acme"))
TRAIN = JobSpec(name="train", command=("python", "train.py"), resources=Resources(chip="ascend"))


def attempt(
    number: int,
    state: AttemptState,
    started: float | None,
    ended: float | None,
    checkpoint: float | None = None,
    cards: int = 2,
) -> AttemptRecord:
    return AttemptRecord(
        id=number, job="j", number=number, state=state, cluster="c", backend="fake",
        chip="ascend-910b", family="ascend", cards=cards, placements=(), handle={},
        dispatched=True, exit_code=None, reason="", admitted_at=0.0, started_at=started,
        ended_at=ended, last_checkpoint_at=checkpoint,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("record", "lost"),
    [
        (attempt(1, AttemptState.PREEMPTED, 100.0, 160.0), 60.0),
        (attempt(1, AttemptState.PREEMPTED, 100.0, 160.0, checkpoint=150.0), 10.0),
        (attempt(1, AttemptState.PREEMPTED, 100.0, 160.0, checkpoint=170.0), 0.0),
        (attempt(1, AttemptState.PREEMPTED, 100.0, 160.0, checkpoint=50.0), 60.0),
        (attempt(1, AttemptState.PREEMPTED, None, 160.0), 0.0),
        (attempt(1, AttemptState.FAILED, 100.0, 160.0), 0.0),
        (attempt(1, AttemptState.SUCCEEDED, 100.0, 160.0), 0.0),
    ],
    ids=[
        "no-checkpoint",
        "since-checkpoint",
        "forged-future",
        "old-mark",
        "never-ran",
        "failed",
        "ok",
    ],
)
def test_lost_work_of_an_attempt(record: AttemptRecord, lost: float) -> None:
    assert attempt_lost_work_s(record) == lost


def test_resume_summary_counts_preempted_attempts() -> None:
    summary = resume_summary(
        [
            attempt(1, AttemptState.PREEMPTED, 0.0, 30.0, checkpoint=25.0, cards=2),
            attempt(2, AttemptState.FAILED, 40.0, 50.0),
            attempt(3, AttemptState.PREEMPTED, 60.0, 70.0, cards=4),
            attempt(4, AttemptState.SUCCEEDED, 80.0, 90.0),
        ]
    )
    assert (summary.resumes, summary.lost_work_s, summary.lost_card_s) == (2, 15.0, 50.0)


@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 1e4), st.floats(-1e4, 1e4))))
def test_lost_work_is_never_negative_nor_more_than_the_run(
    rows: list[tuple[float, float, float]],
) -> None:
    for start, run, ckpt in rows:
        record = attempt(1, AttemptState.PREEMPTED, start, start + run, checkpoint=start + ckpt)
        assert 0.0 <= attempt_lost_work_s(record) <= (start + run) - start


@pytest.mark.parametrize("grace", [-1.0, 301.0])
def test_the_operator_bounds_the_grace(grace: float) -> None:
    with pytest.raises(ValidationError) as caught:
        check_preemption_grace(grace, 300.0)
    assert caught.value.field == "preemption_grace_s"
    assert "300" in (caught.value.hint or "")
    assert check_preemption_grace(300.0, 300.0) == 300.0
    assert check_preemption_grace(None, 300.0) is None


def test_the_domain_refuses_a_negative_grace() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_job(replace(TRAIN, preemption_grace_s=-0.5))
    assert caught.value.field == "preemption_grace_s"


def test_the_grace_is_stored_only_when_given() -> None:
    assert "preemption_grace_s" not in spec_to_dict(TRAIN)
    with_grace = replace(TRAIN, preemption_grace_s=30.0)
    assert spec_to_dict(with_grace)["preemption_grace_s"] == 30.0
    assert spec_from_dict(spec_to_dict(with_grace)) == with_grace
    assert spec_from_dict(spec_to_dict(TRAIN)) == TRAIN


# --- the control loop ------------------------------------------------------------------------


@dataclass
class Plane:
    db: FakeDatabase
    clock: FakeClock
    backend: FakeBackend
    jobs: Jobs
    loop: ControlLoop

    def job(self, job_id: str) -> JobState:
        return self.db.tables.jobs[job_id].state

    def attempts(self, job_id: str) -> list[AttemptRecord]:
        found = [a for a in self.db.tables.attempts.values() if a.job == job_id]
        return sorted(found, key=lambda a: a.number)


@pytest.fixture
def plane() -> Plane:
    db, clock = FakeDatabase(), FakeClock()
    seed(db)
    backend = FakeBackend(clock)
    catalogue = default_catalogue()
    jobs = Jobs(db, clock, catalogue, {"fake": backend}, max_preemption_grace_s=60.0)
    return Plane(db, clock, backend, jobs, ControlLoop(db, {"fake": backend}, clock, catalogue))


def test_submission_refuses_a_grace_over_the_operator_max(plane: Plane) -> None:
    with pytest.raises(ValidationError) as caught:
        plane.jobs.submit(ACME, replace(TRAIN, preemption_grace_s=61.0), None)
    assert caught.value.field == "preemption_grace_s"
    assert not plane.db.tables.jobs


def test_exit_75_requeues_without_a_retry_and_says_so_on_the_next_launch(plane: Plane) -> None:
    job = plane.jobs.submit(ACME, replace(TRAIN, preemption_grace_s=30.0), None).job
    plane.loop.tick()
    plane.backend.end(job.id, 1, AttemptState.FAILED, exit_code=RESUME_EXIT_CODE, reason="exited")
    plane.loop.tick()  # finishes attempt 1 (requeued), admits and dispatches attempt 2
    assert plane.job(job.id) is JobState.RUNNING
    first, second = plane.backend.submitted
    assert (first.grace_s, first.resume_count) == (30.0, 0)
    assert (second.grace_s, second.resume_count) == (30.0, 1)
    assert plane.attempts(job.id)[0].state is AttemptState.PREEMPTED
    plane.backend.end(job.id, 2, AttemptState.FAILED, exit_code=3, reason="exited")
    plane.loop.tick()
    assert plane.job(job.id) is JobState.FAILED, "retries=0: the resume used none of them"


def test_exit_75_after_a_limit_is_a_failure(plane: Plane) -> None:
    job = plane.jobs.submit(ACME, TRAIN, None).job
    plane.loop.tick()
    plane.backend.end(
        job.id, 1, AttemptState.FAILED, exit_code=RESUME_EXIT_CODE, reason="max runtime exceeded"
    )
    plane.loop.tick()
    assert plane.job(job.id) is JobState.FAILED


def test_exit_75_is_bounded(plane: Plane) -> None:
    job = plane.jobs.submit(ACME, TRAIN, None).job
    for number in range(1, MAX_RESUMES + 2):
        plane.loop.tick()
        assert plane.job(job.id) is JobState.RUNNING
        plane.backend.end(job.id, number, AttemptState.FAILED, exit_code=75, reason="exited")
    plane.loop.tick()
    assert plane.job(job.id) is JobState.FAILED
    assert len(plane.attempts(job.id)) == MAX_RESUMES + 1


def test_a_preempted_attempt_keeps_its_final_checkpoint(plane: Plane) -> None:
    job = plane.jobs.submit(ACME, TRAIN, None).job
    plane.loop.tick()
    with plane.db() as uow:
        record = uow.jobs.job(job.id)
        assert record is not None
        uow.jobs.update_job(record, plane.clock.now(), JobChange(preempt_reason="preempted for x"))
        uow.commit()
    plane.clock.advance(50)
    ended = plane.clock.now()
    plane.backend.end(job.id, 1, AttemptState.CANCELLED, exit_code=RESUME_EXIT_CODE)
    status = plane.backend._ended[(job.id, 1)]
    plane.backend._ended[(job.id, 1)] = replace(status, checkpoint_at=ended - 2)
    plane.loop.tick()
    first = plane.attempts(job.id)[0]
    assert first.state is AttemptState.PREEMPTED
    assert first.last_checkpoint_at == ended - 2
    assert resume_summary(plane.attempts(job.id)).resumes == 1


@pytest.mark.parametrize(
    ("reason", "preempted_for", "expected"),
    [
        (None, None, None),
        (preemption_reason("job-b", "serving: production replica job job-b ..."), "job-b", "job-b"),
        ("moved to c2/nvidia-h100 (reallocation): sooner", "job-a", "job-a"),
        # the prose names someone else: only the column counts
        (preemption_reason("job-c", "priority 500 > 100"), "job-b", "job-b"),
        # asked to stop before the column existed: stops for itself
        (preemption_reason("job-b", "priority 500 > 100"), None, "job-a"),
    ],
    ids=["running", "preempted", "moved", "column-not-prose", "no-column"],
)
def test_whom_a_stopping_job_stops_for(
    reason: str | None, preempted_for: str | None, expected: str | None
) -> None:
    db = FakeDatabase()
    job = _job_record(db)
    job = replace(job, id="job-a", preempt_reason=reason, preempted_for=preempted_for)
    assert stopping_for(job) == expected


def _job_record(db: FakeDatabase) -> JobRecord:
    seed(db)
    jobs = Jobs(db, FakeClock(), default_catalogue(), {})
    return jobs.submit(ACME, TRAIN, None).job


class InGrace(FakeBackend):
    """A backend whose runs take their whole (endless) grace period to stop."""

    def cancel(self, job_id: str, attempt: int, handle: Handle) -> None:
        self.cancelled.append((job_id, attempt))


def test_a_stopping_victim_stays_promised_to_its_replica() -> None:
    """While the first victim is in its grace period, a second job that became cheaper to
    stop (it just checkpointed) is not preempted too: the replica waits for its victim."""
    db, clock = FakeDatabase(), FakeClock()
    seed(db)
    backend, catalogue = InGrace(clock), default_catalogue()
    jobs = Jobs(db, clock, catalogue, {"fake": backend})
    plane = Plane(db, clock, backend, jobs, ControlLoop(db, {"fake": backend}, clock, catalogue))
    eight = replace(TRAIN, resources=Resources(chip="ascend", cards_per_node=8))
    first, second = (plane.jobs.submit(ACME, eight, None).job for _ in range(2))
    plane.loop.tick()
    assert plane.job(first.id) is JobState.RUNNING
    assert plane.job(second.id) is JobState.RUNNING
    replica = replace(eight, priority=REPLICA_PRIORITY, workload=Workload.PLATFORM_ENGINE)
    serving = plane.jobs.submit(ACME, replica, None).job
    plane.clock.advance(100)
    plane.loop.tick()
    stopping = [j.id for j in plane.db.tables.jobs.values() if j.preempt_reason]
    assert len(stopping) == 1
    other = second.id if stopping == [first.id] else first.id
    with plane.db() as uow:
        (live,) = [a for a in uow.jobs.attempts(other) if not a.state.ended]
        uow.jobs.update_attempt(live.id, AttemptChange(last_checkpoint_at=plane.clock.now()))
        uow.commit()
    for _ in range(3):
        plane.clock.advance(1)
        plane.loop.tick()
    assert [j.id for j in plane.db.tables.jobs.values() if j.preempt_reason] == stopping
    assert plane.job(serving.id) is JobState.QUEUED
