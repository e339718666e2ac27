"""Live: the control plane executes reallocation moves (issue 11). SQLite and PostgreSQL.

A move is a checkpoint-aware preemption, a requeue that uses no retry, and a placement
hint the next admission cycles honour (``services/moves.py``). Here:

- the checkpointing example job (``examples/checkpointing-job.sh``) runs as a real process
  on a slow pool while a fast pool is busy; the fast pool frees up, the reallocation round
  moves it: SIGTERM, it saves its step, is requeued with the hint and resumes from its
  checkpoint on the fast pool;
- eight jobs run at once on a slow simulated pool and three fast cards free up: only the
  three with the most work left move (LPT), the others stay where they are;
- a control plane that stops right after recording a move (its state is all in the
  database) is replaced by a new one, which completes the move with no double run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.jobs import JobSpec, JobState, resources_accepting
from suanwang.domain.tenancy import Principal, Scope
from suanwang.ports import Clock
from suanwang.services.control import TickReport
from suanwang.services.platform import Platform

OPERATOR = Principal("op", Scope.OPERATOR, None)
EXAMPLE = Path(__file__).parents[2] / "examples" / "checkpointing-job.sh"
INTERVAL_S = 60.0
SLOW, FAST = "nvidia-l20", "nvidia-h100"
SPEEDS = ((SLOW, 0.1), (FAST, 1.0))
REAL = f"""
regions: [{{name: r1}}]
clusters:
  - {{name: slow, region: r1, kind: real, nodes: [{{name: l1, chip: {SLOW}, cards: 1}}]}}
  - {{name: fast, region: r1, kind: real, nodes: [{{name: h1, chip: {FAST}, cards: 1}}]}}
"""


@pytest.fixture
def moving(db_url: str, tmp_path: Path, clock: Clock) -> Iterator[Platform]:
    """A platform whose control loop runs a reallocation round every minute of its clock."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        cancel_grace_s=5,
        realloc_interval_s=INTERVAL_S,
    )
    built = build_platform(settings, clock)
    yield built
    built.uows.engine.dispose()  # type: ignore[attr-defined]


