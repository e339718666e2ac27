"""The receiver's verification, acknowledgement and revocation rules, without sockets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import blake3
import pytest

from suanwang.transfer import wire
from suanwang.transfer.faults import Faults
from suanwang.transfer.journal import replay
from suanwang.transfer.plan import MIN_CHUNK_SIZE, FileEntry, decode_ids, make_plan, plan_digest
from suanwang.transfer.receiver import ReceiveError, ReceiverTransfer

CS = MIN_CHUNK_SIZE


class Channel:
    """Stands in for the ack channel: records the frames the receiver writes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def sendall(self, b: bytes | bytearray | memoryview) -> None:
        self.data += b

    def frames(self) -> list[wire.Frame]:
        out, pos = [], 0
        while pos < len(self.data):
            kind, meta_len, payload_len = wire.HEADER.unpack_from(self.data, pos)
            pos += wire.HEADER.size
            import json

            out.append(wire.Frame(wire.Kind(kind), json.loads(self.data[pos : pos + meta_len])))
            pos += meta_len + payload_len
        return out

    def acked(self) -> list[int]:
        return sorted(
            i for f in self.frames() if f.kind is wire.Kind.ACK for i in decode_ids(f.meta["ids"])
        )

    def nacks(self) -> list[tuple[int, str]]:
        return [(f.meta["id"], f.meta["reason"]) for f in self.frames() if f.kind is wire.Kind.NACK]


@pytest.fixture
def data() -> list[bytes]:
    return [bytes([i]) * (2 * CS + 100) for i in (1, 2)] + [b"small", b""]


def make(
    tmp_path: Path, data: list[bytes], faults: Faults | None = None
) -> tuple[ReceiverTransfer, Channel]:
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
    channel = Channel()
    t.attach_channel(channel)  # type: ignore[arg-type]
    return t, channel


def chunk_bytes(t: ReceiverTransfer, data: list[bytes], cid: int) -> bytearray:
    return bytearray(
        b"".join(data[e.file][e.offset : e.offset + e.length] for e in t.plan.chunks[cid].extents)
    )


def wait_acked(t: ReceiverTransfer, ids: set[int]) -> None:
    import time

    deadline = time.monotonic() + 10
    while not ids <= set(t.acked):
        assert time.monotonic() < deadline, "not committed"
        time.sleep(0.01)


def send_all(t: ReceiverTransfer, data: list[bytes]) -> None:
    for c in t.plan.chunks:
        buf = chunk_bytes(t, data, c.id)
        t.accept(c.id, blake3.blake3(buf).hexdigest(), buf)
    wait_acked(t, set(range(len(t.plan.chunks))))


def test_a_chunk_whose_hash_differs_is_refused_not_staged(
    tmp_path: Path, data: list[bytes]
) -> None:
    t, ch = make(tmp_path, data)
    buf = chunk_bytes(t, data, 0)
    t.accept(0, "0" * 64, buf)
    assert ch.nacks() == [(0, "chunk hash mismatch after decryption")]
    assert ch.acked() == []
    assert 0 not in t.acked
    t.close()


def test_acks_follow_the_journal_and_an_acked_chunk_arriving_again_is_counted(
    tmp_path: Path, data: list[bytes]
) -> None:
    t, ch = make(tmp_path, data)
    send_all(t, data)
    ready = ch.acked()
    assert ready == list(range(len(t.plan.chunks)))
    journaled = [r[1] for r in replay(tmp_path / "j" / "t1.jsonl") if r[0] == "c"]
    assert sorted(journaled) == ready
    buf = chunk_bytes(t, data, 1)
    t.accept(1, blake3.blake3(buf).hexdigest(), buf)
    assert t.duplicate_acked_arrivals == 1
    assert ch.acked().count(1) == 2  # acknowledged again, not staged again
    t.close()
    # the counter survives a restart
    again, _ = make(tmp_path, data)
    assert again.duplicate_acked_arrivals == 1
    assert set(again.acked) == set(range(len(t.plan.chunks)))
    again.close()


def test_finish_installs_only_a_verified_dataset(tmp_path: Path, data: list[bytes]) -> None:
    t, _ = make(tmp_path, data)
    send_all(t, data)
    assert t.finish([hashlib.sha256(d).hexdigest() for d in data]) == []
    assert [(tmp_path / "dst" / f"f{i}").read_bytes() for i in range(4)] == data
    assert not (tmp_path / "stg").exists()


def test_a_byte_changed_on_disk_revokes_that_chunk_alone(tmp_path: Path, data: list[bytes]) -> None:
    t, _ = make(tmp_path, data, Faults.parse("disk_flip=1"))
    send_all(t, data)
    resend = t.finish([hashlib.sha256(d).hexdigest() for d in data])
    assert resend == [1]
    assert 1 not in t.acked
    assert not (tmp_path / "dst").exists()
    buf = chunk_bytes(t, data, 1)
    t.accept(1, blake3.blake3(buf).hexdigest(), buf)
    wait_acked(t, {1})
    assert t.finish([hashlib.sha256(d).hexdigest() for d in data]) == []
    assert (tmp_path / "dst" / "f0").read_bytes() == data[0]


def test_finish_before_every_chunk_is_acked_is_refused(tmp_path: Path, data: list[bytes]) -> None:
    t, _ = make(tmp_path, data)
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
