"""The Redis :class:`~suanwang.ports.Limiter`: one set of counters for every gateway process.

Each operation is one Lua script, which Redis runs atomically, so check-and-apply holds
across processes and hosts. Keys (all under ``prefix``):

- ``rpm:k:<key>:<minute>`` / ``rpm:t:<tenant>:<minute>`` / ``tpm:…``: rate counters,
  expiring two minutes after their window;
- ``q:used:<tenant>:<window>`` / ``q:res:<tenant>:<window>``: tokens used and reserved in
  a quota period (``used`` is loaded from the ledger the first time a period is seen);
- ``res`` (hash id → ``<q:res key>|<tokens>|<q:used key>``, the keys empty for a
  reservation without quota) and ``resexp`` (sorted set id → expiry): live reservations.
  Settling deletes the hash field first, so a reservation settles once;
  :meth:`RedisLimiter.sweep` releases the ones whose expiry passed (killed processes).

What is checked, held and settled is decided by :mod:`suanwang.domain.limits`
(``admission``, ``refusal``, ``settlement``, ``expiry``), as for the in-process limiter:
the reserve script is ``refusal`` and its apply step over Redis keys, the settle script
applies a ``settlement`` computed in Python (finding the quota keys in the reservation's
value), the sweep script applies ``expiry``. The
shared table and the differential property in ``tests/unit/test_gateway_limits.py`` hold
the two to the same answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from suanwang.domain.limits import (
    QUOTA_FIELD,
    Limits,
    Reservation,
    admission,
    quota_span_s,
    refused,
    settlement,
)
from suanwang.gateway.limits import LoadUsed
from suanwang.gateway.resp import LeanScripts
from suanwang.ports import Clock

# refusal() and the apply step of the in-process limiter, over Redis keys.
# KEYS: the n rate counters of plan.rates, then q:used, q:res, res, resexp.
# ARGV: id, tokens, quota (-1: none), quota keys' ttl, held (1: keep the reservation),
#       expiry, then (limit, amount) per rate counter. Rate counters live 2 minutes.
_RESERVE = """
local n = #KEYS - 4
local tokens = tonumber(ARGV[2])
for i = 1, n do
  local limit, amount = tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  if tonumber(redis.call('GET', KEYS[i]) or '0') + amount > limit then
    return {1, i}
  end
end
local quota = tonumber(ARGV[3])
local used_key, res_key = KEYS[n + 1], KEYS[n + 2]
if quota >= 0 then
  local used = redis.call('GET', used_key)
  if not used then return {3, 0} end
  if tonumber(used) + tonumber(redis.call('GET', res_key) or '0') + tokens > quota then
    return {2, 0}
  end
  redis.call('INCRBY', res_key, tokens)
  redis.call('EXPIRE', res_key, ARGV[4])
else
  used_key, res_key = '', ''
end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[n + 3], ARGV[1], res_key .. '|' .. tokens .. '|' .. used_key)
  redis.call('ZADD', KEYS[n + 4], ARGV[6], ARGV[1])
end
for i = 1, n do
  redis.call('INCRBY', KEYS[i], tonumber(ARGV[6 + 2 * i]))
  redis.call('EXPIRE', KEYS[i], 120)
end
return {0, 0}
"""

# Applies a settlement() once: the first settle deletes the reservation, later ones do
# nothing. The quota keys come from the reservation's value. KEYS: res, resexp, then the
# rate counters to change; ARGV: id, reserved change, used change, then the rates' changes.
_SETTLE = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local res_key, used_key = string.match(value, '^(.*)|%d+|(.*)$')
if res_key ~= '' then
  if redis.call('EXISTS', res_key) == 1 then redis.call('INCRBY', res_key, ARGV[2]) end
  if redis.call('EXISTS', used_key) == 1 then redis.call('INCRBY', used_key, ARGV[3]) end
end
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], ARGV[i + 1])
  end
end
return 1
"""

# Applies expiry() to reservations whose expiry passed: the hold value is
# '<q:res key>|<tokens>|<q:used key>' (empty keys for a hold without quota).
_SWEEP = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, id in ipairs(ids) do
  local value = redis.call('HGET', KEYS[1], id)
  if value then
    local res_key, tokens = string.match(value, '^(.*)|(%d+)|')
    if res_key ~= '' and redis.call('EXISTS', res_key) == 1 then
      redis.call('DECRBY', res_key, tokens)
    end
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
        plan = admission(request_id, tenant, key_id, tokens, limits, now, self._ttl_s)
        hold = plan.hold
        if plan.free:
            return hold
        p, window = self._prefix, hold.quota_window
        used_key = f"{p}q:used:{tenant}:{window}"
        keys = [f"{p}{check.counter}:{hold.minute}" for check in plan.rates]
        keys += [used_key, f"{p}q:res:{tenant}:{window}", f"{p}res", f"{p}resexp"]
        span_s = quota_span_s(limits.tenant)
        quota = -1 if plan.quota is None else plan.quota
        held = 1 if hold.counted else 0
        args: list[Any] = [request_id, tokens, quota, span_s + 86400, held, hold.expires_at]
        for check in plan.rates:
            args += [check.limit, check.amount]
        for _ in range(3):
            code, index = await self._run(_RESERVE, self._reserve, keys, args)
            if code == 0:
                return hold
            if code == 1:
                raise refused(plan.rates[int(index) - 1].field, tenant, now)
            if code == 2:
                raise refused(QUOTA_FIELD, tenant, now)
            await self._load(used_key, tenant, hold.quota_window, span_s)
        raise RuntimeError("quota counter vanished from Redis while reserving")

    async def _load(self, used_key: str, tenant: str, window: int, period_s: int) -> None:
        used = await asyncio.to_thread(self._load_used, tenant, float(window))
        await self._redis.set(used_key, used, nx=True, ex=period_s + 86400)

    async def settle(self, reservation: Reservation, tokens: int) -> bool:
        if not reservation.counted:
            return False
        change = settlement(reservation, tokens, self._clock.now())
        p, minute = self._prefix, reservation.minute
        keys = [f"{p}res", f"{p}resexp"]
        args: list[Any] = [reservation.id, change.reserved, change.used]
        for counter, delta in change.rates:
            keys.append(f"{p}{counter}:{minute}")
            args.append(delta)
        done = await self._run(_SETTLE, self._settle, keys, args)
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
