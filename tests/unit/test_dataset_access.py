"""Giving one job uid search on its tenant's dataset directories (POSIX ACL), nothing more.

The pure parts (ACL encoding, the permission check) on their own; then, as root, a real
storage tree made by ``LocalDatasetFiles``: after :func:`open_replica` for tenant A's uid,
A's uid (``setpriv``, no groups) reads its replica but cannot write it, list the datasets
directory, or reach tenant B's replica; B's uid reaches nothing of A's. The kernel judges.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanwang.adapters.backends.dataset_access import (
    GROUP_OBJ,
    MASK,
    NO_ID,
    OTHER,
    USER,
    USER_OBJ,
    AclEntry,
    open_replica,
    parse_acl,
    read_acl,
    render_acl,
    searchable,
    with_search,
)
from suanwang.adapters.dataset_files import LocalDatasetFiles
from suanwang.domain.jobs import AttemptState

UID_A, UID_B = 151010, 151011


def test_an_acl_round_trips_and_search_is_added_with_its_mask() -> None:
    entries = with_search(None, 0o700, UID_A)
    assert entries == [
        AclEntry(USER_OBJ, NO_ID, 7),
        AclEntry(USER, UID_A, 1),
        AclEntry(GROUP_OBJ, NO_ID, 0),
        AclEntry(MASK, NO_ID, 1),
        AclEntry(OTHER, NO_ID, 0),
    ]
    assert parse_acl(render_acl(entries)) == entries
    both = with_search(entries, 0o710, UID_B)
    assert [e.qualifier for e in both if e.tag == USER] == [UID_A, UID_B]
    assert with_search(both, 0o710, UID_A) == both  # idempotent
    with pytest.raises(ValueError, match="not a POSIX ACL"):
        parse_acl(b"\x02\x00\x00\x00\x01")


def test_the_permission_check_follows_the_kernels_order() -> None:
    info = os.stat_result((0o40700, 0, 0, 1, 0, 0, 0, 0, 0, 0))
    assert not searchable(info, None, UID_A)
    granted = with_search(None, 0o700, UID_A)
    assert searchable(info, granted, UID_A)
    assert not searchable(info, granted, UID_B)
    masked = [e if e.tag != MASK else AclEntry(MASK, NO_ID, 0) for e in granted]
    assert not searchable(info, masked, UID_A)  # a chmod 0700 would have taken it back
    world = os.stat_result((0o40711, 0, 0, 1, 0, 0, 0, 0, 0, 0))
    assert searchable(world, None, UID_B)


@pytest.fixture
def storage() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (to act as tenant uids)")
    base = Path(tempfile.mkdtemp(prefix="suanwang-acl-"))
    base.chmod(0o755)
    try:
        yield base / "storage"
    finally:
        shutil.rmtree(base)


def as_uid(uid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    return subprocess.run([*drop, *argv], capture_output=True, text=True, timeout=10)


def sealed(files: LocalDatasetFiles, tenant: str, dataset_id: str, text: str) -> Path:
    replica = Path(files.create("sh", tenant, dataset_id))
    (replica / "a.txt").write_text(text)
    files.finalise("sh", tenant, dataset_id)
    return replica


def test_a_tenant_uid_reaches_its_replica_and_nothing_else(storage: Path) -> None:
    files = LocalDatasetFiles(storage)
    mine = sealed(files, "alice", "ds-aaaaaaaaaaaa", "alice's words\n")
    theirs = sealed(files, "bob", "ds-bbbbbbbbbbbb", "bob's words\n")
    assert as_uid(UID_A, "cat", str(mine / "a.txt")).returncode != 0  # nothing granted yet
    assert open_replica(mine, UID_A) is None
    assert open_replica(theirs, UID_B) is None
    assert as_uid(UID_A, "cat", str(mine / "a.txt")).stdout == "alice's words\n"
    assert as_uid(UID_A, "sh", "-c", f"echo x >> {mine}/a.txt").returncode != 0
    assert as_uid(UID_A, "touch", str(mine / "new")).returncode != 0
    assert as_uid(UID_A, "ls", str(mine.parent)).returncode != 0  # no listing of datasets
    assert as_uid(UID_A, "ls", str(storage / "sh" / "tenants")).returncode != 0
    assert as_uid(UID_A, "cat", str(theirs / "a.txt")).returncode != 0
    assert as_uid(UID_B, "cat", str(mine / "a.txt")).returncode != 0
    # a later upload or staging of the same tenant keeps the grant (finalise keeps the mask)
    sealed(files, "alice", "ds-cccccccccccc", "more\n")
    assert as_uid(UID_A, "cat", str(mine / "a.txt")).returncode == 0
    entries = read_acl(str(mine.parent))
    assert entries is not None
    assert {e.qualifier for e in entries if e.tag == USER} == {UID_A}


def test_a_storage_root_the_uid_cannot_pass_is_refused_with_the_reason(storage: Path) -> None:
    files = LocalDatasetFiles(storage)
    mine = sealed(files, "alice", "ds-aaaaaaaaaaaa", "x")
    storage.parent.chmod(0o700)  # like a storage root inside the 0700 data directory
    reason = open_replica(mine, UID_A)
    assert reason is not None
    assert f"{storage.parent} is not searchable" in reason
    assert "SUANWANG_STORAGE_ROOT" in reason
    assert open_replica(storage / "sh" / "elsewhere" / "x", UID_A) is not None


def test_slurm_submits_a_dataset_job_only_when_its_uid_can_reach_the_replica(
    storage: Path,
) -> None:
    from test_slurm_backend import FakeSlurm, backend, request

    files = LocalDatasetFiles(storage)
    mine = sealed(files, "acme", "ds-aaaaaaaaaaaa", "x")
    spool = storage.parent / "spool-root"
    fake = FakeSlurm()
    slurm = backend(spool, fake, sandbox=True)
    started = slurm.submit(request(dataset_dir=str(mine)))
    assert started.state is AttemptState.STARTING, started.reason
    (argv,) = fake.called("sbatch")
    at = argv.index(str(mine))
    assert argv[at - 1 : at + 2] == ["--ro-bind", str(mine), "/data/input"]
    assert "SUANWANG_DATASET_DIR=/data/input" in argv
    assert as_uid(151000, "cat", str(mine / "a.txt")).stdout == "x"  # Uids: acme is 151000
    storage.parent.chmod(0o700)
    refused = slurm.submit(request(job_id="j2", dataset_dir=str(mine)))
    assert refused.state is AttemptState.FAILED
    assert "SUANWANG_STORAGE_ROOT" in refused.reason
    assert len(fake.called("sbatch")) == 1  # nothing submitted for it
