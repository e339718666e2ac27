"""Local backend: runs each attempt as real OS processes on this host, crash-safe.

Every attempt owns ``runs_dir/<job_id>/<attempt>/``::

    lock          flock held (exclusively) for as long as the supervisor or the user command lives
    submitted     written by the supervisor before it starts the user command: it may have run
    launch.json   written by the supervisor: its pid and start time, the user command's pid
    exit.json     written by the supervisor when the user command ended (or by cancel/submit)
    cancel        marker: a cancel was requested; the supervisor and later submits obey it
    output.log    stdout and stderr of the user command (and of the supervisor)

The lock is the fence: :meth:`LocalBackend.submit` spawns only while holding it and hands it
to the supervisor (``local_shim.py``), which hands it on to the user command. So a run is never
started twice for one attempt, and the caller may be SIGKILLed at any point: a later caller
(or a second control plane) re-attaches from the files alone. Probes take a *shared* lock for
an instant; :meth:`submit` retries briefly so a probe is not mistaken for a live run.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from suanwang.adapters.backends.local_shim import write_json_atomic
from suanwang.domain.jobs import AttemptState
from suanwang.ports import Clock, Handle, LaunchRequest, RunStatus

_SHIM = Path(__file__).with_name("local_shim.py")
CHECKPOINT_MARK = "checkpoint"
"""A run touches this file (``$SUANWANG_CHECKPOINT_FILE``) each time it saves a checkpoint."""
_BUSY_RETRY_DELAYS_S = (0.005, 0.01, 0.02, 0.04, 0.08)
_SPAWN_WAIT_S = 30.0


class LocalBackend:
    """Runs jobs as processes of this host, one supervisor per attempt."""

    name = "local"

    def __init__(self, runs_dir: Path, clock: Clock, grace_s: float = 10.0) -> None:
        """Create a backend keeping its run directories under ``runs_dir``.

        Args:
            runs_dir: Root of the per-attempt run directories (created on demand).
            clock: Source of time for records this backend writes itself.
            grace_s: Seconds between SIGTERM and SIGKILL on cancel or timeout.
        """
        if grace_s < 0:
            raise ValueError("grace_s must be >= 0")
        self.runs_dir = Path(runs_dir)
        self.clock = clock
        self.grace_s = grace_s

    def submit(self, request: LaunchRequest) -> RunStatus:
        """Start the attempt unless it was started before; returns its status either way."""
        if not request.command:
            raise ValueError("the local backend needs a command")
        run_dir = self._run_dir(request.job_id, request.attempt)
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = _lock_exclusive(run_dir / "lock")
        if fd is None:  # held by a live run (or a concurrent submit that will start it)
            return ended_status(run_dir) or alive_status(run_dir)
        try:
            previous = self._previous_outcome(run_dir)
            if previous is not None:
                return previous
            launcher = self._spawn(request, run_dir, fd)
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
        run_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / "cancel").exists():
            write_json_atomic(run_dir / "cancel", {"requested_at": self.clock.now()})
        launch = read_json(run_dir / "launch.json")
        if (run_dir / "exit.json").exists() or not launch:
            return  # ended, or not launched yet: the supervisor or a later submit sees the marker
        shim_pid = _int(launch.get("shim_pid"))
        if shim_pid and process_alive(shim_pid, _int(launch.get("shim_start_time"))):
            _kill(shim_pid, signal.SIGTERM, group=False)  # the supervisor does grace and SIGKILL
            return
        self._kill_orphans(run_dir, launch)

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

    def _spawn(self, request: LaunchRequest, run_dir: Path, fd: int) -> subprocess.Popen[bytes]:
        log_fd = os.open(run_dir / "output.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            return subprocess.Popen(
                self._shim_argv(request, run_dir, fd),
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                env=_environment(request, run_dir),
                pass_fds=(fd,),
                start_new_session=True,
            )
        finally:
            os.close(log_fd)

    def _shim_argv(self, request: LaunchRequest, run_dir: Path, fd: int) -> list[str]:
        argv = [sys.executable, "-I", str(_SHIM), "--run-dir", str(run_dir)]
        argv += ["--lock-fd", str(fd), "--grace-s", repr(self.grace_s)]
        if request.max_runtime_s is not None:
            argv += ["--max-runtime-s", repr(float(request.max_runtime_s))]
        if request.working_dir is not None:
            argv += ["--cwd", request.working_dir]
        return [*argv, "--", *request.command]

    def _kill_orphans(self, run_dir: Path, launch: dict[str, Any]) -> None:
        """The supervisor is gone but its user command may live on: kill its process group."""
        pgid, sid = _int(launch.get("pgid")), _int(launch.get("sid"))
        if not pgid or not sid or not _lock_held(run_dir / "lock"):
            return
        if group_alive(pgid, sid):
            _kill(pgid, signal.SIGKILL, group=True)
            self._record_exit(run_dir, "cancelled")

    def _record_exit(self, run_dir: Path, reason: str) -> None:
        now = self.clock.now()
        launch = read_json(run_dir / "launch.json") or {}
        record = {"exit_code": None, "reason": reason, "ended_at": now}
        record["started_at"] = launch.get("started_at")
        write_json_atomic(run_dir / "exit.json", record)

    def _lost(self, run_dir: Path) -> RunStatus:
        started = (run_dir / "launch.json").exists() or (run_dir / "submitted").exists()
        status = alive_status(run_dir)
        reason = "supervisor died" if started else "no run was started for this attempt"
        return RunStatus(
            state=AttemptState.LOST,
            handle=status.handle,
            reason=reason,
            started_at=status.started_at,
            ended_at=self.clock.now(),
        )


def _environment(request: LaunchRequest, run_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(request.env)
    env["SUANWANG_JOB_ID"] = request.job_id
    env["SUANWANG_ATTEMPT"] = str(request.attempt)
    env["SUANWANG_CARDS"] = str(sum(p.cards for p in request.placements))
    env["SUANWANG_CHECKPOINT_FILE"] = str(run_dir / CHECKPOINT_MARK)
    return env


def _lock_exclusive(path: Path) -> int | None:
    """Open ``path`` and lock it exclusively; None if a run (not a brief probe) holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None if missing, ``{}`` if unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def alive_status(run_dir: Path) -> RunStatus:
    """RUNNING with the launch facts, or STARTING before ``launch.json`` exists."""
    launch = read_json(run_dir / "launch.json")
    handle: dict[str, Any] = {"run_dir": str(run_dir)}
    if launch is None:
        return RunStatus(state=AttemptState.STARTING, handle=handle)
    handle["pid"] = _int(launch.get("shim_pid"))
    handle["pid_start_time"] = _int(launch.get("shim_start_time"))
    handle["child_pid"] = _int(launch.get("child_pid"))
    started_at = _float(launch.get("started_at"))
    return RunStatus(
        state=AttemptState.RUNNING,
        handle=handle,
        started_at=started_at,
        checkpoint_at=checkpoint_time(run_dir),
    )


