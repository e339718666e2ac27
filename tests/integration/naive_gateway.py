"""R2's negative control: a gateway whose quota check is deliberately NOT atomic.

``NaiveRedisLimiter`` reads ``used`` and ``reserved`` from Redis, compares, and only then
(after more round trips) adds its reservation: check-then-act, the bug of limiters that
overdraw a quota under concurrency. Test-only; run it with
``uvicorn --factory naive_gateway:naive_gateway_app_from_env`` (tests/integration on the
path). The R2 test must see this gateway overshoot, or R2 proves nothing.
"""

from __future__ import annotations

from suanwang import bootstrap
from suanwang.domain.limits import (
    QUOTA_FIELD,
    Limits,
    Reservation,
    minute_of,
    quota_span_s,
    quota_window,
    refused,
)
from suanwang.gateway import RedisLimiter
from suanwang.gateway.app import GatewayApp


class NaiveRedisLimiter(RedisLimiter):
    """Quota only, check-then-act (rates are not enforced)."""

    async def reserve(
        self, request_id: str, tenant: str, key_id: str, tokens: int, limits: Limits
    ) -> Reservation:
        now = self._clock.now()
        quota = limits.tenant.token_quota
        if quota is None:
            return await super().reserve(request_id, tenant, key_id, tokens, limits)
        window = quota_window(now, limits.tenant)
        hold = Reservation(
            request_id,
            tenant,
            key_id,
            tokens,
            minute_of(now),
            window,
            now + self._ttl_s,
            quota=True,
        )
        p = self._prefix
        used_key, res_key = f"{p}q:used:{tenant}:{window}", f"{p}q:res:{tenant}:{window}"
        if await self._redis.get(used_key) is None:
            await self._load(used_key, tenant, window, quota_span_s(limits.tenant))
        used = int(await self._redis.get(used_key) or 0)
        reserved = int(await self._redis.get(res_key) or 0)
        if used + reserved + tokens > quota:  # check ...
            raise refused(QUOTA_FIELD, tenant, now)
        await self._redis.incrby(res_key, tokens)  # ... then act: another request got in between
        await self._redis.hset(f"{p}res", request_id, f"{res_key}|{tokens}|{used_key}")
        await self._redis.zadd(f"{p}resexp", {request_id: hold.expires_at})
        return hold


def naive_gateway_app_from_env() -> GatewayApp:
    """The normal gateway, built with :class:`NaiveRedisLimiter` (this process only)."""
    bootstrap.RedisLimiter = NaiveRedisLimiter  # type: ignore[misc]
    return bootstrap.gateway_app_from_env()
