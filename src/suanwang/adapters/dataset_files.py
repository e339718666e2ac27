"""Dataset files on disk: the storage root of each region (:class:`~suanwang.ports.DatasetFiles`).

Layout (the platform chooses every path; a tenant names only paths *inside* a dataset)::

    <storage root>/<region>/tenants/         0711 root: search only, nobody lists them
                                             (default root: <data dir>/storage)
      <tenant>/datasets/                     0700 root (+ ``u:<job uid>:--x`` ACL entries
                                             that Slurm submits add: dataset_access.py)
        <dataset id>/                        0755: what a job sees at /data/input, read-only
          <file path...>                     0644 files, 0755 directories, owned by root
        .incoming-<dataset id>/              0700: files being uploaded (never seen by jobs)

Writes never follow a symlink: every directory below the replica directory is created
and opened with ``O_NOFOLLOW`` relative to its parent's descriptor, and the final name is
renamed into place relative to that descriptor; the resolved result must still lie under
the storage root. The dataset directory is world-readable so that a sandboxed job's
unprivileged uid can read it through its read-only bind mount; a tenant's directory and its
``datasets/`` stay 0700 (their group bits, the ACL mask when a Slurm job's uid was given
search, are kept), so no other uid's path of the host reaches it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import stat
from pathlib import Path

from suanwang.domain.datasets import ManifestEntry
from suanwang.domain.errors import ValidationError

ACL_XATTR = "system.posix_acl_access"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LocalDatasetFiles:
    """Storage roots on this host's filesystem, one subdirectory per region."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def replica_dir(self, region: str, tenant: str, dataset_id: str) -> str:
        return str(self._tenant_dir(region, tenant) / dataset_id)

    def create(self, region: str, tenant: str, dataset_id: str) -> str:
        parent = self._tenant_dir(region, tenant)
        self._root.mkdir(mode=0o711, parents=True, exist_ok=True)
        for searched in (self._root, self._root / region, self._root / region / "tenants"):
            searched.mkdir(mode=0o711, exist_ok=True)
            _set_mode(searched, 0o711)
        for private in (parent.parent, parent):
            private.mkdir(mode=0o700, exist_ok=True)
            _keep_private(private)
        target = parent / dataset_id
        target.mkdir(mode=0o755, exist_ok=True)
        target.chmod(0o755)
        self._check_inside(target)
        return str(target)

    def open_file(
        self, region: str, tenant: str, dataset_id: str, parts: tuple[str, ...]
    ) -> LocalFileSink:
        base = self._tenant_dir(region, tenant)
        incoming = base / f".incoming-{dataset_id}"
        incoming.mkdir(mode=0o700, exist_ok=True)
        self._check_inside(incoming)
        temp = incoming / secrets.token_hex(8)
        return LocalFileSink(temp, base / dataset_id, parts, self._root)

    def remove(self, region: str, tenant: str, dataset_id: str) -> None:
        base = self._tenant_dir(region, tenant)
        for path in (base / dataset_id, base / f".incoming-{dataset_id}"):
            if path.is_symlink():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path)

    def finalise(self, region: str, tenant: str, dataset_id: str) -> None:
        base = self._tenant_dir(region, tenant)
        _keep_private(base.parent)  # a transfer agent may have made them
        _keep_private(base)
        target = base / dataset_id
        self._check_inside(target)
        for _, dirs, files, fd in os.fwalk(target, follow_symlinks=False):
            _own(fd, 0o755)
            for name in [*files, *dirs]:
                _finalise_entry(name, fd)

    def _tenant_dir(self, region: str, tenant: str) -> Path:
        for name, value in (("region", region), ("tenant", tenant)):
            if not value or "/" in value or value in (".", "..") or "\x00" in value:
                raise ValueError(f"unsafe {name} name {value!r} for a storage path")
        return self._root / region / "tenants" / tenant / "datasets"

    def _check_inside(self, path: Path) -> None:
        if not path.resolve().is_relative_to(self._root):
            raise ValidationError(
                "a dataset directory resolves outside the storage root",
                field="path",
                hint="the operator should check the storage root for symlinks",
            )


