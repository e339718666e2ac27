"""What the local backend reads back from a run's files, and how it checks processes.

Every file read here lives in the attempt's control directory (root-owned, 0700, never
visible in a sandbox), except the checkpoint mark, which the job writes in its own
directory and which is only ever ``lstat``-ed (see :func:`checkpoint_time`).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from suanwang.domain.jobs import AttemptState
from suanwang.ports import RunStatus

CHECKPOINT_MARK = ".checkpoint-{attempt}"
"""A run touches this file in its own directory (``$SUANWANG_CHECKPOINT_FILE``) on each save."""
CHECKPOINT_DIR = "checkpoints"
"""The job's checkpoint directory in its own directory (``$SUANWANG_CHECKPOINT_DIR``)."""
WORK_DIR = "work"
"""The job's own directory, beside its attempts' control directories: ``runs/<job>/work``."""


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
    handle["pid"] = as_int(launch.get("shim_pid"))
    handle["pid_start_time"] = as_int(launch.get("shim_start_time"))
    handle["child_pid"] = as_int(launch.get("child_pid"))
    attempt = int(run_dir.name)
    return RunStatus(
        state=AttemptState.RUNNING,
        handle=handle,
        started_at=as_float(launch.get("started_at")),
        checkpoint_at=checkpoint_time(run_dir.parent / WORK_DIR, attempt),
    )


def checkpoint_time(work_dir: Path, attempt: int) -> float | None:
    """When the run last touched its checkpoint mark (None if never, or not a plain file).

    ``lstat`` only: a symlink is not followed (and not counted), so the mark cannot make
    the control plane look at any other file. The job controls the time it reports; a
    forged time only changes how cheap the job itself looks to preempt.
    """
    try:
        info = os.lstat(work_dir / CHECKPOINT_MARK.format(attempt=attempt))
    except (FileNotFoundError, NotADirectoryError):
        return None
    return info.st_mtime if stat.S_ISREG(info.st_mode) else None


def ended_status(run_dir: Path) -> RunStatus | None:
    """How the run ended according to ``exit.json``; None while there is no such file."""
    record = read_json(run_dir / "exit.json")
    if record is None:
        return None
    code = as_int(record.get("exit_code"))
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
        started_at=alive.started_at or as_float(record.get("started_at")),
        ended_at=as_float(record.get("ended_at")),
        checkpoint_at=alive.checkpoint_at,
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


def as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_float(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
