"""The checkpoint contract, live: the example training job resumes exactly; exit 75; grace.

- ``examples/train_checkpointed.py`` as plain processes: stopped with SIGTERM (it saves and
  exits 75) or killed with SIGKILL (it loses the steps since its last save), then run
  again, it prints the very same result line as an uninterrupted run;
- through the local backend (sandboxed, on SQLite and PostgreSQL): the training job of
  tenant ``aaa`` is preempted by a higher-priority job of its tenant, saves in its
  ``$SUANWANG_CHECKPOINT_DIR`` within its ``preemption_grace_s``, is requeued without a
  retry, resumes (``SUANWANG_RESUME_COUNT=1``) and finishes with the uninterrupted result;
  its resume count and lost work are on the job;
- a job that exits 75 by itself is requeued without using a retry;
- hostile tenant: another tenant's job can neither read nor write the checkpoint
  directory, which is the job's own (its tenant's uid, 0700).
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from suanwang.adapters.backends.local_start import _own_checkpoint_directory
from suanwang.adapters.backends.sandbox import probe_host, sandbox_refusal
from suanwang.config import Settings
from suanwang.domain.checkpoints import RESUME_EXIT_CODE, resume_summary
from suanwang.domain.jobs import JobSpec, JobState, Resources
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform

EXAMPLE = Path(__file__).parents[2] / "examples" / "train_checkpointed.py"
ARGS = ("--steps", "1500", "--checkpoint-every", "50")
FLEET = """
regions: [{name: r1}]
clusters:
  - {name: here, region: r1, kind: real, nodes: [{name: n1, chip: cpu, cards: 1}]}
