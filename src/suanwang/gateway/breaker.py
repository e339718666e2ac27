"""A circuit breaker per replica: what counts as the engine failing, and for how long a
failing replica is left out.

Closed: requests flow; engine failures in a row are counted and any answer that proves the
engine alive (a 2xx, or a 4xx refusal of the caller's request) resets the count. After
``threshold`` failures in a row the breaker opens: the router leaves the replica out for
``open_s``, doubled at each opening in a row up to ``max_open_s``. Then it is half-open:
one trial request at a time goes through; its success closes the breaker, its failure
opens it again for the next, longer period. A trial that ends neither way (a client that
left, a read timeout on a working engine) frees the trial for the next request.

Failures are only what the engine is responsible for: connection refused or reset before
an answer, a connect timeout, a protocol error before an answer, a 5xx other than 503
(see :func:`suanwang.gateway.upstream.classify`). Not failures: any 4xx, a 503 or 429
(busy or loading: another replica is tried, the breaker does not move), a read timeout
while the engine works on a request (a long prefill), an engine error on one request.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

THRESHOLD = 3
OPEN_S = 5.0
MAX_OPEN_S = 60.0


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class Breaker:
    """The breaker of one replica (times are the router's clock, in seconds)."""

    threshold: int = THRESHOLD
    open_s: float = OPEN_S
    max_open_s: float = MAX_OPEN_S
    failures: int = 0
    """Engine failures in a row."""
    openings: int = 0
    """Openings in a row (reset when a request succeeds)."""
    open_until: float = 0.0
    trial: bool = False
    """A half-open trial request is in flight."""

    def state(self, now: float) -> BreakerState:
        if self.openings == 0:
            return BreakerState.CLOSED
        return BreakerState.OPEN if now < self.open_until else BreakerState.HALF_OPEN

    def admits(self, now: float) -> bool:
        """Whether a request may be sent now."""
        state = self.state(now)
        return state is BreakerState.CLOSED or (state is BreakerState.HALF_OPEN and not self.trial)

    def begin(self, now: float) -> bool:
        """A request is sent; True if it is the half-open trial (call :meth:`end_trial`)."""
        if self.state(now) is BreakerState.HALF_OPEN and not self.trial:
            self.trial = True
            return True
        return False

    def end_trial(self) -> None:
        self.trial = False

    def succeeded(self) -> None:
        """The engine answered (2xx or a 4xx about the request): closed."""
        self.failures = self.openings = 0
        self.trial = False

    def failed(self, now: float) -> bool:
        """An engine failure; True if the breaker opened because of it."""
        self.failures += 1
        half_open = self.state(now) is BreakerState.HALF_OPEN
        if not half_open and self.failures < self.threshold:
            return False
        self.openings += 1
        period = min(self.max_open_s, self.open_s * 2 ** (self.openings - 1))
        self.open_until = now + period
        self.failures = 0
        self.trial = False
        return True
