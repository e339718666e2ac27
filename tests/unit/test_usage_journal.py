"""The usage journal in front of the ledger: write-ahead, background commit, replay."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

import pytest

from suanwang.adapters.journal import SUFFIX, JournaledUsageSink, decode, encode
from suanwang.domain.usage import Outcome, TokenUsage


def usage(n: int, tenant: str = "acme") -> TokenUsage:
    return TokenUsage(
        entry_id=f"req-{n}",
        tenant=tenant,
        key_id="k1",
        model="smollm2-135m-instruct",
        endpoint="chat.completions",
        prompt_tokens=10 + n,
        completion_tokens=n,
        status=200,
        outcome=Outcome.OK,
        started_at=1.0,
        ended_at=2.0,
        latency_ms=3.5,
        streamed=bool(n % 2),
    )


class FakeLedger:
    """Commits in memory, idempotent on entry_id; can be told to fail or to hang."""

    def __init__(self, *, fail: bool = False, hang: bool = False) -> None:
        self.rows: dict[str, TokenUsage] = {}
        self.fail, self.hang = fail, hang
        self.closed = False

    async def record(self, usage: TokenUsage) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.fail:
            raise RuntimeError("database down")
        self.rows.setdefault(usage.entry_id, usage)

    def record_many(self, entries: Iterable[TokenUsage]) -> int:
        before = len(self.rows)
        for entry in entries:
            self.rows.setdefault(entry.entry_id, entry)
        return len(self.rows) - before

    def tokens_used(self, tenant: str, since: float) -> int:
        return sum(
            u.prompt_tokens + u.completion_tokens
            for u in self.rows.values()
            if u.tenant == tenant and u.ended_at >= since
        )

    async def aclose(self) -> None:
        self.closed = True


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"))


def test_lines_round_trip() -> None:
    assert decode(encode(usage(3))) == usage(3)


def test_records_reach_the_ledger_and_committed_segments_are_deleted(tmp_path: Path) -> None:
    ledger = FakeLedger()
    sink = JournaledUsageSink(ledger, tmp_path, segment_entries=4)

    async def run() -> None:
        for n in range(10):
            await sink.record(usage(n))
        await asyncio.sleep(0.01)
        assert len(segments(tmp_path)) == 1  # two full segments retired, one still open
        await sink.aclose()

    asyncio.run(run())
    assert sorted(ledger.rows) == sorted(f"req-{n}" for n in range(10))
    assert ledger.closed
    assert list(tmp_path.iterdir()) == []


def test_a_failed_commit_stays_journaled_and_is_replayed(tmp_path: Path) -> None:
    down = FakeLedger(fail=True)
    sink = JournaledUsageSink(down, tmp_path, segment_entries=3)

    async def run() -> None:
        for n in range(5):
            await sink.record(usage(n))
        await sink.aclose()

    asyncio.run(run())
    assert down.rows == {}
    assert segments(tmp_path)
    up = FakeLedger()
    assert JournaledUsageSink(up, tmp_path).recover() == 5
    assert sorted(up.rows) == [f"req-{n}" for n in range(5)]
    assert segments(tmp_path) == []


def test_recover_leaves_a_live_writers_segment_alone(tmp_path: Path) -> None:
    live = JournaledUsageSink(FakeLedger(hang=True), tmp_path)

    async def run() -> None:
        await live.record(usage(1))
        other = FakeLedger()
        assert JournaledUsageSink(other, tmp_path).recover() == 0
        assert other.rows == {}
        assert len(segments(tmp_path)) == 1

    asyncio.run(run())


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    (tmp_path / f"123-dead{SUFFIX}").write_bytes(encode(usage(1)) + encode(usage(2))[:17])
    ledger = FakeLedger()
    assert JournaledUsageSink(ledger, tmp_path).recover() == 1
    assert list(ledger.rows) == ["req-1"]


def test_replaying_twice_never_double_counts(tmp_path: Path) -> None:
    body = b"".join(encode(usage(n)) for n in range(3))
    ledger = FakeLedger()
    for name in ("1-a", "2-b"):  # the same records in two segments (a replay cut short)
        (tmp_path / f"{name}{SUFFIX}").write_bytes(body)
    JournaledUsageSink(ledger, tmp_path).recover()
    assert ledger.tokens_used("acme", 0) == sum(10 + 2 * n for n in range(3))


def test_bad_segment_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="segment_entries"):
        JournaledUsageSink(FakeLedger(), tmp_path, segment_entries=0)
