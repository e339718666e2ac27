"""Supervisor of one local run: starts the user command, enforces limits, records the exit.

Run by :class:`~suanwang.adapters.backends.local.LocalBackend` as::

    python -I .../local_shim.py --run-dir D --lock-fd N

and told everything else by ``D/request.json`` (written by the backend, root-only like the
rest of ``D``): the argv to start (``bwrap … setpriv … env -i … command`` when sandboxed,
the bare command in single-user development mode), its environment and working directory,
the limits, the job's cgroup directories and the paths whose size counts against the disk
limit. Nothing in the request reaches this process's own environment.

The shim forks once so that the process that launched it can reap it at once; the forked
supervisor becomes a session leader, sets umask 077, starts the command in a process group
of its own, writes ``launch.json``, waits, and writes ``exit.json``. The command joins the
job's cgroup (``pids.max``, ``memory.limit_in_bytes``) before it execs, and gets
``RLIMIT_FSIZE`` (the disk limit) and no core files. Stop reasons, checked every 0.1 s:
the ``cancel`` marker, SIGTERM to the supervisor, the max runtime (SIGTERM, then SIGKILL
after the grace period), and a limit (a failed fork in the cgroup, an OOM kill in it, or
the job's files over the disk limit, measured every few seconds: SIGKILL at once). At the
end every process left in the cgroup is killed and the cgroup removed.

Sandboxed runs get SIGTERM on every process of the cgroup but bubblewrap's own two (which
would kill the rest at once with SIGKILL); the lock ``N`` stays in the supervisor only.
Unsandboxed runs get signals by process group and inherit ``N`` (see ``local.py``).

Stdlib only and small on purpose: it starts on every launch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if __package__:
    from suanwang.adapters.backends.local_limits import DiskMeter, JobCgroups, limit_reason
    from suanwang.adapters.backends.local_relay import Relay
else:  # run as a script (python -I): its stdlib-only siblings, without the package's imports
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from local_limits import (  # type: ignore[import-not-found,no-redef]
        DiskMeter,
        JobCgroups,
        limit_reason,
    )
    from local_relay import Relay  # type: ignore[import-not-found,no-redef]

NOTIFY_TIMEOUT_S = 10.0
"""How long the launching process waits for the supervisor to write ``launch.json``."""
_SIGNAL_EXIT_BASE = 128
_terminate_requested = False


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, detach, supervise; returns the launching process's exit code."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    run_dir = Path(args.run_dir)
    request = read_request(run_dir)
    read_fd, write_fd = os.pipe()
    if os.fork():
        os.close(write_fd)
        select.select([read_fd], [], [], NOTIFY_TIMEOUT_S)
        return 0
    os.close(read_fd)
    os.setsid()
    os.umask(0o077)
    _redirect_output(run_dir)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _supervise(request, args.lock_fd, run_dir, write_fd)
    os._exit(0)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="local_shim")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--lock-fd", type=int, required=True)
    return parser.parse_args(argv)


def read_request(run_dir: Path) -> dict[str, Any]:
    """``request.json`` of the run (written by the backend before it starts the shim)."""
    with open(run_dir / "request.json", encoding="utf-8") as handle:
        request: dict[str, Any] = json.load(handle)
    return request


def _redirect_output(run_dir: Path) -> None:
    """Point our stdout and stderr (inherited by the command) at ``output.log`` (0600)."""
    fd = os.open(run_dir / "output.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _on_sigterm(_signum: int, _frame: object) -> None:
    global _terminate_requested
    _terminate_requested = True


def _supervise(request: dict[str, Any], lock_fd: int, run_dir: Path, notify_fd: int) -> None:
    started_at = time.time()
    # From here on the user command may run: a later caller that finds the lock free must
    # call this attempt lost, never start it again. Before this marker nothing had run.
    write_json_atomic(run_dir / "submitted", {"submitted_at": started_at})
    if (run_dir / "cancel").exists():
        _finish(run_dir, notify_fd, None, "cancelled", started_at)
        return
    cgroups = JobCgroups(request.get("cgroups") or {})
    relay = None
    try:
        cgroups.create(request["limits"])
        if request.get("relay"):
            relay = Relay.start(request["relay"], cgroups.join)
        child = _start(request, lock_fd, cgroups)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"suanwang: could not start {request['command_name']!r}: {exc}\n")
        sys.stderr.flush()
        if relay is not None:
            relay.stop()
        cgroups.kill_all()
        cgroups.remove()
        _finish(run_dir, notify_fd, 127, f"could not start: {exc}", started_at)
        return
    me = os.getpid()
    launch = {
        "shim_pid": me,
        "shim_start_time": start_time(me),
        "child_pid": child.pid,
        "child_start_time": start_time(child.pid),
        "pgid": child.pid,
        "sid": me,
        "started_at": started_at,
    }
    write_json_atomic(run_dir / "launch.json", launch)
    _notify(notify_fd)
    spared = () if relay is None else (relay.pid,)
    code, reason = Watch(child, request, run_dir, cgroups, spared).wait()
    if relay is not None:
        relay.stop()
    cgroups.remove()
    _finish(run_dir, None, code, reason, started_at)


def _start(request: dict[str, Any], lock_fd: int, cgroups: JobCgroups) -> subprocess.Popen[bytes]:
    """Start the command in its own process group, inside the job's cgroup."""
    file_size = int(request["limits"]["disk_bytes"])

    def in_child() -> None:  # after fork, before exec: the supervisor has no threads
        cgroups.join(os.getpid())
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return subprocess.Popen(
        request["argv"],
        stdin=subprocess.DEVNULL,
        env=request["env"],
        cwd=request.get("cwd"),
        pass_fds=() if request["sandboxed"] else (lock_fd,),
        process_group=0,
        preexec_fn=in_child,
    )


