"""Live reallocation over the fake unit of work (``services/moves.py``): a move is a
preemption with a placement hint; the hint pins the next admissions to its pool, expires
after ``HINT_CYCLES`` cycles or when the pool is gone; rounds are bounded (interval, no
round while work waits, never a second move of a job whose move is under way); and a
preempted attempt uses none of the job's retries."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fakes import FakeBackend, FakeClock, FakeDatabase, seed

from suanwang.domain.fleet import ClusterKind, ClusterSpec, NodeSpec
from suanwang.domain.ids import ChipName, ClusterName, RegionName, TenantId
from suanwang.domain.jobs import AttemptState, JobSpec, JobState, resources_accepting
from suanwang.domain.records import JobChange
from suanwang.domain.tenancy import Principal, QuotaSpec, Scope
from suanwang.services.catalogue import default_catalogue
from suanwang.services.control import ControlLoop, TickReport
from suanwang.services.jobs import Jobs
from suanwang.services.moves import HINT_CYCLES, Reallocation

ACME = Principal("key-1", Scope.TENANT_ADMIN, TenantId("acme"))
SLOW, FAST = "ascend-910b", "nvidia-h100"
INTERVAL_S = 60.0


def spec(
    name: str = "train",
    *,
    chips: tuple[str, ...] = (SLOW, FAST),
    speeds: tuple[tuple[str, float], ...] = ((SLOW, 0.1), (FAST, 1.0)),
    duration_s: float = 36_000,
    preemptible: bool = True,
    retries: int = 0,
) -> JobSpec:
    return JobSpec(
        name=name,
        command=("python", "train.py"),
        resources=resources_accepting(list(chips), cards_per_node=8),
        expected_duration_s=duration_s,
        speed=speeds,
        checkpoint_interval_s=60,
        preemptible=preemptible,
        retries=retries,
    )


@dataclass
class Plane:
    db: FakeDatabase
    clock: FakeClock
    backend: FakeBackend
    jobs: Jobs
    loop: ControlLoop

    def job(self, job_id: str):  # type: ignore[no-untyped-def]
        return self.db.tables.jobs[job_id]

    def chips(self, job_id: str) -> list[str]:
        with self.db() as uow:
            return [a.chip for a in uow.jobs.attempts(job_id)]

    def events(self, job_id: str) -> list[str]:
        with self.db() as uow:
            return [e.reason for e in uow.jobs.events(job_id)]

    def hint(self, job_id: str, cluster: str, chip: str, cycles: int = HINT_CYCLES) -> None:
        with self.db() as uow:
            job = uow.jobs.job(job_id)
            assert job is not None
            change = JobChange(hint_cluster=cluster, hint_chip=chip, hint_cycles=cycles)
            assert uow.jobs.update_job(job, self.clock.now(), change)
            uow.commit()

    def stop_run(self, job_id: str, state: AttemptState = AttemptState.CANCELLED) -> None:
        number = len(self.chips(job_id))
        self.backend.end(job_id, number, state, exit_code=None if state.value != "failed" else 1)


@pytest.fixture
def plane() -> Plane:
    """A slow pool (``here``: 2 x 8 Ascend 910B) and a fast one (``fast``: 1 x 8 H100)."""
    db, clock = FakeDatabase(), FakeClock()
    seed(db)
    with db() as uow:
        node = NodeSpec("h0", ChipName(FAST), 8)
        uow.fleet.put_cluster(
            ClusterSpec(ClusterName("fast"), RegionName("r1"), ClusterKind.REAL, "fake", (node,)),
            0.0,
        )
        uow.fleet.add_nodes("fast", [node])
        uow.tenancy.set_quota("acme", {"ascend": QuotaSpec(16), "nvidia": QuotaSpec(8)})
        uow.commit()
    backend = FakeBackend(clock)
    catalogue = default_catalogue()
    jobs = Jobs(db, clock, catalogue, {"fake": backend})
    loop = ControlLoop(db, {"fake": backend}, clock, catalogue, realloc_interval_s=INTERVAL_S)
    return Plane(db, clock, backend, jobs, loop)


def hold_fast(plane: Plane) -> str:
    """A non-preemptible job on the fast pool, so nothing else fits there."""
    held = plane.jobs.submit(
        ACME, spec("holder", chips=(FAST,), speeds=(), preemptible=False), None
    )
    plane.loop.tick()
    assert plane.chips(held.job.id) == [FAST]
    return held.job.id


def test_a_hinted_job_is_admitted_on_its_hinted_pool(plane: Plane) -> None:
    """Left alone the job prefers the Ascend pool (speed 2 there); its hint wins. (Only
    the admission cycle runs: a reallocation round would move it back at once, as its gain
    beats the cost of a move.)"""
    faster_here = ((SLOW, 2.0), (FAST, 1.0))
    job = plane.jobs.submit(ACME, spec(speeds=faster_here), None).job
    plane.hint(job.id, "fast", FAST)
    plane.loop.schedule(TickReport())
    assert plane.chips(job.id) == [FAST]
    assert plane.job(job.id).hint_cluster is None, "admission spends the hint"
    other = plane.jobs.submit(ACME, spec("unhinted", speeds=faster_here), None).job
    plane.loop.schedule(TickReport())
    assert plane.chips(other.id) == [SLOW]


def test_a_hint_expires_after_its_cycles_and_the_job_runs_elsewhere(plane: Plane) -> None:
    hold_fast(plane)
    job = plane.jobs.submit(ACME, spec(), None).job
    plane.hint(job.id, "fast", FAST)
    for left in range(HINT_CYCLES - 1, 0, -1):
        plane.loop.tick()
        assert plane.job(job.id).state is JobState.QUEUED
        assert plane.job(job.id).hint_cycles == left
    plane.loop.tick()
    assert plane.job(job.id).hint_cluster is None
    assert f"placement hint fast/{FAST} expired" in plane.events(job.id)
    plane.loop.tick()
    assert plane.chips(job.id) == [SLOW]


def test_a_hint_whose_pool_is_gone_is_dropped_at_once(plane: Plane) -> None:
    job = plane.jobs.submit(ACME, spec(chips=(SLOW,), speeds=()), None).job
    plane.hint(job.id, "gone", FAST)
    plane.loop.tick()
    assert plane.chips(job.id) == [SLOW]
    assert plane.job(job.id).hint_cluster is None


def test_a_round_moves_a_slow_job_once_and_the_hint_takes_it_to_the_fast_pool(
    plane: Plane,
) -> None:
    holder = hold_fast(plane)
    job = plane.jobs.submit(ACME, spec(), None).job
    plane.loop.tick()
    assert plane.chips(job.id) == [SLOW]
    plane.stop_run(holder, AttemptState.SUCCEEDED)
    plane.clock.advance(INTERVAL_S)
    assert plane.loop.tick().moved == [job.id]
    moved = plane.job(job.id)
    assert moved.preempt_reason is not None
    assert moved.preempt_reason.startswith(f"moved to fast/{FAST} (reallocation)")
    assert (moved.hint_cluster, moved.hint_chip) == ("fast", FAST)
    plane.clock.advance(INTERVAL_S)
    assert plane.loop.tick().moved == [], "a move under way is not planned again"
    for _ in range(3):
        plane.loop.tick()
    assert plane.chips(job.id) == [SLOW, FAST]
    assert plane.job(job.id).state is JobState.RUNNING
    plane.clock.advance(INTERVAL_S)
    assert plane.loop.tick().moved == [], "no move back: nothing is faster"


def test_rounds_keep_their_interval_and_wait_for_queued_work(plane: Plane) -> None:
    rounds = Reallocation(default_catalogue(), INTERVAL_S)
    assert rounds.due(0.0)
    with plane.db() as uow:
        assert rounds.run(uow, 0.0) == []
    assert not rounds.due(INTERVAL_S - 1)
    assert rounds.due(INTERVAL_S)
    assert not Reallocation(default_catalogue(), 0.0).due(0.0), "0 = off"
    holder = hold_fast(plane)
    job = plane.jobs.submit(ACME, spec(), None).job
    plane.loop.tick()
    plane.jobs.submit(ACME, spec("waiting", chips=(FAST,), speeds=()), None)
    plane.stop_run(holder, AttemptState.SUCCEEDED)
    plane.clock.advance(INTERVAL_S)
    report = plane.loop.tick()
    assert report.moved == [], "the freed cards belong to the queued job first"
    assert plane.chips(job.id) == [SLOW]


def test_a_moved_attempt_uses_no_retry(plane: Plane) -> None:
    """retries=1: attempt 1 is moved, attempt 2 fails, attempt 3 is its one retry (the old
    rule counted attempts, so the move had used the retry and the job failed)."""
    holder = hold_fast(plane)
    job = plane.jobs.submit(ACME, spec(retries=1), None).job
    plane.loop.tick()
    plane.stop_run(holder, AttemptState.SUCCEEDED)
    plane.clock.advance(INTERVAL_S)
    for _ in range(3):
        plane.loop.tick()
    assert plane.chips(job.id) == [SLOW, FAST]
    plane.stop_run(job.id, AttemptState.FAILED)
    plane.loop.tick()
    assert plane.job(job.id).state is not JobState.FAILED
    assert len(plane.chips(job.id)) == 3


def test_no_move_to_a_family_the_tenant_has_no_quota_for(plane: Plane) -> None:
    """The fast pool frees up, but acme may now hold no Nvidia card: moving would stop the
    job for a hint that can only expire."""
    holder = hold_fast(plane)
    job = plane.jobs.submit(ACME, spec(), None).job
    plane.loop.tick()
    with plane.db() as uow:
        uow.tenancy.set_quota("acme", {"ascend": QuotaSpec(16), "nvidia": QuotaSpec(0)})
        uow.commit()
    plane.stop_run(holder, AttemptState.SUCCEEDED)
    plane.clock.advance(INTERVAL_S)
    assert plane.loop.tick().moved == []
    assert plane.job(job.id).preempt_reason is None
