"""kill -9 of a process mid-way through metering loses no acknowledged usage (R8).

A child process records usage through the journal in front of the real SQL ledger (whose
group commit is slowed down, so most records are only journaled when the kill lands),
printing each entry id once ``record`` returned. After SIGKILL, a new sink's ``recover``
replays the journal: every acknowledged id is in the ledger exactly once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import func, select

from suanwang.adapters.backends.clocks import SystemClock
from suanwang.adapters.db.engine import make_engine, migrate
from suanwang.adapters.db.tables import UsageLedgerRow
from suanwang.adapters.db.usage_ledger import SqlUsageLedger
from suanwang.adapters.journal import JournaledUsageSink

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from suanwang.adapters.backends.clocks import SystemClock
    from suanwang.adapters.db.engine import make_engine
    from suanwang.adapters.db.usage_ledger import SqlUsageLedger
    from suanwang.adapters.journal import JournaledUsageSink
    from suanwang.domain.usage import Outcome, TokenUsage

    async def main() -> None:
        ledger = SqlUsageLedger(make_engine(sys.argv[1]), SystemClock(), max_delay_s=30.0)
        sink = JournaledUsageSink(ledger, Path(sys.argv[2]), segment_entries=50)
        n = 0
        while True:
            n += 1
            await sink.record(TokenUsage(
                entry_id=f"req-{n}", tenant="acme", key_id="k", model="m",
                endpoint="chat.completions", prompt_tokens=7, completion_tokens=n % 13,
                status=200, outcome=Outcome.OK, started_at=1.0, ended_at=2.0, latency_ms=1.0))
            print(f"req-{n}", flush=True)

    asyncio.run(main())
    """
)


def test_kill_dash_nine_loses_no_acknowledged_usage(db_url: str, tmp_path: Path) -> None:
    migrate(db_url)
    journal = tmp_path / "journal"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db_url, str(journal)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acked = [child.stdout.readline().strip() for _ in range(300)]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    acked += [line.strip() for line in child.stdout if line.strip()]
    child.stdout.close()

    engine = make_engine(db_url)
    sink = JournaledUsageSink(SqlUsageLedger(engine, SystemClock()), journal)
    sink.recover()
    with engine.connect() as conn:
        stored = dict(
            conn.execute(
                select(UsageLedgerRow.entry_id, func.count()).group_by(UsageLedgerRow.entry_id)
            ).all()
        )
    engine.dispose()
    assert len(acked) >= 300
    missing = [entry for entry in acked if entry not in stored]
    assert missing == []
    assert set(stored.values()) == {1}
    assert list(journal.glob("*.usage.jsonl")) == []
