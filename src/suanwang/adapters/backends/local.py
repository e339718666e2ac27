"""Local backend: runs each attempt as real OS processes on this host, confined and crash-safe.

Every job owns ``runs_dir/<job_id>/`` (root-owned, 0700; files 0600)::

    work/         the job's own directory: /job in its sandbox, owned by its uid (0700),
                  shared by its attempts; the only part of the data directory a job sees
    <attempt>/    the attempt's control directory, never visible to the job:
        lock          flock held (exclusively) for as long as the supervisor lives
        request.json  written by submit: what the supervisor is to start, and its limits
        submitted     written by the supervisor before it starts the command: it may have run
        launch.json   written by the supervisor: its pid and start time, the command's pid
        exit.json     written by the supervisor when the run ended (or by cancel/submit)
        cancel        marker: a cancel was requested; the supervisor and later submits obey it
        output.log    stdout and stderr of the command (the job holds only the descriptor)

The lock is the fence: :meth:`LocalBackend.submit` spawns only while holding it and hands it
to the supervisor (``local_shim.py``). So a run is never started twice for one attempt, and
the caller may be SIGKILLed at any point: a later caller (or a second control plane)
re-attaches from the files alone. Probes take a *shared* lock for an instant; :meth:`submit`
retries briefly so a probe is not mistaken for a live run.

Sandboxed runs (``IsolationMode.SANDBOX``, see ``sandbox.py``) do **not** get the lock: a
job holding the descriptor could ``flock(LOCK_UN)`` it (one open file description, shared)
and make a live run look ended. Instead the run cannot outlive its supervisor: bubblewrap
runs with ``--die-with-parent`` (the kernel SIGKILLs it when the supervisor dies) and its
pid 1 takes the whole PID namespace with it; every process is also in the attempt's cgroup,
which poll and cancel empty (SIGKILL) whenever they find the supervisor gone. So "lock
free" means "nothing of the run is left", and a kill -9 of the supervisor ends the attempt
as lost (never run again). In single-user development mode the command inherits the lock as
before, and an orphaned command is found and killed by its process group.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from suanwang.adapters.backends.local_limits import JobCgroups
from suanwang.adapters.backends.local_records import (
    alive_status,
    as_int,
    ended_status,
    group_alive,
    process_alive,
    read_json,
)
from suanwang.adapters.backends.local_shim import write_json_atomic
from suanwang.adapters.backends.local_start import Preparer
from suanwang.adapters.backends.probe import local_nodes
from suanwang.adapters.backends.sandbox import HostFacts, Isolation, probe_host
from suanwang.domain.connections import Connection
from suanwang.domain.fleet import NodeSpec
from suanwang.domain.ids import ChipName
from suanwang.domain.jobs import AttemptState
from suanwang.domain.workloads import Workload
from suanwang.ports import Clock, ClusterCapacity, Handle, LaunchRequest, RunRef, RunStatus

__all__ = ["LocalBackend", "group_alive", "process_alive"]

_SHIM = Path(__file__).with_name("local_shim.py")
_BUSY_RETRY_DELAYS_S = (0.005, 0.01, 0.02, 0.04, 0.08)
_SPAWN_WAIT_S = 30.0
_SHIM_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class LocalBackend:
    """Runs jobs as processes of this host, one supervisor per attempt."""

    name = "local"

    def __init__(
        self,
        runs_dir: Path,
        clock: Clock,
        *,
        isolation: Isolation,
        grace_s: float = 10.0,
        host: HostFacts | None = None,
    ) -> None:
        """Create a backend keeping its run directories under ``runs_dir``.

        Args:
            runs_dir: Root of the per-job directories (created on demand, 0700).
            clock: Source of time for records this backend writes itself.
            isolation: Sandbox (per-tenant uids, bubblewrap, cgroups) or development mode.
            grace_s: Seconds between SIGTERM and SIGKILL on cancel or timeout.
            host: What this host allows (default: probed); tests pass other facts.
        """
        if grace_s < 0:
            raise ValueError("grace_s must be >= 0")
        self.runs_dir = Path(runs_dir)
        self.clock = clock
        self.grace_s = grace_s
        self._preparer = Preparer(self.runs_dir, isolation, grace_s, host or probe_host())

    def refusal(self, workload: Workload) -> str | None:  # noqa: ARG002 (Backend protocol)
        """Why no run can start here (sandbox mode without the privilege to confine it)."""
        return self._preparer.refusal

    def submit(self, request: LaunchRequest) -> RunStatus:
        """Start the attempt unless it was started before; returns its status either way."""
        if not request.command:
            raise ValueError("the local backend needs a command")
        run_dir = self._run_dir(request.job_id, request.attempt)
        _private_dir(self.runs_dir)
        _private_dir(run_dir.parent)
        _private_dir(run_dir)
        fd = _lock_exclusive(run_dir / "lock")
        if fd is None:  # held by a live run (or a concurrent submit that will start it)
            return ended_status(run_dir) or alive_status(run_dir)
        try:
            previous = self._previous_outcome(run_dir)
            if previous is not None:
                return previous
            problem = self._preparer.write_request(request, run_dir)
            if problem is not None:
                _append_log(run_dir, f"suanwang: {problem}\n")
                self._record_exit(run_dir, problem, exit_code=127)
                return ended_status(run_dir) or self._lost(run_dir)
            launcher = self._spawn(run_dir, fd)
        finally:
            os.close(fd)
        _reap(launcher)
        return self.poll(request.job_id, request.attempt, {})

    def poll(self, job_id: str, attempt: int, handle: Handle) -> RunStatus:  # noqa: ARG002 (Backend protocol)
        """Status from the run directory alone; ``handle`` is informational only."""
        run_dir = self._run_dir(job_id, attempt)
        ended = ended_status(run_dir)
        if ended is not None:
            return ended
        if _lock_held(run_dir / "lock"):
            return alive_status(run_dir)
        return ended_status(run_dir) or self._lost(run_dir)

    def cancel(self, job_id: str, attempt: int, handle: Handle) -> None:  # noqa: ARG002 (Backend protocol)
        """Mark the attempt cancelled and stop whatever of it still runs. Idempotent."""
        run_dir = self._run_dir(job_id, attempt)
        _private_dir(run_dir.parent)
        _private_dir(run_dir)
        if not (run_dir / "cancel").exists():
            write_json_atomic(run_dir / "cancel", {"requested_at": self.clock.now()})
        launch = read_json(run_dir / "launch.json")
        if (run_dir / "exit.json").exists() or not launch:
            return  # ended, or not launched yet: the supervisor or a later submit sees the marker
        shim_pid = as_int(launch.get("shim_pid"))
        if shim_pid and process_alive(shim_pid, as_int(launch.get("shim_start_time"))):
            _kill(shim_pid, signal.SIGTERM, group=False)  # the supervisor does grace and SIGKILL
            return
        if self._kill_orphans(run_dir, launch):
            self._record_exit(run_dir, "cancelled")

    def logs(self, job_id: str, attempt: int, handle: Handle, offset: int, limit: int) -> bytes:  # noqa: ARG002 (Backend protocol)
        """Up to ``limit`` bytes of ``output.log`` from ``offset``; empty if there is none."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must be >= 0")
        try:
            with open(self._run_dir(job_id, attempt) / "output.log", "rb") as log:
                if offset >= os.fstat(log.fileno()).st_size:
                    return b""  # seeking far past the end fails (EINVAL at 2**44 on ext4)
                log.seek(offset)
                return log.read(limit)
        except FileNotFoundError:
            return b""

    def capacity(self, cluster: str, connection: Connection | None) -> ClusterCapacity:  # noqa: ARG002 (Backend protocol)
        """This host is always reachable; its nodes are what it offers (cpu slots, GPUs),
        not the fleet file's list, so nothing is drained for missing from it."""
        nodes = tuple(
            NodeSpec(str(n["name"]), ChipName(str(n["chip"])), int(n["cards"]))
            for n in local_nodes()
        )
        return ClusterCapacity(healthy=True, nodes=nodes, complete=False)

    def runs(self, cluster: str, connection: Connection | None) -> list[RunRef]:  # noqa: ARG002 (Backend protocol)
        """Attempts of this host that have no exit record: alive while their lock is held.

        Every local cluster shares this host's runs directory, so the list is the same for
        each of them.
        """
        found: list[RunRef] = []
        if not self.runs_dir.is_dir():
            return found
        for job_dir in sorted(self.runs_dir.iterdir()):
            if not job_dir.is_dir():
                continue
            for run_dir in sorted(job_dir.iterdir()):
                if not run_dir.name.isdigit() or (run_dir / "exit.json").exists():
                    continue
                alive = _lock_held(run_dir / "lock")
                handle = {"run_dir": str(run_dir)}
                found.append(RunRef(job_dir.name, int(run_dir.name), handle, alive))
        return found

    def _run_dir(self, job_id: str, attempt: int) -> Path:
        if not job_id or job_id in {".", ".."} or "/" in job_id or "\x00" in job_id:
            raise ValueError(f"job id {job_id!r} cannot name a run directory")
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        return self.runs_dir / job_id / str(attempt)

    def _previous_outcome(self, run_dir: Path) -> RunStatus | None:
        """With the lock held: what happened before, or None if this attempt is fresh."""
        ended = ended_status(run_dir)
        if ended is not None:
            return ended
        if (run_dir / "launch.json").exists() or (run_dir / "submitted").exists():
            return self._lost(run_dir)
        if (run_dir / "cancel").exists():
            self._record_exit(run_dir, "cancelled")
            return ended_status(run_dir)
        return None

    def _spawn(self, run_dir: Path, fd: int) -> subprocess.Popen[bytes]:
        log_fd = os.open(run_dir / "output.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        argv = [sys.executable, "-I", str(_SHIM), "--run-dir", str(run_dir)]
        try:
            return subprocess.Popen(
                [*argv, "--lock-fd", str(fd)],
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                env=_SHIM_ENV,
                pass_fds=(fd,),
                start_new_session=True,
            )
        finally:
            os.close(log_fd)

    def _kill_orphans(self, run_dir: Path, launch: dict[str, Any]) -> bool:
        """The supervisor is gone but some of the run may live on: kill it. True if any was."""
        killed = False
        pgid, sid = as_int(launch.get("pgid")), as_int(launch.get("sid"))
        if pgid and sid and _lock_held(run_dir / "lock") and group_alive(pgid, sid):
            _kill(pgid, signal.SIGKILL, group=True)  # development mode: it holds the lock
            killed = True
        cgroups = _cgroups(run_dir)
        killed = cgroups.kill_all() or killed
        cgroups.remove()
        return killed

    def _record_exit(self, run_dir: Path, reason: str, exit_code: int | None = None) -> None:
        launch = read_json(run_dir / "launch.json") or {}
        record = {"exit_code": exit_code, "reason": reason, "ended_at": self.clock.now()}
        record["started_at"] = launch.get("started_at")
        write_json_atomic(run_dir / "exit.json", record)

    def _lost(self, run_dir: Path) -> RunStatus:
        started = (run_dir / "launch.json").exists() or (run_dir / "submitted").exists()
        cgroups = _cgroups(run_dir)  # the supervisor died: nothing of its run may outlive it
        cgroups.kill_all()
        cgroups.remove()
        status = alive_status(run_dir)
        reason = "supervisor died" if started else "no run was started for this attempt"
        return RunStatus(
            state=AttemptState.LOST,
            handle=status.handle,
            reason=reason,
            started_at=status.started_at,
            ended_at=self.clock.now(),
        )


def _cgroups(run_dir: Path) -> JobCgroups:
    """The attempt's cgroups, from its (root-only) request; none if it has no request."""
    request = read_json(run_dir / "request.json") or {}
    groups = request.get("cgroups")
    return JobCgroups(
        {str(k): str(v) for k, v in groups.items()} if isinstance(groups, dict) else {}
    )


def _append_log(run_dir: Path, text: str) -> None:
    """Add a line of the platform's own to the run's ``output.log`` (0600)."""
    fd = os.open(run_dir / "output.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, text.encode("utf-8", "replace"))
    finally:
        os.close(fd)


def _private_dir(path: Path) -> None:
    """Create ``path`` (0700) or tighten it to 0700 if it exists."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)


def _lock_exclusive(path: Path) -> int | None:
    """Open ``path`` and lock it exclusively; None if a run (not a brief probe) holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    for delay in (*_BUSY_RETRY_DELAYS_S, None):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if delay is None:
                break
            time.sleep(delay)
    os.close(fd)
    return None


def _lock_held(path: Path) -> bool:
    """True if someone holds ``path`` exclusively; probes with a shared lock for an instant."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a probe lock we got
    return False


def _reap(launcher: subprocess.Popen[bytes]) -> None:
    """Wait for the launching process; it exits once the supervisor has detached."""
    try:
        launcher.wait(timeout=_SPAWN_WAIT_S)
    except subprocess.TimeoutExpired:
        launcher.kill()  # the detached supervisor (if any) is unaffected
        launcher.wait()


def _kill(pid: int, sig: signal.Signals, *, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
