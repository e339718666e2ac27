"""Path confinement, the token bucket, fault-hook parsing, options parsing, exports."""

from __future__ import annotations

from pathlib import Path

import pytest

import suanwang.transfer as transfer
from suanwang.transfer.faults import Faults
from suanwang.transfer.paths import PathRefused, check_relative, confine
from suanwang.transfer.ratelimit import TokenBucket, throttle
from suanwang.transfer.status import PushOptions


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "tenants" / "t1").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (r / "tenants" / "t1" / "out").symlink_to(tmp_path / "outside")
    (r / "tenants" / "t1" / "in").symlink_to(r / "tenants")
    return r


@pytest.mark.parametrize(
    "rel",
    [
        "/etc/passwd",
        "../outside",
        "tenants/../../outside",
        "tenants/t1/out",
        "tenants/t1/out/x",
        ".suanwang-staging/x",
        ".suanwang-journal",
        "",
        "a\x00b",
    ],
)
def test_confine_refuses_escapes(root: Path, rel: str) -> None:
    with pytest.raises(PathRefused):
        confine(root, rel)


def test_confine_accepts_paths_inside_also_through_inner_symlinks(root: Path) -> None:
    assert confine(root, "tenants/t1/new/dir") == (root / "tenants/t1/new/dir").resolve()
    assert confine(root, "tenants/t1/in/t1") == (root / "tenants/t1").resolve()


@pytest.mark.parametrize("rel", ["a/../b", "/abs", "", "a//b/", "x/\x00"])
def test_check_relative_refuses(rel: str) -> None:
    if rel == "a//b/":  # PurePosixPath normalises empty parts away: accepted, stays inside
        assert check_relative(rel) == rel
        return
    with pytest.raises(PathRefused):
        check_relative(rel)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_enforces_the_rate_after_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(1000.0, burst_bytes=100.0, clock=clock)
    assert bucket.take(100) == 0.0
    assert bucket.take(500) == pytest.approx(0.5)  # 500 bytes owed at 1000 B/s
    clock.t = 0.5
    assert bucket.take(0) == 0.0  # paid back
    clock.t = 10.0
    assert bucket.take(150) == pytest.approx(0.05)  # the refill is capped at the burst


def test_token_bucket_throttle_sleeps_for_the_slowest_bucket() -> None:
    clock = Clock()
    slept: list[float] = []
    fast, slow = TokenBucket(10_000.0, 0.0, clock), TokenBucket(1000.0, 0.0, clock)
    throttle([fast, slow], 1000, sleep=slept.append)
    assert slept == [pytest.approx(1.0)]
    throttle([TokenBucket(0.0, clock=clock)], 10**9, sleep=slept.append)  # 0 = no cap
    assert len(slept) == 1


def test_fault_spec_parses_and_fires_once() -> None:
    faults = Faults.parse("recv_flip=3,7;disk_flip=5")
    assert faults.recv_flip == {3, 7}
    assert faults.fire(faults.recv_flip, 3)
    assert not faults.fire(faults.recv_flip, 3)
    assert not Faults.from_env().recv_flip  # off unless the env var is set
    with pytest.raises(ValueError, match="unknown fault"):
        Faults.parse("explode=1")


def test_push_options_parse_strictly() -> None:
    assert PushOptions.from_json({"max_streams": 4}).max_streams == 4
    assert PushOptions.from_json(PushOptions().to_json()) == PushOptions()
    for bad in (
        {"nope": 1},
        {"max_streams": -1},
        {"max_streams": 0},
        {"chunk_size": "8"},
        {"max_bytes_per_s": True},
    ):
        with pytest.raises(ValueError, match="option"):
            PushOptions.from_json(bad)


def test_public_surface() -> None:
    assert sorted(transfer.__all__) == [
        "Agent",
        "AgentClient",
        "AgentConfig",
        "AgentError",
        "AgentUnavailable",
        "Identity",
        "ManifestEntry",
        "PushOptions",
        "TransferState",
        "TransferStatus",
        "issue",
        "needs_rotation",
        "new_ca",
        "not_after",
    ]


def test_hash_cache_remembers_unchanged_files_and_rehashes_changed_ones(tmp_path: Path) -> None:
    import hashlib
    import os
    import time

    from suanwang.transfer.hashcache import HashCache

    f = tmp_path / "data.bin"
    f.write_bytes(b"a" * 1000)
    cache = HashCache(tmp_path / "cache.jsonl")
    assert cache.sha256(f) == hashlib.sha256(b"a" * 1000).hexdigest()
    assert HashCache(tmp_path / "cache.jsonl")._known  # persisted
    st = os.stat(f)
    time.sleep(0.01)
    f.write_bytes(b"b" * 1000)  # same size, mtime set back: the ctime still moves
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert HashCache(tmp_path / "cache.jsonl").sha256(f) == hashlib.sha256(b"b" * 1000).hexdigest()
