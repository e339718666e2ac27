"""The metering ledger over SQL: a group-commit writer for token usage, plus compute rows.

:class:`SqlUsageLedger` implements :class:`suanwang.ports.UsageSink`. ``await record(u)``
puts ``u`` in a queue and returns only after the transaction holding it has committed, so
a response the gateway completed after ``record`` returned survives a kill -9. One writer
task drains the queue: it commits everything that arrived while the previous commit was in
flight (up to ``max_batch`` rows, after an optional ``max_delay_s`` wait), so under load one
fsync covers many requests and the event loop never blocks on the database (commits run
on one dedicated thread).

Rows are append-only and idempotent on ``entry_id``: ``INSERT … ON CONFLICT (entry_id) DO
NOTHING`` on SQLite and PostgreSQL, so a retried write or a duplicated settlement is a
no-op. Reading the ledger for usage reports and bills lives in ``usage_repo.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from suanwang.adapters.db.tables import UsageLedgerRow
from suanwang.domain.usage import ComputeUsage, StorageUsage, TokenUsage, UsageKind
from suanwang.ports import Clock

LEDGER = UsageLedgerRow.__table__


def token_row(usage: TokenUsage, recorded_at: float) -> dict[str, Any]:
    """The ledger row of one gateway request; negative token counts are refused."""
    if usage.prompt_tokens < 0 or usage.completion_tokens < 0:
        raise ValueError(f"usage {usage.entry_id}: token counts cannot be negative")
    return {
        "entry_id": usage.entry_id,
        "kind": UsageKind.TOKENS.value,
        "tenant": usage.tenant,
        "key_id": usage.key_id,
        "model": usage.model,
        "endpoint": usage.endpoint,
        "deployment": usage.deployment,
        "replica": usage.replica,
        "source": usage.source,
        "chip": "",
        "cards": 0,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "card_ms": 0,
        "byte_s": 0,
        "status": usage.status,
        "outcome": usage.outcome.value,
        "streamed": usage.streamed,
        "latency_ms": usage.latency_ms,
        "started_at": usage.started_at,
        "ended_at": usage.ended_at,
        "recorded_at": recorded_at,
    }


def card_ms(usage: ComputeUsage) -> int:
    """Card-milliseconds of ``usage``: cards × (end − start), on whole milliseconds."""
    return usage.cards * (round(usage.ended_at * 1000) - round(usage.started_at * 1000))


def compute_row(usage: ComputeUsage, recorded_at: float) -> dict[str, Any]:
    """The ledger row of one metered compute interval."""
    metered = card_ms(usage)
    if usage.cards < 0 or metered < 0:
        raise ValueError(f"usage {usage.entry_id}: cards and duration cannot be negative")
    replica = usage.source.removeprefix("replica:") if usage.source.startswith("replica:") else None
    return {
        "entry_id": usage.entry_id,
        "kind": UsageKind.COMPUTE.value,
        "tenant": usage.tenant,
        "key_id": "",
        "model": "",
        "endpoint": "",
        "deployment": None,
        "replica": replica,
        "source": usage.source,
        "chip": usage.chip,
        "cards": usage.cards,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "card_ms": metered,
        "byte_s": 0,
        "status": 0,
        "outcome": "",
        "streamed": False,
        "latency_ms": 0.0,
        "started_at": usage.started_at,
        "ended_at": usage.ended_at,
        "recorded_at": recorded_at,
    }


def storage_row(usage: StorageUsage, recorded_at: float) -> dict[str, Any]:
    """The ledger row of one metered piece of a dataset's storage."""
    if usage.byte_s < 0:
        raise ValueError(f"usage {usage.entry_id}: stored bytes cannot be negative")
    return {
        "entry_id": usage.entry_id,
        "kind": UsageKind.STORAGE.value,
        "tenant": usage.tenant,
        "key_id": "",
        "model": "",
        "endpoint": "",
        "deployment": None,
        "replica": None,
        "source": f"dataset:{usage.dataset}",
        "chip": "storage",
        "cards": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "card_ms": 0,
        "byte_s": usage.byte_s,
        "status": 0,
        "outcome": "",
        "streamed": False,
        "latency_ms": 0.0,
        "started_at": usage.started_at,
        "ended_at": usage.ended_at,
        "recorded_at": recorded_at,
    }


