"""Storage configuration (suite R9): durable SQLite settings on every connection, and
concurrent writers that queue instead of failing with SQLITE_BUSY."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from suanwang.adapters.db.engine import make_engine, migrate
from suanwang.adapters.db.uow import SqlUnitOfWorkFactory


def test_every_sqlite_connection_is_durable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    migrate(url)
    engine = make_engine(url)
    for _ in range(3):
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL
            assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() >= 5000
            assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    engine.dispose()


def test_concurrent_writers_never_see_busy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    migrate(url)
    uows = SqlUnitOfWorkFactory(make_engine(url))
    errors: list[BaseException] = []
    written: list[int] = []

    def writer(n: int) -> None:
        try:
            for i in range(40):
                with uows() as uow:
                    uow.tenancy.add_tenant(f"t{n}-{i}", "x", 0.0)
                    uow.commit()
                written.append(1)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(written) == 160
    uows.engine.dispose()
