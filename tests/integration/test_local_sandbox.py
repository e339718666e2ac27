"""Sandboxed local runs (needs root, bubblewrap and cgroup v1): identity, environment,
network, filesystem, containment of escaped processes, and the per-job limits.

Each test runs a real job through :class:`LocalBackend` in sandbox mode and reads what the
job printed (its ``output.log``) or how it ended. The hostile-tenant acceptance suite
(``tests/security/``) attacks the whole platform; these tests pin the mechanism.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import suanwang
from suanwang.adapters.backends.clocks import SystemClock
from suanwang.adapters.backends.local import LocalBackend
from suanwang.adapters.backends.local_limits import JobCgroups
from suanwang.adapters.backends.sandbox import (
    NEEDED_CAPS,
    HostFacts,
    Isolation,
    IsolationMode,
    JobLimits,
    probe_host,
    sandbox_refusal,
)
from suanwang.domain.jobs import AttemptState
from suanwang.domain.workloads import Workload
from suanwang.ports import LaunchRequest, NodeSlice, RunStatus

PY = sys.executable
UIDS = {"t1": 200901, "t2": 200902}
LIMITS = JobLimits(processes=48, memory_bytes=160 << 20, disk_bytes=16 << 20)

pytestmark = pytest.mark.skipif(
    sandbox_refusal(probe_host()) is not None, reason=str(sandbox_refusal(probe_host()))
)


class FixedUids:
    def uid_for(self, tenant: str) -> int:
        return UIDS[tenant]


def request(job_id: str, *command: str, tenant: str = "t1", **kwargs: object) -> LaunchRequest:
    return LaunchRequest(
        job_id=job_id,
        attempt=int(kwargs.pop("attempt", 1)),  # type: ignore[call-overload]
        tenant=tenant,
        cluster="local",
        command=command,
        placements=(NodeSlice("n1", 1),),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    isolation = Isolation(IsolationMode.SANDBOX, FixedUids(), engine_uid=199998, limits=LIMITS)
    backend = LocalBackend(
        tmp_path / "data" / "runs", SystemClock(), isolation=isolation, grace_s=0.5
    )
    yield backend
    for path in backend.runs_dir.glob("*/*/request.json"):
        JobCgroups(json.loads(path.read_text())["cgroups"]).kill_all()


def wait_ended(
    backend: LocalBackend, job_id: str, attempt: int = 1, timeout: float = 20
) -> RunStatus:
    deadline = time.monotonic() + timeout
    while not (status := backend.poll(job_id, attempt, {})).state.ended:
        assert time.monotonic() < deadline, f"{job_id} still {status.state}"
        time.sleep(0.05)
    return status


def run(backend: LocalBackend, job_id: str, script: str, **kwargs: object) -> tuple[RunStatus, str]:
    """Run a Python script as a job; its status and what it printed."""
    backend.submit(request(job_id, PY, "-c", script, **kwargs))
    status = wait_ended(backend, job_id)
    return status, backend.logs(job_id, 1, {}, 0, 100_000).decode()


def test_a_job_runs_as_its_tenants_uid_without_privileges(backend: LocalBackend) -> None:
    script = (
        "import os; s = open('/proc/self/status').read().splitlines()\n"
        "caps = [l.split()[1] for l in s if l.startswith(('CapEff', 'CapPrm', 'CapBnd'))]\n"
        "nnp = [l.split()[1] for l in s if l.startswith('NoNewPrivs')]\n"
        "mask = os.umask(0); print(os.getuid(), os.getgid(), os.getgroups(), oct(mask))\n"
        "print(caps, nnp, os.environ['HOME'], os.getcwd())"
    )
    status, out = run(backend, "who", script)
    assert status.state is AttemptState.SUCCEEDED, out
    assert out.splitlines() == [
        "200901 200901 [] 0o77",
        "['0000000000000000', '0000000000000000', '0000000000000000'] ['1'] /job /job",
    ]
    work = backend.runs_dir / "who" / "work"
    assert (work.stat().st_uid, work.stat().st_mode & 0o777) == (200901, 0o700)


def test_the_environment_holds_no_secret_of_the_control_plane(
    backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUANWANG_DATABASE_URL", "postgresql://postgres@127.0.0.1/secret")
    monkeypatch.setenv("SUANWANG_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    script = "import json, os; print(json.dumps(dict(os.environ), sort_keys=True))"
    status, out = run(backend, "env", script, env=(("MINE", "yes"),))
    assert status.state is AttemptState.SUCCEEDED, out
    env = json.loads(out)
    assert "secret" not in out
    platform_vars = (
        "SUANWANG_JOB_ID",
        "SUANWANG_ATTEMPT",
        "SUANWANG_CARDS",
        "SUANWANG_CHECKPOINT_FILE",
        "SUANWANG_CHECKPOINT_DIR",
        "SUANWANG_RESUME_COUNT",
        "SUANWANG_PREEMPTION_GRACE_S",
    )
    assert not [k for k in env if k.startswith("SUANWANG_") and k not in platform_vars]
    assert (env["MINE"], env["HOME"], env["LC_ALL"], env["SUANWANG_JOB_ID"]) == (
        "yes",
        "/job",
        "C.UTF-8",
        "env",
    )
    assert env["SUANWANG_CHECKPOINT_FILE"] == "/job/.checkpoint-1"
    assert env["SUANWANG_CHECKPOINT_DIR"] == "/job/checkpoints"
    assert env["SUANWANG_RESUME_COUNT"] == "0"


def test_a_job_runs_the_platforms_own_code(backend: LocalBackend) -> None:
    """Job programs of the platform (``python -m suanwang.corpus``) import the code the
    platform runs, also from an editable install; a job's own PYTHONPATH wins."""
    code = str(Path(suanwang.__file__).resolve().parents[1])
    script = "import os, suanwang.corpus as c; print(c.__file__); print(os.environ['PYTHONPATH'])"
    status, out = run(backend, "code", script)
    assert status.state is AttemptState.SUCCEEDED, out
    module, path = out.strip().splitlines()
    assert module.startswith(code + "/suanwang/corpus/")
    assert path == code
    mine = "import os; print(os.environ['PYTHONPATH'])"
    status, out = run(backend, "code2", mine, env=(("PYTHONPATH", "/job/lib"),))
    assert (status.state, out.strip()) == (AttemptState.SUCCEEDED, "/job/lib")


