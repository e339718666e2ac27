"""Letting one uid reach one dataset replica on the host, and nothing else of the storage.

A Slurm job runs as its tenant's uid, and its bubblewrap runs unprivileged as that uid on
the node: it can bind ``/data/input`` only from a directory that uid can reach. The
storage keeps its directories private (``dataset_files.py``): the storage root, the
region and ``tenants/`` are search-only (0711, no listing), a tenant's directory and its
``datasets/`` are 0700 root. :func:`open_replica` gives the job's uid *search* (``--x``)
on those two directories of its own tenant through a POSIX ACL entry (``u:<uid>:--x``,
written as the ``system.posix_acl_access`` attribute: no ``setfacl`` needed), then checks
that every ancestor of the replica lets the uid pass. Another tenant's uid gets no entry,
so it stops at that tenant's directory; without read permission nobody lists which
datasets exist. The replica itself is 0755 with root's 0644 files: readable, not writable.

Pure parts (:func:`parse_acl`, :func:`with_search`, :func:`searchable`) are unit-tested
without a filesystem.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ACL_XATTR = "system.posix_acl_access"
ACL_VERSION = 2
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
NO_ID = 0xFFFFFFFF
SEARCH, READ = 1, 4
_HEADER, _ENTRY = struct.Struct("<I"), struct.Struct("<HHI")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True, order=True)
class AclEntry:
    """One entry of a POSIX ACL: its tag, the uid/gid (``NO_ID`` for the others), ``rwx``."""

    tag: int
    qualifier: int
    perm: int


def parse_acl(raw: bytes) -> list[AclEntry]:
    """The entries of a ``system.posix_acl_access`` value (ValueError if malformed)."""
    if len(raw) < _HEADER.size or (len(raw) - _HEADER.size) % _ENTRY.size:
        raise ValueError("not a POSIX ACL attribute")
    if _HEADER.unpack_from(raw)[0] != ACL_VERSION:
        raise ValueError("unknown POSIX ACL version")
    count = (len(raw) - _HEADER.size) // _ENTRY.size
    offsets = (_HEADER.size + i * _ENTRY.size for i in range(count))
    found = []
    for offset in offsets:
        tag, perm, qualifier = _ENTRY.unpack_from(raw, offset)  # e_tag, e_perm, e_id
        found.append(AclEntry(tag, qualifier, perm))
    return found


def render_acl(entries: Sequence[AclEntry]) -> bytes:
    """The attribute value of ``entries`` (sorted as the kernel wants them)."""
    body = b"".join(_ENTRY.pack(e.tag, e.perm, e.qualifier) for e in sorted(entries))
    return _HEADER.pack(ACL_VERSION) + body


def with_search(entries: Sequence[AclEntry] | None, mode: int, uid: int) -> list[AclEntry]:
    """The ACL of a directory (``entries``, or none: its ``mode``) plus search for ``uid``;
    the mask is recomputed so that the new entry takes effect."""
    if not entries:
        entries = [
            AclEntry(USER_OBJ, NO_ID, (mode >> 6) & 7),
            AclEntry(GROUP_OBJ, NO_ID, (mode >> 3) & 7),
            AclEntry(OTHER, NO_ID, mode & 7),
        ]
    kept = [e for e in entries if e.tag != MASK]
    users = {e.qualifier: e for e in kept if e.tag == USER}
    perm = users[uid].perm | SEARCH if uid in users else SEARCH
    kept = [e for e in kept if not (e.tag == USER and e.qualifier == uid)]
    kept.append(AclEntry(USER, uid, perm))
    mask = 0
    for entry in kept:
        if entry.tag in (USER, GROUP_OBJ, GROUP):
            mask |= entry.perm
    return sorted([*kept, AclEntry(MASK, NO_ID, mask)])


def searchable(info: os.stat_result, entries: Sequence[AclEntry] | None, uid: int) -> bool:
    """Whether ``uid`` (gid ``uid``, no other groups: how tenant jobs run) may pass
    through a directory with ``info`` and ``entries`` (None: no ACL)."""
    return bool(_permissions(info, entries, uid) & SEARCH)


def _permissions(info: os.stat_result, entries: Sequence[AclEntry] | None, uid: int) -> int:
    if uid == 0:
        return 7
    mode = info.st_mode
    if info.st_uid == uid:
        return (mode >> 6) & 7
    if not entries:
        return (mode >> 3) & 7 if info.st_gid == uid else mode & 7
    mask = next((e.perm for e in entries if e.tag == MASK), 7)
    for entry in entries:
        if entry.tag == USER and entry.qualifier == uid:
            return entry.perm & mask
    groups = [e for e in entries if e.tag == GROUP and e.qualifier == uid]
    if info.st_gid == uid or groups:
        found = groups[0].perm if groups else (mode >> 3) & 7
        return found & mask
    return next((e.perm for e in entries if e.tag == OTHER), mode & 7)


def read_acl(target: int | str) -> list[AclEntry] | None:
    """The ACL of a descriptor or path (None if it has none)."""
    try:
        return parse_acl(os.getxattr(target, ACL_XATTR))
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise


def grant_search(fd: int, uid: int) -> None:
    """Give ``uid`` search (``--x``) on the directory open at ``fd`` (kept if it has it)."""
    info = os.fstat(fd)
    entries = read_acl(fd)
    if searchable(info, entries, uid):
        return
    os.setxattr(fd, ACL_XATTR, render_acl(with_search(entries, info.st_mode, uid)))


def open_replica(replica: Path, uid: int) -> str | None:
    """Let ``uid`` reach ``replica`` (a ``…/tenants/<tenant>/datasets/<id>`` directory
    the platform chose); None, or why it cannot (one line with a hint)."""
    datasets, tenant = replica.parent, replica.parent.parent
    if datasets.name != "datasets" or tenant.parent.name != "tenants":
        return f"could not start: {replica} is not a dataset replica directory"
    try:
        for directory in (tenant, datasets):
            fd = os.open(directory, _DIR_FLAGS)
            try:
                grant_search(fd, uid)
            finally:
                os.close(fd)
        return reach_problem(replica, uid)
    except OSError as exc:
        return f"could not start: dataset replica {replica}: {exc.strerror}"


def reach_problem(replica: Path, uid: int) -> str | None:
    """Why ``uid`` cannot read ``replica`` through its ancestors (None if it can)."""
    for directory in (*reversed(replica.parents), replica):
        info = os.lstat(directory)
        if stat.S_ISLNK(info.st_mode) or not searchable(info, read_acl(str(directory)), uid):
            return (
                f"could not start: the job's uid {uid} cannot reach its dataset {replica}: "
                f"{directory} is not searchable by it; put SUANWANG_STORAGE_ROOT outside "
                "the 0700 data directory (a path the nodes share, its ancestors 0755)"
            )
    if not _permissions(os.lstat(replica), read_acl(str(replica)), uid) & READ:
        return f"could not start: the job's uid {uid} cannot list its dataset {replica}"
    return None