"""
SANDBOX = pytest.mark.skipif(
    sandbox_refusal(probe_host()) is not None, reason=str(sandbox_refusal(probe_host()))
)


def result_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, output
    return lines[0]


def run_plain(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(EXAMPLE), "--checkpoint-dir", str(directory), *ARGS, *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def start_plain(directory: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, str(EXAMPLE), "--checkpoint-dir", str(directory), *ARGS]
    argv += ["--step-sleep", "0.002"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def wait_for(path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> str:
    done = run_plain(tmp_path_factory.mktemp("whole"))
    assert done.returncode == 0, done.stderr
    return result_line(done.stdout)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_plain_processes_resume_exactly(
    tmp_path: Path, uninterrupted: str, sig: signal.Signals
) -> None:
    first = start_plain(tmp_path)
    wait_for(tmp_path / "state.json")
    time.sleep(0.2)
    first.send_signal(sig)
    out, _ = first.communicate(timeout=30)
    assert "RESULT" not in out, "stopped too late to test a resume"
    assert first.returncode == (RESUME_EXIT_CODE if sig is signal.SIGTERM else -signal.SIGKILL)
    second = run_plain(tmp_path)
    assert second.returncode == 0, second.stderr
    resumed = int(re.findall(r"resumed at step (\d+)", second.stdout)[0])
    assert 0 < resumed < 1500
    if sig is signal.SIGKILL:
        assert resumed % 50 == 0, "after SIGKILL only the periodic checkpoint is there"
    else:
        assert f"stopped at step {resumed}:" in out
    assert result_line(second.stdout) == uninterrupted


def test_a_different_seed_gives_a_different_result(tmp_path: Path, uninterrupted: str) -> None:
    """The comparison above can fail: the result line depends on the training."""
    other = run_plain(tmp_path, "--seed", "8")
    assert result_line(other.stdout) != uninterrupted


# --- through the local backend ------------------------------------------------------------


def principal(platform: Platform, tenant: str) -> Principal:
    op = Principal("op", Scope.OPERATOR, None)
    key = platform.tenancy.create_key(
        op, tenant=tenant, scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
    )
    return platform.tenancy.authenticate(key.secret)


def tick_until(platform: Platform, done: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        platform.control.tick()
        if done():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s")


def log_of(platform: Platform, who: Principal, job_id: str, attempt: int) -> str:
    chunk, _attempt = platform.jobs.logs(who, job_id, 0, 1 << 20, attempt)
    return chunk.decode(errors="replace")


def real_time(platform: Platform) -> None:
    clock = platform.clock
    clock.advance(time.time() - clock.now())  # type: ignore[attr-defined]


def training(grace_s: float = 20) -> JobSpec:
    source = EXAMPLE.read_text()
    return JobSpec(
        name="train",
        command=("python", "-c", source, *ARGS, "--step-sleep", "0.004"),
        resources=Resources(chip="cpu"),
        checkpoint_interval_s=1,
        preemption_grace_s=grace_s,
        priority_class="best-effort",
    )


@SANDBOX
def test_a_preempted_training_job_resumes_from_its_checkpoint(
    platform: Platform, uninterrupted: str
) -> None:
    real_time(platform)
    platform.fleet.apply_yaml(FLEET)
    platform.tenancy.create_tenant("aaa", "aaa", {})
    who = principal(platform, "aaa")
    job = platform.jobs.submit(who, training(), None).job
    tick_until(platform, lambda: "resumed at step 0" in log_of(platform, who, job.id, 1))
    tick_until(
        platform, lambda: bool(platform.jobs.get(who, job.id).attempts[0].last_checkpoint_at)
    )
    urgent = JobSpec(
        name="urgent", command=("true",), resources=Resources(chip="cpu"), priority=100
    )
    high = platform.jobs.submit(who, urgent, None).job
    tick_until(platform, lambda: platform.jobs.get(who, high.id).job.state is JobState.SUCCEEDED)
    tick_until(platform, lambda: platform.jobs.get(who, job.id).job.state.terminal, 120)
    detail = platform.jobs.get(who, job.id)
    assert detail.job.state is JobState.SUCCEEDED, detail.job.reason
    first, _second = detail.attempts
    assert first.state.value == "preempted"
    assert first.exit_code == RESUME_EXIT_CODE, "it saved within its grace and asked to resume"
    stopped = re.findall(r"stopped at step (\d+)", log_of(platform, who, job.id, 1))
    resumed = re.findall(
        r"resumed at step (\d+) \(resume count 1\)", log_of(platform, who, job.id, 2)
    )
    assert stopped, log_of(platform, who, job.id, 1)
    assert stopped == resumed, (stopped, resumed)
    assert result_line(log_of(platform, who, job.id, 2)) == uninterrupted
    summary = resume_summary(detail.attempts)
    assert summary.resumes == 1
    assert 0 <= summary.lost_work_s < 5, "saved on SIGTERM: little is lost"
    assert detail.job.spec.retries == 0, "the preemption used no retry"


@SANDBOX
def test_exit_75_requeues_without_a_retry(platform: Platform) -> None:
    real_time(platform)
    platform.fleet.apply_yaml(FLEET)
    platform.tenancy.create_tenant("aaa", "aaa", {})
    who = principal(platform, "aaa")
    script = (
        'echo "resume count $SUANWANG_RESUME_COUNT dir $SUANWANG_CHECKPOINT_DIR"; '
        'if [ -f "$SUANWANG_CHECKPOINT_DIR/half" ]; then echo finished; exit 0; fi; '
        'echo 1 > "$SUANWANG_CHECKPOINT_DIR/half"; exit 75'
    )
    spec = JobSpec(name="self", command=("sh", "-c", script), resources=Resources(chip="cpu"))
    job = platform.jobs.submit(who, spec, None).job
    tick_until(platform, lambda: platform.jobs.get(who, job.id).job.state.terminal)
    detail = platform.jobs.get(who, job.id)
    assert detail.job.state is JobState.SUCCEEDED, detail.job.reason
    assert [a.state.value for a in detail.attempts] == ["preempted", "succeeded"]
    assert "resume count 0 dir /job/checkpoints" in log_of(platform, who, job.id, 1)
    assert "resume count 1 dir /job/checkpoints" in log_of(platform, who, job.id, 2)
    assert any("asked to resume (exit 75)" in e.reason for e in detail.events)


@SANDBOX
def test_the_grace_period_is_honoured_then_sigkill(platform: Platform) -> None:
    """SIGTERM, then SIGKILL after the job's own grace: 3 s lets a 1.5 s save finish."""
    real_time(platform)
    platform.fleet.apply_yaml(FLEET)
    platform.tenancy.create_tenant("aaa", "aaa", {})
    who = principal(platform, "aaa")
    script = (
        "trap 'sleep 1.5; echo saved > \"$SUANWANG_CHECKPOINT_DIR/s\"; exit 75' TERM; "
        'echo "grace $SUANWANG_PREEMPTION_GRACE_S"; while :; do sleep 0.1; done'
    )
    ids = []
    for grace in (3.0, 0.5):
        spec = JobSpec(
            name=f"grace-{grace}",
            command=("sh", "-c", script),
            resources=Resources(chip="cpu"),
            preemption_grace_s=grace,
        )
        job = platform.jobs.submit(who, spec, None).job
        ids.append(job.id)
        tick_until(
            platform, lambda j=job.id, g=grace: f"grace {g:g}" in log_of(platform, who, j, 1)
        )
        platform.jobs.cancel(who, job.id)
        tick_until(platform, lambda j=job.id: platform.jobs.get(who, j).job.state.terminal)
    saved, killed = (platform.jobs.get(who, i).attempts[0] for i in ids)
    assert saved.exit_code == RESUME_EXIT_CODE
    assert killed.exit_code == -signal.SIGKILL


