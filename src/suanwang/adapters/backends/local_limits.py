"""What one local run may use, as its supervisor enforces it: cgroups and disk.

- :class:`JobCgroups`: the run's cgroup v1 directories (``pids``, ``memory``) under the
  control plane's own cgroup; created with ``pids.max`` and ``memory.limit_in_bytes``, joined
  by the command before it execs, emptied with SIGKILL at the end, then removed. Their
  counters tell which limit a run hit (a refused fork, an OOM kill).
- :class:`DiskMeter`: the bytes a run holds: its own directory and ``output.log`` (walked
  without following symlinks) plus its sandbox's private ``/tmp`` and ``/dev/shm`` (through
  descriptors opened once the sandbox is set up, so they still answer after it is gone).
- :func:`limit_reason`: the failure reason naming the setting, e.g.
  ``process limit exceeded (SUANWANG_JOB_MAX_PROCESSES=256)``.

Stdlib only, like the supervisor that loads it (``local_shim.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

DISK_CHECK_MIN_S = 0.1
"""Least time between two measurements of a run's files (20x the last walk, if longer)."""
_LIMIT_SETTINGS = {
    "processes": ("process", "SUANWANG_JOB_MAX_PROCESSES"),
    "memory_bytes": ("memory", "SUANWANG_JOB_MAX_MEMORY_BYTES"),
    "disk_bytes": ("disk", "SUANWANG_JOB_MAX_DISK_BYTES"),
}


def limit_reason(which: str, limits: Mapping[str, int]) -> str:
    """``"<what> limit exceeded (<SETTING>=<value>)"`` for ``processes``, ``memory_bytes``
    or ``disk_bytes``."""
    what, setting = _LIMIT_SETTINGS[which]
    return f"{what} limit exceeded ({setting}={limits[which]})"


class JobCgroups:
    """The cgroup directories of one run, by controller (none where cgroups are not used)."""

    def __init__(self, directories: Mapping[str, str | Path]) -> None:
        self.directories = {name: Path(path) for name, path in directories.items()}

    def create(self, limits: Mapping[str, int]) -> None:
        """Make the directories and set ``pids.max`` and the memory limit (also on swap)."""
        writes = {"pids.max": limits["processes"], "memory.limit_in_bytes": limits["memory_bytes"]}
        for directory in self.directories.values():
            directory.mkdir(parents=True, exist_ok=True)
            for name, value in writes.items():
                if (directory / name).exists():
                    (directory / name).write_text(str(value))
            with contextlib.suppress(OSError):  # only where swap accounting is on
                (directory / "memory.memsw.limit_in_bytes").write_text(str(limits["memory_bytes"]))

    def join(self, pid: int) -> None:
        """Move ``pid`` into every directory (the command, before it execs)."""
        for directory in self.directories.values():
            (directory / "cgroup.procs").write_text(str(pid))

    def signal(self, sig: signal.Signals, keep: Iterable[int] = ()) -> int:
        """Send ``sig`` to every process of the run but ``keep``; returns how many got it."""
        pids_dir = self.directories.get("pids")
        if pids_dir is None:
            return 0
        try:
            pids = [int(p) for p in (pids_dir / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return 0
        spared, sent = set(keep), 0
        for pid in pids:
            if pid not in spared:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                    sent += 1
        return sent

    def kill_all(self, rounds: int = 200) -> bool:
        """SIGKILL every process until none is left (forks race the kill); True if any was."""
        killed = False
        for _ in range(rounds):
            if not self.signal(signal.SIGKILL):
                break
            killed = True
            time.sleep(0.005)
        return killed

    def remove(self) -> None:
        """Remove the (empty) directories; one that is gone already is fine."""
        for directory in self.directories.values():
            with contextlib.suppress(FileNotFoundError):
                directory.rmdir()

    def hit(self, limits: Mapping[str, int]) -> str | None:
        """The reason naming the limit the run ran into, from the cgroups' counters."""
        pids, memory = self.directories.get("pids"), self.directories.get("memory")
        if pids and _counter(pids / "pids.events", "max"):
            return limit_reason("processes", limits)
        if memory and _counter(memory / "memory.oom_control", "oom_kill"):
            return limit_reason("memory_bytes", limits)
        return None


class DiskMeter:
    """Measures a run's files every so often; over the limit is a reason to stop it."""

    def __init__(self, paths: Iterable[str | Path], tmpfs: Iterable[str], limit: int) -> None:
        self._paths = [Path(p) for p in paths]
        self._tmpfs = list(tmpfs)
        self._held: list[int] = []
        self._limit = limit
        self._next = time.monotonic() + DISK_CHECK_MIN_S

    def hold_tmpfs(self, sandbox_pid: int, size: int) -> None:
        """Open the sandbox's private tmpfs once it is set up (its pid 1 has a child)."""
        if self._held or not self._tmpfs or not _has_child(sandbox_pid):
            return
        for mount in self._tmpfs:
            with contextlib.suppress(OSError):
                fd = os.open(f"/proc/{sandbox_pid}/root{mount}", os.O_RDONLY | os.O_DIRECTORY)
                info = os.fstatvfs(fd)
                if info.f_blocks * info.f_frsize == size:  # that tmpfs, not the host's dir
                    self._held.append(fd)
                else:
                    os.close(fd)
        self._tmpfs = []

    def over(self, now: float, *, final: bool = False) -> bool:
        """True if the run's files reach the limit (measured when due, or ``final``)."""
        if not final and now < self._next:
            return False
        walked = time.monotonic()
        used = sum(disk_usage(path) for path in self._paths)
        for fd in self._held:
            info = os.fstatvfs(fd)
            used += (info.f_blocks - info.f_bfree) * info.f_frsize
        self._next = now + max(DISK_CHECK_MIN_S, 20 * (time.monotonic() - walked))
        return used >= self._limit

    def close(self) -> None:
        for fd in self._held:
            os.close(fd)
        self._held = []


def disk_usage(path: Path) -> int:
    """Bytes allocated to ``path`` and everything below it, never following a symlink.

    ``os.fwalk`` opens each directory relative to its parent and checks it is the one it
    listed, so a job that swaps a directory for a symlink mid-walk is not followed.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not os.path.isdir(path) or os.path.islink(path):
        return info.st_blocks * 512
    total = 0
    for _, _, files, dir_fd in os.fwalk(path, follow_symlinks=False):
        total += os.stat(dir_fd).st_blocks * 512
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_blocks * 512
    return total


def _has_child(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except (FileNotFoundError, ProcessLookupError):
        return False


def _counter(path: Path, name: str) -> int:
    """The counter ``name`` in a ``key value`` cgroup file (0 if absent)."""
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    return 0
