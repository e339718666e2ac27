"""Shared fixtures: a fresh database per test on SQLite *and* PostgreSQL, a platform, a clock.

PostgreSQL: a new database on ``SUANWANG_TEST_POSTGRES`` (default 127.0.0.1:5432, user
postgres, trust auth) per test, dropped afterwards. Where no server answers, the PostgreSQL
half is skipped with the reason printed, unless ``SUANWANG_REQUIRE_POSTGRES=1`` (set by
``.ci/run``), where it fails.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings

from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.services.platform import Platform

# Hypothesis' 200 ms per-example deadline measures the machine, not the code: on a loaded
# 2-core runner it fails properties that hold. Tests state their own example counts.
hypothesis_settings.register_profile("suanwang", deadline=None)
hypothesis_settings.load_profile("suanwang")

PG_ADMIN_URL = os.environ.get(
    "SUANWANG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def _postgres_or_skip() -> None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3, autocommit=True):
            return
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL not reachable at {PG_ADMIN_URL} ({exc.__class__.__name__}); see ../shared/SERVICES.md"
        if os.environ.get("SUANWANG_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def fresh_postgres() -> tuple[str, str]:
    """Create an empty database; return (url, name)."""
    _postgres_or_skip()
    name = f"suanwang_test_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # name is generated above, not user input
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}", name


def drop_postgres(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'suanwang.db'}"
        return
    url, name = fresh_postgres()
    try:
        yield url
    finally:
        drop_postgres(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url, cancel_grace_s=0.5)


@pytest.fixture
def platform(settings: Settings, clock: FakeClock) -> Iterator[Platform]:
    """A migrated platform on a fresh database, with the fake clock."""
    built = build_platform(settings, clock)
    yield built
    built.uows.engine.dispose()  # type: ignore[attr-defined]
