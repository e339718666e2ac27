"""The live control plane acts on the scheduler's preemptions and records checkpoints.

Two tenants share a cohort on a simulated 16-card cluster: B borrows A's idle quota; when
A asks for its nominal quota back, B's borrowing job is preempted, requeued, and resumes
once capacity frees up, even when B marked it non-preemptible (the flag protects work
within B's own nominal quota only). A local job that touches $SUANWANG_CHECKPOINT_FILE has its last
checkpoint recorded on its attempt. A stopping job's preemptor is its ``preempted_for``
column. Hostile tenant: another tenant's private deployment does not evict work within
B's quota, and takes back only what B borrows.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from alembic import command

from suanwang.adapters.db.engine import alembic_config
from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.jobs import JobSpec, JobState, Resources
from suanwang.domain.records import JobChange
from suanwang.domain.tenancy import Principal, QuotaSpec, Scope
from suanwang.services.platform import Platform
from suanwang.services.snapshots import stopping_for

FLEET = """
regions: [{name: r1}, {name: r2}]
clusters:
  - {name: sim, region: r1, kind: simulated, nodes: [{name: s1, chip: ascend-910b, cards: 8}, {name: s2, chip: ascend-910b, cards: 8}]}
  - {name: here, region: r2, kind: real, nodes: [{name: n1, chip: cpu, cards: 2}]}
"""


def principal(platform: Platform, tenant: str) -> Principal:
    op = Principal("op", Scope.OPERATOR, None)
    key = platform.tenancy.create_key(
        op, tenant=tenant, scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
    )
    return platform.tenancy.authenticate(key.secret)


def state_of(platform: Platform, who: Principal, job_id: str) -> JobState:
    return platform.jobs.get(who, job_id).job.state


def test_borrowed_quota_is_reclaimed_by_preemption(platform: Platform) -> None:
    platform.fleet.apply_yaml(FLEET)
    for name in ("aaa", "bbb"):
        platform.tenancy.create_tenant(name, name, {"ascend": QuotaSpec(8, 8, None)}, cohort="lab")
    a, b = principal(platform, "aaa"), principal(platform, "bbb")
    big = JobSpec(
        name="borrower",
        command=(),
        resources=Resources(chip="ascend", cards_per_node=8, nodes=2),
        simulate_duration_s=3600,
        checkpoint_interval_s=600,
    )
    borrower = platform.jobs.submit(b, big, None).job
    platform.control.tick()
    assert state_of(platform, b, borrower.id) is JobState.RUNNING
    platform.clock.advance(10)  # type: ignore[attr-defined]
    own = JobSpec(
        name="owner",
        command=(),
        resources=Resources(chip="ascend", cards_per_node=8),
        simulate_duration_s=60,
    )
    owner = platform.jobs.submit(a, own, None).job
    platform.control.tick()
    stopping = platform.jobs.get(b, borrower.id).job
    assert stopping.preempt_reason is not None
    assert stopping.preempted_for == owner.id  # a column, not read back out of the prose
    for _ in range(5):
        platform.control.tick()
        platform.clock.advance(1)  # type: ignore[attr-defined]
    assert state_of(platform, a, owner.id) is JobState.RUNNING
    detail = platform.jobs.get(b, borrower.id)
    assert detail.job.state is JobState.QUEUED
    assert detail.job.preempt_reason is None
    assert detail.job.preempted_for is None
    assert detail.attempts[0].state.value == "preempted"
    assert any("preempt" in e.reason for e in detail.events)
    platform.clock.advance(120)  # type: ignore[attr-defined]
    for _ in range(5):
        platform.control.tick()
    assert state_of(platform, a, owner.id) is JobState.SUCCEEDED
    assert state_of(platform, b, borrower.id) is JobState.RUNNING
    assert len(platform.jobs.get(b, borrower.id).attempts) == 2


@pytest.mark.parametrize(
    "protection",
    [{"preemptible": False}, {"priority_class": "critical"}],
    ids=["preemptible-false", "critical-class"],
)
def test_non_preemptible_borrowed_work_is_reclaimed(
    platform: Platform, protection: dict[str, object]
) -> None:
    """B borrows A's idle quota with a job it marks non-preemptible; the flag protects it
    within B's own nominal quota only, so A's job still gets A's quota back."""
    platform.fleet.apply_yaml(FLEET)
    for name in ("aaa", "bbb"):
        platform.tenancy.create_tenant(name, name, {"ascend": QuotaSpec(8, 8, None)}, cohort="lab")
    a, b = principal(platform, "aaa"), principal(platform, "bbb")
    big = JobSpec(
        name="borrower",
        command=(),
        resources=Resources(chip="ascend", cards_per_node=8, nodes=2),
        simulate_duration_s=3600,
        **protection,  # type: ignore[arg-type]
    )
    borrower = platform.jobs.submit(b, big, None).job
    assert not borrower.spec.preemptible
    platform.control.tick()
    assert state_of(platform, b, borrower.id) is JobState.RUNNING
    platform.clock.advance(10)  # type: ignore[attr-defined]
    own = JobSpec(
        name="owner",
        command=(),
        resources=Resources(chip="ascend", cards_per_node=8),
        simulate_duration_s=60,
    )
    owner = platform.jobs.submit(a, own, None).job
    platform.control.tick()
    stopping = platform.jobs.get(b, borrower.id).job
    assert stopping.preempt_reason is not None
    assert stopping.preempted_for == owner.id  # a column, not read back out of the prose
    for _ in range(5):
        platform.control.tick()
        platform.clock.advance(1)  # type: ignore[attr-defined]
    assert state_of(platform, a, owner.id) is JobState.RUNNING
    detail = platform.jobs.get(b, borrower.id)
    assert detail.job.state is JobState.QUEUED
    assert detail.job.preempt_reason is None
    assert detail.job.preempted_for is None
    assert detail.attempts[0].state.value == "preempted"
    assert any("reclaim: tenant aaa" in e.reason for e in detail.events)


