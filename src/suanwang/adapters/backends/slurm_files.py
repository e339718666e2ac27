"""The Slurm backend's files: one directory per job under the spool, on a shared filesystem.

::

    <spool>/                  root, 0711 (traversable, not listable)
        <job_id>/             root, 0711: the job's control directory
            batch.sh          root, 0600: the constant batch script (``slurm_script.py``)
            <attempt>.id      root, 0600: the Slurm job id of the attempt, once submitted
            <attempt>.log     the job's uid, 0600: stdout and stderr of the attempt; created
                              by suanwang so the job cannot put a symlink in its place
            work/             the job's uid, 0700: its own directory (``/job`` in its sandbox)

A job can write only its own ``work/`` and its own logs; another tenant's uid can read none
of them, and the data directory (operator key, SQLite database) is not under the spool.
The control plane reads logs with ``O_NOFOLLOW`` from directories only root can write.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

from suanwang.adapters.backends.local_shim import write_json_atomic
from suanwang.adapters.backends.slurm_script import BATCH_SCRIPT, SCRIPT_NAME

WORK_DIR = "work"


class JobFiles:
    """Paths and files of one attempt of one job under ``spool``."""

    def __init__(self, spool: Path, job_id: str, attempt: int) -> None:
        if not job_id or job_id in {".", ".."} or "/" in job_id or "\x00" in job_id:
            raise ValueError(f"job id {job_id!r} cannot name a directory")
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        self.spool = spool
        self.job_dir = spool / job_id
        self.attempt = attempt
        self.output = self.job_dir / f"{attempt}.log"
        self.id_file = self.job_dir / f"{attempt}.id"
        self.script = self.job_dir / SCRIPT_NAME
        self.work = self.job_dir / WORK_DIR

    def prepare(self, uid: int | None) -> None:
        """Create the directories, the log and the script; ``uid`` owns the job's parts."""
        self.spool.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        _root_dir(self.spool)
        _root_dir(self.job_dir)
        _owned_dir(self.work, uid)
        _owned_file(self.output, uid)
        _write_private(self.script, BATCH_SCRIPT)

    def slurm_id(self) -> int | None:
        """The Slurm job id recorded for the attempt, if it was submitted."""
        try:
            found = json.loads(self.id_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        number = found.get("slurm_job_id") if isinstance(found, dict) else None
        return number if isinstance(number, int) and not isinstance(number, bool) else None

    def record_id(self, slurm_id: int) -> None:
        write_json_atomic(self.id_file, {"slurm_job_id": slurm_id})

    def read_log(self, offset: int, limit: int) -> bytes:
        return read_log(self.output, offset, limit)


def read_log(path: Path, offset: int, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``path`` from ``offset`` (no symlink followed; b"" if none)."""
    if offset < 0 or limit < 0:
        raise ValueError("offset and limit must be >= 0")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return b""
    with os.fdopen(fd, "rb") as log:
        if not stat.S_ISREG(os.fstat(log.fileno()).st_mode):
            return b""
        if offset >= os.fstat(log.fileno()).st_size:
            return b""
        log.seek(offset)
        return log.read(limit)


def _root_dir(path: Path) -> None:
    """A directory of the platform: 0711 (others may pass through, not list)."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o711, parents=False)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"{path} is not a directory")
    if stat.S_IMODE(info.st_mode) != 0o711:
        os.chmod(path, 0o711)


def _owned_dir(path: Path, uid: int | None) -> None:
    """The job's own directory (0700), owned by ``uid`` (and gid ``uid``) if given."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"{path} is not a directory")
    if uid is not None and (info.st_uid, info.st_gid) != (uid, uid):
        os.lchown(path, uid, uid)


def _owned_file(path: Path, uid: int | None) -> None:
    """An (empty) output file owned by ``uid``, 0600; an existing one is kept."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if uid is not None:
            os.fchown(fd, uid, uid)
    finally:
        os.close(fd)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