@SANDBOX
def test_another_tenant_cannot_read_or_write_a_checkpoint_dir(
    platform: Platform, settings: Settings
) -> None:
    real_time(platform)
    platform.fleet.apply_yaml(FLEET)
    for name in ("aaa", "bbb"):
        platform.tenancy.create_tenant(name, name, {})
    a, b = principal(platform, "aaa"), principal(platform, "bbb")
    owner = JobSpec(
        name="owner",
        command=("sh", "-c", 'echo secret > "$SUANWANG_CHECKPOINT_DIR/state"'),
        resources=Resources(chip="cpu"),
    )
    mine = platform.jobs.submit(a, owner, None).job
    tick_until(platform, lambda: platform.jobs.get(a, mine.id).job.state is JobState.SUCCEEDED)
    host_dir = settings.data_dir.resolve() / "runs" / mine.id / "work" / "checkpoints"
    info = os.lstat(host_dir)
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid != 0, "the tenant's uid owns it, not root"
    probes = (
        f"cat {host_dir}/state; echo rc=$?; "
        f"echo evil > {host_dir}/state; echo rc=$?; "
        f"ls /job/.. ; cat /job/../../{mine.id}/work/checkpoints/state; echo rc=$?; "
        "echo x > /usr/evil; echo rc=$?; "
        'echo ok > "$SUANWANG_CHECKPOINT_DIR/mine"; echo own=$?'
    )
    thief = JobSpec(name="thief", command=("sh", "-c", probes), resources=Resources(chip="cpu"))
    theirs = platform.jobs.submit(b, thief, None).job
    tick_until(platform, lambda: platform.jobs.get(b, theirs.id).job.state.terminal)
    out = log_of(platform, b, theirs.id, 1)
    assert "secret" not in out
    assert out.count("rc=0") == 0, out
    assert "own=0" in out, out
    assert (host_dir / "state").read_text() == "secret\n"
    assert not Path("/usr/evil").exists()


def test_a_planted_symlink_is_never_followed(tmp_path: Path) -> None:
    """The job owns its directory: a ``checkpoints`` symlink (to a directory the platform
    owns) makes the next start fail; the target keeps its owner and mode."""
    work, target = tmp_path / "work", tmp_path / "platform-dir"
    work.mkdir()
    target.mkdir(mode=0o755)
    (work / "checkpoints").symlink_to(target)
    with pytest.raises(OSError, match="symlinks are not followed"):
        _own_checkpoint_directory(work, 200999)
    info = os.stat(target)
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o755, os.getuid())