def insert_rows(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert ``rows`` in ``conn``'s transaction, skipping known entry ids; returns how many new."""
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(LEDGER)
        .on_conflict_do_nothing(index_elements=["entry_id"])
        .returning(LEDGER.c.entry_id)
    )
    return len(conn.execute(statement, list(rows)).all())


def _settle(done: asyncio.Future[None], exc: Exception | None) -> None:
    if done.done():
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)


def _retrieve(done: asyncio.Future[None]) -> None:
    """Mark a failure as seen when its caller was cancelled before it could await it."""
    if not done.cancelled():
        done.exception()


@dataclass
class _Pending:
    row: dict[str, Any]
    done: asyncio.Future[None]


class SqlUsageLedger:
    """The ledger as a :class:`~suanwang.ports.UsageSink` with group commit.

    Args:
        engine: where the ``usage_ledger`` table lives.
        clock: stamps ``recorded_at``.
        max_batch: most rows per transaction.
        max_delay_s: how long the writer waits for more rows before a commit when it was
            idle (0: commit at once; batches still form from rows that arrive while a
            commit is in flight).
    """

    def __init__(
        self, engine: Engine, clock: Clock, *, max_batch: int = 512, max_delay_s: float = 0.0
    ) -> None:
        if max_batch < 1 or max_delay_s < 0:
            raise ValueError("max_batch must be ≥ 1 and max_delay_s ≥ 0")
        self.engine = engine
        self._clock = clock
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._pending: list[_Pending] = []
        self._wakeup: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-ledger")
        self._closed = False
        self.batches = 0
        """Transactions committed so far (for tests and metrics)."""

    async def record(self, usage: TokenUsage) -> None:
        """Append ``usage``; returns once its batch has committed. Idempotent on entry_id."""
        if self._closed:
            raise RuntimeError("the usage ledger is closed")
        row = token_row(usage, self._clock.now())
        wakeup = self._ensure_writer()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieve)
        self._pending.append(_Pending(row, done))
        wakeup.set()
        await asyncio.shield(done)

    def record_many(self, entries: Iterable[TokenUsage | ComputeUsage]) -> int:
        """Append ``entries`` in one transaction, synchronously; returns how many were new."""
        now = self._clock.now()
        rows = [
            token_row(e, now) if isinstance(e, TokenUsage) else compute_row(e, now) for e in entries
        ]
        with self.engine.begin() as conn:
            return insert_rows(conn, rows)

    def tokens_used(self, tenant: str, since: float) -> int:
        """Prompt + completion tokens in the ledger for ``tenant`` with ``ended_at ≥ since``."""
        total = func.coalesce(func.sum(LEDGER.c.prompt_tokens + LEDGER.c.completion_tokens), 0)
        query = select(total).where(
            LEDGER.c.tenant == tenant,
            LEDGER.c.kind == UsageKind.TOKENS.value,
            LEDGER.c.ended_at >= since,
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    async def aclose(self) -> None:
        """Flush everything queued, stop the writer and its thread (idempotent)."""
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():
            assert self._wakeup is not None
            self._wakeup.set()
            await writer
        self._executor.shutdown(wait=True)

    def _ensure_writer(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._writer is None or self._loop is not loop or self._writer.done():
            self._loop = loop
            self._wakeup = asyncio.Event()
            self._writer = loop.create_task(self._drain(), name="usage-ledger-writer")
        assert self._wakeup is not None
        return self._wakeup

    async def _drain(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closed:
                    return
                wakeup.clear()
                await wakeup.wait()
                if self._max_delay_s and len(self._pending) < self._max_batch:
                    await asyncio.sleep(self._max_delay_s)
                continue
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                await loop.run_in_executor(self._executor, self._commit, [p.row for p in batch])
            except SQLAlchemyError:  # one bad row must not fail its neighbours: one by one
                for item in batch:
                    await self._commit_one(loop, item)
                continue
            except BaseException:  # the writer stops: no caller may wait forever
                for item in batch + self._pending:
                    _settle(item.done, RuntimeError("the usage ledger writer stopped"))
                self._pending.clear()
                raise
            for item in batch:
                _settle(item.done, None)

    async def _commit_one(self, loop: asyncio.AbstractEventLoop, item: _Pending) -> None:
        try:
            await loop.run_in_executor(self._executor, self._commit, [item.row])
        except SQLAlchemyError as exc:  # handed to the waiting caller, never swallowed
            _settle(item.done, exc)
        else:
            _settle(item.done, None)

    def _commit(self, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            insert_rows(conn, rows)
        self.batches += 1
