"""The chunk plan and the journals' resume semantics (pure, Hypothesis)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.transfer.journal import Journal, replay
from suanwang.transfer.plan import (
    MIN_CHUNK_SIZE,
    FileEntry,
    decode_ids,
    encode_ids,
    make_plan,
    plan_digest,
    remaining,
)

sizes = st.lists(st.integers(0, 5 * MIN_CHUNK_SIZE), min_size=0, max_size=40)
chunk_sizes = st.sampled_from([MIN_CHUNK_SIZE, 2 * MIN_CHUNK_SIZE, 3 * MIN_CHUNK_SIZE + 7])


def files_of(sz: list[int]) -> list[FileEntry]:
    return [FileEntry(f"d/f{i}", s) for i, s in enumerate(sz)]


@settings(max_examples=200)
@given(sizes, chunk_sizes)
def test_chunks_cover_every_byte_exactly_once_and_respect_the_size(sz: list[int], cs: int) -> None:
    plan = make_plan(files_of(sz), cs)
    covered: dict[int, list[tuple[int, int]]] = {}
    for i, chunk in enumerate(plan.chunks):
        assert chunk.id == i
        assert 0 < chunk.size <= cs
        for e in chunk.extents:
            covered.setdefault(e.file, []).append((e.offset, e.length))
    for f, size in enumerate(sz):
        spans = sorted(covered.get(f, []))
        pos = 0
        for off, length in spans:
            assert off == pos  # contiguous, no overlap
            pos += length
        assert pos == size
    assert plan.total_bytes == sum(sz)
    assert sum(c.size for c in plan.chunks) == sum(sz)


def test_small_files_are_batched_and_large_files_cut() -> None:
    plan = make_plan(files_of([10, 20, 3 * MIN_CHUNK_SIZE + 1, 30, 0]), MIN_CHUNK_SIZE)
    assert [[(e.file, e.offset, e.length) for e in c.extents] for c in plan.chunks] == [
        [(0, 0, 10), (1, 0, 20)],
        [(2, 0, MIN_CHUNK_SIZE)],
        [(2, MIN_CHUNK_SIZE, MIN_CHUNK_SIZE)],
        [(2, 2 * MIN_CHUNK_SIZE, MIN_CHUNK_SIZE)],
        [(2, 3 * MIN_CHUNK_SIZE, 1)],
        [(3, 0, 30)],
    ]


def test_plan_digest_names_files_sizes_and_chunk_size() -> None:
    a = make_plan(files_of([1, 2]), MIN_CHUNK_SIZE)
    assert plan_digest(a) == plan_digest(make_plan(files_of([1, 2]), MIN_CHUNK_SIZE))
    assert plan_digest(a) != plan_digest(make_plan(files_of([1, 3]), MIN_CHUNK_SIZE))
    assert plan_digest(a) != plan_digest(make_plan(files_of([1, 2]), 2 * MIN_CHUNK_SIZE))
    with pytest.raises(ValueError, match="chunk_size"):
        make_plan(files_of([1]), 10)


@given(st.sets(st.integers(0, 500)))
def test_id_ranges_round_trip(ids: set[int]) -> None:
    assert decode_ids(encode_ids(ids)) == ids


@settings(max_examples=150)
@given(
    groups=st.lists(st.sets(st.integers(0, 59), min_size=1, max_size=8), min_size=1, max_size=12),
    kill_fraction=st.floats(0, 1),
)
def test_any_kill_point_resumes_with_exactly_the_unacknowledged_chunks(
    tmp_path_factory: pytest.TempPathFactory, groups: list[set[int]], kill_fraction: float
) -> None:
    """The receiver journals each commit group with one write + fsync and acknowledges the
    group only after it. Kill at any byte of the journal (a torn write): replay gives back
    every acknowledged chunk, so the resume plan never contains one."""
    plan = make_plan(files_of([MIN_CHUNK_SIZE] * 60), MIN_CHUNK_SIZE)
    path = tmp_path_factory.mktemp("j") / "recv.jsonl"
    journal = Journal(path)
    journal.append([["plan", plan_digest(plan), "t"]], sync=True)
    ends = []
    for group in groups:
        journal.append([["c", c, "h"] for c in sorted(group)], sync=True)
        ends.append(path.stat().st_size)
    journal.close()
    data = path.read_bytes()
    cut = int(kill_fraction * len(data))
    path.write_bytes(data[:cut])
    acked_before_kill = set().union(*(g for g, end in zip(groups, ends, strict=True) if end <= cut))
    records = replay(path)
    durable = {r[1] for r in records if r[0] == "c"}
    assert acked_before_kill <= durable
    resume = remaining(plan, durable)
    assert not set(resume) & acked_before_kill
    assert set(resume) | durable == set(range(len(plan.chunks)))


def test_replay_drops_a_torn_tail_but_refuses_a_corrupt_middle(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'["c",1,"h"]\n["c",2,"h"]\n["c",3')
    assert replay(path) == [["c", 1, "h"], ["c", 2, "h"]]
    path.write_bytes(b'["c",1,"h"]\n{garbage\n["c",3,"h"]\n')
    with pytest.raises(ValueError, match="corrupt"):
        replay(path)
    assert replay(tmp_path / "missing.jsonl") == []
