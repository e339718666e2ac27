"""Both limiters against one table of cases; reservations, settlement, expiry, concurrency.

The Redis half uses the Redis at 127.0.0.1:6379 with a fresh random key prefix (deleted
afterwards) and is skipped when no Redis answers.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from suanwang.domain.errors import ValidationError
from suanwang.domain.limits import (
    KeyLimits,
    Limits,
    QuotaExhausted,
    QuotaPeriod,
    RateLimited,
    TenantLimits,
    month_start,
    quota_window,
    quota_window_of,
)
from suanwang.gateway import InProcessLimiter, RedisLimiter
from suanwang.gateway.resp import lean_scripts_for

REDIS_URL = "redis://127.0.0.1:6379/0"
T0 = 1_800_000_000.0  # a minute boundary
TTL = 100.0


class Clock:
    def __init__(self) -> None:
        self.t = T0 + 1

    def now(self) -> float:
        return self.t


def _redis_or_skip() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")


@asynccontextmanager
async def limiter_of(kind: str, clock: Clock, used: int = 0) -> AsyncIterator[Any]:
    def load_used(_tenant: str, _since: float) -> int:
        return used

    if kind == "memory":
        yield InProcessLimiter(clock, load_used, TTL)
        return
    prefix = f"test:{secrets.token_hex(6)}:"
    client = aioredis.from_url(REDIS_URL)
    lean = lean_scripts_for(REDIS_URL) if kind == "redis-lean" else None
    try:
        yield RedisLimiter(client, clock, load_used, TTL, prefix, scripts=lean)
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        if lean is not None:
            await lean.aclose()


KINDS = ["memory", "redis", "redis-lean"]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    if request.param != "memory":
        _redis_or_skip()
    return str(request.param)


# (limits, requests as token counts, expected outcome per request: "ok" | "rate" | "quota")
CASES: list[tuple[str, Limits, list[int], list[str]]] = [
    ("unlimited", Limits(), [10, 10, 10], ["ok", "ok", "ok"]),
    ("key rpm", Limits(key=KeyLimits(rpm=2)), [1, 1, 1], ["ok", "ok", "rate"]),
    ("tenant rpm", Limits(tenant=TenantLimits(rpm=1)), [1, 1], ["ok", "rate"]),
    ("key tpm", Limits(key=KeyLimits(tpm=25)), [10, 10, 10], ["ok", "ok", "rate"]),
    ("tenant tpm", Limits(tenant=TenantLimits(tpm=15)), [10, 5, 1], ["ok", "ok", "rate"]),
    ("quota", Limits(tenant=TenantLimits(token_quota=30)), [10, 20, 1], ["ok", "ok", "quota"]),
    ("zero quota", Limits(tenant=TenantLimits(token_quota=0)), [1], ["quota"]),
    (
        "rate before quota",
        Limits(tenant=TenantLimits(rpm=1, token_quota=5)),
        [10, 1],
        ["quota", "ok"],
    ),
]


@pytest.mark.parametrize(("name", "limits", "asks", "expected"), CASES, ids=[c[0] for c in CASES])
def test_limit_table(
    kind: str, name: str, limits: Limits, asks: list[int], expected: list[str]
) -> None:
    async def go() -> list[str]:
        clock = Clock()
        got: list[str] = []
        async with limiter_of(kind, clock) as limiter:
            for i, tokens in enumerate(asks):
                try:
                    await limiter.reserve(f"r{i}", "acme", "k1", tokens, limits)
                    got.append("ok")
                except RateLimited as exc:
                    got.append("rate" if 1 <= exc.retry_after_s <= 60 else "bad retry-after")
                except QuotaExhausted:
                    got.append("quota")
        return got

    assert asyncio.run(go()) == expected


def test_settle_releases_the_difference_and_only_once(kind: str) -> None:
    async def go() -> None:
        clock = Clock()
        limits = Limits(tenant=TenantLimits(token_quota=100))
        window = quota_window_of(clock.now(), limits.tenant.period_s)
        async with limiter_of(kind, clock, used=40) as limiter:
            hold = await limiter.reserve("r1", "acme", "k1", 50, limits)
            assert await balance(limiter, window) == (40, 50)
            with pytest.raises(QuotaExhausted):
                await limiter.reserve("r2", "acme", "k1", 11, limits)
            assert await limiter.settle(hold, 7) is True
            assert await limiter.settle(hold, 7) is False  # duplicate settlement: no effect
            assert await balance(limiter, window) == (47, 0)
            await limiter.reserve("r3", "acme", "k1", 53, limits)

    asyncio.run(go())


async def balance(limiter: Any, window: int) -> tuple[int, int]:
    result = limiter.balance("acme", window)
    return tuple(await result) if asyncio.iscoroutine(result) else tuple(result)  # type: ignore[return-value]


def utc(*when: int) -> float:
    return datetime(*when, tzinfo=UTC).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("now", "start"),
    [
        (utc(2027, 2, 28, 23, 59, 59), utc(2027, 2, 1)),
        (utc(2027, 3, 1), utc(2027, 3, 1)),
        (utc(2027, 12, 31, 23, 59, 59) + 0.999, utc(2027, 12, 1)),
        (utc(2028, 1, 1), utc(2028, 1, 1)),
        (utc(2028, 2, 29, 12), utc(2028, 2, 1)),
    ],
)
def test_month_start_is_the_first_of_the_month_utc(now: float, start: float) -> None:
    assert month_start(now) == start
    month = TenantLimits(token_quota=1, period=QuotaPeriod.MONTH)
    assert quota_window(now, month) == start


# (last second of a month, the month's first second after it): a 28-day February, a year end
BOUNDARIES = [
    (utc(2027, 2, 28, 23, 59, 59), utc(2027, 3, 1)),
    (utc(2027, 12, 31, 23, 59, 59), utc(2028, 1, 1)),
]


@pytest.mark.parametrize(("last", "first"), BOUNDARIES, ids=["february", "year-end"])
def test_a_monthly_quota_renews_at_the_month_boundary(kind: str, last: float, first: float) -> None:
    """Exhausted until the last instant of the month, whole again at 00:00 UTC on the 1st;
    the same times with 30-day windows do not renew (so the test sees the period used)."""

    async def go(period: QuotaPeriod) -> list[str]:
        clock = Clock()
        clock.t = last
        limits = Limits(tenant=TenantLimits(token_quota=100, period=period))
        got: list[str] = []
        async with limiter_of(kind, clock) as limiter:
            hold = await limiter.reserve("r1", "acme", "k1", 100, limits)
            await limiter.settle(hold, 100)
            for i, t in enumerate((last + 0.999, first, first + 86400)):
                clock.t = t
                try:
                    hold = await limiter.reserve(f"r{i + 2}", "acme", "k1", 60, limits)
                    await limiter.settle(hold, 60)
                    got.append("ok")
                except QuotaExhausted:
                    got.append("quota")
            window = quota_window(first, limits.tenant)
            used, reserved = await balance(limiter, window)
            got.append(f"{used}/{reserved}")
        return got

    assert asyncio.run(go(QuotaPeriod.MONTH)) == ["quota", "ok", "quota", "60/0"]
    assert asyncio.run(go(QuotaPeriod.SECONDS)) == ["quota", "quota", "quota", "100/0"]


def test_rate_windows_reset_each_minute(kind: str) -> None:
    async def go() -> None:
        clock = Clock()
        limits = Limits(key=KeyLimits(rpm=1))
        async with limiter_of(kind, clock) as limiter:
            await limiter.reserve("a", "acme", "k1", 1, limits)
            with pytest.raises(RateLimited):
                await limiter.reserve("b", "acme", "k1", 1, limits)
            clock.t += 60
            await limiter.reserve("c", "acme", "k1", 1, limits)

    asyncio.run(go())


def test_expired_reservations_are_swept(kind: str) -> None:
    async def go() -> None:
        clock = Clock()
        limits = Limits(tenant=TenantLimits(token_quota=100))
        window = quota_window_of(clock.now(), limits.tenant.period_s)
        async with limiter_of(kind, clock) as limiter:
            hold = await limiter.reserve("dead", "acme", "k1", 80, limits)
            assert await limiter.sweep() == 0
            clock.t += TTL + 1
            assert await limiter.sweep() == 1
            assert await balance(limiter, window) == (0, 0)
            assert await limiter.settle(hold, 80) is False  # too late: nothing double-counted
            await limiter.reserve("next", "acme", "k1", 100, limits)

    asyncio.run(go())


def test_concurrent_reservations_never_overshoot(kind: str) -> None:
    async def go() -> tuple[int, int]:
        clock = Clock()
        limits = Limits(tenant=TenantLimits(token_quota=1000))
        window = quota_window_of(clock.now(), limits.tenant.period_s)
        async with limiter_of(kind, clock) as limiter:

            async def one(i: int) -> int:
                try:
                    hold = await limiter.reserve(f"r{i}", "acme", "k1", 30, limits)
                except QuotaExhausted:
                    return 0
                await asyncio.sleep(0)
                await limiter.settle(hold, 25)
                return 25

            billed = sum(await asyncio.gather(*(one(i) for i in range(100))))
            used, reserved = await balance(limiter, window)
            assert reserved == 0
            return billed, used

    billed, used = asyncio.run(go())
    assert billed == used <= 1000


@pytest.mark.parametrize(
    "build",
    [
        lambda: TenantLimits(rpm=-1),
        lambda: TenantLimits(period_s=1),
        lambda: KeyLimits(models=("",)),
    ],
)
def test_bad_limits_are_refused(build: Callable[[], object]) -> None:
    with pytest.raises(ValidationError):
        build()
