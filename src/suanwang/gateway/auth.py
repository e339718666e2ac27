"""Key authentication for the gateway, with a short cache.

The ``Authorization`` header is checked before anything touches the database: missing,
longer than 8 KiB, not ASCII, not ``Bearer``, or not shaped like a suanwang key → 401.
Verified keys are cached by the SHA-256 of the key for ``ttl_s`` (1 s by default), so a
revoked key stops working on every gateway within ``ttl_s`` plus one database read.
Failures are not cached. Concurrent misses for the same key share one database read.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from suanwang.domain.errors import Unauthenticated
from suanwang.domain.tenancy import Principal
from suanwang.gateway.errors import unauthenticated
from suanwang.ports import Clock
from suanwang.services.tenancy import KEY_SHAPE

MAX_AUTHORIZATION_BYTES = 8192
K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values by key for ``ttl_s`` seconds; concurrent loads of one key share one call."""

    def __init__(self, clock: Clock, ttl_s: float, max_entries: int = 100_000) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._max = max_entries
        self._values: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        now = self._clock.now()
        hit = self._values.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here; waiters re-raise it
            raise
        finally:
            del self._loading[key]
        if len(self._values) >= self._max:
            self._values.clear()
        self._values[key] = (self._clock.now() + self._ttl_s, value)
        future.set_result(value)
        return value


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str:
    """The key in the raw ``Authorization`` header, or a 401 GatewayError."""
    raw = next((v for k, v in headers if k == b"authorization"), None)
    if raw is None or len(raw) > MAX_AUTHORIZATION_BYTES:
        raise unauthenticated()
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise unauthenticated() from None
    scheme, _, token = text.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or KEY_SHAPE.match(token) is None:
        raise unauthenticated()
    return token


class KeyAuthenticator:
    """``Tenancy.authenticate`` (a blocking database read) behind a :class:`TtlCache`."""

    def __init__(
        self, authenticate: Callable[[str], Principal], clock: Clock, ttl_s: float = 1.0
    ) -> None:
        self._authenticate = authenticate
        self._cache: TtlCache[str, Principal] = TtlCache(clock, ttl_s)

    async def principal(self, headers: list[tuple[bytes, bytes]]) -> Principal:
        token = bearer_token(headers)
        digest = hashlib.sha256(token.encode()).hexdigest()

        async def load() -> Principal:
            try:
                return await asyncio.to_thread(self._authenticate, token)
            except Unauthenticated:
                raise unauthenticated() from None

        return await self._cache.get(digest, load)
