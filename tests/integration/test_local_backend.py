"""LocalBackend against real processes: fencing, limits, cancel, re-attach, crash recovery.

Every test runs twice: sandboxed (bubblewrap, a tenant uid, cgroups; needs root) and in
single-user development mode. Jobs leave marks in their own directory (``$HOME``), which
the test reads on the host at ``runs/<job>/work``.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from suanwang.adapters.backends.clocks import SystemClock
from suanwang.adapters.backends.local import LocalBackend, group_alive, process_alive
from suanwang.adapters.backends.local_limits import JobCgroups
from suanwang.adapters.backends.sandbox import Isolation, IsolationMode, probe_host, sandbox_refusal
from suanwang.domain.jobs import AttemptState
from suanwang.ports import LaunchRequest, NodeSlice, RunStatus

PY = sys.executable
SRC = str(Path(__file__).resolve().parents[2] / "src")


def request(job_id: str, *command: str, attempt: int = 1, **kwargs: object) -> LaunchRequest:
    return LaunchRequest(
        job_id=job_id,
        attempt=attempt,
        tenant="t1",
        cluster="local",
        command=command,
        placements=(NodeSlice("n1", 1),),
        **kwargs,  # type: ignore[arg-type]
    )


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def wait_ended(backend: LocalBackend, job_id: str, attempt: int = 1) -> RunStatus:
    deadline = time.monotonic() + 10.0
    while not (status := backend.poll(job_id, attempt, {})).state.ended:
        assert time.monotonic() < deadline, f"{job_id} still {status.state}"
        time.sleep(0.02)
    return status


def launch_record(backend: LocalBackend, job_id: str, attempt: int = 1) -> dict[str, int]:
    path = backend.runs_dir / job_id / str(attempt) / "launch.json"
    wait_until(path.exists)
    record: dict[str, int] = json.loads(path.read_text())
    return record


class FixedUids:
    """Tenant uids without a database."""

    def uid_for(self, tenant: str) -> int:
        return {"t1": 200901, "t2": 200902}[tenant]


def isolation(mode: str) -> Isolation:
    if mode == "dev":
        return Isolation.development()
    refusal = sandbox_refusal(probe_host())
    if refusal:
        pytest.skip(refusal)
    return Isolation(IsolationMode.SANDBOX, FixedUids())


@pytest.fixture(params=["sandbox", "dev"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def runs_dir(tmp_path: Path) -> Iterator[Path]:
    runs = tmp_path / "runs"
    yield runs
    for path in runs.glob("*/*/launch.json"):  # never leave a sleeping process behind
        record = json.loads(path.read_text())
        if group_alive(record["pgid"], record["sid"]):
            os.killpg(record["pgid"], signal.SIGKILL)
        if process_alive(record["shim_pid"], record["shim_start_time"]):
            os.kill(record["shim_pid"], signal.SIGKILL)
        request_record = json.loads((path.parent / "request.json").read_text())
        JobCgroups(request_record["cgroups"]).kill_all()


@pytest.fixture
def backend(runs_dir: Path, mode: str) -> LocalBackend:
    return LocalBackend(runs_dir, SystemClock(), isolation=isolation(mode), grace_s=0.5)


def work(backend: LocalBackend, job_id: str) -> Path:
    """The job's own directory on the host ($HOME and /job inside the job)."""
    return backend.runs_dir / job_id / "work"


def test_success_in_its_own_directory_captures_output(backend: LocalBackend) -> None:
    script = (
        "import sys; open('out.txt', 'w').write('ok'); print('hello out'); "
        "sys.stderr.write('err\\n')"
    )
    first = backend.submit(request("ok", PY, "-c", script))
    assert first.state in {AttemptState.STARTING, AttemptState.RUNNING, AttemptState.SUCCEEDED}
    status = wait_ended(backend, "ok")
    assert (status.state, status.exit_code, status.reason) == (AttemptState.SUCCEEDED, 0, "exited")
    assert (work(backend, "ok") / "out.txt").read_text() == "ok"
    output = backend.logs("ok", 1, status.handle, 0, 10_000)
    assert b"hello out\n" in output
    assert b"err\n" in output
    assert status.started_at is not None
    assert status.ended_at is not None
    assert status.started_at <= status.ended_at
    assert status.handle["pid"] > 0


def test_failing_command(backend: LocalBackend) -> None:
    backend.submit(request("bad", PY, "-c", "raise SystemExit(1)"))
    status = wait_ended(backend, "bad")
    assert (status.state, status.exit_code) == (AttemptState.FAILED, 1)