def test_a_job_reaches_nothing_on_the_hosts_network(backend: LocalBackend) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        script = (
            "import socket\n"
            f"for port in ({port}, 5432, 6379):\n"
            "    try: socket.create_connection(('127.0.0.1', port), timeout=2); print('open', port)\n"
            "    except OSError as e: print('closed', port, type(e).__name__)\n"
            "print(sorted(i[1] for i in socket.if_nameindex()))"
        )
        status, out = run(backend, "net", script)
    assert status.state is AttemptState.SUCCEEDED, out
    assert out.splitlines() == [
        f"closed {port} ConnectionRefusedError",
        "closed 5432 ConnectionRefusedError",
        "closed 6379 ConnectionRefusedError",
        "['lo']",
    ]


def test_a_job_sees_neither_the_data_directory_nor_host_sockets(
    backend: LocalBackend, tmp_path: Path
) -> None:
    (tmp_path / "data" / "operator.key").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "operator.key").write_text("sw_secret")
    probes = [str(tmp_path / "data"), str(backend.runs_dir), "/run/postgresql", "/var/run", "/home"]
    script = (
        "import os\n"
        f"print([os.path.exists(p) for p in {probes!r}])\n"
        "print(sorted(os.listdir('/tmp')))\n"
        "print(os.listdir('/run'))\n"
        "print(sorted(os.listdir('/')))\n"
        "print(len([p for p in os.listdir('/proc') if p.isdigit()]))"
    )
    status, out = run(backend, "fs", script)
    assert status.state is AttemptState.SUCCEEDED, out
    lines = out.splitlines()
    assert lines[0] == str([False] * len(probes))
    # /tmp is empty but for the way to the interpreter when the checkout lives under /tmp
    interpreter = {Path(p).parts[2] for p in (sys.prefix, sys.base_prefix) if p.startswith("/tmp/")}
    assert lines[1] == str(sorted(interpreter))
    assert lines[2] == "[]"
    assert "sys" not in lines[3]
    assert int(lines[4]) <= 3  # bubblewrap's pid 1 and the job itself


def test_the_control_files_are_root_only_and_the_log_is_private(backend: LocalBackend) -> None:
    status, _ = run(backend, "files", "print('x')")
    assert status.state is AttemptState.SUCCEEDED
    run_dir = backend.runs_dir / "files" / "1"
    for path in (backend.runs_dir, run_dir.parent, run_dir):
        assert (path.stat().st_uid, path.stat().st_mode & 0o777) == (0, 0o700)
    for name in ("lock", "request.json", "submitted", "launch.json", "exit.json", "output.log"):
        info = (run_dir / name).stat()
        assert (info.st_uid, info.st_mode & 0o777) == (0, 0o600), name


