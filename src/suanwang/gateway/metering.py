"""Metering: exactly one usage record per authenticated request, whatever happens.

:class:`RequestMeter` is created once a key is authenticated and closed exactly once (a
second close is a no-op): it settles the quota reservation and writes one
:class:`~suanwang.domain.usage.TokenUsage` whose ``entry_id`` is the request id (the ledger
is idempotent on it, so a retried write cannot double-bill).

Which tokens are billed (:func:`trusted_usage`): the engine's reported usage when it is
plausible, i.e. ``0 < prompt <= prompt bound`` and ``0 <= completion <= max_tokens`` (and
not zero while content was delivered); otherwise the gateway's own count (content chunks
seen, one token each as llama.cpp streams them, or the engine tokenizer) and a log line.
Billed tokens never exceed the reservation, so quotas cannot overshoot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from suanwang.domain.limits import Reservation
from suanwang.domain.serving import ReplicaView
from suanwang.domain.usage import Outcome, TokenUsage
from suanwang.gateway.demand import DemandTracker
from suanwang.gateway.metrics import GatewayMetrics
from suanwang.gateway.schema import Call
from suanwang.ports import Clock, Limiter, UsageSink

log = structlog.get_logger("suanwang.gateway")


def estimate_tokens(text: str) -> int:
    """A rough token count (4 bytes a token) when nothing better is known."""
    return max(1, math.ceil(len(text.encode()) / 4))


def trusted_usage(
    reported: Any, call: Call, counted_completion: int, own_prompt: int
) -> tuple[int, int]:
    """(prompt, completion) tokens to bill: the engine's usage if plausible, else our count."""
    usage = reported if isinstance(reported, Mapping) else {}
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens", 0 if call.max_completion == 0 else None)
    own_completion = min(counted_completion, call.max_completion)
    prompt_ok = type(prompt) is int and 0 < prompt <= call.prompt_bound
    completion_ok = (
        type(completion) is int
        and 0 <= completion <= call.max_completion
        and (completion > 0 or counted_completion == 0)
    )
    if reported is not None and not (prompt_ok and completion_ok):
        log.warning(
            "implausible upstream usage: counting tokens ourselves",
            model=call.model,
            reported={k: usage.get(k) for k in ("prompt_tokens", "completion_tokens")},
        )
    billed_prompt = prompt if prompt_ok and type(prompt) is int else own_prompt
    billed_completion = completion if completion_ok and type(completion) is int else own_completion
    return min(billed_prompt, call.prompt_bound), billed_completion


@dataclass(slots=True)
class RequestMeter:
    """The usage record of one request, written once by :meth:`close`.

    Who fills what: the app sets ``model`` and ``reservation`` as it checks the call, the
    proxy reports the replica that answered (:meth:`routed`) and whether the answer was
    streamed; :meth:`close` adds the status, outcome and tokens and writes the record.
    """

    sink: UsageSink
    limiter: Limiter
    clock: Clock
    request_id: str
    tenant: str
    key_id: str
    endpoint: str
    started_at: float
    model: str = ""
    reservation: Reservation | None = None
    deployment: str | None = None
    replica: str | None = None
    streamed: bool = False
    closed: bool = False
    metrics: GatewayMetrics | None = None
    demand: DemandTracker | None = None
    first_event_at: float | None = None
    """When a streamed answer's first event arrived (its time to first token)."""
    source: str = ""
    """What made the request, if not the caller directly: ``app:<name>@<version>``."""

    def routed(self, replica: ReplicaView) -> None:
        """Record the replica (and its deployment) that is answering the request."""
        self.deployment = replica.deployment_id
        self.replica = replica.replica_id
        if self.demand is not None:
            self.demand.arrived(replica.deployment_id)

    async def close(
        self, status: int, outcome: Outcome, prompt_tokens: int = 0, completion_tokens: int = 0
    ) -> None:
        """Settle the reservation and record usage; later calls do nothing."""
        if self.closed:
            return
        self.closed = True
        prompt, completion = max(0, prompt_tokens), max(0, completion_tokens)
        if self.reservation is not None:
            cap = self.reservation.tokens
            prompt = min(prompt, cap)
            completion = min(completion, cap - prompt)
            await self.limiter.settle(self.reservation, prompt + completion)
        if self.metrics is not None:
            self.metrics.billed(self.model, prompt, completion)
        ended = self.clock.now()
        if self.demand is not None and self.deployment is not None and status == 200:
            first = self.first_event_at or ended  # not streamed: the whole answer at once
            self.demand.answered(
                self.deployment,
                completion,
                first - self.started_at,
                ended - self.started_at,
                streamed=self.first_event_at is not None,
            )
        await self.sink.record(
            TokenUsage(
                entry_id=self.request_id,
                tenant=self.tenant,
                key_id=self.key_id,
                model=self.model,
                endpoint=self.endpoint,
                prompt_tokens=prompt,
                completion_tokens=completion,
                status=status,
                outcome=outcome,
                started_at=self.started_at,
                ended_at=ended,
                latency_ms=round((ended - self.started_at) * 1000, 3),
                deployment=self.deployment,
                replica=self.replica,
                streamed=self.streamed,
                source=self.source,
            )
        )
