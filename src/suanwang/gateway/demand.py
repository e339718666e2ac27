"""What this gateway process sees of each deployment's demand, reported to the control plane.

The :class:`DemandTracker` is told about requests as they happen (cheap: a dictionary update
and an append per request) and, about once a second, :meth:`DemandTracker.reports` turns
that into one :class:`~suanwang.domain.demand.DemandReport` per deployment, which the app's
reporter task hands to the :class:`~suanwang.ports.DemandSink` off the event loop. In-flight
counts come from the router's leases (:meth:`Router.inflight`), which live as long as the
request, even after its replica left the routing table (a replica being drained).

- *queued*: requests waiting for a replica of a deployment to become ready (cold start);
- *tokens/s*: completion tokens of answers that ended in the last :data:`RATE_WINDOW_S`;
- *p95 TTFT*: of answers that ended in the last :data:`TTFT_WINDOW_S`: time from the
  request's arrival to the first streamed event, or to the whole answer when not streamed;
- *requests/s*: requests routed to a replica in the last :data:`RATE_WINDOW_S`;
- *no-wait first token* and *service time*, of answers that ended in the last
  :data:`TTFT_WINDOW_S` (what the ``slo_ttft_p95_s`` autoscaling target models a replica
  with, :mod:`suanwang.domain.queueing`): the 10th percentile TTFT, and the mean time a slot
  spent on an answer: a streamed answer's time less its wait for a slot (its TTFT above the
  no-wait one), an answer not streamed its whole time (wait included: an overestimate).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from suanwang.domain.demand import DemandReport
from suanwang.ports import Clock

RATE_WINDOW_S = 10.0
TTFT_WINDOW_S = 30.0
MAX_SAMPLES = 4096
"""Samples kept per deployment and window (older ones are dropped first)."""


@dataclass(slots=True)
class _Seen:
    """One deployment's recent answers as this process saw them."""

    tokens: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    ttfts: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    durations: deque[tuple[float, float, float | None]] = field(
        default_factory=lambda: deque(maxlen=MAX_SAMPLES)
    )
    """(ended at, answer time, its TTFT when streamed)."""
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    queued: int = 0
    last_request_at: float | None = None


class DemandTracker:
    """Per-deployment demand of this process (one event loop: no locks needed)."""

    def __init__(self, clock: Clock, gateway: str) -> None:
        self._clock = clock
        self.gateway = gateway
        self._seen: dict[str, _Seen] = {}

    def _of(self, deployment: str) -> _Seen:
        seen = self._seen.get(deployment)
        if seen is None:
            seen = self._seen[deployment] = _Seen()
        return seen

    def arrived(self, deployment: str) -> None:
        """A request for ``deployment`` arrived (or was routed to one of its replicas)."""
        seen = self._of(deployment)
        seen.last_request_at = now = self._clock.now()
        seen.arrivals.append(now)

    @contextmanager
    def waiting(self, deployments: Iterable[str]) -> Iterator[None]:
        """Count one request queued on each of ``deployments`` while the block runs."""
        seen = [self._of(d) for d in deployments]
        now = self._clock.now()
        for s in seen:
            s.queued += 1
            s.last_request_at = now
        try:
            yield
        finally:
            for s in seen:
                s.queued -= 1

    def answered(
        self,
        deployment: str,
        completion_tokens: int,
        ttft_s: float,
        duration_s: float,
        *,
        streamed: bool,
    ) -> None:
        """An answer of ``deployment`` ended: its completion tokens, time to first token
        (the whole answer's when not streamed) and time from arrival to its end."""
        seen = self._of(deployment)
        now = self._clock.now()
        seen.tokens.append((now, completion_tokens))
        seen.ttfts.append((now, ttft_s))
        seen.durations.append((now, duration_s, ttft_s if streamed else None))

    def reports(
        self, known: Iterable[str], inflight: dict[str, dict[str, int]], routed_at: float
    ) -> list[DemandReport]:
        """One report per deployment in ``known`` or seen recently.

        ``inflight``: requests in flight by deployment, then replica (from the router)."""
        now = self._clock.now()
        out = []
        known = set(known)
        for deployment in sorted({*known, *self._seen, *inflight}):
            seen = self._of(deployment)
            _trim(seen, now)
            replicas = inflight.get(deployment, {})
            first_token = _percentile([t for _, t in seen.ttfts], 0.10)
            if deployment not in known and not (replicas or seen.queued or seen.tokens):
                del self._seen[deployment]  # gone from the directory and quiet: forget it
                continue
            out.append(
                DemandReport(
                    gateway=self.gateway,
                    deployment=deployment,
                    at=now,
                    inflight=sum(replicas.values()),
                    queued=seen.queued,
                    tokens_per_s=sum(n for _, n in seen.tokens) / RATE_WINDOW_S,
                    ttft_p95_s=_p95([t for _, t in seen.ttfts]),
                    last_request_at=seen.last_request_at,
                    routed_at=routed_at,
                    replica_inflight=tuple(sorted((r, n) for r, n in replicas.items() if n)),
                    requests_per_s=len(seen.arrivals) / RATE_WINDOW_S,
                    service_s=_service_s(seen, first_token),
                    first_token_s=first_token,
                )
            )
        return out


def _trim(seen: _Seen, now: float) -> None:
    while seen.tokens and now - seen.tokens[0][0] > RATE_WINDOW_S:
        seen.tokens.popleft()
    while seen.ttfts and now - seen.ttfts[0][0] > TTFT_WINDOW_S:
        seen.ttfts.popleft()
    while seen.durations and now - seen.durations[0][0] > TTFT_WINDOW_S:
        seen.durations.popleft()
    while seen.arrivals and now - seen.arrivals[0] > RATE_WINDOW_S:
        seen.arrivals.popleft()


def _p95(values: list[float]) -> float | None:
    """The nearest-rank 95th percentile (None for no values)."""
    return _percentile(values, 0.95)


def _percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile ``share`` (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _service_s(seen: _Seen, first_token: float | None) -> float | None:
    """Mean slot time per answer: a streamed one's time less its wait for a slot."""
    if not seen.durations or first_token is None:
        return None
    busy = [
        d if ttft is None else max(d - max(ttft - first_token, 0.0), first_token)
        for _, d, ttft in seen.durations
    ]
    return sum(busy) / len(busy)