class LocalFileSink:
    """One upload: written to a private temporary file, hashed as it goes, then renamed."""

    def __init__(self, temp: Path, replica: Path, parts: tuple[str, ...], root: Path) -> None:
        self._temp, self._replica, self._parts, self._root = temp, replica, parts, root
        self._fd: int | None = os.open(
            temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
        self._hash = hashlib.sha256()
        self._written = 0

    @property
    def written(self) -> int:
        return self._written

    def write(self, chunk: bytes) -> None:
        assert self._fd is not None
        view = memoryview(chunk)
        while view:
            done = os.write(self._fd, view)
            view = view[done:]
        self._hash.update(chunk)
        self._written += len(chunk)

    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> ManifestEntry:
        assert self._fd is not None
        os.fsync(self._fd)
        os.fchmod(self._fd, 0o644)
        os.close(self._fd)
        self._fd = None
        try:
            parent = self._open_parent()
        except BaseException:
            self.abort()
            raise
        try:
            name = self._parts[-1]
            if _is_dir_or_link(name, parent):
                raise ValidationError(
                    f"{'/'.join(self._parts)!r} is a directory or a link in this dataset",
                    field="path",
                    hint="choose another file name",
                )
            os.rename(self._temp, name, dst_dir_fd=parent)
            os.fsync(parent)
        except BaseException:
            self.abort()
            raise
        finally:
            os.close(parent)
        return ManifestEntry("/".join(self._parts), self._written, self._hash.hexdigest())

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()

    def _open_parent(self) -> int:
        """The directory the file goes in, created as needed, never through a symlink."""
        fd = os.open(self._replica, _DIR_FLAGS)
        try:
            for part in self._parts[:-1]:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise ValidationError(
                        f"{part!r} in {'/'.join(self._parts)!r} is not a directory here",
                        field="path",
                        hint="a file of that name exists in the dataset, or it is a link",
                    ) from exc
                os.fchmod(child, 0o755)
                os.close(fd)
                fd = child
            if not Path(f"/proc/self/fd/{fd}").resolve().is_relative_to(self._root):
                raise ValidationError(
                    "the file's directory resolves outside the storage root", field="path"
                )
            return fd
        except BaseException:
            os.close(fd)
            raise


def _set_mode(path: Path, mode: int) -> None:
    if stat.S_IMODE(path.lstat().st_mode) != mode:
        path.chmod(mode)


def _keep_private(path: Path) -> None:
    """0700; with an ACL (``dataset_access.py``) the group search bit is its mask and is
    kept, or the search a Slurm/Ray job's uid was given would be taken back."""
    mode = stat.S_IMODE(path.lstat().st_mode)
    wanted = 0o700 | (mode & 0o010 if _has_acl(path) else 0)
    if mode != wanted:
        path.chmod(wanted)


def _has_acl(path: Path) -> bool:
    try:
        os.getxattr(path, ACL_XATTR, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return False
        raise
    return True


def _is_dir_or_link(name: str, dir_fd: int) -> bool:
    """Whether ``name`` in ``dir_fd`` is a directory or a symlink (absent: no)."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(mode) or stat.S_ISLNK(mode)


def _own(fd: int, mode: int) -> None:
    if os.geteuid() == 0:
        os.fchown(fd, 0, 0)
    os.fchmod(fd, mode)


def _finalise_entry(name: str, dir_fd: int) -> None:
    """A received file becomes root's and 0644; a link or special file is removed
    (directories are handled when the walk reaches them)."""
    mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    if stat.S_ISDIR(mode):
        return
    if not stat.S_ISREG(mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        _own(fd, 0o644)
    finally:
        os.close(fd)