def test_an_escaped_process_neither_outlives_the_job_nor_keeps_its_slot(
    backend: LocalBackend,
) -> None:
    backend.submit(request("esc", "sh", "-c", "setsid sh -c 'sleep 300' & (sleep 300 &) ; exit 0"))
    status = wait_ended(backend, "esc", timeout=10)
    assert (status.state, status.exit_code) == (AttemptState.SUCCEEDED, 0)
    cgroups = json.loads((backend.runs_dir / "esc" / "1" / "request.json").read_text())["cgroups"]
    assert not any(Path(p).exists() for p in cgroups.values())


def test_cancel_ends_processes_that_left_the_process_group(backend: LocalBackend) -> None:
    backend.submit(request("esc2", "sh", "-c", "setsid sleep 300 & sleep 300"))
    deadline = time.monotonic() + 10
    while backend.poll("esc2", 1, {}).state is not AttemptState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    backend.cancel("esc2", 1, {})
    assert wait_ended(backend, "esc2", timeout=10).state is AttemptState.CANCELLED


def test_killing_everything_it_can_hurts_only_the_job_itself(backend: LocalBackend) -> None:
    backend.submit(request("victim", "sleep", "30", tenant="t2"))
    other = backend.submit(request("same-tenant", "sleep", "30"))
    status, _ = run(backend, "killer", "import os, signal; os.kill(-1, signal.SIGKILL)")
    assert status.state is AttemptState.FAILED
    assert backend.poll("victim", 1, {}).state is AttemptState.RUNNING
    assert backend.poll("same-tenant", 1, {}).state is AttemptState.RUNNING
    assert other.state is AttemptState.RUNNING
    for job in ("victim", "same-tenant"):
        backend.cancel(job, 1, {})


def test_a_symlinked_checkpoint_mark_is_not_followed(backend: LocalBackend) -> None:
    backend.submit(
        request("ck", "sh", "-c", 'ln -s /etc/hostname "$SUANWANG_CHECKPOINT_FILE"; sleep 30')
    )
    time.sleep(1.0)
    assert backend.poll("ck", 1, {}).checkpoint_at is None
    backend.cancel("ck", 1, {})
    backend.submit(request("ck2", "sh", "-c", 'touch "$SUANWANG_CHECKPOINT_FILE"; sleep 30'))
    deadline = time.monotonic() + 10
    while backend.poll("ck2", 1, {}).checkpoint_at is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    backend.cancel("ck2", 1, {})


def test_a_working_dir_through_a_symlink_is_refused(backend: LocalBackend) -> None:
    backend.submit(request("ln", "ln", "-s", "/etc", "etc-link"))
    assert wait_ended(backend, "ln").state is AttemptState.SUCCEEDED
    backend.submit(request("ln", "pwd", attempt=2, working_dir="etc-link"))
    status = wait_ended(backend, "ln", 2)
    assert (status.state, status.exit_code) == (AttemptState.FAILED, 127)
    assert "symlink" in status.reason


def test_a_program_the_sandbox_does_not_show_is_refused(
    backend: LocalBackend, tmp_path: Path
) -> None:
    script = tmp_path / "train.sh"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    backend.submit(request("hidden", str(script)))
    status = wait_ended(backend, "hidden")
    assert (status.state, status.exit_code) == (AttemptState.FAILED, 127)
    assert "not a program the job can see" in status.reason


def test_a_fork_bomb_fails_alone_naming_the_limit(backend: LocalBackend) -> None:
    backend.submit(request("calm", "sleep", "30", tenant="t2"))
    backend.submit(request("bomb", "sh", "-c", "b() { b & b & wait; }; b"))
    status = wait_ended(backend, "bomb", timeout=30)
    assert status.state is AttemptState.FAILED
    assert status.reason == "process limit exceeded (SUANWANG_JOB_MAX_PROCESSES=48)"
    assert backend.poll("calm", 1, {}).state is AttemptState.RUNNING
    backend.cancel("calm", 1, {})


def test_memory_over_the_limit_fails_the_job_naming_the_limit(backend: LocalBackend) -> None:
    status, _ = run(backend, "mem", "b = bytearray(400 << 20); print(len(b))")
    assert status.state is AttemptState.FAILED
    assert status.reason == f"memory limit exceeded (SUANWANG_JOB_MAX_MEMORY_BYTES={160 << 20})"


