"""Demand-driven autoscaling of a deployment's replicas: the pure policy.

:func:`decide` takes a deployment's :class:`AutoscaleSpec`, the replicas it has now (each
counted by its :class:`ReplicaCapacity` weight, so a replica on a slow chip counts for
less), the :class:`Demand` summed over all gateways and the :class:`ScaleMemory` carried
from the previous decision, and returns a :class:`ScaleDecision`: how many replicas to
have, one line saying why, and the memory for next time. The rules follow Kubernetes'
HorizontalPodAutoscaler (desired = current × metric / target, a tolerance band, a
scale-down stabilisation window), KEDA (scale to zero after an idle period, one replica as
soon as a request waits) and Knative's KPA (a concurrency target per replica, and a
"panic" scale-up past the cooldown when demand is twice the capacity). docs/autoscaling.md
("Policy") states them with sources.

Not here: reading gateway metrics, placing or draining replicas (services), choosing a
chip for a new replica (:mod:`suanwang.domain.slo_placement`), or persisting the memory. No
I/O; every time is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

from suanwang.domain.errors import ValidationError
from suanwang.domain.queueing import ServiceModel, replicas_for_slo
from suanwang.domain.serving import MAX_REPLICAS

PANIC_RATIO = 2.0
"""Desired capacity at least this many times the current one scales up within the
up-cooldown (Knative KPA's default panic threshold is 200 %)."""


def _check_non_negative(value: float, field: str) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValidationError(f"{field} must be a finite number >= 0, not {value}", field=field)


@dataclass(frozen=True, slots=True)
class ScalingTarget:
    """What one reference replica should carry; exactly one field is set.

    ``inflight_per_replica``: queued + in-flight requests per replica (KEDA/Knative
    concurrency); ``tokens_per_s_per_replica``: generated tokens per second per replica;
    ``ttft_p95_s``: a latency SLO, the p95 time to the first token, followed by the
    measured p95 (HPA's ratio rule); ``slo_ttft_p95_s``: the same SLO met by sizing, the
    fewest replicas a queueing model of the replicas' own measurements predicts meet it
    at the measured arrival rate (:mod:`~suanwang.domain.queueing`; the ratio rule when
    the rate or the measurements are missing).
    """

    inflight_per_replica: float | None = None
    tokens_per_s_per_replica: float | None = None
    ttft_p95_s: float | None = None
    slo_ttft_p95_s: float | None = None

    def __post_init__(self) -> None:
        given = [f.name for f in fields(self) if getattr(self, f.name) is not None]
        if len(given) != 1:
            raise ValidationError(
                f"a scaling target sets exactly one of its fields, not {len(given)}",
                field="target",
                hint="one of inflight_per_replica, tokens_per_s_per_replica, ttft_p95_s, "
                "slo_ttft_p95_s",
            )
        value = getattr(self, given[0])
        if not (math.isfinite(value) and value > 0):
            raise ValidationError(
                f"{given[0]} must be a finite number > 0, not {value}", field=f"target.{given[0]}"
            )

    @property
    def label(self) -> str:
        """The target in words, for reasons: ``"2 inflight/replica"``."""
        if self.inflight_per_replica is not None:
            return f"{self.inflight_per_replica:g} inflight/replica"
        if self.tokens_per_s_per_replica is not None:
            return f"{self.tokens_per_s_per_replica:g} tokens/s/replica"
        if self.ttft_p95_s is not None:
            return f"p95 ttft {self.ttft_p95_s:g} s"
        return f"p95 ttft {self.slo_ttft_p95_s:g} s (sized by queueing model)"

    @property
    def latency_s(self) -> float | None:
        """The p95 time-to-first-token target, whichever latency field sets it."""
        return self.ttft_p95_s if self.ttft_p95_s is not None else self.slo_ttft_p95_s


@dataclass(frozen=True, slots=True)
class AutoscaleSpec:
    """A deployment's autoscaling settings.

    ``scale_down_cooldown_s`` is also the scale-down stabilisation window: a scale-down
    goes to the largest recommendation made within it (HPA's default is 300 s).
    ``idle_to_zero_s`` only matters when ``min_replicas`` is 0. ``tolerance`` is the
    hysteresis band: no change while desired / current capacity is within 1 ± tolerance.
    """

    min_replicas: int
    max_replicas: int
    target: ScalingTarget
    scale_up_cooldown_s: float = 30.0
    scale_down_cooldown_s: float = 300.0
    idle_to_zero_s: float = 600.0
    tolerance: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas <= MAX_REPLICAS:
            raise ValidationError(
                f"replicas must satisfy 0 <= min ({self.min_replicas}) <= max "
                f"({self.max_replicas}) <= {MAX_REPLICAS}",
                field="min_replicas" if self.min_replicas < 0 else "max_replicas",
                hint="min_replicas 0 lets an idle deployment scale to zero",
            )
        _check_non_negative(self.scale_up_cooldown_s, "scale_up_cooldown_s")
        _check_non_negative(self.scale_down_cooldown_s, "scale_down_cooldown_s")
        _check_non_negative(self.idle_to_zero_s, "idle_to_zero_s")
        if not 0 <= self.tolerance < 1:
            raise ValidationError(
                f"tolerance must be in [0, 1), not {self.tolerance}",
                field="tolerance",
                hint="0.1 (10 %) is Kubernetes HPA's default",
            )


@dataclass(frozen=True, slots=True)
class Demand:
    """One deployment's demand, summed over all gateways, measured at ``at``.

    ``queued`` includes requests waiting for a cold start. ``ttft_p95_s`` is ``None`` when
    no request finished its first token in the measuring window. ``last_request_at`` is
    when the last request arrived; a caller gives the deployment's creation time until
    the first one, else ``None`` means "never called" and counts as idle.
    """

    at: float
    inflight: float
    queued: float
    tokens_per_s: float
    ttft_p95_s: float | None
    last_request_at: float | None
    requests_per_s: float | None = None
    """Arrival rate (requests a second); ``None`` where the gateways do not report it."""

    def __post_init__(self) -> None:
        if self.requests_per_s is not None:
            _check_non_negative(self.requests_per_s, "requests_per_s")
        _check_non_negative(self.inflight, "inflight")
        _check_non_negative(self.queued, "queued")
        _check_non_negative(self.tokens_per_s, "tokens_per_s")
        if self.ttft_p95_s is not None:
            _check_non_negative(self.ttft_p95_s, "ttft_p95_s")

    @property
    def requests(self) -> float:
        """Requests being answered or waiting."""
        return self.inflight + self.queued


@dataclass(frozen=True, slots=True)
class ReplicaCapacity:
    """What one ready or starting replica counts for.

    ``weight`` is its capacity relative to the deployment's reference chip (1.0 = one
    reference replica), learned from replicas' own measurements.
    """

    chip: str
    weight: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValidationError(
                f"a replica's weight must be a finite number > 0, not {self.weight}",
                field="weight",
            )


@dataclass(frozen=True, slots=True)
class ScaleMemory:
    """Carried between decisions by the caller (persisted by the control plane).

    ``recent`` holds ``(at, recommendation)`` pairs inside the stabilisation window, plus
    the last one before it (which shows the window has been watched for its full length).
    """

    last_up_at: float | None = None
    last_down_at: float | None = None
    recent: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    """How many replicas to have; always ``min_replicas <= replicas <= max_replicas``."""

    replicas: int
    reason: str
    memory: ScaleMemory


def decide(
    spec: AutoscaleSpec,
    current: Sequence[ReplicaCapacity],
    demand: Demand,
    memory: ScaleMemory,
    now: float,
    service: ServiceModel | None = None,
) -> ScaleDecision:
    """The replica count for a deployment now, with the reason and the memory to keep.

    Scale-downs assume the caller drains the lightest replicas first (those on the
    slowest chips); new replicas are assumed to weigh the mean of the current ones.
    ``service`` is a reference replica's measured service model, for the
    ``slo_ttft_p95_s`` target.
    """
    have = len(current)
    wanted, why = _recommend(spec, current, demand, memory, now, service)
    recent = _remember(memory.recent, now, wanted, spec.scale_down_cooldown_s)
    replicas, how = _apply_rules(spec, have, wanted, demand, memory, recent, now)
    replicas = min(max(replicas, spec.min_replicas), spec.max_replicas)
    memory = ScaleMemory(
        last_up_at=now if replicas > have else memory.last_up_at,
        last_down_at=now if replicas < have else memory.last_down_at,
        recent=recent,
    )
    verb = "up" if replicas > have else "down" if replicas < have else "stay"
    return ScaleDecision(replicas, f"{verb} {have} -> {replicas}: {why}; {how}", memory)


def _recommend(
    spec: AutoscaleSpec,
    current: Sequence[ReplicaCapacity],
    demand: Demand,
    memory: ScaleMemory,
    now: float,
    service: ServiceModel | None,
) -> tuple[int, str]:
    """The replica count the demand asks for, within [floor, max], before cooldowns."""
    if _idle_for_zero(spec, demand, memory, now):
        return 0, f"no request for {spec.idle_to_zero_s:g} s"
    floor = max(spec.min_replicas, 1)
    capacity = sum(r.weight for r in current)
    sized = _sized(spec, current, demand, service)
    if not current:
        need = max(_from_zero(spec.target, demand), spec.min_replicas, sized or 0)
        return min(need, spec.max_replicas), f"{demand.requests:g} requests waiting"
    if sized is not None:
        desired: float | None = sized * capacity / len(current)
    else:
        desired = _desired_capacity(spec.target, current, demand)
    if desired is None:
        return min(max(len(current), floor), spec.max_replicas), "no latency measured"
    ratio = desired / capacity
    why = f"needs {desired:.2f} capacity of {capacity:.2f} at {spec.target.label}"
    if sized is not None and sized > len(current):
        count = sized  # the model's fewest; the window below keeps downs from flapping
    elif sized is None and abs(ratio - 1) <= spec.tolerance:
        count = len(current)
    elif desired > capacity:
        mean = capacity / len(current)
        count = len(current) + math.ceil((desired - capacity) / mean - 1e-9)
    else:
        count = _replicas_for(desired, current)
    return min(max(count, floor), spec.max_replicas), why


def _sized(
    spec: AutoscaleSpec,
    current: Sequence[ReplicaCapacity],
    demand: Demand,
    service: ServiceModel | None,
) -> int | None:
    """Replicas of the current mean weight (1.0 with none) the queueing model says meet
    the ``slo_ttft_p95_s`` target at the measured rate; ``None`` when it cannot tell."""
    target = spec.target.slo_ttft_p95_s
    if target is None or service is None or demand.requests_per_s is None:
        return None
    weight = sum(r.weight for r in current) / len(current) if current else 1.0
    return replicas_for_slo(
        service, demand.requests_per_s, target, weight=weight, most=spec.max_replicas
    )


def _idle_for_zero(spec: AutoscaleSpec, demand: Demand, memory: ScaleMemory, now: float) -> bool:
    """Whether the deployment may go to zero: min 0, nothing waiting, idle long enough.

    Idle time counts from the last request, or from the last scale-up if later.
    """
    if spec.min_replicas > 0 or demand.requests > 0:
        return False
    marks = [t for t in (demand.last_request_at, memory.last_up_at) if t is not None]
    return not marks or now - max(marks) >= spec.idle_to_zero_s


def _from_zero(target: ScalingTarget, demand: Demand) -> int:
    """Replicas to start from none (of reference weight); at least one if anything waits."""
    if demand.requests <= 0:
        return 0
    if target.inflight_per_replica is not None:
        return max(1, math.ceil(demand.requests / target.inflight_per_replica - 1e-9))
    return 1


def _desired_capacity(
    target: ScalingTarget, current: Sequence[ReplicaCapacity], demand: Demand
) -> float | None:
    """Capacity (in reference replicas) the demand needs; ``None``: cannot tell.

    Latency target: with p95 time to first token above the target, capacity grows in
    proportion (HPA's rule applied to the latency ratio); below it, one replica (the
    lightest) goes when p95 scaled by the lost capacity would stay under the target,
    i.e. the requests in flight could be served by fewer. No requests at all: the
    capacity need is zero.
    """
    capacity = sum(r.weight for r in current)
    if target.inflight_per_replica is not None:
        return demand.requests / target.inflight_per_replica
    if target.tokens_per_s_per_replica is not None:
        return demand.tokens_per_s / target.tokens_per_s_per_replica
    slo = target.latency_s
    assert slo is not None  # exactly one target is set (checked in ScalingTarget)
    if demand.requests <= 0 and demand.ttft_p95_s is None:
        return 0.0
    if demand.ttft_p95_s is None:
        return None
    if demand.ttft_p95_s > slo:
        return capacity * demand.ttft_p95_s / slo
    lightest = min(r.weight for r in current)
    if len(current) > 1 and demand.ttft_p95_s * capacity / (capacity - lightest) <= slo:
        return capacity - lightest
    return capacity


def _replicas_for(desired: float, current: Sequence[ReplicaCapacity]) -> int:
    """Fewest replicas whose heaviest members together reach ``desired`` capacity."""
    total = 0.0
    for count, weight in enumerate(sorted((r.weight for r in current), reverse=True), 1):
        total += weight
        if total >= desired - 1e-9:
            return count
    return len(current)


def _remember(
    recent: tuple[tuple[float, int], ...], now: float, wanted: int, window_s: float
) -> tuple[tuple[float, int], ...]:
    """Recommendations inside the window, the last one before it, and this one."""
    start = now - window_s
    before = [entry for entry in recent if entry[0] <= start]
    inside = tuple(entry for entry in recent if start < entry[0] <= now)
    return (*before[-1:], *inside, (now, wanted))


def _apply_rules(
    spec: AutoscaleSpec,
    have: int,
    wanted: int,
    demand: Demand,
    memory: ScaleMemory,
    recent: tuple[tuple[float, int], ...],
    now: float,
) -> tuple[int, str]:
    """Cooldowns and the stabilisation window applied to the recommendation."""
    if have < spec.min_replicas or have > spec.max_replicas:
        return wanted, "outside min/max"
    if wanted > have:
        return _scale_up(spec, have, wanted, demand, memory, now)
    if wanted == 0 and have > 0:
        return 0, "idle: to zero"
    if wanted < have:
        return _scale_down(spec, have, memory, recent, now)
    return have, "within tolerance"


def _scale_up(
    spec: AutoscaleSpec, have: int, wanted: int, demand: Demand, memory: ScaleMemory, now: float
) -> tuple[int, str]:
    if have == 0:
        return wanted, "from zero at once"
    if memory.last_up_at is None or now - memory.last_up_at >= spec.scale_up_cooldown_s:
        return wanted, "past up-cooldown"
    if wanted >= PANIC_RATIO * have and demand.requests > 0:
        return wanted, f"panic: {wanted} >= {PANIC_RATIO:g}x {have}"
    left = spec.scale_up_cooldown_s - (now - memory.last_up_at)
    return have, f"up held: cooldown {left:.0f} s left"


def _scale_down(
    spec: AutoscaleSpec,
    have: int,
    memory: ScaleMemory,
    recent: tuple[tuple[float, int], ...],
    now: float,
) -> tuple[int, str]:
    window = spec.scale_down_cooldown_s
    since = [t for t in (memory.last_up_at, memory.last_down_at) if t is not None]
    if since and now - max(since) < window:
        return have, f"down held: scaled {now - max(since):.0f} s ago, cooldown {window:g} s"
    if recent[0][0] > now - window:
        return have, f"down held: watching for the {window:g} s window"
    stable = max(count for _, count in recent)
    if stable >= have:
        return have, f"down held: {stable} recommended within {window:g} s"
    return stable, f"largest recommendation within {window:g} s"
