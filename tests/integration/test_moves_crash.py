"""kill -9 of the control plane while it moves a job (issue 11): the move completes, the
job's accepted work is never lost and it never runs twice at once. SQLite and PostgreSQL.

A real server (reallocation every second) runs the checkpointing example job
(``examples/checkpointing-job.sh``, 150 steps of 0.1 s) on a slow pool while a job holds
the fast pool. The holder is cancelled, and the server is SIGKILLed as soon as the test
sees each step of the move (recorded, requeued with its hint, admitted on the hint), then
at random moments while the job runs on. Afterwards the
job succeeded on the fast pool after exactly one move; its attempts never overlapped in
time; every attempt resumed from the step the one before it saved; and it counted to 150.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import pytest
from procs import Server, free_port

from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.ids import TenantId
from suanwang.domain.jobs import JobSpec, JobState, resources_accepting
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.jobs import JobDetail
from suanwang.services.platform import Platform

OPERATOR = Principal("op", Scope.OPERATOR, None)
ACME = Principal("key-acme", Scope.TENANT_ADMIN, TenantId("acme"))
EXAMPLE = Path(__file__).parents[2] / "examples" / "checkpointing-job.sh"
KILLS = int(os.environ.get("SUANWANG_MOVE_KILLS", "3"))
SEED = int(os.environ.get("SUANWANG_CRASH_SEED", "20261207"))
SLOW, FAST = "nvidia-l20", "nvidia-h100"
FLEET = f"""
regions: [{{name: r1}}]
clusters:
  - {{name: slow, region: r1, kind: real, nodes: [{{name: l1, chip: {SLOW}, cards: 1}}]}}
  - {{name: fast, region: r1, kind: real, nodes: [{{name: h1, chip: {FAST}, cards: 1}}]}}
"""


STAGES = (
    lambda d: d.job.preempt_reason is not None,  # the move is recorded
    lambda d: d.job.state is JobState.QUEUED or len(d.attempts) > 1,  # requeued, hinted
    lambda d: len(d.attempts) > 1,  # admitted on the hint
)


def _on_fast(detail: JobDetail) -> bool:
    return len(detail.attempts) > 1 and detail.attempts[1].state.value == "running"


def wait_for(platform: Platform, job_id: str, done: object, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done(platform.jobs.get(OPERATOR, job_id)):  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"{job_id}: timed out; {platform.jobs.get(OPERATOR, job_id).events}")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_dash_nine_mid_move_loses_nothing(db_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    platform = build_platform(Settings(data_dir=data, database_url=db_url))
    platform.fleet.apply_yaml(FLEET)
    platform.tenancy.create_tenant("acme", "Acme", {})
    holder_spec = JobSpec(
        name="holder", command=("sleep", "300"), resources=resources_accepting([FAST])
    )
    holder = platform.jobs.submit(ACME, holder_spec, None).job
    env = os.environ | {
        "SUANWANG_DATA_DIR": str(data),
        "SUANWANG_DATABASE_URL": db_url,
        "SUANWANG_TICK_S": "0.1",
        "SUANWANG_REALLOC_INTERVAL_S": "1",
        "SUANWANG_CANCEL_GRACE_S": "5",
        "SUANWANG_LOG_LEVEL": "warning",
    }
    server = Server(env, free_port(), tmp_path / "server.log")
    rng = random.Random(SEED)
    try:
        server.start()
        wait_for(platform, holder.id, lambda d: d.job.state is JobState.RUNNING)
        spec = JobSpec(
            name="ckpt",
            command=("sh", "-c", EXAMPLE.read_text()),
            resources=resources_accepting([SLOW, FAST]),
            env=(("STEPS", "150"),),
            expected_duration_s=3600,
            checkpoint_interval_s=1,
            speed=((SLOW, 0.1), (FAST, 1.0)),
        )
        job = platform.jobs.submit(ACME, spec, None).job
        wait_for(platform, job.id, lambda d: bool(d.attempts and d.attempts[0].last_checkpoint_at))
        platform.jobs.cancel(OPERATOR, holder.id)
        mid_move = 0
        for stage in STAGES:  # kill at each step of the move as soon as it is seen
            wait_for(platform, job.id, stage, timeout_s=30)
            mid_move += not _on_fast(platform.jobs.get(OPERATOR, job.id))
            server.kill()
            server.start()
        for _ in range(KILLS):  # and at random moments while it runs on
            time.sleep(rng.uniform(0.1, 1.5))
            server.kill()
            server.start()
        wait_for(platform, job.id, lambda d: d.job.state.terminal, timeout_s=120)
    finally:
        server.stop()
    detail = platform.jobs.get(OPERATOR, job.id)
    platform.uows.engine.dispose()  # type: ignore[attr-defined]
    assert detail.job.state is JobState.SUCCEEDED, detail.events
    assert [(a.cluster, a.state.value) for a in detail.attempts] == [
        ("slow", "preempted"),
        ("fast", "succeeded"),
    ], detail.attempts
    first, second = detail.attempts
    assert first.ended_at is not None
    assert second.started_at is not None
    assert first.ended_at <= second.started_at, "the two attempts overlapped"
    sys.stderr.write(
        f"\nmove under kill -9 ({db_url.split(':')[0]}): {len(STAGES) + KILLS} kills, "
        f"{mid_move} before the moved job ran on the fast pool\n"
    )
    assert mid_move >= 1, "no kill landed during the move: the test proved nothing"
    logs = [_log(data, job.id, n) for n in (1, 2)]
    stopped = _step(logs[0], "stopped at step")
    assert _step(logs[1], "resumed at step") == stopped > 0, logs
    assert "done at step 150" in logs[1], logs[1]


def _log(data: Path, job_id: str, attempt: int) -> str:
    return (data / "runs" / job_id / str(attempt) / "output.log").read_text(errors="replace")


def _step(log: str, marker: str) -> int:
    line = next(ln for ln in log.splitlines() if marker in ln)
    return int(line.rsplit(" ", 1)[1])