def test_checkpoints_are_recorded(platform: Platform) -> None:
    platform.fleet.apply_yaml(FLEET)
    platform.tenancy.create_tenant("aaa", "aaa", {})
    a = principal(platform, "aaa")
    script = 'touch "$SUANWANG_CHECKPOINT_FILE"; sleep 30'
    spec = JobSpec(
        name="ckpt",
        command=("sh", "-c", script),
        resources=Resources(chip="cpu"),
        checkpoint_interval_s=60,
    )
    job = platform.jobs.submit(a, spec, None).job
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        platform.control.tick()
        attempts = platform.jobs.get(a, job.id).attempts
        if attempts and attempts[0].last_checkpoint_at:
            break
        time.sleep(0.1)
    assert platform.jobs.get(a, job.id).attempts[0].last_checkpoint_at is not None
    platform.jobs.cancel(a, job.id)
    while (
        state_of(platform, a, job.id) is not JobState.CANCELLED and time.monotonic() < deadline + 10
    ):
        platform.control.tick()
        time.sleep(0.1)
    assert state_of(platform, a, job.id) is JobState.CANCELLED


SOLO = """
regions: [{name: r1}]
clusters:
  - {name: sim, region: r1, kind: simulated, nodes: [{name: s1, chip: ascend-910b, cards: 8}]}
"""


def whole_node(name: str, priority_class: str) -> JobSpec:
    return JobSpec(
        name=name,
        command=(),
        resources=Resources(chip="ascend", cards_per_node=8),
        simulate_duration_s=3600,
        priority_class=priority_class,
    )


@pytest.mark.parametrize(
    ("holder_class", "preempted"),
    [("best-effort", True), ("critical", False)],
    ids=["best-effort-gives-way", "critical-is-never-preempted"],
)
def test_priority_classes_decide_preemption(
    platform: Platform, holder_class: str, preempted: bool
) -> None:
    platform.fleet.apply_yaml(SOLO)
    platform.tenancy.create_tenant("aaa", "aaa", {})
    a = principal(platform, "aaa")
    holder = platform.jobs.submit(a, whole_node("holder", holder_class), None).job
    platform.control.tick()
    assert state_of(platform, a, holder.id) is JobState.RUNNING
    urgent = platform.jobs.submit(a, whole_node("urgent", "high"), None).job
    assert urgent.priority == 100
    for _ in range(5):
        platform.control.tick()
        platform.clock.advance(1)  # type: ignore[attr-defined]
    assert (state_of(platform, a, urgent.id) is JobState.RUNNING) is preempted
    holder_state = state_of(platform, a, holder.id)
    assert (holder_state is JobState.QUEUED) is preempted, holder_state


