"""Metering ledger benchmark: group commit vs one transaction per request.

For SQLite (a file, WAL, ``synchronous=FULL``) and PostgreSQL (127.0.0.1, if reachable),
``N`` coroutines each ``await record(usage)`` in a loop, at concurrency 1, 16 and 64:

- *group commit*: :class:`SqlUsageLedger` (``adapters/db/usage_ledger.py``);
- *baseline*: the naive durable writer, one ``INSERT … ON CONFLICT DO NOTHING``
  transaction per record, run in the default thread pool (what a gateway would do without
  batching), in the same run.

Reported: records per second, p50/p99 latency of ``record`` (until durable), transactions
committed, and the ratio group / baseline. Both are durable when ``record`` returns.

Run: ``.venv/bin/python benchmarks/ledger.py [--records 2000]``.
Writes ``benchmarks/results/ledger.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg

from suanwang.adapters.backends.clocks import SystemClock
from suanwang.adapters.db.engine import make_engine, migrate
from suanwang.adapters.db.usage_ledger import SqlUsageLedger, insert_rows, token_row
from suanwang.domain.usage import Outcome, TokenUsage

PG_ADMIN = os.environ.get("SUANWANG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
RESULTS = Path(__file__).parent / "results"
CONCURRENCY = (1, 16, 64)


def usage(entry_id: str) -> TokenUsage:
    now = time.time()
    return TokenUsage(
        entry_id, "bench", "k1", "smollm2-135m-instruct", "/v1/chat/completions", 12, 34, 200,
        Outcome.OK, now - 0.1, now, 100.0,
    )  # fmt: skip


class Baseline:
    """One transaction per record, in a worker thread."""

    def __init__(self, ledger: SqlUsageLedger) -> None:
        self.engine = ledger.engine
        self.batches = 0

    async def record(self, u: TokenUsage) -> None:
        def write() -> None:
            with self.engine.begin() as conn:
                insert_rows(conn, [token_row(u, time.time())])

        await asyncio.to_thread(write)
        self.batches += 1


async def drive(
    record: Callable[[TokenUsage], Awaitable[None]], records: int, concurrency: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    per_worker = records // concurrency
    prefix = secrets.token_hex(4)

    async def worker(w: int) -> None:
        for i in range(per_worker):
            started = time.perf_counter()
            await record(usage(f"{prefix}-{w}-{i}"))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return time.perf_counter() - started, latencies


def run_once(url: str, name: str, records: int, concurrency: int) -> dict[str, Any]:
    """One writer, ``records`` records at ``concurrency``: throughput and latency."""
    ledger = SqlUsageLedger(make_engine(url), SystemClock())
    writer: SqlUsageLedger | Baseline = ledger if name == "group" else Baseline(ledger)

    async def run() -> tuple[float, list[float]]:
        timing = await drive(writer.record, records, concurrency)
        await ledger.aclose()
        return timing

    elapsed, latencies = asyncio.run(run())
    ledger.engine.dispose()
    latencies.sort()
    return {
        "records_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
        "transactions": writer.batches,
    }


def measure(url: str, records: int) -> list[dict[str, Any]]:
    migrate(url)
    for name in ("baseline", "group"):  # warm up the database file and connections
        run_once(url, name, 100, 4)
    rows: list[dict[str, Any]] = []
    for concurrency in CONCURRENCY:
        n = max(records // (4 if concurrency == 1 else 1), concurrency)
        result: dict[str, Any] = {"concurrency": concurrency, "records": n}
        for name in ("baseline", "group"):
            result[name] = run_once(url, name, n, concurrency)
        result["ratio"] = round(
            result["group"]["records_per_s"] / result["baseline"]["records_per_s"], 2
        )
        rows.append(result)
    return rows


def postgres_url() -> tuple[str, str] | None:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3, autocommit=True) as conn:
            name = f"suanwang_bench_{secrets.token_hex(4)}"
            conn.execute(f'CREATE DATABASE "{name}"')  # generated name, not user input
    except psycopg.OperationalError:
        return None
    return f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}", name


def markdown(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "# Metering ledger: group commit vs one transaction per record",
        "",
        "Both durable when `record` returns. `.venv/bin/python benchmarks/ledger.py`.",
        "",
        "| database | concurrency | group rec/s | group p50 / p99 ms | group tx | baseline rec/s"
        " | baseline p50 / p99 ms | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for db, rows in results.items():
        for r in rows:
            g, b = r["group"], r["baseline"]
            lines.append(
                f"| {db} | {r['concurrency']} | {g['records_per_s']:,} | {g['p50_ms']} / "
                f"{g['p99_ms']} | {g['transactions']:,} | {b['records_per_s']:,} | "
                f"{b['p50_ms']} / {b['p99_ms']} | {r['ratio']}× |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure(f"sqlite:///{tmp}/ledger.db", args.records)
    pg = postgres_url()
    if pg is not None:
        url, name = pg
        try:
            results["postgresql"] = measure(url, args.records)
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ledger.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (RESULTS / "ledger.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
