"""A token bucket for bandwidth caps (per transfer and per link), thread-safe.

``take(n)`` returns how long the caller must wait before sending ``n`` bytes; the bytes are
reserved at once, so concurrent streams share the rate fairly in arrival order. The clock is
injected so the unit tests drive it by hand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``rate_bytes_per_s`` sustained, bursts up to ``burst_bytes``; rate 0 means no cap."""

    def __init__(
        self,
        rate_bytes_per_s: float,
        burst_bytes: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_bytes_per_s < 0:
            raise ValueError("rate_bytes_per_s must be >= 0")
        self.rate_bytes_per_s = rate_bytes_per_s
        self.burst_bytes = burst_bytes if burst_bytes is not None else rate_bytes_per_s / 10
        self._clock = clock
        self._tokens = self.burst_bytes
        self._last = clock()
        self._lock = threading.Lock()

    def take(self, n: int) -> float:
        """Reserve ``n`` bytes; the seconds to wait before sending them (0 when within budget)."""
        if self.rate_bytes_per_s == 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(
                self.burst_bytes, self._tokens + (now - self._last) * self.rate_bytes_per_s
            )
            self._last = now
            self._tokens -= n
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate_bytes_per_s


def throttle(
    buckets: list[TokenBucket], n: int, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Wait until every bucket allows ``n`` bytes."""
    wait = max((b.take(n) for b in buckets), default=0.0)
    if wait > 0:
        sleep(wait)