FILL = "for i in $(seq 1 64); do head -c 1M /dev/zero > {}/f$i || exit 1; sleep 0.05; done"
"""64 MiB at about 20 MiB/s: the 0.1 s check must stop it long before it is done."""

BURST = "for i in $(seq 1 64); do head -c 1M /dev/zero > ./f$i || exit 1; done"
"""64 MiB as fast as the disk takes it: a fast disk finishes inside one check period."""


@pytest.mark.parametrize(
    "script",
    [
        "head -c 64M /dev/zero > big",
        FILL.format(".") + "; sleep 30",
        FILL.format("."),
        "for i in $(seq 1 64); do head -c 1M /dev/zero; sleep 0.05; done; sleep 30",
        FILL.format("/tmp"),
        FILL.format("/dev/shm"),
    ],
    ids=["one-big-file", "many-files", "many-files-then-exit-0", "log", "tmp", "shm"],
)
def test_filling_the_disk_fails_the_job_naming_the_limit(
    backend: LocalBackend, script: str
) -> None:
    started = time.monotonic()
    backend.submit(request("disk", "sh", "-c", script))
    status = wait_ended(backend, "disk", timeout=30)
    assert status.state is AttemptState.FAILED
    assert status.reason == f"disk limit exceeded (SUANWANG_JOB_MAX_DISK_BYTES={16 << 20})"
    assert time.monotonic() - started < 15
    held = sum(f.stat().st_size for f in (backend.runs_dir / "disk").rglob("*") if f.is_file())
    assert held < 4 * LIMITS.disk_bytes  # stopped well before it wrote all 64 MiB


def test_a_burst_over_the_disk_limit_then_exit_0_still_fails(backend: LocalBackend) -> None:
    """The limit is measured, not a quota: a burst that ends inside one check period is
    caught by the check at exit (what it wrote stays, for the operator to see)."""
    backend.submit(request("burst", "sh", "-c", BURST))
    status = wait_ended(backend, "burst", timeout=30)
    assert status.state is AttemptState.FAILED
    assert status.reason == f"disk limit exceeded (SUANWANG_JOB_MAX_DISK_BYTES={16 << 20})"


def test_death_by_signal_is_reported_as_such(backend: LocalBackend) -> None:
    backend.submit(request("sig", "sh", "-c", "kill -TERM $$"))
    status = wait_ended(backend, "sig")
    assert (status.state, status.exit_code) == (AttemptState.FAILED, -15)


def test_an_engine_runs_as_the_engine_uid_on_the_hosts_network(backend: LocalBackend) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        script = (
            "import os, socket\n"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=5).close()\n"
            "print(os.getuid(), os.path.exists('/sys/devices/system/cpu'), 'PYTHONPATH' in os.environ)"
        )
        status, out = run(backend, "engine", script, workload=Workload.PLATFORM_ENGINE)
    assert status.state is AttemptState.SUCCEEDED, out
    assert out.strip() == "199998 True True"


def test_without_the_privilege_to_switch_users_nothing_starts(tmp_path: Path) -> None:
    facts = HostFacts(1000, 0, "/usr/bin/bwrap", "/usr/bin/setpriv", "/usr/bin/env", True)
    isolation = Isolation(IsolationMode.SANDBOX, FixedUids())
    backend = LocalBackend(tmp_path / "runs", SystemClock(), isolation=isolation, host=facts)
    refusal = backend.refusal(Workload.TENANT_JOB)
    assert refusal is not None
    assert "SUANWANG_LOCAL_ISOLATION=single-user-dev" in refusal
    status = backend.submit(request("refused", "true"))
    assert (status.state, status.reason) == (AttemptState.FAILED, refusal)
    assert not (backend.runs_dir / "refused" / "work").exists()
    root = HostFacts(0, NEEDED_CAPS, "/usr/bin/bwrap", "/usr/bin/setpriv", "/usr/bin/env", True)
    assert (
        LocalBackend(tmp_path / "r2", SystemClock(), isolation=isolation, host=root).refusal(
            Workload.TENANT_JOB
        )
        is None
    )
    dev = LocalBackend(
        tmp_path / "r3", SystemClock(), isolation=Isolation.development(), host=facts
    )
    assert dev.refusal(Workload.TENANT_JOB) is None
    assert os.geteuid() == 0  # the sandbox tests above ran for real