def test_command_not_found(backend: LocalBackend) -> None:
    backend.submit(request("nf", "no-such-command-suanwang"))
    status = wait_ended(backend, "nf")
    assert (status.state, status.exit_code) == (AttemptState.FAILED, 127)
    assert status.reason.startswith("could not start: ")
    assert "no-such-command-suanwang" in status.reason
    assert b"could not start" in backend.logs("nf", 1, {}, 0, 1000)


def test_working_dir_made_by_an_earlier_attempt(backend: LocalBackend) -> None:
    backend.submit(request("wd", "mkdir", "-p", "sub/dir"))
    assert wait_ended(backend, "wd").state is AttemptState.SUCCEEDED
    for attempt, working_dir in ((2, "sub/dir"), (3, "/job/sub/dir")):
        script = f"open('from-{attempt}', 'w').close()"
        backend.submit(request("wd", PY, "-c", script, attempt=attempt, working_dir=working_dir))
        assert wait_ended(backend, "wd", attempt).state is AttemptState.SUCCEEDED
        assert (work(backend, "wd") / "sub" / "dir" / f"from-{attempt}").exists()


@pytest.mark.parametrize(
    ("working_dir", "fragment"),
    [
        ("missing", "No such file or directory"),
        ("../1", "not inside the job's own directory"),
        ("/tmp", "not inside the job's own directory"),
    ],
)
def test_bad_working_dir(backend: LocalBackend, working_dir: str, fragment: str) -> None:
    backend.submit(request("cwd", PY, "-c", "pass", working_dir=working_dir))
    status = wait_ended(backend, "cwd")
    assert (status.state, status.exit_code) == (AttemptState.FAILED, 127)
    assert status.reason.startswith("could not start"), status.reason
    assert fragment in status.reason


def test_environment_is_passed(backend: LocalBackend) -> None:
    names = "'FOO', 'SUANWANG_JOB_ID', 'SUANWANG_ATTEMPT', 'SUANWANG_CARDS'"
    script = f"import os; print(*(os.environ[k] for k in ({names})))"
    backend.submit(
        LaunchRequest(
            job_id="env",
            attempt=2,
            tenant="t1",
            cluster="local",
            command=(PY, "-c", script),
            placements=(NodeSlice("n1", 2), NodeSlice("n2", 3)),
            env=(("FOO", "bar baz"),),
        )
    )
    assert wait_ended(backend, "env", 2).state is AttemptState.SUCCEEDED
    assert backend.logs("env", 2, {}, 0, 1000) == b"bar baz env 2 5\n"


def test_max_runtime_kills(backend: LocalBackend) -> None:
    started = time.monotonic()
    backend.submit(request("slow", "sleep", "30", max_runtime_s=1))
    status = wait_ended(backend, "slow")
    assert status.state is AttemptState.FAILED
    assert status.reason == "max runtime exceeded"
    assert status.exit_code == -signal.SIGTERM
    assert 1.0 <= time.monotonic() - started < 5.0


def test_cancel_running(backend: LocalBackend) -> None:
    status = backend.submit(request("c1", "sleep", "30"))
    assert status.state is AttemptState.RUNNING
    backend.cancel("c1", 1, status.handle)
    backend.cancel("c1", 1, status.handle)  # idempotent
    ended = wait_ended(backend, "c1")
    assert (ended.state, ended.exit_code, ended.reason) == (
        AttemptState.CANCELLED,
        -signal.SIGTERM,
        "cancelled",
    )
    backend.cancel("c1", 1, status.handle)  # after the end: a no-op
    assert backend.poll("c1", 1, {}).state is AttemptState.CANCELLED


def test_cancel_ignoring_sigterm_is_killed_after_grace(backend: LocalBackend) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "open('ready', 'w').close(); time.sleep(30)"
    )
    backend.submit(request("stubborn", PY, "-c", script))
    wait_until((work(backend, "stubborn") / "ready").exists)
    started = time.monotonic()
    backend.cancel("stubborn", 1, {})
    ended = wait_ended(backend, "stubborn")
    assert (ended.state, ended.exit_code) == (AttemptState.CANCELLED, -signal.SIGKILL)
    assert time.monotonic() - started >= 0.5


def test_cancel_before_submit_fences_the_attempt(backend: LocalBackend) -> None:
    backend.cancel("early", 1, {})
    status = backend.submit(request("early", PY, "-c", "print('should not run')"))
    assert status.state is AttemptState.CANCELLED
    assert backend.logs("early", 1, {}, 0, 100) == b""


