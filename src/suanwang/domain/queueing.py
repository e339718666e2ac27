"""A replica's latency under load, from a queueing model: sizing a deployment for its SLO.

A deployment's replicas are ``servers`` slots (llama-server's ``--parallel``), each
answering ``slot_rps`` requests a second when busy. Requests arriving at ``λ`` a second
wait for a free slot as in M/M/c: an arrival waits with Erlang C's probability ``C``, and
longer than ``t`` with ``C · exp(-(cμ - λ) t)``. A request's time to first token is its
wait plus the replica's own first-token time, so the share of requests that miss a p95
target ``T`` is::

    miss = C · exp(-(cμ - λ) · (T - first_token))        (0 < λ < cμ)

:func:`capacity_for_slo` inverts that: the fewest replicas (of a given learned weight)
whose predicted miss share stays within a planned share. The same model is the
simulator's serving model (:mod:`suanwang.simulator.serving`), which adds a backlog for
overload; the autoscaler's inputs are the replicas' own measurements
(:class:`ServiceModel`) and the measured arrival rate, not the simulator's truth.

Why a model and not a ratio: the utilisation a latency SLO allows grows with the number of
slots (pooling). For the serving benchmark's replica (8 slots, 3.96 requests/s when all are
busy, 17 ms to first token), a p95 of 0.5 s holds up to 57 % busy on one replica, 82 % on
4, 92 % on 12 and 95 % on 20; a fixed tokens/s target per replica (HPA's rule) over-
provisions at peak and under-provisions at night (tests/unit/test_queueing.py).

Pure arithmetic; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from suanwang.domain.errors import ValidationError

PLANNED_MISS_SHARE = 0.03
"""The share of requests over the target a sizing plans for: 3 % of the p95's 5 %, the
other 2 points left for the model's error and the time a new replica takes to serve
(chosen on the tuning seed of ``benchmarks/train_infer_pool.py`` among 1, 3 and 5 %)."""


def erlang_c(servers: int, load: float) -> float:
    """Probability an arrival waits in M/M/c with ``servers`` and offered ``load`` (λ/μ).

    Computed from the Erlang B recursion (stable for hundreds of servers); 1.0 when
    ``load >= servers``.
    """
    if load <= 0:
        return 0.0
    if load >= servers:
        return 1.0
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = load * blocking / (k + load * blocking)
    rho = load / servers
    return blocking / (1 - rho + rho * blocking)


@dataclass(frozen=True, slots=True)
class ServiceModel:
    """One reference replica as its measurements describe it.

    ``slots``: requests it serves at once; ``slot_rps``: requests a busy slot completes a
    second; ``first_token_s``: its time to first token when a slot is free. A replica of
    weight ``w`` has ``w`` times the slots' speed and ``1 / w`` times the first-token time.
    """

    slots: int
    slot_rps: float
    first_token_s: float

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValidationError(f"slots must be >= 1, not {self.slots}", field="slots")
        for name in ("slot_rps", "first_token_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValidationError(
                    f"{name} must be a finite number > 0, not {value}", field=name
                )


def predicted_miss(
    model: ServiceModel, weights_total: float, replicas: int, rate_rps: float, target_s: float
) -> float:
    """Share of requests whose time to first token exceeds ``target_s``, in steady state,
    on ``replicas`` replicas of total weight ``weights_total`` at ``rate_rps``."""
    if rate_rps <= 0:
        return 0.0
    servers = math.floor(model.slots * weights_total)
    if replicas < 1 or servers < 1:
        return 1.0
    service = servers * model.slot_rps
    first_token = model.first_token_s * replicas / weights_total
    allowed = target_s - first_token
    if rate_rps >= service or allowed <= 0:
        return 1.0
    waiting = erlang_c(servers, rate_rps / model.slot_rps)
    return min(1.0, waiting * math.exp(-(service - rate_rps) * allowed))


def replicas_for_slo(
    model: ServiceModel,
    rate_rps: float,
    target_s: float,
    *,
    weight: float = 1.0,
    most: int,
    miss_share: float = PLANNED_MISS_SHARE,
) -> int:
    """The fewest replicas of ``weight`` whose predicted miss share at ``rate_rps`` is at
    most ``miss_share`` (``most`` when even that many cannot; 0 when nothing arrives)."""
    if rate_rps <= 0:
        return 0
    low = max(1, math.floor(rate_rps / (model.slot_rps * model.slots * weight)))
    for count in range(low, most + 1):
        if predicted_miss(model, weight * count, count, rate_rps, target_s) <= miss_share:
            return count
    return most
