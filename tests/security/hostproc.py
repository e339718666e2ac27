"""What the test (as root) sees of processes on this host, from ``/proc`` alone.

The hostile-tenant suite finds a job's processes by a unique token on its command line
(host pids, whatever namespace the job runs in), walks their ancestors to find the
supervisor, and checks after a cancel that nothing carrying a token survives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Proc:
    """One process as ``/proc/<pid>/stat`` and ``status`` describe it."""

    pid: int
    state: str
    ppid: int
    pgid: int
    sid: int
    start_time: int
    uid: int

    @property
    def live(self) -> bool:
        return self.state not in ("Z", "X")


def read_proc(pid: int) -> Proc | None:
    """The process ``pid``, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as handle:
            status = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(b")") + 2 :].decode("ascii", "replace").split()
    uid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
    return Proc(
        pid=pid,
        state=fields[0],
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        sid=int(fields[3]),
        start_time=int(fields[19]),
        uid=uid,
    )


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def with_token(token: str) -> list[Proc]:
    """Live processes whose command line carries ``token``."""
    needle = token.encode()
    found = []
    for pid in all_pids():
        if pid != os.getpid() and needle in cmdline(pid):
            proc = read_proc(pid)
            if proc is not None and proc.live:
                found.append(proc)
    return found


def with_uid(uid: int) -> list[Proc]:
    """Live processes whose real uid is ``uid``."""
    procs = (read_proc(pid) for pid in all_pids())
    return [p for p in procs if p is not None and p.live and p.uid == uid]


def innermost(procs: list[Proc]) -> Proc:
    """The process of ``procs`` that has the most ancestors among them (the job itself)."""
    pids = {p.pid for p in procs}

    def depth(proc: Proc) -> int:
        seen, current = 0, proc
        while current.ppid in pids and seen < len(pids):
            seen += 1
            current = next(p for p in procs if p.pid == current.ppid)
        return seen

    return max(procs, key=depth)


def ancestors(pid: int, not_before: int, stop: set[int]) -> list[Proc]:
    """Ancestors of ``pid`` started no earlier than ``not_before`` (clock ticks), up to ``stop``."""
    chain: list[Proc] = []
    current = read_proc(pid)
    while current is not None and current.ppid > 1 and current.ppid not in stop:
        parent = read_proc(current.ppid)
        if parent is None or parent.start_time < not_before:
            break
        chain.append(parent)
        current = parent
    return chain


def same_process(proc: Proc) -> bool:
    """True while ``proc`` (same pid *and* start time) is alive."""
    now = read_proc(proc.pid)
    return now is not None and now.live and now.start_time == proc.start_time


def wait_gone(token: str, timeout_s: float) -> list[Proc]:
    """Wait until no process carries ``token``; returns the survivors at the deadline."""
    deadline = time.monotonic() + timeout_s
    while (left := with_token(token)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def kill_all(token: str) -> None:
    """SIGKILL every process carrying ``token`` (clean-up of what this test started)."""
    for proc in with_token(token):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
