"""The receiver's verification, acknowledgement and revocation rules, without sockets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import blake3
import pytest

from suanwang.transfer.faults import Faults
from suanwang.transfer.journal import replay
from suanwang.transfer.plan import MIN_CHUNK_SIZE, FileEntry, make_plan, plan_digest
from suanwang.transfer.receiver import ReceiveError, ReceiverTransfer, StreamAcks

CS = MIN_CHUNK_SIZE


@pytest.fixture
def data() -> list[bytes]:
    return [bytes([i]) * (2 * CS + 100) for i in (1, 2)] + [b"small", b""]


def make(tmp_path: Path, data: list[bytes], faults: Faults | None = None) -> ReceiverTransfer:
    plan = make_plan([FileEntry(f"f{i}", len(d)) for i, d in enumerate(data)], CS)
    t = ReceiverTransfer(
        "t1",
        plan,
        plan_digest(plan),
        tmp_path / "stg",
        tmp_path / "j" / "t1.jsonl",
        tmp_path / "dst",
        faults or Faults(),
    )
    t.open(free_bytes=10**12)
    return t


def chunk_bytes(t: ReceiverTransfer, data: list[bytes], cid: int) -> bytearray:
    return bytearray(
        b"".join(data[e.file][e.offset : e.offset + e.length] for e in t.plan.chunks[cid].extents)
    )


def send_all(t: ReceiverTransfer, data: list[bytes], stream: StreamAcks) -> None:
    for c in t.plan.chunks:
        buf = chunk_bytes(t, data, c.id)
        t.accept(c.id, blake3.blake3(buf).hexdigest(), buf, stream)
    t.wait_committed(stream)


def test_a_chunk_whose_hash_differs_is_refused_not_staged(
    tmp_path: Path, data: list[bytes]
) -> None:
    t = make(tmp_path, data)
    s = StreamAcks()
    buf = chunk_bytes(t, data, 0)
    t.accept(0, "0" * 64, buf, s)
    t.wait_committed(s)
    ready, nacks = t.take_replies(s)
    assert ready == []
    assert nacks == [(0, "chunk hash mismatch after decryption")]
    assert 0 not in t.acked
    t.close()


def test_acks_follow_the_journal_and_an_acked_chunk_arriving_again_is_counted(
    tmp_path: Path, data: list[bytes]
) -> None:
    t = make(tmp_path, data)
    s = StreamAcks()
    send_all(t, data, s)
    ready, _ = t.take_replies(s)
    assert sorted(ready) == list(range(len(t.plan.chunks)))
    journaled = [r[1] for r in replay(tmp_path / "j" / "t1.jsonl") if r[0] == "c"]
    assert sorted(journaled) == sorted(ready)
    buf = chunk_bytes(t, data, 1)
    t.accept(1, blake3.blake3(buf).hexdigest(), buf, s)
    assert t.duplicate_acked_arrivals == 1
    t.close()
    # the counter survives a restart
    again = make(tmp_path, data)
    assert again.duplicate_acked_arrivals == 1
    assert set(again.acked) == set(range(len(t.plan.chunks)))
    again.close()


def test_finish_installs_only_a_verified_dataset(tmp_path: Path, data: list[bytes]) -> None:
    t = make(tmp_path, data)
    send_all(t, data, StreamAcks())
    assert t.finish([hashlib.sha256(d).hexdigest() for d in data]) == []
    assert [(tmp_path / "dst" / f"f{i}").read_bytes() for i in range(4)] == data
    assert not (tmp_path / "stg").exists()


def test_a_byte_changed_on_disk_revokes_that_chunk_alone(tmp_path: Path, data: list[bytes]) -> None:
    t = make(tmp_path, data, Faults.parse("disk_flip=1"))
    send_all(t, data, StreamAcks())
    resend = t.finish([hashlib.sha256(d).hexdigest() for d in data])
    assert resend == [1]
    assert 1 not in t.acked
    assert not (tmp_path / "dst").exists()
    s = StreamAcks()
    buf = chunk_bytes(t, data, 1)
    t.accept(1, blake3.blake3(buf).hexdigest(), buf, s)
    t.wait_committed(s)
    assert t.finish([hashlib.sha256(d).hexdigest() for d in data]) == []
    assert (tmp_path / "dst" / "f0").read_bytes() == data[0]


def test_finish_before_every_chunk_is_acked_is_refused(tmp_path: Path, data: list[bytes]) -> None:
    t = make(tmp_path, data)
    with pytest.raises(ReceiveError, match="not acknowledged"):
        t.finish([hashlib.sha256(d).hexdigest() for d in data])
    t.close()


def test_a_target_without_room_fails_at_open(tmp_path: Path, data: list[bytes]) -> None:
    plan = make_plan([FileEntry("f", 10 * CS)], CS)
    t = ReceiverTransfer(
        "t2",
        plan,
        plan_digest(plan),
        tmp_path / "s",
        tmp_path / "j2.jsonl",
        tmp_path / "d",
        Faults(),
    )
    with pytest.raises(ReceiveError) as err:
        t.open(free_bytes=CS)
    assert err.value.code == "enospc"
    t.close()