class Watch:
    """Waits for the command, stopping it on cancel, timeout or a limit."""

    def __init__(
        self,
        child: subprocess.Popen[bytes],
        request: dict[str, Any],
        run_dir: Path,
        cgroups: JobCgroups,
        spared: tuple[int, ...] = (),
    ) -> None:
        self.child, self.run_dir, self.cgroups = child, run_dir, cgroups
        self.spared = spared
        """Spared SIGTERM during the grace period (the gateway relay: the job may still
        finish a call); SIGKILL takes them too."""
        self.sandboxed = bool(request["sandboxed"])
        self.grace_s = float(request["grace_s"])
        self.limits: Mapping[str, int] = request["limits"]
        tmpfs = request.get("tmpfs") or ()
        self.disk = DiskMeter(request.get("measure") or (), tmpfs, self.limits["disk_bytes"])
        runtime = request.get("max_runtime_s")
        self.deadline = None if runtime is None else time.monotonic() + float(runtime)

    def wait(self) -> tuple[int, str]:
        """Returns (exit code, reason) once the command has exited and its job is gone."""
        reason, kill_at, delay = "exited", None, 0.005
        while not _exited(self.child.pid):
            now = time.monotonic()
            if kill_at is None and (stop := self._stop_reason(now)):
                reason, graceful = stop
                kill_at = now + self.grace_s if graceful else now
                if graceful:
                    self._signal(signal.SIGTERM)
            if kill_at is not None and now >= kill_at:
                self._signal(signal.SIGKILL)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        self._signal(signal.SIGKILL)  # leftovers; the zombie leader pins the pgid
        self.cgroups.kill_all()
        code = self._exit_code(self.child.wait())
        if reason == "exited":
            reason = self._limit_hit(code, final=True) or reason
        self.disk.close()
        return code, reason

    def _stop_reason(self, now: float) -> tuple[str, bool] | None:
        """(reason, graceful) if the job must stop now."""
        if (self.run_dir / "cancel").exists():
            return "cancelled", True
        if _terminate_requested:
            return "terminated (SIGTERM to supervisor)", True
        if self.deadline is not None and now >= self.deadline:
            return "max runtime exceeded", True
        if self.sandboxed:
            self._hold_tmpfs()
        limit = self._limit_hit(None)
        if limit is None and self.disk.over(now):
            limit = limit_reason("disk_bytes", self.limits)
        return (limit, False) if limit else None

    def _hold_tmpfs(self) -> None:
        """Once bubblewrap's pid 1 exists, keep hold of the sandbox's /tmp and /dev/shm."""
        inner = _bwrap_pids(self.child.pid) - {self.child.pid}
        if inner:
            self.disk.hold_tmpfs(min(inner), self.limits["disk_bytes"])

    def _limit_hit(self, code: int | None, *, final: bool = False) -> str | None:
        """The limit the job ran into: its cgroups' counters, SIGXFSZ, or (at the end) its
        files' size."""
        over = code == -signal.SIGXFSZ or (final and self.disk.over(0.0, final=True))
        if over:
            return limit_reason("disk_bytes", self.limits)
        return self.cgroups.hit(self.limits)

    def _signal(self, sig: signal.Signals) -> None:
        if not self.sandboxed:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.child.pid, sig)
        keep: set[int] = set()
        if self.sandboxed and sig != signal.SIGKILL:
            keep = _bwrap_pids(self.child.pid) | set(self.spared)
        self.cgroups.signal(sig, keep)

    def _exit_code(self, code: int) -> int:
        """bubblewrap reports death by signal N as 128 + N, like a shell: map it back."""
        if self.sandboxed and _SIGNAL_EXIT_BASE < code <= _SIGNAL_EXIT_BASE + 64:
            return -(code - _SIGNAL_EXIT_BASE)
        return code


def _bwrap_pids(outer: int) -> set[int]:
    """bubblewrap's own processes: the one we started and its child, the sandbox's pid 1."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        children = Path(f"/proc/{outer}/task/{outer}/children").read_text().split()
        return {outer, *(int(pid) for pid in children)}
    return {outer}


def _exited(pid: int) -> bool:
    """True once ``pid`` has exited; it is left a zombie so its pgid cannot be reused."""
    result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return result is not None


def _finish(
    run_dir: Path, notify_fd: int | None, code: int | None, reason: str, started_at: float
) -> None:
    record = {
        "exit_code": code,
        "reason": reason,
        "started_at": started_at,
        "ended_at": time.time(),
    }
    write_json_atomic(run_dir / "exit.json", record)
    if notify_fd is not None:
        _notify(notify_fd)


def _notify(fd: int) -> None:
    try:
        os.write(fd, b"1")
        os.close(fd)
    except OSError:
        pass  # the launching process gave up waiting; nothing else depends on it


def start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks (``/proc/<pid>/stat`` field 22), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19])


def write_json_atomic(path: Path, payload: Mapping[str, object]) -> None:
    """Write ``payload`` to ``path`` (mode 0600) so readers see the old or the whole new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


if __name__ == "__main__":
    sys.exit(main())