def checkpoint_time(run_dir: Path) -> float | None:
    """When the run last touched ``$SUANWANG_CHECKPOINT_FILE`` (None if never)."""
    try:
        return (run_dir / CHECKPOINT_MARK).stat().st_mtime
    except FileNotFoundError:
        return None


def ended_status(run_dir: Path) -> RunStatus | None:
    """How the run ended according to ``exit.json``; None while there is no such file."""
    record = read_json(run_dir / "exit.json")
    if record is None:
        return None
    code = _int(record.get("exit_code"))
    reason = str(record.get("reason") or "exit record unreadable")
    if reason == "cancelled":
        state = AttemptState.CANCELLED
    elif code == 0 and reason == "exited":
        state = AttemptState.SUCCEEDED
    else:
        state = AttemptState.FAILED
    alive = alive_status(run_dir)
    return RunStatus(
        state=state,
        handle=alive.handle,
        exit_code=code,
        reason=reason,
        started_at=alive.started_at or _float(record.get("started_at")),
        ended_at=_float(record.get("ended_at")),
    )


def process_alive(pid: int, start_time: int | None) -> bool:
    """True if ``pid`` is a live (non-zombie) process that started at ``start_time``."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == start_time


def group_alive(pgid: int, sid: int) -> bool:
    """True if a live process is in process group ``pgid`` of session ``sid``.

    Neither id can be reused while such a process exists, so a hit proves the group is ours.
    """
    with os.scandir("/proc") as entries:
        for entry in entries:
            fields = _stat_fields(int(entry.name)) if entry.name.isdigit() else None
            if fields and fields[0] != "Z" and (int(fields[2]), int(fields[3])) == (pgid, sid):
                return True
    return False


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/<pid>/stat`` (state, ppid, pgrp, session, ...), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2 :].decode("ascii", "replace").split()


def _float(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
