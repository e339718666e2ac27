"""How a deployment's replicas serve a stream of requests, interval by interval.

A :class:`ReferenceReplica` is one replica on the reference chip as the serving benchmark
measured it (``benchmarks/results/serving.json``: slots, throughput with every slot busy,
time to first token when idle, tokens per request). A replica on another chip is the
reference scaled by its speed ``w``: its slots serve ``w`` times as fast and its first
token comes ``1 / w`` times as late.

:func:`serve` advances a deployment over one interval at a constant arrival rate. The
replicas together are ``c = slots × Σw`` reference slots (rounded down) of rate
``μ = max_rps / slots`` each. While arrivals stay below ``c·μ`` and nothing is backed up,
waiting for a slot follows M/M/c (Erlang C): ``P(wait > t) = C · exp(-(cμ - λ) t)``. Past
``c·μ`` a backlog builds as a fluid, ``(λ - cμ)`` requests a second, and drains at
``(cμ - λ)``; a request arriving behind a backlog ``B`` waits ``B / cμ``, at most
:data:`MAX_WAIT_S` (the backlog is capped there: the gateway turns the rest away). A request misses
the latency target when its wait plus the first-token time exceeds it; the interval's
p95 holds when at most 5 % of its requests miss it. Pure arithmetic: no randomness here
(arrivals are drawn in :mod:`suanwang.simulator.demand`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from suanwang.domain.queueing import erlang_c

__all__ = ["MAX_WAIT_S", "P95_MISS", "Interval", "ReferenceReplica", "erlang_c", "serve"]

P95_MISS = 0.05
MAX_WAIT_S = 60.0
"""A request waits at most this long for a slot; past it the gateway gives up on it (503
with Retry-After): the backlog never holds more than this many seconds of service."""


@dataclass(frozen=True, slots=True)
class ReferenceReplica:
    """One replica on the reference chip, as measured."""

    slots: int
    max_rps: float
    """Requests per second with every slot busy."""
    first_token_s: float
    """Time to first token on an idle replica."""
    tokens_per_request: int

    @property
    def slot_rps(self) -> float:
        """Requests per second one busy slot completes."""
        return self.max_rps / self.slots

    @property
    def max_tokens_per_s(self) -> float:
        """Output tokens per second with every slot busy."""
        return self.max_rps * self.tokens_per_request


@dataclass(frozen=True, slots=True)
class Interval:
    """What one interval looked like to the deployment and its users."""

    arrivals_rps: float
    miss_share: float
    """Share of the interval's requests whose time to first token exceeded the target."""
    p95_ttft_s: float | None
    inflight: float
    """Requests in service, in reference-slot equivalents."""
    queued: float
    backlog: float
    """Requests backed up at the end of the interval (carried to the next)."""


def serve(
    replica: ReferenceReplica,
    weights: Sequence[float],
    rate_rps: float,
    backlog: float,
    dt_s: float,
    ttft_target_s: float,
) -> Interval:
    """One interval of ``dt_s`` at ``rate_rps`` on replicas of true speeds ``weights``."""
    capacity_w = sum(weights)
    servers = math.floor(replica.slots * capacity_w)
    if servers < 1:
        queued = min(backlog + rate_rps * dt_s, rate_rps * MAX_WAIT_S)
        miss = 1.0 if rate_rps > 0 or backlog > 0 else 0.0
        return Interval(rate_rps, miss, None, 0.0, queued, queued)
    mu = replica.slot_rps
    service = servers * mu
    first_token = replica.first_token_s * len(weights) / capacity_w
    allowed_wait = ttft_target_s - first_token
    end = min(max(0.0, backlog + (rate_rps - service) * dt_s), MAX_WAIT_S * service)
    backed = _share_backed_up(backlog, end, allowed_wait * service)
    tail = 0.0
    if rate_rps < service:
        tail = erlang_c(servers, rate_rps / mu) * math.exp(-(service - rate_rps) * allowed_wait)
    clear = _share_clear(backlog, dt_s, rate_rps, service)
    miss = 1.0 if allowed_wait <= 0 and rate_rps > 0 else min(1.0, backed + clear * tail)
    inflight = min(rate_rps / mu, float(servers))
    queued = (end + backlog) / 2 + _mean_queue(servers, rate_rps, mu)
    p95 = _p95_wait(servers, rate_rps, mu, end) + first_token
    return Interval(rate_rps, miss, p95, inflight, queued, end)


def _share_backed_up(start: float, end: float, limit: float) -> float:
    """Share of the interval during which the backlog (linear from ``start`` to ``end``)
    exceeds ``limit`` requests."""
    if limit <= 0:
        return 1.0 if max(start, end) > 0 else 0.0
    if start <= limit and end <= limit:
        return 0.0
    if start > limit and end > limit:
        return 1.0
    crossing = (limit - start) / (end - start)
    return 1 - crossing if end > limit else crossing


def _share_clear(start: float, dt_s: float, rate: float, service: float) -> float:
    """Share of the interval with no backlog (Erlang C applies then)."""
    if rate >= service:
        return 0.0 if start > 0 or rate > service else 1.0
    if start <= 0:
        return 1.0
    drained_after_s = start / (service - rate)
    return max(0.0, 1 - drained_after_s / dt_s) if dt_s > 0 else 0.0


def _mean_queue(servers: int, rate: float, mu: float) -> float:
    """M/M/c mean number waiting (0 when saturated: the backlog counts those)."""
    load = rate / mu
    if load >= servers or rate <= 0:
        return 0.0
    rho = load / servers
    return erlang_c(servers, load) * rho / (1 - rho)


def _p95_wait(servers: int, rate: float, mu: float, backlog: float) -> float:
    """95th percentile wait for a slot: behind the backlog, else Erlang C's tail."""
    service = servers * mu
    if backlog > 0 or rate >= service:
        return backlog / service
    waiting = erlang_c(servers, rate / mu)
    if waiting <= P95_MISS:
        return 0.0
    return math.log(waiting / P95_MISS) / (service - rate)
