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
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.errors import ValidationError
from suanwang.domain.limits import (
    KeyLimits,
    Limits,
    QuotaExhausted,
    QuotaPeriod,
    RateLimited,
    TenantLimits,
    admission,
    expiry,
    month_start,
    quota_window,
    quota_window_of,
    settlement,
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


# A step of a table case: ask(n) reserves n tokens for the next request (r0, r1, ...),
# use(i, n) settles request i to n billed tokens, wait(s) moves the clock s seconds.
Step = tuple[str, int, int]


def ask(tokens: int) -> Step:
    return ("ask", tokens, 0)


def use(request: int, tokens: int) -> Step:
    return ("use", request, tokens)


def wait(seconds: int) -> Step:
    return ("wait", seconds, 0)


MONTH = QuotaPeriod.MONTH
# (name, limits, steps, expected per step: ask -> "ok" | "rate" | "quota";
#  use -> "settled" | "none" (nothing held, or settled already); wait -> "")
CASES: list[tuple[str, Limits, list[Step], list[str]]] = [
    ("unlimited", Limits(), [ask(10), ask(10), ask(10)], ["ok", "ok", "ok"]),
    ("key rpm", Limits(key=KeyLimits(rpm=2)), [ask(1), ask(1), ask(1)], ["ok", "ok", "rate"]),
    ("tenant rpm", Limits(tenant=TenantLimits(rpm=1)), [ask(1), ask(1)], ["ok", "rate"]),
    ("key tpm", Limits(key=KeyLimits(tpm=25)), [ask(10)] * 3, ["ok", "ok", "rate"]),
    (
        "tenant tpm",
        Limits(tenant=TenantLimits(tpm=15)),
        [ask(10), ask(5), ask(1)],
        ["ok", "ok", "rate"],
    ),
    (
        "quota",
        Limits(tenant=TenantLimits(token_quota=30)),
        [ask(10), ask(20), ask(1)],
        ["ok", "ok", "quota"],
    ),
    ("zero quota", Limits(tenant=TenantLimits(token_quota=0)), [ask(1)], ["quota"]),
    (
        "rate before quota",
        Limits(tenant=TenantLimits(rpm=1, token_quota=5)),
        [ask(10), ask(1)],
        ["quota", "ok"],
    ),
    (  # issue 9: Redis never corrected a TPM reservation without a quota
        "tenant tpm without quota: settled down to the tokens used",
        Limits(tenant=TenantLimits(tpm=100)),
        [ask(80), use(0, 10), ask(80), ask(11)],
        ["ok", "settled", "ok", "rate"],
    ),
    (
        "key tpm without quota: settled down to the tokens used",
        Limits(key=KeyLimits(tpm=100)),
        [ask(80), use(0, 10), ask(80), use(1, 80), ask(11)],
        ["ok", "settled", "ok", "settled", "rate"],
    ),
    (
        "tpm settled twice counts once",
        Limits(tenant=TenantLimits(tpm=100)),
        [ask(80), use(0, 10), use(0, 10), ask(90), ask(1)],
        ["ok", "settled", "none", "ok", "rate"],
    ),
    (
        "tpm settled in a later minute corrects nothing",
        Limits(tenant=TenantLimits(tpm=100)),
        [ask(80), wait(60), ask(90), use(0, 10), ask(11)],
        ["ok", "", "ok", "settled", "rate"],
    ),
    (
        "tpm with quota",
        Limits(tenant=TenantLimits(tpm=100, token_quota=200)),
        [ask(80), use(0, 10), ask(80), use(1, 80), ask(30), wait(60), ask(100), use(3, 100)],
        ["ok", "settled", "ok", "settled", "rate", "", "ok", "settled"],
    ),
    (
        "quota refuses within the tpm",
        Limits(tenant=TenantLimits(tpm=100, token_quota=200)),
        [ask(90), use(0, 90), wait(60), ask(100), use(1, 100), wait(60), ask(11), ask(10)],
        ["ok", "settled", "", "ok", "settled", "", "quota", "ok"],
    ),
    (
        "rpm only: nothing held, a request stays counted",
        Limits(key=KeyLimits(rpm=2), tenant=TenantLimits(rpm=5)),
        [ask(50), use(0, 1), ask(50), ask(50)],
        ["ok", "none", "ok", "rate"],
    ),
    (
        "month period",
        Limits(tenant=TenantLimits(token_quota=100, period=MONTH)),
        [ask(80), use(0, 10), ask(80), ask(20), use(1, 0), ask(90), ask(1)],
        ["ok", "settled", "ok", "quota", "settled", "ok", "quota"],
    ),
]


async def run_steps(
    limiter: Any, clock: Clock, limits: Limits, steps: list[Step], balances: bool = False
) -> list[str]:
    """Each step's outcome (see CASES); with ``balances``, followed by the quota period's
    (used, reserved) after the step. ``sweep`` sweeps; ``use`` of a request that was
    refused or never made is "none"."""
    got: list[str] = []
    holds: list[Any] = []
    for verb, a, b in steps:
        if verb == "wait":
            clock.t += a
            got.append("")
        elif verb == "sweep":
            got.append(f"swept {await limiter.sweep()}")
        elif verb == "use":
            hold = holds[a] if a < len(holds) else None
            got.append("settled" if hold and await limiter.settle(hold, b) else "none")
        else:
            request = f"r{len(holds)}"
            try:
                holds.append(await limiter.reserve(request, "acme", "k1", a, limits))
                got.append("ok")
            except RateLimited as exc:
                holds.append(None)
                got.append("rate" if 1 <= exc.retry_after_s <= 60 else "bad retry-after")
            except QuotaExhausted:
                holds.append(None)
                got.append("quota")
        if balances:
            window = quota_window(clock.now(), limits.tenant)
            used, reserved = await balance(limiter, window)
            got[-1] += f" {used}/{reserved}"
    return got


@pytest.mark.parametrize(("name", "limits", "steps", "expected"), CASES, ids=[c[0] for c in CASES])
def test_limit_table(
    kind: str, name: str, limits: Limits, steps: list[Step], expected: list[str]
) -> None:
    async def go() -> list[str]:
        clock = Clock()
        async with limiter_of(kind, clock) as limiter:
            return await run_steps(limiter, clock, limits, steps)

    assert asyncio.run(go()) == expected


small = st.one_of(st.none(), st.integers(0, 6))
large = st.one_of(st.none(), st.integers(0, 150))
programs = st.lists(
    st.one_of(
        st.tuples(st.just("ask"), st.integers(0, 60), st.just(0)),
        st.tuples(st.just("use"), st.integers(0, 15), st.integers(-5, 70)),
        st.tuples(st.just("wait"), st.sampled_from([1, 20, 45, 61, 101]), st.just(0)),
        st.tuples(st.just("sweep"), st.just(0), st.just(0)),
    ),
    max_size=25,
)
random_limits = st.builds(
    Limits,
    tenant=st.builds(
        TenantLimits,
        rpm=small,
        tpm=large,
        token_quota=st.one_of(st.none(), st.integers(0, 400)),
        period=st.sampled_from(QuotaPeriod),
    ),
    key=st.builds(KeyLimits, rpm=small, tpm=large),
)


@settings(max_examples=60)
@given(limits=random_limits, steps=programs)
def test_both_limiters_give_the_same_answers(limits: Limits, steps: list[Step]) -> None:
    """Random limits and programs of reserve/settle/wait/sweep: the Redis limiter (its Lua
    over Redis keys) answers and counts exactly as the in-process one over the same pure
    core, step by step, balances included."""
    _redis_or_skip()

    async def trace(kind: str) -> list[str]:
        clock = Clock()
        async with limiter_of(kind, clock) as limiter:
            return await run_steps(limiter, clock, limits, steps, balances=True)

    memory = asyncio.run(trace("memory"))
    assert asyncio.run(trace("redis")) == memory
    assert asyncio.run(trace("redis-lean")) == memory


@given(
    tokens=st.integers(0, 10**6),
    billed=st.integers(-(10**6), 2 * 10**6),
    later_s=st.integers(0, 200),
    limits=random_limits,
)
def test_a_settlement_moves_at_most_the_reservation(
    tokens: int, billed: int, later_s: int, limits: Limits
) -> None:
    """The pure core: settling releases exactly the reservation from ``reserved``, adds at
    most that to ``used``, and corrects only the TPM counters charged, only downwards and
    only in the reservation's minute."""
    plan = admission("r", "acme", "k1", tokens, limits, T0 + 1, TTL)
    change = settlement(plan.hold, billed, T0 + 1 + later_s)
    charged = {check.counter for check in plan.rates if check.field.endswith("tpm")}
    assert change.reserved == (-tokens if limits.tenant.token_quota is not None else 0)
    assert 0 <= change.used <= -change.reserved
    assert {counter for counter, _ in change.rates} <= charged
    assert all(-tokens <= delta < 0 for _, delta in change.rates)
    assert not change.rates or later_s < 59
    assert expiry(plan.hold).used == 0
    assert expiry(plan.hold).reserved == change.reserved


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