SIM = """
regions: [{name: r1}]
clusters:
  - {name: sim, region: r1, kind: simulated, nodes: [{name: s1, chip: ascend-910b, cards: 8}, {name: s2, chip: ascend-910b, cards: 8}]}
"""


@pytest.mark.parametrize("borrowing", [False, True], ids=["within-quota", "borrowing"])
def test_a_private_deployment_respects_another_tenants_quota(
    platform: Platform, borrowing: bool
) -> None:
    """Hostile tenant: aaa deploys a model to evict bbb's training. bbb's two 8-card jobs
    (normal priority, preemptible) run within its nominal quota of 16: aaa's replica
    waits. With a nominal quota of 8 bbb borrows 8 cards from the cohort (``ccc`` lends):
    aaa's replica takes back exactly one job's cards, and the other job keeps running."""
    platform.fleet.apply_yaml(SIM)
    nominal = QuotaSpec(8, 8, None) if borrowing else QuotaSpec(16, 0, None)
    platform.tenancy.create_tenant("bbb", "bbb", {"ascend": nominal}, cohort="lab")
    platform.tenancy.create_tenant("ccc", "ccc", {"ascend": QuotaSpec(8, 0, None)}, cohort="lab")
    platform.tenancy.create_tenant("aaa", "aaa", {})
    a, b = principal(platform, "aaa"), principal(platform, "bbb")
    train = JobSpec(
        name="train",
        command=(),
        resources=Resources(chip="ascend", cards_per_node=8),
        simulate_duration_s=3600,
        checkpoint_interval_s=600,
    )
    jobs = [platform.jobs.submit(b, train, None).job for _ in range(2)]
    platform.control.tick()
    assert all(state_of(platform, b, j.id) is JobState.RUNNING for j in jobs)
    platform.clock.advance(10)  # type: ignore[attr-defined]
    dep = platform.deployments.deploy(a, "glm-4-9b-chat", "sim", 1).deployment
    for _ in range(6):
        platform.control.tick()
        platform.clock.advance(1)  # type: ignore[attr-defined]
    states = [state_of(platform, b, j.id) for j in jobs]
    with platform.uows() as uow:
        replica_jobs = [j for j in uow.jobs.jobs(None) if j.tenant == "aaa"]
    assert len(replica_jobs) == 1, dep.id
    replica_state = replica_jobs[0].state
    if borrowing:
        assert sorted(s.value for s in states) == ["queued", "running"], states
        assert replica_state is JobState.RUNNING
    else:
        assert states == [JobState.RUNNING, JobState.RUNNING]
        assert replica_state is JobState.QUEUED
        assert all(not platform.jobs.get(b, j.id).job.preempt_reason for j in jobs)


def test_migration_0011_up_and_down(settings: Settings) -> None:
    """A job asked to stop keeps its reason through 0011 down and up; without the column
    (written before it existed) it stops for itself."""
    platform = build_platform(settings)
    platform.fleet.apply_yaml(SIM)
    platform.tenancy.create_tenant("bbb", "bbb", {})
    spec = JobSpec(name="t", command=(), resources=Resources(chip="ascend"), simulate_duration_s=60)
    job = platform.jobs.submit(principal(platform, "bbb"), spec, None).job
    change = JobChange(preempt_reason="preempted for job-x: priority", preempted_for="job-x")
    with platform.uows() as uow:
        assert uow.jobs.update_job(job, 1.0, change)
        uow.commit()
    with platform.uows() as uow:
        stored = uow.jobs.job(job.id)
        assert stored is not None
        assert stopping_for(stored) == "job-x"
    platform.uows.engine.dispose()  # type: ignore[attr-defined]
    config = alembic_config(settings.db_url)
    command.downgrade(config, "0010")
    engine = sa.create_engine(settings.db_url)
    with engine.connect() as conn:
        reason = conn.execute(sa.text("SELECT preempt_reason FROM jobs")).scalar_one()
        assert reason == "preempted for job-x: priority"
    command.upgrade(config, "head")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT preempted_for FROM jobs")).scalar_one() is None
    engine.dispose()
    again = build_platform(settings)
    with again.uows() as uow:
        stored = uow.jobs.job(job.id)
        assert stored is not None
        assert stopping_for(stored) == job.id
    again.uows.engine.dispose()  # type: ignore[attr-defined]
