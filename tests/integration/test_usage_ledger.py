"""The SQL metering ledger: group commit, idempotency, shutdown flush and kill -9 durability.

Every test runs on SQLite and PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from suanwang.adapters.db.engine import make_engine, migrate
from suanwang.adapters.db.tables import UsageLedgerRow
from suanwang.adapters.db.usage_ledger import SqlUsageLedger
from suanwang.bootstrap import build_usage_sink
from suanwang.config import Settings
from suanwang.domain.usage import ComputeUsage, Outcome, TokenUsage
from suanwang.ports import UsageSink

T0 = 1_800_000_000.0


class FixedClock:
    def now(self) -> float:
        return T0 + 3600


def usage(entry_id: str, tenant: str = "acme", prompt: int = 10, completion: int = 5) -> TokenUsage:
    return TokenUsage(
        entry_id=entry_id,
        tenant=tenant,
        key_id="k1",
        model="smollm2-135m-instruct",
        endpoint="/v1/chat/completions",
        prompt_tokens=prompt,
        completion_tokens=completion,
        status=200,
        outcome=Outcome.OK,
        started_at=T0,
        ended_at=T0 + 1,
        latency_ms=1000.0,
    )


def ledger_ids(ledger: SqlUsageLedger) -> Counter[str]:
    with ledger.engine.connect() as conn:
        return Counter(conn.execute(select(UsageLedgerRow.entry_id)).scalars())


@pytest.fixture
def ledger(db_url: str) -> Iterator[SqlUsageLedger]:
    migrate(db_url)
    built = SqlUsageLedger(make_engine(db_url), FixedClock())
    yield built
    built.engine.dispose()


def test_record_is_durable_and_counted(ledger: SqlUsageLedger) -> None:
    sink: UsageSink = ledger

    async def run() -> None:
        await sink.record(usage("r1", prompt=7, completion=3))
        await sink.record(usage("r2", tenant="other"))
        await ledger.aclose()

    asyncio.run(run())
    assert ledger.tokens_used("acme", T0) == 10
    assert ledger.tokens_used("acme", T0 + 2) == 0
    assert ledger.tokens_used("nobody", 0) == 0


def test_many_concurrent_records_are_each_written_once_in_few_batches(
    ledger: SqlUsageLedger,
) -> None:
    n = 400

    async def run() -> None:
        await asyncio.gather(*(ledger.record(usage(f"c{i}")) for i in range(n)))
        await ledger.aclose()

    asyncio.run(run())
    ids = ledger_ids(ledger)
    assert len(ids) == n
    assert set(ids.values()) == {1}
    assert ledger.batches < n // 4, "group commit should put many rows in one transaction"
    assert ledger.tokens_used("acme", 0) == n * 15


def test_duplicates_negatives_and_cancelled_callers(ledger: SqlUsageLedger) -> None:
    """Re-recording an entry is a no-op; negative usage is refused before it reaches the
    ledger; a caller cancelled while waiting still gets its usage written."""

    async def run() -> None:
        await asyncio.gather(*(ledger.record(usage("same", prompt=100)) for _ in range(20)))
        await ledger.record(usage("same", prompt=999))
        with pytest.raises(ValueError, match="negative"):
            await ledger.record(usage("bad", prompt=-1))
        task = asyncio.create_task(ledger.record(usage("gone")))
        await asyncio.sleep(0)
        task.cancel()
        await ledger.aclose()

    asyncio.run(run())
    assert ledger_ids(ledger) == Counter({"same": 1, "gone": 1})
    assert ledger.tokens_used("acme", 0) == 105 + 15


def test_a_row_the_database_refuses_fails_only_its_own_caller(
    ledger: SqlUsageLedger, db_url: str
) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite does not enforce column lengths")

    async def run() -> tuple[BaseException | None, BaseException | None]:
        results = await asyncio.gather(
            ledger.record(usage("x" * 200)), ledger.record(usage("fine")), return_exceptions=True
        )
        await ledger.aclose()
        return results

    too_long, fine = asyncio.run(run())
    assert isinstance(too_long, SQLAlchemyError)
    assert fine is None
    assert ledger_ids(ledger) == Counter({"fine": 1})


def test_close_flushes_queued_usage_and_refuses_more(ledger: SqlUsageLedger) -> None:
    async def run() -> None:
        tasks = [asyncio.create_task(ledger.record(usage(f"q{i}"))) for i in range(50)]
        await asyncio.sleep(0)  # queued, maybe not yet committed
        await ledger.aclose()
        await asyncio.gather(*tasks)
        with pytest.raises(RuntimeError, match="closed"):
            await ledger.record(usage("late"))

    asyncio.run(run())
    assert len(ledger_ids(ledger)) == 50


def test_compute_rows_share_the_ledger_idempotently(ledger: SqlUsageLedger) -> None:
    row = ComputeUsage("compute:a1:0", "acme", "replica:d1-0", "ascend-910b", 4, T0, T0 + 1.5)
    assert ledger.record_many([row, usage("t1")]) == 2
    assert ledger.record_many([row]) == 0
    with ledger.engine.connect() as conn:
        card_ms, replica = conn.execute(
            select(UsageLedgerRow.card_ms, UsageLedgerRow.replica).where(
                UsageLedgerRow.entry_id == "compute:a1:0"
            )
        ).one()
    assert (card_ms, replica) == (6000, "d1-0")
    assert ledger.tokens_used("acme", 0) == 15  # compute rows hold no tokens


def test_build_usage_sink_migrates_and_wires(db_url: str, tmp_path: os.PathLike[str]) -> None:
    sink = build_usage_sink(Settings(data_dir=tmp_path, database_url=db_url))

    async def run() -> None:
        await sink.record(usage("wired"))
        await sink.aclose()

    asyncio.run(run())
    assert sink.tokens_used("acme", 0) == 15
    sink.engine.dispose()


CHILD = """
import asyncio, sys
from suanwang.adapters.backends.clocks import SystemClock
from suanwang.adapters.db.engine import make_engine
from suanwang.adapters.db.usage_ledger import SqlUsageLedger
from suanwang.domain.usage import Outcome, TokenUsage

ledger = SqlUsageLedger(make_engine(sys.argv[1]), SystemClock())

async def one(i):
    u = TokenUsage(f"k{i}", "acme", "k1", "m", "/v1/chat/completions", 3, 4, 200,
                   Outcome.OK, 0.0, 1.0, 1.0)
    await ledger.record(u)
    sys.stdout.write(f"k{i}\\n")
    sys.stdout.flush()

async def main():
    sem = asyncio.Semaphore(32)
    async def bounded(i):
        async with sem:
            await one(i)
    await asyncio.gather(*(bounded(i) for i in range(5_000)))

asyncio.run(main())
"""


def test_kill_minus_nine_loses_no_acknowledged_usage(db_url: str) -> None:
    migrate(db_url)
    acked: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, db_url], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        deadline = time.monotonic() + 30
        while len(acked) < 300 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked.append(line.strip())
        os.kill(child.pid, signal.SIGKILL)
        acked.extend(line.strip() for line in child.stdout)  # acknowledged before the kill
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= 300, "child acknowledged too little before the deadline"
    engine = make_engine(db_url)
    with engine.connect() as conn:
        stored = Counter(conn.execute(select(UsageLedgerRow.entry_id)).scalars())
        rows = conn.execute(select(func.count()).select_from(UsageLedgerRow)).scalar_one()
    engine.dispose()
    missing = [entry for entry in acked if stored[entry] != 1]
    assert missing == []
    assert rows >= len(acked)
