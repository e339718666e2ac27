"""The Redis :class:`~suanwang.ports.Limiter`: one set of counters for every gateway process.

Each operation is one Lua script, which Redis runs atomically, so check-and-apply holds
across processes and hosts. Keys (all under ``prefix``):

- ``rpm:k:<key>:<minute>`` / ``rpm:t:<tenant>:<minute>`` / ``tpm:…``: rate counters,
  expiring two minutes after their window;
- ``q:used:<tenant>:<window>`` / ``q:res:<tenant>:<window>``: tokens used and reserved in
  a quota period (``used`` is loaded from the ledger the first time a period is seen);
- ``res`` (hash id → ``<q:res key>|<tokens>``) and ``resexp`` (sorted set id → expiry):
  live reservations. Settling deletes the hash field first, so a reservation settles once;
  :meth:`RedisLimiter.sweep` releases the ones whose expiry passed (killed processes).
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from suanwang.domain.limits import (
    Limits,
    Reservation,
    minute_of,
    quota_span_s,
    quota_window,
)
from suanwang.gateway.limits import LoadUsed, quota_error, rate_checks, rate_error
from suanwang.gateway.resp import LeanScripts
from suanwang.ports import Clock

_RESERVE = """
local n = #KEYS - 4
local tokens = tonumber(ARGV[1])
for i = 1, n do
  local limit = tonumber(ARGV[4 + 2 * i - 1])
  local amount = tonumber(ARGV[4 + 2 * i])
  if limit >= 0 and tonumber(redis.call('GET', KEYS[i]) or '0') + amount > limit then
    return {1, i}
  end
end
local quota = tonumber(ARGV[2])
local used_key, res_key = KEYS[n + 1], KEYS[n + 2]
if quota >= 0 then
  local used = redis.call('GET', used_key)
  if not used then return {3, 0} end
  if tonumber(used) + tonumber(redis.call('GET', res_key) or '0') + tokens > quota then
    return {2, 0}
  end
  redis.call('INCRBY', res_key, tokens)
  redis.call('EXPIRE', res_key, ARGV[3])
  redis.call('HSET', KEYS[n + 3], ARGV[4], res_key .. '|' .. tokens .. '|' .. used_key)
  redis.call('ZADD', KEYS[n + 4], ARGV[4 + 2 * n + 1], ARGV[4])
end
for i = 1, n do
  local amount = tonumber(ARGV[4 + 2 * i])
  if tonumber(ARGV[4 + 2 * i - 1]) >= 0 then
    redis.call('INCRBY', KEYS[i], amount)
    redis.call('EXPIRE', KEYS[i], 2 * 60)
  end
end
return {0, 0}
"""

_SETTLE = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local res_key, tokens, used_key = string.match(value, '^(.*)|(%d+)|(.*)$')
redis.call('DECRBY', res_key, tokens)
redis.call('INCRBY', used_key, ARGV[2])
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], tonumber(ARGV[2]) - tonumber(tokens))
  end
end
return 1
"""

_SWEEP = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, id in ipairs(ids) do
  local value = redis.call('HGET', KEYS[1], id)
  if value then
    local res_key, tokens = string.match(value, '^(.*)|(%d+)|')
    redis.call('DECRBY', res_key, tokens)
    redis.call('HDEL', KEYS[1], id)
  end
  redis.call('ZREM', KEYS[2], id)
end
return #ids
"""


class RedisLimiter:
    """Limits shared through Redis; ``prefix`` isolates deployments (and test runs)."""

    def __init__(
        self,
        client: aioredis.Redis,
        clock: Clock,
        load_used: LoadUsed,
        reservation_ttl_s: float,
        prefix: str = "suanwang:gw:",
        scripts: LeanScripts | None = None,
    ) -> None:
        self._redis = client
        self._lean = scripts
        """Runs reserve and settle when given (see :mod:`.resp`); redis-py otherwise."""
        self._clock = clock
        self._load_used = load_used
        self._ttl_s = reservation_ttl_s
        self._prefix = prefix
        self._reserve: Any = client.register_script(_RESERVE)
        self._settle: Any = client.register_script(_SETTLE)
        self._sweep: Any = client.register_script(_SWEEP)

    async def reserve(
        self, request_id: str, tenant: str, key_id: str, tokens: int, limits: Limits
    ) -> Reservation:
        now = self._clock.now()
        minute = minute_of(now)
        quota = limits.tenant.token_quota
        window = quota_window(now, limits.tenant) if quota is not None else 0
        hold = Reservation(
            request_id, tenant, key_id, tokens, minute, window, now + self._ttl_s, quota is not None
        )
        if limits.unlimited:
            return hold
        checks = rate_checks(tenant, key_id, tokens, limits)
        p = self._prefix
        keys = [f"{p}{c.counter}:{minute}" for c in checks]
        keys += [f"{p}q:used:{tenant}:{window}", f"{p}q:res:{tenant}:{window}"]
        keys += [f"{p}res", f"{p}resexp"]
        args: list[Any] = [tokens, -1 if quota is None else quota]
        span_s = quota_span_s(limits.tenant)
        args += [span_s + 86400, request_id]
        for c in checks:
            args += [-1 if c.limit is None else c.limit, c.amount]
        args.append(hold.expires_at)
        for _ in range(3):
            code, index = await self._run(_RESERVE, self._reserve, keys, args)
            if code == 0:
                return hold
            if code == 1:
                raise rate_error(checks[int(index) - 1].field, now)
            if code == 2:
                raise quota_error(tenant)
            await self._load(keys[-4], tenant, window, span_s)
        raise RuntimeError("quota counter vanished from Redis while reserving")

    async def _load(self, used_key: str, tenant: str, window: int, period_s: int) -> None:
        used = await asyncio.to_thread(self._load_used, tenant, float(window))
        await self._redis.set(used_key, used, nx=True, ex=period_s + 86400)

    async def settle(self, reservation: Reservation, tokens: int) -> bool:
        if not reservation.counted:
            return False
        p = self._prefix
        keys = [f"{p}res", f"{p}resexp"]
        if minute_of(self._clock.now()) == reservation.minute:
            m = reservation.minute
            keys += [f"{p}tpm:k:{reservation.key_id}:{m}", f"{p}tpm:t:{reservation.tenant}:{m}"]
        done = await self._run(_SETTLE, self._settle, keys, [reservation.id, max(0, tokens)])
        return bool(done)

    async def _run(self, script: str, registered: Any, keys: list[str], args: list[Any]) -> Any:
        if self._lean is not None:
            return await self._lean.run(script, keys, args)
        return await registered(keys=keys, args=args)

    async def sweep(self) -> int:
        p = self._prefix
        swept = await self._sweep(keys=[f"{p}res", f"{p}resexp"], args=[self._clock.now()])
        return int(swept)

    async def balance(self, tenant: str, window: int) -> tuple[int, int]:
        """(used, reserved) tokens of ``tenant`` in the quota period starting at ``window``."""
        p = self._prefix
        used, reserved = await self._redis.mget(
            f"{p}q:used:{tenant}:{window}", f"{p}q:res:{tenant}:{window}"
        )
        return int(used or 0), int(reserved or 0)
