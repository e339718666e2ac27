"""The in-process :class:`~suanwang.ports.Limiter`: exact for ONE gateway process.

Every check-and-apply runs without an ``await`` inside it, so on one event loop it is
atomic. Several gateway processes need the Redis limiter (:mod:`.redis_limits`), otherwise
each process enforces the limits on its own and the tenant gets N times its limits.

Consumed quota is initialised, once per tenant and period, from the ledger
(``load_used``, i.e. ``UsageSink.tokens_used``), so a restart does not reset a quota.

What is checked, held and settled is decided by :mod:`suanwang.domain.limits`
(``admission``, ``refusal``, ``settlement``, ``expiry``); this module only keeps the
counters, as the Redis limiter does in Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from suanwang.domain.limits import (
    Limits,
    Reservation,
    Settlement,
    admission,
    expiry,
    refusal,
    refused,
    settlement,
)
from suanwang.ports import Clock

LoadUsed = Callable[[str, float], int]
"""``(tenant, since) -> tokens already used``, read from the ledger."""


class InProcessLimiter:
    """Counters and reservations in this process's memory."""

    def __init__(self, clock: Clock, load_used: LoadUsed, reservation_ttl_s: float) -> None:
        self._clock = clock
        self._load_used = load_used
        self._ttl_s = reservation_ttl_s
        self._minute = 0
        self._rates: dict[str, int] = {}
        """The rate counters of ``_minute``."""
        self._used: dict[tuple[str, int], int] = {}
        self._reserved: dict[tuple[str, int], int] = {}
        self._holds: dict[str, Reservation] = {}
        self._loading: dict[tuple[str, int], asyncio.Future[None]] = {}

    async def reserve(
        self, request_id: str, tenant: str, key_id: str, tokens: int, limits: Limits
    ) -> Reservation:
        now = self._clock.now()
        plan = admission(request_id, tenant, key_id, tokens, limits, now, self._ttl_s)
        hold = plan.hold
        if plan.free:
            return hold
        qkey = (tenant, hold.quota_window)
        if hold.quota:
            await self._ensure_used(*qkey)
        # --- from here to the return: no await, hence atomic on this event loop ---
        if hold.minute != self._minute:
            self._minute, self._rates = hold.minute, {}
        field = refusal(plan, self._rates, self._used.get(qkey, 0), self._reserved.get(qkey, 0))
        if field is not None:
            raise refused(field, tenant, now)
        for check in plan.rates:
            self._rates[check.counter] = self._rates.get(check.counter, 0) + check.amount
        if hold.quota:
            self._reserved[qkey] += tokens
        if hold.counted:
            self._holds[request_id] = hold
        return hold

    async def settle(self, reservation: Reservation, tokens: int) -> bool:
        if self._holds.pop(reservation.id, None) is None:
            return False
        self._apply(reservation, settlement(reservation, tokens, self._clock.now()))
        return True

    async def sweep(self) -> int:
        now = self._clock.now()
        expired = [r for r in self._holds.values() if r.expires_at <= now]
        for hold in expired:
            del self._holds[hold.id]
            self._apply(hold, expiry(hold))
        return len(expired)

    def _apply(self, hold: Reservation, change: Settlement) -> None:
        if hold.minute == self._minute:
            for counter, delta in change.rates:
                if counter in self._rates:
                    self._rates[counter] += delta
        qkey = (hold.tenant, hold.quota_window)
        if qkey in self._used:
            self._reserved[qkey] += change.reserved
            self._used[qkey] += change.used

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
