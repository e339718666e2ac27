"""Live 训推一体 on the local real cluster: a replica preempts training, which resumes.

A local cluster of one node with 2 cpu slots. SmolLM2 is deployed (one llama.cpp replica,
one slot) and the example training job (``examples/train_checkpointed.py``, best-effort,
preemptible, ``preemption_grace_s`` 20) runs on the other slot. The deployment is scaled
to two replicas by hand: the new replica cannot be placed, so the scheduler preempts the
training job (SIGTERM: it saves in ``$SUANWANG_CHECKPOINT_DIR`` and exits 75 within its
grace), requeues it without a retry and starts the replica, which becomes ready. Scaled
back to one, the slot returns to training, which resumes from its checkpoint
(``SUANWANG_RESUME_COUNT=1``) and finishes with the result of an uninterrupted run; the
job shows one resume and the work lost. The replicas' jobs are never preempted.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from live_engines import CHAT, missing_packages

from suanwang.adapters.backends.sandbox import probe_host, sandbox_refusal
from suanwang.adapters.http.routers.jobs import job_public
from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.checkpoints import RESUME_EXIT_CODE
from suanwang.domain.jobs import AttemptState, JobSpec, JobState, Resources
from suanwang.domain.serving import ReplicaState
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform

OP = Principal("op", Scope.OPERATOR, None)
EXAMPLE = Path(__file__).parents[2] / "examples" / "train_checkpointed.py"
ARGS = ("--steps", "3000", "--checkpoint-every", "50")
FLEET = """
regions: [{name: local}]
clusters:
  - {name: local, region: local, kind: real, backend: local, nodes: [{name: n1, chip: cpu, cards: 2}]}
"""
GRACE_S = 20.0

pytestmark = [
    pytest.mark.skipif(bool(missing_packages()), reason=f"not installed: {missing_packages()}"),
    pytest.mark.skipif(
        sandbox_refusal(probe_host()) is not None, reason=str(sandbox_refusal(probe_host()))
    ),
]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Platform]:
    """A platform on SQLite with its control loop and health checks in a thread."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'suanwang.db'}",
        cancel_grace_s=5,
    )
    platform = build_platform(settings)
    platform.fleet.apply_yaml(FLEET)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            platform.control.tick()
            platform.deployments.check_health()
            stop.wait(0.2)

    thread = threading.Thread(target=loop, name="train-infer-loop", daemon=True)
    thread.start()
    try:
        yield platform
    finally:
        with platform.uows() as uow:
            deployments = [
                d.id
                for d in uow.deployments.deployments(None, all_tenants=True)
                if d.state.value == "active"
            ]
        for dep in deployments:
            platform.deployments.delete(OP, dep)
        wait(lambda: _nothing_live(platform), 60)
        stop.set()
        thread.join(10)
        platform.uows.engine.dispose()  # type: ignore[attr-defined]


def _nothing_live(platform: Platform) -> bool:
    with platform.uows() as uow:
        return not uow.jobs.live_attempts()


def wait(done: Callable[[], bool], timeout_s: float, why: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s: {why()}"
        time.sleep(0.2)


def uninterrupted(tmp: Path) -> str:
    argv = [sys.executable, str(EXAMPLE), "--checkpoint-dir", str(tmp), *ARGS]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    return next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))


def test_a_new_replica_preempts_training_which_resumes_exactly(
    live: Platform, tmp_path: Path
) -> None:
    platform = live
    expected = uninterrupted(tmp_path / "whole")
    platform.tenancy.create_tenant("lab", "Lab", {})
    lab = _principal(platform, "lab")
    dep = platform.deployments.deploy(OP, CHAT, "local", 1).deployment.id
    replicas = lambda: platform.deployments.get(OP, dep).replicas  # noqa: E731
    wait(lambda: replicas()[0].state is ReplicaState.READY, 180, lambda: str(replicas()))

    spec = JobSpec(
        name="train",
        command=("python", "-c", EXAMPLE.read_text(), *ARGS, "--step-sleep", "0.01"),
        resources=Resources(chip="cpu"),
        checkpoint_interval_s=1,
        preemption_grace_s=GRACE_S,
        priority_class="best-effort",
    )
    job = platform.jobs.submit(lab, spec, None).job
    detail = lambda: platform.jobs.get(lab, job.id)  # noqa: E731
    wait(lambda: bool(detail().attempts and detail().attempts[0].last_checkpoint_at), 60)

    platform.deployments.scale(OP, dep, 2)
    wait(lambda: len(detail().attempts) >= 1 and detail().attempts[0].state.ended, 60)
    first = detail().attempts[0]
    assert first.state is AttemptState.PREEMPTED
    assert first.exit_code == RESUME_EXIT_CODE, "it saved within its grace and asked to resume"
    assert first.ended_at is not None
    assert first.started_at is not None
    serving = [e.reason for e in detail().events if "serving: production replica" in e.reason]
    assert serving, detail().events
    wait(
        lambda: [r.state for r in replicas()] == [ReplicaState.READY] * 2,
        180,
        lambda: str(replicas()),
    )
    assert detail().job.state is JobState.QUEUED, "no slot for training while both serve"

    platform.deployments.scale(OP, dep, 1)
    wait(lambda: detail().job.state.terminal, 180, lambda: detail().job.reason)
    final = detail()
    assert final.job.state is JobState.SUCCEEDED, final.job.reason
    log1 = _log(platform, lab, job.id, 1)
    log2 = _log(platform, lab, job.id, 2)
    stopped = re.findall(r"stopped at step (\d+)", log1)
    assert stopped, log1
    assert f"resumed at step {stopped[0]} (resume count 1)" in log2, log2
    result = next(line for line in log2.splitlines() if line.startswith("RESULT "))
    assert result == expected
    public = job_public(final.job, final)
    assert public.resumes == 1
    assert public.lost_work_s is not None
    assert public.lost_work_s < GRACE_S
    assert replicas()[0].state is ReplicaState.READY
    assert replicas()[0].restarts == 0, "the serving replica was never preempted"


def _principal(platform: Platform, tenant: str) -> Principal:
    key = platform.tenancy.create_key(
        OP, tenant=tenant, scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
    )
    return platform.tenancy.authenticate(key.secret)


def _log(platform: Platform, who: Principal, job_id: str, attempt: int) -> str:
    chunk, _ = platform.jobs.logs(who, job_id, 0, 1 << 20, attempt)
    return chunk.decode(errors="replace")