def test_submit_twice_runs_once(runs_dir: Path, mode: str) -> None:
    req = request("once", "sh", "-c", "echo $$ >> $HOME/pids; sleep 0.5")
    backends = [
        LocalBackend(runs_dir, SystemClock(), isolation=isolation(mode), grace_s=0.5)
        for _ in range(4)
    ]
    results: list[RunStatus] = []
    threads = [threading.Thread(target=lambda b=b: results.append(b.submit(req))) for b in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert backends[0].submit(req).state is AttemptState.RUNNING
    assert wait_ended(backends[0], "once").state is AttemptState.SUCCEEDED
    assert backends[1].submit(req).state is AttemptState.SUCCEEDED  # ended: not started again
    assert len((runs_dir / "once" / "work" / "pids").read_text().split()) == 1


def test_restarted_control_plane_reattaches(runs_dir: Path, mode: str) -> None:
    first = LocalBackend(runs_dir, SystemClock(), isolation=isolation(mode), grace_s=0.5)
    first.submit(request("re", PY, "-c", "import time; time.sleep(0.5); print('done')"))
    del first
    second = LocalBackend(runs_dir, SystemClock(), isolation=isolation(mode), grace_s=0.5)
    status = second.poll("re", 1, {})
    assert status.state is AttemptState.RUNNING
    assert status.handle["pid"] > 0
    assert status.handle["pid_start_time"] > 0
    ended = wait_ended(second, "re")
    assert ended.state is AttemptState.SUCCEEDED
    assert second.logs("re", 1, {}, 0, 100) == b"done\n"


def test_control_plane_killed_after_submit(runs_dir: Path, mode: str) -> None:
    command = ("sh", "-c", "echo run >> $HOME/runs.txt; sleep 0.5; echo survived")
    control_plane = (
        "import os, pathlib, sys\n"
        "from suanwang.adapters.backends import LocalBackend, SystemClock\n"
        "from suanwang.adapters.backends.sandbox import Isolation, IsolationMode\n"
        "from suanwang.ports import LaunchRequest\n"
        "class Uids:\n"
        "    def uid_for(self, tenant): return 200901\n"
        "mode = IsolationMode(sys.argv[2])\n"
        "isolation = Isolation(mode, Uids() if mode is IsolationMode.SANDBOX else None)\n"
        "backend = LocalBackend(pathlib.Path(sys.argv[1]), SystemClock(), isolation=isolation)\n"
        "backend.submit(LaunchRequest('crash', 1, 't1', 'local', tuple(sys.argv[3:]), ()))\n"
        "os.kill(os.getpid(), 9)\n"
    )
    backend_mode = isolation(mode).mode.value
    argv = [PY, "-c", control_plane, str(runs_dir), backend_mode, *command]
    killed = subprocess.run(argv, check=False, env={**os.environ, "PYTHONPATH": SRC})
    assert killed.returncode == -signal.SIGKILL
    restarted = LocalBackend(runs_dir, SystemClock(), isolation=isolation(mode), grace_s=0.5)
    assert restarted.submit(request("crash", *command)).state is AttemptState.RUNNING
    assert wait_ended(restarted, "crash").state is AttemptState.SUCCEEDED
    assert restarted.logs("crash", 1, {}, 0, 100) == b"survived\n"
    assert restarted.submit(request("crash", *command)).state is AttemptState.SUCCEEDED
    assert (runs_dir / "crash" / "work" / "runs.txt").read_text() == "run\n"


@pytest.mark.parametrize("mode", ["dev"], indirect=True)
def test_supervisor_killed_child_keeps_lock_then_lost(backend: LocalBackend) -> None:
    backend.submit(request("orphan", "sleep", "30"))
    record = launch_record(backend, "orphan")
    os.kill(record["shim_pid"], signal.SIGKILL)
    wait_until(lambda: not process_alive(record["shim_pid"], record["shim_start_time"]))
    assert backend.poll("orphan", 1, {}).state is AttemptState.RUNNING
    assert backend.submit(request("orphan", "sleep", "30")).state is AttemptState.RUNNING
    os.kill(record["child_pid"], signal.SIGKILL)
    status = wait_ended(backend, "orphan")
    assert (status.state, status.reason) == (AttemptState.LOST, "supervisor died")
    again = backend.submit(request("orphan", "sleep", "30"))
    assert again.state is AttemptState.LOST  # never restarted for the same attempt


@pytest.mark.parametrize("mode", ["dev"], indirect=True)
def test_cancel_kills_orphaned_command(backend: LocalBackend) -> None:
    backend.submit(request("orphan2", "sleep", "30"))
    record = launch_record(backend, "orphan2")
    os.kill(record["shim_pid"], signal.SIGKILL)
    wait_until(lambda: not process_alive(record["shim_pid"], record["shim_start_time"]))
    backend.cancel("orphan2", 1, {})
    wait_until(lambda: not process_alive(record["child_pid"], record["child_start_time"]))
    assert backend.poll("orphan2", 1, {}).state is AttemptState.CANCELLED


def test_poll_without_any_run_is_lost(backend: LocalBackend) -> None:
    status = backend.poll("ghost", 1, {})
    assert status.state is AttemptState.LOST
    assert status.reason == "no run was started for this attempt"


def test_supervisor_that_died_before_launch_is_lost(backend: LocalBackend) -> None:
    run_dir = backend.runs_dir / "half" / "1"
    run_dir.mkdir(parents=True)
    (run_dir / "submitted").write_text("{}")
    status = backend.submit(request("half", PY, "-c", "pass"))
    assert (status.state, status.reason) == (AttemptState.LOST, "supervisor died")


def test_a_caller_killed_before_spawning_leaves_no_run_behind(backend: LocalBackend) -> None:
    run_dir = backend.runs_dir / "early" / "1"  # what a SIGKILL before the spawn leaves
    run_dir.mkdir(parents=True)
    (run_dir / "lock").touch()
    (run_dir / "output.log").touch()
    (run_dir / ".submitted.123.abc.tmp").write_text("{}")
    backend.submit(request("early", PY, "-c", "print('ran once')"))
    assert wait_ended(backend, "early").state is AttemptState.SUCCEEDED
    assert backend.logs("early", 1, {}, 0, 100) == b"ran once\n"


def test_logs_with_offsets(backend: LocalBackend) -> None:
    assert backend.logs("nolog", 1, {}, 0, 100) == b""
    backend.submit(request("log", PY, "-c", "print('0123456789')"))
    wait_ended(backend, "log")
    assert backend.logs("log", 1, {}, 0, 4) == b"0123"
    assert backend.logs("log", 1, {}, 4, 100) == b"456789\n"
    assert backend.logs("log", 1, {}, 100, 100) == b""
    for past_any_file in (2**44, 2**63 - 1):  # lseek fails here (EINVAL on ext4)
        assert backend.logs("log", 1, {}, past_any_file, 100) == b""
    with pytest.raises(ValueError, match="offset"):
        backend.logs("log", 1, {}, -1, 10)


def test_attempts_are_separate(backend: LocalBackend) -> None:
    backend.submit(request("multi", PY, "-c", "raise SystemExit(3)"))
    assert wait_ended(backend, "multi").exit_code == 3
    backend.submit(request("multi", PY, "-c", "pass", attempt=2))
    assert wait_ended(backend, "multi", 2).state is AttemptState.SUCCEEDED


@pytest.mark.parametrize("job_id", ["", ".", "..", "a/b"])
def test_unsafe_job_ids_are_rejected(backend: LocalBackend, job_id: str) -> None:
    with pytest.raises(ValueError, match="run directory"):
        backend.submit(request(job_id, PY, "-c", "pass"))


def test_leftover_processes_are_killed_when_the_command_exits(backend: LocalBackend) -> None:
    nap = f"{30 + os.getpid() % 1000 / 1000:.3f}"  # a sleep no other test starts
    backend.submit(request("bg", "sh", "-c", f"sleep {nap} & setsid sleep {nap} & echo started"))
    status = wait_ended(backend, "bg")
    assert status.state is AttemptState.SUCCEEDED
    wait_until(lambda: not _processes_running("sleep", nap))
    assert not _lock_busy(backend.runs_dir / "bg" / "1" / "lock")


def test_cancel_reaches_the_whole_process_group(backend: LocalBackend) -> None:
    done, ready = work(backend, "tree") / "done", work(backend, "tree") / "ready"
    script = (
        "import signal, sys, time; "
        "signal.signal(signal.SIGTERM, lambda *_: (open('done', 'w').close(), "
        "sys.exit(0))); open('ready', 'w').close(); time.sleep(30)"
    )
    # a shell that does not forward SIGTERM itself and outlives it (trap ""): were it to die at
    # once, the sandbox's pid 1 would exit and take the grandchild with it before its handler
    # ran, on a loaded machine (seen in CI)
    wrapper = f"trap '' TERM; {PY} -c {script!r} & wait"
    backend.submit(request("tree", "sh", "-c", wrapper))
    wait_until(ready.exists)
    backend.cancel("tree", 1, {})
    status = wait_ended(backend, "tree")
    assert status.state is AttemptState.CANCELLED
    wait_until(done.exists)  # the grandchild got SIGTERM and shut down gracefully


def _processes_running(*argv: str) -> bool:
    """True if a live process on this host has exactly this command line."""
    wanted = "\0".join(argv).encode() + b"\0"
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes() == wanted:
                stat = (proc / "stat").read_text()
                if stat[stat.rindex(")") + 2] != "Z":
                    return True
        except (FileNotFoundError, ProcessLookupError):
            continue
    return False


def _lock_busy(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
