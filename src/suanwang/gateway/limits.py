"""The in-process :class:`~suanwang.ports.Limiter`: exact for ONE gateway process.

Every check-and-apply runs without an ``await`` inside it, so on one event loop it is
atomic. Several gateway processes need the Redis limiter (:mod:`.redis_limits`), otherwise
each process enforces the limits on its own and the tenant gets N times its limits.

Consumed quota is initialised, once per tenant and period, from the ledger
(``load_used``, i.e. ``UsageSink.tokens_used``), so a restart does not reset a quota.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from suanwang.domain.limits import (
    Limits,
    QuotaExhausted,
    RateLimited,
    Reservation,
    minute_of,
    quota_window,
    retry_after,
)
from suanwang.ports import Clock

LoadUsed = Callable[[str, float], int]
"""``(tenant, since) -> tokens already used``, read from the ledger."""


@dataclass(frozen=True, slots=True)
class RateCheck:
    """One rate counter to test and bump: (counter name, limit, amount, field)."""

    counter: str
    limit: int | None
    amount: int
    field: str


def rate_checks(tenant: str, key_id: str, tokens: int, limits: Limits) -> list[RateCheck]:
    """The four rate counters of a request, key first (the error names the narrower one)."""
    return [
        RateCheck(f"rpm:k:{key_id}", limits.key.rpm, 1, "key.rpm"),
        RateCheck(f"rpm:t:{tenant}", limits.tenant.rpm, 1, "tenant.rpm"),
        RateCheck(f"tpm:k:{key_id}", limits.key.tpm, tokens, "key.tpm"),
        RateCheck(f"tpm:t:{tenant}", limits.tenant.tpm, tokens, "tenant.tpm"),
    ]


def rate_error(field: str, now: float) -> RateLimited:
    what = "requests" if field.endswith("rpm") else "tokens"
    return RateLimited(
        f"rate limit reached: {field} ({what} per minute)",
        retry_after_s=retry_after(now),
        field=field,
    )


def quota_error(tenant: str) -> QuotaExhausted:
    return QuotaExhausted(
        f"token quota of tenant {tenant!r} is exhausted for this period",
        field="tenant.token_quota",
        hint="ask the operator for a larger quota, or lower max_tokens",
    )


class InProcessLimiter:
    """Counters and reservations in this process's memory."""

    def __init__(self, clock: Clock, load_used: LoadUsed, reservation_ttl_s: float) -> None:
        self._clock = clock
        self._load_used = load_used
        self._ttl_s = reservation_ttl_s
        self._minute = 0
        self._rates: dict[str, int] = {}
        self._used: dict[tuple[str, int], int] = {}
        self._reserved: dict[tuple[str, int], int] = {}
        self._holds: dict[str, Reservation] = {}
        self._loading: dict[tuple[str, int], asyncio.Future[None]] = {}

    async def reserve(
        self, request_id: str, tenant: str, key_id: str, tokens: int, limits: Limits
    ) -> Reservation:
        now = self._clock.now()
        minute = minute_of(now)
        quota = limits.tenant.token_quota
        window = quota_window(now, limits.tenant) if quota is not None else 0
        hold = Reservation(
            request_id, tenant, key_id, tokens, minute, window, now + self._ttl_s, True
        )
        if limits.unlimited:
            return Reservation(request_id, tenant, key_id, tokens, minute, 0, now, counted=False)
        if quota is not None:
            await self._ensure_used(tenant, window)
        # --- from here to the return: no await, hence atomic on this event loop ---
        if minute != self._minute:
            self._minute, self._rates = minute, {}
        checks = rate_checks(tenant, key_id, tokens, limits)
        for check in checks:
            if check.limit is not None and self._rates.get(check.counter, 0) + check.amount > (
                check.limit
            ):
                raise rate_error(check.field, now)
        qkey = (tenant, window)
        if quota is not None and self._used[qkey] + self._reserved.get(qkey, 0) + tokens > quota:
            raise quota_error(tenant)
        for check in checks:
            self._rates[check.counter] = self._rates.get(check.counter, 0) + check.amount
        if quota is not None:
            self._reserved[qkey] = self._reserved.get(qkey, 0) + tokens
        self._holds[request_id] = hold
        return hold

    async def settle(self, reservation: Reservation, tokens: int) -> bool:
        if not reservation.counted:
            return False
        if self._holds.pop(reservation.id, None) is None:
            return False
        self._release(reservation, max(0, tokens))
        return True

    async def sweep(self) -> int:
        now = self._clock.now()
        expired = [r for r in self._holds.values() if r.expires_at <= now]
        for hold in expired:
            del self._holds[hold.id]
            self._release(hold, 0)
        return len(expired)

    def _release(self, hold: Reservation, used: int) -> None:
        if hold.minute == self._minute:
            for counter in (f"tpm:k:{hold.key_id}", f"tpm:t:{hold.tenant}"):
                if counter in self._rates:
                    self._rates[counter] += used - hold.tokens
        qkey = (hold.tenant, hold.quota_window)
        if qkey in self._reserved:
            self._reserved[qkey] -= hold.tokens
            self._used[qkey] += used

    def balance(self, tenant: str, window: int) -> tuple[int, int]:
        """(used, reserved) tokens of ``tenant`` in the quota period starting at ``window``."""
        key = (tenant, window)
        return self._used.get(key, 0), self._reserved.get(key, 0)

    async def _ensure_used(self, tenant: str, window: int) -> None:
        key = (tenant, window)
        if key in self._used:
            return
        pending = self._loading.get(key)
        if pending is not None:
            await pending
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            used = await asyncio.to_thread(self._load_used, tenant, float(window))
            self._used.setdefault(key, used)
            self._reserved.setdefault(key, 0)
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: the waiters re-raise it
            raise
        finally:
            del self._loading[key]
