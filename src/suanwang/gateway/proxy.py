"""Forwarding one validated call to an engine: translation, failover, then a plain or
streamed answer.

Each replica's engine gets the call translated for it (:mod:`.translate`); replicas whose
engine would have to refuse it are left out, and if all would, the caller gets that 400.
Engine answers are classified (:mod:`.engine_errors`): connect errors, protocol errors
before an answer and 5xx answers count against the replica's circuit breaker
(:mod:`.breaker`) and the call is retried on another replica (at most ``max_attempts``);
429/503 (busy, loading) are retried elsewhere without counting; a 4xx is the caller's
error: a 400 with OpenAI's code, never retried, billed 0. A timeout waiting for the first
byte is NOT retried (the engine may be working on it), does not count against the replica,
and answers 504 billed 0: closing the connection cancels the engine's work.

Streams are forwarded as they arrive: the events of each read from the engine go to the
client in one send (:mod:`.sse` counts their tokens by bytes; :mod:`.events` puts tool-call
deltas in OpenAI's shape). Nothing is sent before the engine's first event: a first event
that is an error is a refusal (400, billed 0), like a 4xx. Usage fields are stripped from
forwarded chunks; the gateway bills its trusted usage
(:func:`~.metering.trusted_usage`), records it, then — if the client asked with
``stream_options.include_usage`` — sends it as the last chunk before ``[DONE]``.

Billing of answers that do not complete (docs/gateway.md, Billing rules):

- the client leaves before its answer is complete: the engine request is cancelled and the
  client is billed its prompt plus every completion token received so far (nothing but the
  prompt for a non-streamed answer), as ``client_disconnect`` (499);
- the platform cuts a stream (engine error or connection lost, the engine's stream ending
  without a finish, the gateway's timeout): only the completion tokens delivered are
  billed, no prompt, as ``upstream_error`` (502) or ``timeout`` (504).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, NamedTuple

import httpx

from suanwang.domain.usage import Outcome
from suanwang.gateway.answers import content_tokens_of, has_prompt, merge_choices
from suanwang.gateway.asgi import (
    DisconnectWatch,
    Message,
    Receive,
    Send,
    send_bytes,
    start_stream,
)
from suanwang.gateway.engine_errors import Verdict, classify, error_event, refusal
from suanwang.gateway.errors import GatewayError
from suanwang.gateway.events import (
    StreamEnd,
    Tally,
    ended_without_done,
    forward,
    usage_chunk,
)
from suanwang.gateway.metering import RequestMeter, estimate_tokens, trusted_usage
from suanwang.gateway.metrics import GatewayMetrics
from suanwang.gateway.routing import Router, Slot
from suanwang.gateway.schema import Call
from suanwang.gateway.sse import SseLines
from suanwang.gateway.tool_grammar import as_tool_calls, stream_as_tool_calls
from suanwang.gateway.translate import Routes, routes_for
from suanwang.gateway.upstream import RETRYABLE, UpstreamResponse, Upstreams, finish

BUSY_RETRY_S = 1


class Pumped(NamedTuple):
    """A stream being forwarded: what was counted, the line splitter, the lines read
    before the client's answer started, and the engine's body."""

    tally: Tally
    lines: SseLines
    first: list[bytes]
    pieces: AsyncIterator[bytes]


class Proxy:
    """Sends calls to replicas chosen by the router."""

    def __init__(
        self,
        router: Router,
        upstreams: Upstreams,
        max_attempts: int,
        max_request_s: float,
        metrics: GatewayMetrics,
    ) -> None:
        self._router = router
        self._metrics = metrics
        self._upstreams = upstreams
        self._max_attempts = max_attempts
        self._max_request_s = max_request_s

    @asynccontextmanager
    async def _opened(
        self, call: Call, routes: Routes, meter: RequestMeter
    ) -> AsyncIterator[tuple[UpstreamResponse, Slot]]:
        """A response (headers read) from the first replica that answers without a failure.

        The replica holds the request in flight (its router lease) and the response stays
        open until the block ends.
        """
        headers = {"content-type": "application/json", "x-request-id": meter.request_id}
        payloads: dict[int, bytes] = {}
        tried: set[str] = set()
        busy = rejected = False
        for _ in range(self._max_attempts):
            slot = self._router.pick(routes.slots, call.affinity, tried)
            if slot is None:
                break
            if tried:
                self._metrics.failover(call.model)
            tried.add(slot.replica.replica_id)
            body = routes.plans[slot.replica.replica_id].body
            payload = payloads.get(id(body)) or payloads.setdefault(
                id(body), json.dumps(body).encode()
            )
            with self._router.lease(slot):
                response = await self._post(slot, call, payload, headers)
                if not isinstance(response, Verdict):
                    meter.routed(slot.replica)
                    try:
                        yield response, slot
                    finally:
                        await response.aclose()
                    return
                busy = busy or response is Verdict.BUSY
                rejected = rejected or response is Verdict.REJECTED
        if busy:
            raise GatewayError(
                503,
                f"every replica of {call.model!r} is busy; retry shortly",
                code="engine_busy",
                headers={"retry-after": str(BUSY_RETRY_S)},
            )
        if rejected:
            raise GatewayError(
                502,
                f"the upstream of {call.model!r} refused the platform's credentials;"
                " the operator must update them",
                code="upstream_auth",
            )
        raise GatewayError(
            503, f"no replica of {call.model!r} is answering; retry shortly", code="no_replica"
        )

    async def _post(
        self, slot: Slot, call: Call, payload: bytes, headers: dict[str, str]
    ) -> UpstreamResponse | Verdict:
        """The replica's answer (2xx or a refusal), or the verdict that sends the call to
        another replica (BUSY or FAILED)."""
        try:
            response = await self._upstreams.post(slot.replica, call.endpoint, payload, headers)
        except RETRYABLE as exc:
            self._failed(slot, call.model, type(exc).__name__)
            return Verdict.FAILED
        except httpx.TimeoutException as exc:
            self._metrics.upstream_error(call.model, "timeout")
            raise GatewayError(504, "the engine did not answer in time", code="timeout") from exc
        verdict = classify(response.status_code)
        if verdict in (Verdict.OK, Verdict.REFUSED):
            self._router.succeeded(slot)
            return response
        await response.aclose()
        reason = f"HTTP {response.status_code}"
        if verdict is Verdict.BUSY:
            self._metrics.upstream_error(call.model, reason)
        else:
            self._failed(slot, call.model, reason)
        return verdict

    def _failed(self, slot: Slot, model: str, reason: str) -> None:
        self._metrics.upstream_error(model, reason)
        if self._router.failed(slot, reason):
            self._metrics.ejected(model, slot.replica.replica_id)

    def _refused(self, call: Call, body: Any) -> GatewayError:
        error = refusal(body)
        self._metrics.refused(call.model, error.code or "invalid_value")
        return error

    async def own_prompt(self, slot: Slot, call: Call, routes: Routes | None = None) -> int:
        """The prompt's tokens as the engine counts them: of the body that replica was sent
        (translated), when the engine reported no plausible usage."""
        if routes is not None:
            call = replace(call, body=routes.plans[slot.replica.replica_id].body)
        counted = await self._upstreams.count_prompt(slot.replica, call)
        return counted if counted is not None else estimate_tokens(call.prompt_text)

    async def plain(
        self, call: Call, slots: list[Slot], meter: RequestMeter, io: tuple[Receive, Send, str]
    ) -> None:
        """Get a non-streamed answer, bill it, then send it (see the module docstring for a
        client that leaves first)."""
        receive, send, client_id = io
        routes = routes_for(call, slots)
        answers: list[tuple[int, bytes, Slot]] = []
        async with DisconnectWatch(receive) as watch:
            answers = await self._answers(call, routes, meter)
        if watch.gone:
            prompt = await self.own_prompt(routes.slots[0], call, routes)
            await meter.close(499, Outcome.CLIENT_DISCONNECT, prompt, 0)
            return
        for status, body, _ in answers:
            if status >= 400:
                raise self._refused(call, body)
        try:
            parsed = [json.loads(body) for _, body, _ in answers]
        except ValueError as exc:
            raise GatewayError(502, "the engine answered non-JSON", code="upstream_error") from exc
        answer = parsed[0] if len(parsed) == 1 else merge_choices(parsed)
        body = answers[0][1] if len(parsed) == 1 else json.dumps(answer).encode()
        if routes.plans[answers[0][2].replica.replica_id].tool_grammar:
            answer = as_tool_calls(answer)
            body = json.dumps(answer).encode()
        if call.extra and isinstance(answer, dict):
            answer = {**answer, **call.extra}
            body = json.dumps(answer, ensure_ascii=False).encode()
        usage = answer.get("usage") if isinstance(answer, dict) else None
        counted = content_tokens_of(answer) if call.max_completion else 0
        slot = answers[0][2]
        own = await self.own_prompt(slot, call, routes) if not has_prompt(usage, call) else 0
        prompt, completion = trusted_usage(usage, call, counted, own)
        await meter.close(200, Outcome.OK, prompt, completion)
        await send_bytes(send, 200, body, client_id, None)

    async def _answers(
        self, call: Call, routes: Routes, meter: RequestMeter
    ) -> list[tuple[int, bytes, Slot]]:
        """The engine's answer (status, body, replica), one per engine call."""
        if routes.calls == 1:
            return [await self._answer(call, routes, meter)]
        tasks = [self._answer(call, routes, meter) for _ in range(routes.calls)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if not isinstance(r, BaseException)]

    async def _answer(
        self, call: Call, routes: Routes, meter: RequestMeter
    ) -> tuple[int, bytes, Slot]:
        async with self._opened(call, routes, meter) as (response, slot):
            return response.status_code, await _read_all(response), slot

    async def stream(
        self, call: Call, slots: list[Slot], meter: RequestMeter, io: tuple[Receive, Send, str]
    ) -> None:
        """Forward a streamed answer, bill it, then finish it (see the module docstring)."""
        routes = routes_for(call, slots)
        async with self._opened(call, routes, meter) as (response, slot):
            plan = routes.plans[slot.replica.replica_id]
            sent = replace(call, body=plan.body)  # what a prompt count must see
            await self._stream(sent, (response, slot, plan.tool_grammar), meter, io)

    async def _stream(
        self,
        call: Call,
        answering: tuple[UpstreamResponse, Slot, bool],
        meter: RequestMeter,
        io: tuple[Receive, Send, str],
    ) -> None:
        """Forward (or, for tools through a grammar, collect and rewrite) a stream."""
        response, slot, grammar = answering
        receive, send, client_id = io
        if response.status_code >= 400:
            raise self._refused(call, await response.aread())
        lines, pieces = SseLines(), response.aiter_bytes()
        first = await self._first_events(call, pieces, lines)
        meter.streamed = True
        meter.first_event_at = meter.clock.now()
        await start_stream(send, client_id)
        tally = Tally()
        collected: list[bytes] = []

        async def collect(message: Message) -> None:
            collected.append(message["body"])

        pumped = Pumped(tally, lines, first, pieces)
        end = await self._pump_until_disconnect(receive, collect if grammar else send, pumped)
        if grammar:
            whole = b"".join(collected) + tally.held
            tally.held = stream_as_tool_calls(whole) if end is StreamEnd.COMPLETE else b""
            tally.chunks = tally.chunks if end is StreamEnd.COMPLETE else 0  # none delivered
        if end is not StreamEnd.COMPLETE:
            await response.aclose()  # cancels the engine's work
        prompt, completion = await self._billed(call, slot, tally, end)
        status, outcome = end.value
        if end in (StreamEnd.UPSTREAM_ERROR, StreamEnd.TIMEOUT):
            self._metrics.upstream_error(call.model, f"mid-stream {end.name.lower()}")
        await meter.close(status, outcome, prompt, completion)
        if end is StreamEnd.DISCONNECT:
            return
        tail = tally.held
        if end is not StreamEnd.COMPLETE:
            error = {"message": "the engine failed mid-stream", "type": "upstream_error"}
            tail += b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
        elif call.include_usage or call.extra:
            tail += usage_chunk(
                tally.last, prompt, completion, call.extra, with_usage=call.include_usage
            )
        tail += b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        if end is StreamEnd.COMPLETE:
            await finish(response)  # after the answer: keeps the engine connection

    async def _first_events(
        self, call: Call, pieces: AsyncIterator[bytes], lines: SseLines
    ) -> list[bytes]:
        """The engine's lines up to its first event, read before anything is sent to the
        client: a first event that is an error is the caller's 400 (billed 0)."""
        read: list[bytes] = []
        try:
            async for piece in pieces:
                read += lines.feed(piece)
                if any(line.startswith((b"data:", b"error:")) for line in read):
                    break
        except httpx.TimeoutException as exc:
            self._metrics.upstream_error(call.model, "timeout")
            raise GatewayError(504, "the engine did not answer in time", code="timeout") from exc
        except httpx.HTTPError:
            return read  # the pump sees the broken stream
        for line in read:
            if line.startswith(b"error:"):
                raise self._refused(call, line[6:].strip())
            if line.startswith(b"data:"):
                event = error_event(line[5:].strip())
                if event is not None:
                    raise self._refused(call, event)
                break
        return read

    async def _billed(
        self, call: Call, slot: Slot, tally: Tally, end: StreamEnd
    ) -> tuple[int, int]:
        """(prompt, completion) billed for a stream that ended so (module docstring)."""
        if end in (StreamEnd.UPSTREAM_ERROR, StreamEnd.TIMEOUT):
            return 0, min(tally.chunks, call.max_completion)
        usage = tally.usage if end is StreamEnd.COMPLETE else None
        own = await self.own_prompt(slot, call) if not has_prompt(usage, call) else 0
        return trusted_usage(usage, call, tally.chunks, own)

    async def _pump_until_disconnect(
        self, receive: Receive, send: Send, state: Pumped
    ) -> StreamEnd:
        """Pump in this task until the end of the stream or of the client."""
        async with DisconnectWatch(receive):
            return await self._pump(send, state)
        return StreamEnd.DISCONNECT

    async def _pump(self, send: Send, state: Pumped) -> StreamEnd:
        """Forward the engine's events as they arrive: one send per read, not per event."""
        tally, lines, first, pieces = state
        deadline = time.monotonic() + self._max_request_s
        out, end = forward(first, tally)
        if end is not None:
            tally.held = out
            return end
        if out:
            await send({"type": "http.response.body", "body": out, "more_body": True})
        try:
            async for piece in pieces:
                out, end = forward(lines.feed(piece), tally)
                if end is not None:
                    tally.held = out  # sent with the tail, after billing: one write less
                    return end
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                if time.monotonic() > deadline:
                    return StreamEnd.TIMEOUT
        except httpx.TimeoutException:
            return StreamEnd.TIMEOUT
        except httpx.HTTPError:
            return StreamEnd.UPSTREAM_ERROR
        tally.held, end = forward(lines.rest(), tally)
        return end or ended_without_done(tally)


async def _read_all(response: UpstreamResponse) -> bytes:
    try:
        return await response.aread()
    except httpx.TimeoutException as exc:
        raise GatewayError(504, "the engine did not finish in time", code="timeout") from exc
    except httpx.HTTPError as exc:
        raise GatewayError(502, "the engine failed mid-answer", code="upstream_error") from exc
