"""Supervisor of one local run: starts the user command, enforces limits, records the exit.

Run by :class:`~suanwang.adapters.backends.local.LocalBackend` as::

    python -I .../local_shim.py --run-dir D --lock-fd N [--max-runtime-s S] [--grace-s G]
        [--cwd W] -- argv...

The shim forks once so that the process that launched it can reap it at once (no zombies
in the control plane); the forked supervisor becomes a session leader, starts the user
command in a process group of its own (pgid = the command's pid), writes ``launch.json``,
waits, and writes ``exit.json``. On cancel (the ``cancel`` marker, checked after
``launch.json`` is written and then every 0.1 s) or when the max runtime is reached, the
whole group gets SIGTERM, then SIGKILL after the grace period; processes left in the group
when the command exits are killed too. The inherited lock ``N`` stays open in the supervisor
and in the user command, so the lock is held exactly as long as any of them lives.

Stdlib only and small on purpose: it starts on every launch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

NOTIFY_TIMEOUT_S = 10.0
"""How long the launching process waits for the supervisor to write ``launch.json``."""

_terminate_requested = False


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, detach, supervise; returns the launching process's exit code."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    run_dir = Path(args.run_dir)
    read_fd, write_fd = os.pipe()
    if os.fork():
        os.close(write_fd)
        select.select([read_fd], [], [], NOTIFY_TIMEOUT_S)
        return 0
    os.close(read_fd)
    os.setsid()
    _redirect_output(run_dir)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _supervise(args, run_dir, write_fd)
    os._exit(0)


def _parse(argv: list[str]) -> argparse.Namespace:
    """Options before ``--``; everything after it is the user command, untouched."""
    parser = argparse.ArgumentParser(prog="local_shim")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--lock-fd", type=int, required=True)
    parser.add_argument("--max-runtime-s", type=float, default=None)
    parser.add_argument("--grace-s", type=float, default=10.0)
    parser.add_argument("--cwd", default=None)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1 :]
    if not args.command:
        parser.error("a command is required after --")
    return args


def _redirect_output(run_dir: Path) -> None:
    """Point our stdout and stderr (inherited by the user command) at ``output.log``."""
    fd = os.open(run_dir / "output.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _on_sigterm(_signum: int, _frame: object) -> None:
    global _terminate_requested
    _terminate_requested = True


def _supervise(args: argparse.Namespace, run_dir: Path, notify_fd: int) -> None:
    started_at = time.time()
    # From here on the user command may run: a later caller that finds the lock free must
    # call this attempt lost, never start it again. Before this marker nothing had run.
    write_json_atomic(run_dir / "submitted", {"submitted_at": started_at})
    if (run_dir / "cancel").exists():
        _finish(run_dir, notify_fd, None, "cancelled", started_at)
        return
    try:
        child = subprocess.Popen(
            args.command,
            stdin=subprocess.DEVNULL,
            cwd=args.cwd,
            pass_fds=(args.lock_fd,),
            process_group=0,
        )
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"suanwang: could not start {args.command[0]!r}: {exc}\n")
        sys.stderr.flush()
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
    code, reason = _wait(child, args, run_dir)
    _finish(run_dir, None, code, reason, started_at)


def _wait(
    child: subprocess.Popen[bytes], args: argparse.Namespace, run_dir: Path
) -> tuple[int, str]:
    """Wait for the child, stopping it on cancel or timeout; returns (exit code, reason)."""
    begun = time.monotonic()
    deadline = None if args.max_runtime_s is None else begun + args.max_runtime_s
    reason, kill_at, delay = "exited", None, 0.005
    while not _exited(child.pid):
        now = time.monotonic()
        if kill_at is None:
            stop = _stop_reason(run_dir, deadline, now)
            if stop:
                reason, kill_at = stop, now + args.grace_s
                _signal_group(child.pid, signal.SIGTERM)
        elif now >= kill_at:
            _signal_group(child.pid, signal.SIGKILL)
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    _signal_group(child.pid, signal.SIGKILL)  # leftovers; the zombie leader pins the pgid
    return child.wait(), reason


def _stop_reason(run_dir: Path, deadline: float | None, now: float) -> str:
    if (run_dir / "cancel").exists():
        return "cancelled"
    if _terminate_requested:
        return "terminated (SIGTERM to supervisor)"
    if deadline is not None and now >= deadline:
        return "max runtime exceeded"
    return ""


def _exited(pid: int) -> bool:
    """True once ``pid`` has exited; it is left a zombie so its pgid cannot be reused."""
    result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return result is not None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


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
    """Write ``payload`` to ``path`` so readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
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
