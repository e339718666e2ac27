"""Live demand of deployments as gateways report it, and what the control plane reads from it.

Every gateway process reports, about once a second, one :class:`DemandReport` per deployment
it knows: requests in flight (per replica too), requests waiting (for a cold start), tokens
per second and p95 time to first token over a short window, the last request's time and when
it last loaded the replica list (``routed_at``). The control plane sums the *fresh* reports
(:func:`total_demand`; a gateway silent for :data:`STALE_AFTER_S` is dead or stuck and left
out) into the policy's :class:`~suanwang.domain.autoscaling.Demand`, and asks
:func:`drained` whether a replica taken out of routing has finished its requests.

Pure: no I/O, times passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from suanwang.domain.autoscaling import Demand
from suanwang.domain.queueing import ServiceModel

STALE_AFTER_S = 5.0
"""A gateway whose last report is older than this is ignored (it reports every ~1 s)."""
ROUTING_MARGIN_S = 1.0
"""A gateway has seen a replica leave routing once its replica list was loaded this long
after the replica started draining (covers a load that began before the change committed)."""
DRAIN_TIMEOUT_S = 600.0
"""A draining replica is stopped after this even with requests left (the gateway's longest
request, ``GatewayConfig.max_request_s``)."""


@dataclass(frozen=True, slots=True)
class DemandReport:
    """One gateway process's view of one deployment at ``at``."""

    gateway: str
    deployment: str
    at: float
    inflight: int
    queued: int
    tokens_per_s: float
    ttft_p95_s: float | None
    last_request_at: float | None
    routed_at: float
    """When this gateway last loaded the replica list it routes with."""
    replica_inflight: tuple[tuple[str, int], ...] = ()
    """Requests in flight per replica id (replicas with none are left out)."""
    requests_per_s: float = 0.0
    """Requests that arrived (were routed to a replica) a second, over a short window."""
    service_s: float | None = None
    """Mean time a replica spent on an answer (arrival at the replica to the last byte), of
    answers that ended in the window; ``None`` without any."""
    first_token_s: float | None = None
    """Time to first token that needed no wait: the 10th percentile of the window's."""


def fresh(reports: Sequence[DemandReport], now: float) -> list[DemandReport]:
    """The reports of gateways that are still reporting."""
    return [r for r in reports if now - r.at <= STALE_AFTER_S]


def total_demand(deployment: str, reports: Sequence[DemandReport], now: float) -> Demand:
    """The deployment's demand summed over the fresh reports of every gateway.

    Counts and rates add up; the p95 time to first token is the worst gateway's (a
    conservative stand-in for the p95 of the union); the last request is the latest."""
    mine = [r for r in fresh(reports, now) if r.deployment == deployment]
    ttfts = [r.ttft_p95_s for r in mine if r.ttft_p95_s is not None]
    lasts = [r.last_request_at for r in mine if r.last_request_at is not None]
    return Demand(
        at=now,
        inflight=float(sum(r.inflight for r in mine)),
        queued=float(sum(r.queued for r in mine)),
        tokens_per_s=sum(r.tokens_per_s for r in mine),
        ttft_p95_s=max(ttfts) if ttfts else None,
        last_request_at=max(lasts) if lasts else None,
        requests_per_s=sum(r.requests_per_s for r in mine),
    )


def measured_service(
    deployment: str, reports: Sequence[DemandReport], now: float, slots: int
) -> ServiceModel | None:
    """A replica of ``deployment`` as the gateways measured it, for SLO sizing: ``slots``
    requests at once (the engine's setting), each taking the answers' mean service time
    (weighted by each gateway's arrival rate), the lowest gateway's no-wait first token.
    ``None`` until some gateway has seen an answer end."""
    mine = [r for r in fresh(reports, now) if r.deployment == deployment]
    timed = [r for r in mine if r.service_s is not None and r.service_s > 0]
    firsts = [r.first_token_s for r in mine if r.first_token_s is not None and r.first_token_s > 0]
    if not timed or not firsts:
        return None
    weights = [max(r.requests_per_s, 1e-9) for r in timed]
    service_s = sum(w * (r.service_s or 0.0) for w, r in zip(weights, timed, strict=True))
    service_s /= sum(weights)
    return ServiceModel(slots=slots, slot_rps=1 / service_s, first_token_s=min(firsts))


def replica_inflight(replica: str, reports: Sequence[DemandReport], now: float) -> int:
    """Requests in flight on ``replica`` over every fresh gateway."""
    return sum(n for r in fresh(reports, now) for rid, n in r.replica_inflight if rid == replica)


def drained(
    replica: str, draining_since: float, reports: Sequence[DemandReport], now: float
) -> bool:
    """Whether a replica draining since ``draining_since`` may be stopped now.

    Yes once every live gateway has reloaded its replica list after the drain began (so none
    picks it for a new request) and none has a request in flight on it; or once
    :data:`DRAIN_TIMEOUT_S` has passed. With no live gateway nobody routes to it: yes."""
    if now - draining_since >= DRAIN_TIMEOUT_S:
        return True
    live = fresh(reports, now)
    if any(r.routed_at < draining_since + ROUTING_MARGIN_S for r in live):
        return False
    return replica_inflight(replica, live, now) == 0