def tick_until(platform: Platform, done: object, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        platform.control.tick()
        if done():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s")


def state(platform: Platform, job_id: str) -> JobState:
    return platform.jobs.get(OPERATOR, job_id).job.state


def test_a_checkpointing_job_moves_to_a_fast_pool_and_resumes(moving: Platform) -> None:
    platform, clock = moving, moving.clock
    clock.advance(time.time() - clock.now())  # type: ignore[attr-defined]  # real processes
    platform.fleet.apply_yaml(REAL)
    platform.tenancy.create_tenant("aaa", "aaa", {})
    blocker = JobSpec(
        name="blocker", command=("sleep", "60"), resources=resources_accepting([FAST])
    )
    held = platform.jobs.submit(_tenant(platform), blocker, None).job
    tick_until(platform, lambda: state(platform, held.id) is JobState.RUNNING)
    spec = JobSpec(
        name="ckpt",
        command=("sh", "-c", EXAMPLE.read_text()),
        resources=resources_accepting([SLOW, FAST]),
        expected_duration_s=3600,
        checkpoint_interval_s=1,
        speed=SPEEDS,
    )
    job = platform.jobs.submit(_tenant(platform), spec, None).job
    tick_until(platform, lambda: _checkpointed(platform, job.id))
    assert platform.jobs.get(OPERATOR, job.id).attempts[0].cluster == "slow"
    platform.jobs.cancel(OPERATOR, held.id)
    tick_until(platform, lambda: state(platform, held.id) is JobState.CANCELLED)
    clock.advance(INTERVAL_S)  # type: ignore[attr-defined]
    tick_until(platform, lambda: len(platform.jobs.get(OPERATOR, job.id).attempts) == 2)
    tick_until(platform, lambda: b"attempt 2 resumed" in _log(platform, job.id, 2))
    detail = platform.jobs.get(OPERATOR, job.id)
    first, second = detail.attempts
    assert (first.cluster, first.state.value) == ("slow", "preempted")
    assert (second.cluster, second.chip) == ("fast", FAST)
    assert detail.job.spec.retries == 0, "a move used no retry: the job is still live"
    stopped = _step(_log(platform, job.id, 1), b"stopped at step")
    resumed = _step(_log(platform, job.id, 2), b"resumed at step")
    assert resumed == stopped > 0, (stopped, resumed)
    moves = [e.reason for e in detail.events if "moved to fast/" in e.reason]
    assert moves, detail.events
    assert "(reallocation)" in moves[0]
    assert "lost " in moves[0]
    assert detail.job.hint_cluster is None, "the hint is spent once the job is admitted"
    platform.jobs.cancel(OPERATOR, job.id)
    tick_until(platform, lambda: state(platform, job.id) is JobState.CANCELLED)


SIM = """
regions: [{name: r1}]
clusters:
  - name: sim
    region: r1
    kind: simulated
    nodes:
      - {name: slow1, chip: nvidia-l20, cards: 8}
      - {name: fast1, chip: nvidia-h100, cards: 3}
"""


def test_only_the_jobs_worth_moving_move(moving: Platform) -> None:
    """Eight jobs on the slow pool; three fast cards free up. Gains are 0.9 x remaining
    - 30 s against a 600 s bar: the three longest move, the fourth long one finds no
    card, and the four short ones (500 s) are not worth moving."""
    platform, clock = moving, moving.clock
    platform.fleet.apply_yaml(SIM)
    platform.tenancy.create_tenant("aaa", "aaa", {})
    who = _tenant(platform)
    blockers = [platform.jobs.submit(who, _sim(FAST, 1e5, ()), None).job for _ in range(3)]
    platform.control.tick()
    durations = [4000, 5000, 6000, 7000, 500, 500, 500, 500]
    jobs = [platform.jobs.submit(who, _sim(SLOW, d, SPEEDS), None).job for d in durations]
    platform.control.tick()
    assert all(state(platform, j.id) is JobState.RUNNING for j in jobs + blockers)
    clock.advance(100)  # type: ignore[attr-defined]
    for blocker in blockers:
        platform.jobs.cancel(who, blocker.id)
    for _ in range(4):
        platform.control.tick()
    assert all(state(platform, b.id) is JobState.CANCELLED for b in blockers)
    clusters = {j.id: [a.chip for a in platform.jobs.get(who, j.id).attempts] for j in jobs}
    moved = {j.id for j in jobs if clusters[j.id] == [SLOW, FAST]}
    assert moved == {j.id for j in jobs[1:4]}, clusters
    assert all(clusters[j.id] == [SLOW] for j in jobs if j.id not in moved), clusters
    assert all(state(platform, j.id) is JobState.RUNNING for j in jobs)


def test_a_move_recorded_before_a_crash_is_completed_by_the_next_control_plane(
    moving: Platform, db_url: str, tmp_path: Path
) -> None:
    platform, clock = moving, moving.clock
    platform.fleet.apply_yaml(SIM)
    platform.tenancy.create_tenant("aaa", "aaa", {})
    who = _tenant(platform)
    blockers = [platform.jobs.submit(who, _sim(FAST, 1e5, ()), None).job for _ in range(3)]
    platform.control.tick()
    job = platform.jobs.submit(who, _sim(SLOW, 7000, SPEEDS), None).job
    platform.control.tick()
    clock.advance(100)  # type: ignore[attr-defined]
    for blocker in blockers:
        platform.jobs.cancel(who, blocker.id)
    platform.control.reconcile(TickReport())
    assert all(state(platform, b.id) is JobState.CANCELLED for b in blockers)
    platform.control.reallocate(TickReport())  # records the move, then "crashes": no reconcile
    assert platform.jobs.get(who, job.id).job.preempt_reason
    settings = Settings(
        data_dir=tmp_path / "data", database_url=db_url, realloc_interval_s=INTERVAL_S
    )
    after = build_platform(settings, clock)
    try:
        for _ in range(3):
            after.control.tick()
        detail = after.jobs.get(who, job.id)
        assert [(a.chip, a.state.value) for a in detail.attempts] == [
            (SLOW, "preempted"),
            (FAST, "running"),
        ]
    finally:
        after.uows.engine.dispose()  # type: ignore[attr-defined]


def _sim(chip: str, duration_s: float, speeds: tuple[tuple[str, float], ...]) -> JobSpec:
    chips = [c for c, _ in speeds] or [chip]
    return JobSpec(
        name=f"sim-{chip}",
        command=(),
        resources=resources_accepting(chips if speeds else [chip]),
        simulate_duration_s=duration_s,
        checkpoint_interval_s=60,
        speed=speeds,
    )


def _tenant(platform: Platform) -> Principal:
    key = platform.tenancy.create_key(
        OPERATOR, tenant="aaa", scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
    )
    return platform.tenancy.authenticate(key.secret)


def _checkpointed(platform: Platform, job_id: str) -> bool:
    attempts = platform.jobs.get(OPERATOR, job_id).attempts
    return bool(attempts and attempts[-1].last_checkpoint_at)


def _log(platform: Platform, job_id: str, attempt: int) -> bytes:
    return platform.jobs.logs(OPERATOR, job_id, 0, 1 << 16, attempt)[0]


def _step(log: bytes, marker: bytes) -> int:
    line = next(ln for ln in log.splitlines() if marker in ln)
    return int(line.rsplit(b" ", 1)[1])
