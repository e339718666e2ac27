"""A finished job's output directory, read to register it as a dataset
(:class:`~suanwang.ports.JobOutputFiles`).

Only the local backend keeps a job's directory on this host (``runs_dir/<job>/work``, the
job's ``/job``). The directory was written by the tenant's job, so nothing in it is
trusted: every component is opened with ``O_NOFOLLOW`` relative to its parent's
descriptor, and a symbolic link or a special file anywhere below the output directory
refuses the whole output (it could point at another tenant's data or the host's files).
The job has ended, so nothing changes it while it is read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from suanwang.adapters.backends.local_records import WORK_DIR
from suanwang.domain.errors import ValidationError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_CHUNK = 1 << 20
MAX_FILES = 100_000


def _refused(why: str) -> ValidationError:
    return ValidationError(
        f"the job's output {why}", field="output_path", hint="write regular files only"
    )


class LocalJobOutputs:
    """Job directories of the local backend under ``runs_dir``."""

    def __init__(self, runs_dir: Path) -> None:
        self._runs = runs_dir

    def files(self, backend: str, job_id: str, parts: tuple[str, ...]) -> list[tuple[str, int]]:
        """(relative path, size) of every regular file below ``parts``, sorted."""
        found: list[tuple[str, int]] = []
        with self._base(backend, job_id, parts) as base:
            for top, dirs, names, fd in os.fwalk(".", dir_fd=base, follow_symlinks=False):
                for name in [*dirs, *names]:
                    mode = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    rel = os.path.normpath(os.path.join(top, name))
                    if stat.S_ISLNK(mode.st_mode):
                        raise _refused(f"holds a symbolic link ({rel[:200]})")
                    if stat.S_ISREG(mode.st_mode):
                        found.append((rel, mode.st_size))
                    elif not stat.S_ISDIR(mode.st_mode):
                        raise _refused(f"holds a special file ({rel[:200]})")
                if len(found) > MAX_FILES:
                    raise _refused(f"has more than {MAX_FILES:,} files")
        if not found:
            raise _refused("directory holds no file")
        return sorted(found)

    def read(self, backend: str, job_id: str, parts: tuple[str, ...], path: str) -> Iterator[bytes]:
        """The file ``path`` (from :meth:`files`) in chunks, no link followed."""
        *dirs, name = path.split("/")
        with self._base(backend, job_id, (*parts, *dirs)) as parent:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise _refused(f"file {path[:200]} is not a regular file")
            while chunk := f.read(READ_CHUNK):
                yield chunk

    @contextmanager
    def _base(self, backend: str, job_id: str, parts: tuple[str, ...]) -> Iterator[int]:
        """A descriptor of ``work/<parts>``, every component opened without following links."""
        if backend != "local":
            raise ValidationError(
                f"jobs on {backend} clusters cannot register an output dataset",
                field="output_dataset",
                hint="run the job on a local cluster",
            )
        if any(p in ("", ".", "..") or "/" in p for p in (job_id, *parts)):
            raise _refused("path is not below the job's directory")
        fd = os.open(self._runs, _DIR_FLAGS)
        try:
            for part in (job_id, WORK_DIR, *parts):
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise _refused(
                        f"directory is missing or not a directory ({part[:64]})"
                    ) from exc
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)
