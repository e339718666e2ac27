"""Dataset rules without I/O: names, paths inside a dataset, the storage quota, and storage
metering (pieces add up, never overlap, keep stable ids)."""

from __future__ import annotations

import itertools
import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.datasets import (
    DatasetFormat,
    DatasetRecord,
    DatasetReplica,
    DatasetState,
    QuotaExceeded,
    ReplicaState,
    check_dataset_name,
    check_storage_quota,
    meter_storage,
    upload_path_parts,
)
from suanwang.domain.errors import ValidationError

T0 = 1_800_000_000.0  # a whole hour


def dataset(size: int, *, created: float = T0, deleted: float | None = None) -> DatasetRecord:
    replica = DatasetReplica("ds-000000000001", "r1", ReplicaState.READY, "/x", created)
    return DatasetRecord(
        "ds-000000000001", "acme", "n", DatasetFormat.TEXT, DatasetState.READY, size, (),
        created, created, deleted, None, (replica,),
    )  # fmt: skip


@pytest.mark.parametrize(
    "path", ["../a", "a/../b", "/abs", "a\\b", "a\x00b", "a\nb", ".suanwang", "x/" + "y" * 256]
)
def test_paths_leaving_the_dataset_or_odd_are_refused(path: str) -> None:
    with pytest.raises(ValidationError) as raised:
        upload_path_parts(path)
    assert raised.value.field == "path"


@settings(max_examples=300)
@given(st.text(min_size=1, max_size=60))
def test_accepted_paths_stay_inside(path: str) -> None:
    try:
        parts = upload_path_parts(path)
    except ValidationError:
        return
    joined = posixpath.normpath(posixpath.join("/root", *parts))
    assert joined.startswith("/root/")
    assert ".." not in parts
    assert "" not in parts


@pytest.mark.parametrize("name", ["", "A", "-x", "ds-0123456789ab", "a" * 64, "a/b", "a b"])
def test_bad_dataset_names(name: str) -> None:
    with pytest.raises(ValidationError):
        check_dataset_name(name)


def test_quota_names_itself() -> None:
    check_storage_quota("acme", 900, 100, 1000)
    with pytest.raises(QuotaExceeded) as raised:
        check_storage_quota("acme", 900, 101, 1000)
    assert raised.value.status == 413
    assert raised.value.field == "storage_quota"


@settings(max_examples=200)
@given(
    size=st.integers(0, 10**13),
    steps=st.lists(st.floats(1, 20_000), min_size=1, max_size=6),
    deleted_after=st.one_of(st.none(), st.floats(1, 50_000)),
)
def test_storage_pieces_add_up_without_overlap(
    size: int, steps: list[float], deleted_after: float | None
) -> None:
    deleted = None if deleted_after is None else T0 + deleted_after
    record = dataset(size, deleted=deleted)
    now, pieces = T0, []
    for step in steps:
        now += step
        new, mark = meter_storage(record, now)
        pieces += new
        record = DatasetRecord(**{**_fields(record), "metered_to": mark})
    ids = [p.entry_id for p in pieces]
    assert len(ids) == len(set(ids))
    for a, b in itertools.pairwise(pieces):
        assert a.ended_at == b.started_at
    end = pieces[-1].ended_at if pieces else T0
    limit = deleted if deleted is not None and deleted <= now else now
    assert round(end * 1000) <= round(limit * 1000)  # whole milliseconds
    covered_ms = sum(round(p.ended_at * 1000) - round(p.started_at * 1000) for p in pieces)
    assert covered_ms == round(end * 1000) - round(T0 * 1000)
    for p in pieces:
        assert p.byte_s == size * (round(p.ended_at * 1000) - round(p.started_at * 1000)) // 1000


def _fields(record: DatasetRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}
